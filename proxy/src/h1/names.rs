//! The header field names the codec acts on, recognised once per field as a head is parsed:
//! by length first, so most fields (User-Agent, Accept, Cookie, ...) cost one or two
//! comparisons instead of one per name the codec knows, each eight bytes at a time.

/// A field name the framing or the edit acts on; `Other` for the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Name {
    Connection,
    ContentLength,
    Date,
    Expect,
    Host,
    Http2Settings,
    KeepAlive,
    ProxyAuthenticate,
    ProxyAuthorization,
    ProxyConnection,
    Te,
    Trailer,
    TransferEncoding,
    Upgrade,
    Via,
    XForwardedFor,
    XForwardedHost,
    XForwardedPort,
    XForwardedProto,
    XRealIp,
    XRequestId,
    Other,
}

impl Name {
    /// The name `bytes` are (ASCII case-insensitive), for a field name as httparse passes
    /// it: a token (RFC 9110 section 5.6.2), which [`same`] relies on.
    pub(crate) fn of(bytes: &[u8]) -> Name {
        let candidates: &[(&[u8], Name)] = match bytes.len() {
            2 => &[(b"te", Name::Te)],
            3 => &[(b"via", Name::Via)],
            4 => &[(b"host", Name::Host), (b"date", Name::Date)],
            6 => &[(b"expect", Name::Expect)],
            7 => &[(b"upgrade", Name::Upgrade), (b"trailer", Name::Trailer)],
            9 => &[(b"x-real-ip", Name::XRealIp)],
            10 => &[
                (b"connection", Name::Connection),
                (b"keep-alive", Name::KeepAlive),
            ],
            12 => &[(b"x-request-id", Name::XRequestId)],
            14 => &[
                (b"content-length", Name::ContentLength),
                (b"http2-settings", Name::Http2Settings),
            ],
            15 => &[(b"x-forwarded-for", Name::XForwardedFor)],
            16 => &[
                (b"proxy-connection", Name::ProxyConnection),
                (b"x-forwarded-host", Name::XForwardedHost),
                (b"x-forwarded-port", Name::XForwardedPort),
            ],
            17 => &[
                (b"transfer-encoding", Name::TransferEncoding),
                (b"x-forwarded-proto", Name::XForwardedProto),
            ],
            18 => &[(b"proxy-authenticate", Name::ProxyAuthenticate)],
            19 => &[(b"proxy-authorization", Name::ProxyAuthorization)],
            _ => &[],
        };
        candidates
            .iter()
            .find(|(name, _)| same(bytes, name))
            .map_or(Name::Other, |(_, known)| *known)
    }

    /// Whether it describes one connection, not the message (RFC 9110 section 7.6.1), as
    /// `crate::forwarding` removes them (`TE` comes back as `TE: trailers` when it asked).
    pub(crate) fn hop_by_hop(self) -> bool {
        matches!(
            self,
            Name::Connection
                | Name::KeepAlive
                | Name::ProxyConnection
                | Name::ProxyAuthenticate
                | Name::ProxyAuthorization
                | Name::Trailer
                | Name::TransferEncoding
                | Name::Http2Settings
                | Name::Upgrade
                | Name::Te
        )
    }

    /// Whether the proxy sets it on a request itself (the client's is dropped).
    pub(crate) fn set_by_proxy(self) -> bool {
        matches!(
            self,
            Name::Host
                | Name::XForwardedFor
                | Name::XRealIp
                | Name::XForwardedProto
                | Name::XForwardedHost
                | Name::XForwardedPort
        )
    }
}

/// Whether the token `bytes` is the lowercase `name` of the same length, in any case: eight
/// bytes at a time (the last eight overlapping the word before), each with bit 5 set. That
/// lowercases a letter and leaves `-` and digits as they are; the only other bytes it turns
/// into a letter, a digit or `-` are control characters and the letters' own capitals, and
/// no token has a control character.
fn same(bytes: &[u8], name: &[u8]) -> bool {
    const LOWER: u64 = u64::from_ne_bytes([0x20; 8]);
    fn word(s: &[u8], at: usize) -> Option<u64> {
        s.get(at..)?
            .first_chunk::<8>()
            .map(|w| u64::from_ne_bytes(*w) | LOWER)
    }
    let n = name.len();
    if bytes.len() != n {
        return false;
    }
    if n < 8 {
        return bytes.iter().zip(name).all(|(a, b)| a | 0x20 == b | 0x20);
    }
    (0..n / 8)
        .map(|i| i * 8)
        .chain((!n.is_multiple_of(8)).then(|| n - 8))
        .all(|at| word(bytes, at) == word(name, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_recognised_in_any_case_and_others_are_not() {
        assert_eq!(Name::of(b"Content-Length"), Name::ContentLength);
        assert_eq!(Name::of(b"TRANSFER-ENCODING"), Name::TransferEncoding);
        assert_eq!(Name::of(b"x-forwarded-port"), Name::XForwardedPort);
        assert_eq!(Name::of(b"TE"), Name::Te);
        for other in [
            &b"User-Agent"[..],
            b"Accept",
            b"Content-Type",
            b"X-Forwarded",
            b"",
        ] {
            assert_eq!(Name::of(other), Name::Other, "{other:?}");
        }
        // One byte off anywhere, past the first eight too, is another name.
        for other in [&b"content-lengtx"[..], b"xontent-length", b"content_length"] {
            assert_eq!(Name::of(other), Name::Other, "{other:?}");
        }
        // Every byte of every name, in either case.
        for (name, known) in [
            (&b"proxy-authorization"[..], Name::ProxyAuthorization),
            (b"x-forwarded-proto", Name::XForwardedProto),
            (b"http2-settings", Name::Http2Settings),
            (b"keep-alive", Name::KeepAlive),
        ] {
            for i in 0..name.len() {
                let mut mixed = name.to_vec();
                mixed[i] = mixed[i].to_ascii_uppercase();
                assert_eq!(Name::of(&mixed), known, "{mixed:?}");
                mixed[i] = b'!';
                assert_eq!(Name::of(&mixed), Name::Other, "{mixed:?}");
            }
        }
        assert!(Name::Upgrade.hop_by_hop() && !Name::Via.hop_by_hop());
        assert!(Name::Host.set_by_proxy() && !Name::XRequestId.set_by_proxy());
    }
}
