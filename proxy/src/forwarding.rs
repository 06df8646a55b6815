//! What a proxy adds to and removes from a forwarded request's headers: hop-by-hop headers
//! out (RFC 9110 section 7.6.1), the forwarding headers in (X-Forwarded-*, X-Real-IP, an
//! X-Request-Id), and its `Via` entry, by which it also recognises a request it forwarded
//! before. [`Downstream`] is the client connection these values come from. Pure functions over
//! header maps: no I/O.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use http::Version;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Where a request came from: one per client connection, with the forwarding header values
/// that stay the same for all of its requests made once.
#[derive(Clone, Debug)]
pub struct Downstream {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// The peer's address (X-Real-IP, and X-Forwarded-For's last entry).
    real_ip: HeaderValue,
    /// The local port (X-Forwarded-Port).
    port: HeaderValue,
}

impl Downstream {
    pub fn new(peer: SocketAddr, local: SocketAddr, tls: bool) -> Downstream {
        let mut text = Text::new();
        let _ = write!(text, "{}", peer.ip());
        Downstream {
            peer,
            local,
            tls,
            real_ip: HeaderValue::from_bytes(text.as_bytes())
                .unwrap_or(HeaderValue::from_static("")),
            port: HeaderValue::from(local.port()),
        }
    }

    /// X-Real-IP's value: the peer's address.
    pub fn real_ip(&self) -> &HeaderValue {
        &self.real_ip
    }

    /// X-Forwarded-Port's value: the local port.
    pub fn port(&self) -> &HeaderValue {
        &self.port
    }
}

/// RFC 9110 section 7.6.1: these describe one connection, not the message.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    // Only meaningful with an h2c upgrade, which is never forwarded (RFC 9113 section 3.1).
    HeaderName::from_static("http2-settings"),
];

/// Removes hop-by-hop headers, those the Connection header names included. `TE: trailers`
/// stays (gRPC needs it end to end); Upgrade goes (an upgrade puts it back: see
/// [`crate::upgrade`]).
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one look at each name instead of a lookup for each hop-by-hop
    // name.
    let hop = |name: &HeaderName| {
        HOP_BY_HOP.contains(name) || name == header::UPGRADE || name == header::TE
    };
    if !headers.keys().any(hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
    let te_trailers = headers
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    headers.remove(header::TE);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// What the upstream learns about the client: X-Forwarded-For (appended), -Proto, -Host,
/// -Port, X-Real-IP, and an X-Request-Id (kept when the client sent one). The Host header is
/// the client's, as nginx's `proxy_set_header Host $host`. Returns the request id.
pub fn forwarding_headers(
    headers: &mut HeaderMap,
    host: &HeaderValue,
    down: &Downstream,
    ids: &RequestIds,
) -> HeaderValue {
    remove_hop_by_hop(headers);
    let ip = down.real_ip.clone();
    let xff = match headers.get("x-forwarded-for").map(HeaderValue::as_bytes) {
        Some(prior) if !prior.is_empty() => {
            let mut both = Vec::with_capacity(prior.len() + 2 + ip.len());
            both.extend_from_slice(prior);
            both.extend_from_slice(b", ");
            both.extend_from_slice(ip.as_bytes());
            HeaderValue::from_bytes(&both).unwrap_or_else(|_| ip.clone())
        }
        _ => ip.clone(),
    };
    let proto = if down.tls { "https" } else { "http" };
    headers.insert(HeaderName::from_static("x-forwarded-for"), xff);
    headers.insert(HeaderName::from_static("x-real-ip"), ip);
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(proto),
    );
    headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
    headers.insert(
        HeaderName::from_static("x-forwarded-port"),
        down.port.clone(),
    );
    headers.insert(header::HOST, host.clone());
    match headers.get("x-request-id") {
        Some(id) => id.clone(),
        None => {
            let id = ids.next();
            headers.insert(HeaderName::from_static("x-request-id"), id.clone());
            id
        }
    }
}

/// A short text formatted on the stack (an address, a request id), not in a `String`.
struct Text {
    bytes: [u8; 48],
    len: usize,
}

