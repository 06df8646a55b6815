//! The header field names the codec acts on, recognised in one step per field: by length
//! first, so most fields (User-Agent, Accept, Cookie, ...) cost one or two comparisons
//! instead of one per name the codec knows.

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
    /// The name `bytes` are (ASCII case-insensitive).
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
            .find(|(name, _)| bytes.eq_ignore_ascii_case(name))
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
        assert!(Name::Upgrade.hop_by_hop() && !Name::Via.hop_by_hop());
        assert!(Name::Host.set_by_proxy() && !Name::XRequestId.set_by_proxy());
    }
}
