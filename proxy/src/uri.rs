//! Request targets as a proxy must read them before routing: the path normalized as nginx
//! normalizes `$uri` (so a route decision cannot be dodged by spelling a path another way),
//! and the Host checked against RFC 9112's grammar.
//!
//! [`normalize_path`] applies, in this order: percent-decoding of the octets RFC 3986 calls
//! unreserved (`A-Z a-z 0-9 - . _ ~`; other escapes stay encoded with upper-case hex, so `%2F`
//! never becomes a separator), merging repeated slashes (nginx's `merge_slashes on`), and
//! removing dot segments (RFC 3986 section 5.2.4). What nginx answers 400 is an error here: a
//! bad escape, an encoded NUL, a path that climbs above the root, one that does not start
//! with `/`. Pure functions over bytes: no allocation when the path is already normal.

use std::borrow::Cow;

/// Why a path cannot be routed (nginx answers all of them 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// `%00`, or a NUL octet.
    Nul,
    /// A `..` segment with nothing left to remove (`/../x`).
    AboveRoot,
    /// The path does not start with `/` (`*`, or nothing).
    NotAbsolute,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PathError::BadEscape => "a '%' not followed by two hex digits",
            PathError::Nul => "an encoded NUL (%00)",
            PathError::AboveRoot => "a '..' segment above the root",
            PathError::NotAbsolute => "the path does not start with '/'",
        })
    }
}

impl std::error::Error for PathError {}

/// The normalized form of `path` (a path without its query): borrowed when it is normal
/// already. See the module docs for the rules.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(bytes)?;
    let out = remove_dot_segments(&decoded)?;
    // Only ASCII was decoded and only whole segments moved: still UTF-8 as `path` was.
    let out = String::from_utf8(out).map_err(|_| PathError::BadEscape)?;
    Ok(if out == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(out)
    })
}

/// No escape, no empty segment, no dot segment: nothing to do (the common case, one scan).
fn is_normal(bytes: &[u8]) -> bool {
    let mut prev = 0u8;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'%' | 0 => return false,
            b'/' if prev == b'/' => return false,
            b'.' if prev == b'/' => {
                // `/.` or `/..` ending a segment.
                let rest = &bytes[i + 1..];
                let end = rest.iter().position(|&c| c == b'/').unwrap_or(rest.len());
                if end == 0 || &rest[..end] == b"." {
                    return false;
                }
            }
            _ => {}
        }
        prev = b;
    }
    true
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes the escapes of unreserved octets; keeps the others with upper-case hex.
fn decode_unreserved(bytes: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            0 => return Err(PathError::Nul),
            b'%' => {
                let (hi, lo) = match (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(hi), Some(lo)) => (hi, lo),
                    _ => return Err(PathError::BadEscape),
                };
                let octet = hi << 4 | lo;
                if octet == 0 {
                    return Err(PathError::Nul);
                }
                if is_unreserved(octet) {
                    out.push(octet);
                } else {
                    out.push(b'%');
                    out.extend_from_slice(
                        &[bytes[i + 1], bytes[i + 2]].map(|h| h.to_ascii_uppercase()),
                    );
                }
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// RFC 3986 section 5.2.4 over a path starting with `/`, with empty segments dropped (merged
/// slashes); a `..` above the root is an error, as nginx's.
fn remove_dot_segments(path: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut segments: Vec<&[u8]> = Vec::new();
    // Whether the path ends in a directory: a trailing `/`, `/.` or `/..`.
    let mut trailing = false;
    for segment in path[1..].split(|&b| b == b'/') {
        trailing = true;
        match segment {
            b"" | b"." => {}
            b".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            name => {
                segments.push(name);
                trailing = false;
            }
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if trailing || segments.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

/// Whether a Host header (or an absolute-form target's authority) is `uri-host [":" port]` as
/// RFC 9112 section 3.2 and RFC 3986 define it: a reg-name (unreserved, sub-delims,
/// percent-escapes), an IPv4 address or a bracketed IPv6 literal, and a port of at most five
/// digits up to 65535. No userinfo (`@`), no spaces, no path.
pub fn valid_host(host: &[u8]) -> bool {
    let (name, port) = if host.first() == Some(&b'[') {
        let Some(close) = host.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &host[1..close];
        let ok = !literal.is_empty()
            && literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
            && std::str::from_utf8(literal)
                .ok()
                .and_then(|l| l.parse::<std::net::Ipv6Addr>().ok())
                .is_some();
        if !ok {
            return false;
        }
        match &host[close + 1..] {
            [] => (&host[..0], None),
            [b':', port @ ..] => (&host[..0], Some(port)),
            _ => return false,
        }
    } else {
        match host.iter().rposition(|&b| b == b':') {
            Some(i) => (&host[..i], Some(&host[i + 1..])),
            None => (host, None),
        }
    };
    let name_ok = name.iter().enumerate().all(|(i, &b)| {
        is_unreserved(b)
            || matches!(
                b,
                b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
            )
            // An escape's two hex digits are unreserved characters themselves.
            || (b == b'%'
                && name.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && name.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    let port_ok = port.is_none_or(|p| {
        // RFC 3986 allows an empty port ("host:"); a number needs at most five digits.
        p.len() <= 5
            && p.iter().all(u8::is_ascii_digit)
            && (p.is_empty()
                || std::str::from_utf8(p)
                    .ok()
                    .and_then(|p| p.parse::<u16>().ok())
                    .is_some())
    });
    (host.first() == Some(&b'[') || !name.is_empty()) && name_ok && port_ok
}

#[cfg(test)]
mod tests;