impl Text {
    fn new() -> Self {
        Text {
            bytes: [0; 48],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl std::fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let room = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Request ids: 32 hex digits, unique per process (a random prefix and a counter).
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    /// `prefix` in hex, made once.
    prefix_hex: [u8; 16],
    counter: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestIds {
    pub fn new() -> Self {
        let prefix = ferry_runtime::random::u64();
        RequestIds {
            prefix,
            prefix_hex: hex(prefix),
            counter: AtomicU64::new(0),
        }
    }

    pub fn next(&self) -> HeaderValue {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut text = Text::new();
        let _ = write!(text, "{:016x}{n:016x}", self.prefix);
        HeaderValue::from_bytes(text.as_bytes()).unwrap_or(HeaderValue::from_static(""))
    }

    /// The next id, appended to `out` (no allocation once `out` has room).
    pub fn write_next(&self, out: &mut Vec<u8>) {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // As `next`'s `{:016x}{:016x}`, without the formatting machinery.
        out.extend_from_slice(&self.prefix_hex);
        out.extend_from_slice(&hex(n));
    }
}

/// `word` as 16 lowercase hex digits.
fn hex(word: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    for (i, digit) in digits.iter_mut().enumerate() {
        *digit = HEX[((word >> ((15 - i) * 4)) & 0xf) as usize];
    }
    digits
}

/// This proxy's `Via` entry (RFC 9110 section 7.6.3): the received protocol and a pseudonym
/// made at start, unique to this instance (`ferry-` and 16 hex digits). A request that carries
/// it already has been here before: a route points back at this proxy.
#[derive(Debug)]
pub struct Via {
    pseudonym: Box<str>,
    http10: HeaderValue,
    http11: HeaderValue,
    http2: HeaderValue,
}

impl Default for Via {
    fn default() -> Self {
        Self::new()
    }
}

impl Via {
    pub fn new() -> Via {
        let pseudonym = format!("ferry-{:016x}", ferry_runtime::random::u64());
        let value = |protocol: &str| {
            HeaderValue::from_str(&format!("{protocol} {pseudonym}"))
                .unwrap_or(HeaderValue::from_static("1.1 ferry"))
        };
        Via {
            http10: value("1.0"),
            http11: value("1.1"),
            http2: value("2"),
            pseudonym: pseudonym.into(),
        }
    }

    /// The entry for a request received over `version`.
    pub fn value(&self, version: Version) -> HeaderValue {
        match version {
            Version::HTTP_10 | Version::HTTP_09 => self.http10.clone(),
            Version::HTTP_2 | Version::HTTP_3 => self.http2.clone(),
            _ => self.http11.clone(),
        }
    }

    /// The name this instance gives itself in its entries.
    pub fn pseudonym(&self) -> &str {
        &self.pseudonym
    }

    /// Whether one of the `Via` entries in `headers` is this proxy's.
    pub fn seen_in(&self, headers: &HeaderMap) -> bool {
        self.seen_in_values(
            headers
                .get_all(header::VIA)
                .iter()
                .map(HeaderValue::as_bytes),
        )
    }

    /// Whether one of the entries in these `Via` field values is this proxy's.
    pub fn seen_in_values<'a>(&self, values: impl Iterator<Item = &'a [u8]>) -> bool {
        values.flat_map(|v| v.split(|&b| b == b',')).any(|entry| {
            // `[protocol-name "/"] protocol-version RWS received-by [RWS comment]`
            entry
                .split(|b| b.is_ascii_whitespace())
                .filter(|t| !t.is_empty())
                .nth(1)
                .is_some_and(|by| by == self.pseudonym.as_bytes())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_te_trailers_stays() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::TE, HeaderValue::from_static("gzip, trailers"));
        h.insert("x-kept", HeaderValue::from_static("yes"));
        remove_hop_by_hop(&mut h);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, vec!["te", "x-kept"]);
        assert_eq!(h[header::TE], "trailers");
    }

    #[test]
    fn forwarding_headers_append_and_identify() {
        let ids = RequestIds::new();
        let down = Downstream::new(
            "10.0.0.7:5555".parse().unwrap(),
            "127.0.0.1:8443".parse().unwrap(),
            true,
        );
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("192.0.2.1"));
        let host = HeaderValue::from_static("shop.example.com");
        forwarding_headers(&mut h, &host, &down, &ids);
        assert_eq!(h["x-forwarded-for"], "192.0.2.1, 10.0.0.7");
        assert_eq!(h["x-real-ip"], "10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "shop.example.com");
        assert_eq!(h["x-forwarded-port"], "8443");
        assert_eq!(h["host"], "shop.example.com");
        let id = h["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(id.len(), 32);
        let mut again = HeaderMap::new();
        again.insert("x-request-id", HeaderValue::from_static("given"));
        forwarding_headers(&mut again, &HeaderValue::from_static("h"), &down, &ids);
        assert_eq!(
            again["x-request-id"], "given",
            "a client's id passes through"
        );
        assert_ne!(ids.next(), ids.next());
    }
}
