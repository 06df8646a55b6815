//! The request path as authorization sees it and the app receives it: normalized as RFC 3986
//! §6.2.2 says (percent-encoded unreserved characters decoded, other percent-encodings in
//! upper case, dot segments removed), as Istio's default (`BASE`) normalization does before
//! its policies match. Otherwise a DENY on `/admin*` would not see `/./admin`, `/x/../admin`
//! or `/%61dmin`, which the app may well serve as `/admin`. Slashes are not merged (Istio's
//! `MERGE_SLASHES` is not its default).

/// The normalized form of `path` (no query), or `None` when it is already normal.
pub(super) fn normalize(path: &str) -> Option<String> {
    let decoded = decode_unreserved(path);
    let source = decoded.as_deref().unwrap_or(path);
    let removed = remove_dot_segments(source);
    match (decoded, removed) {
        (_, Some(removed)) => Some(removed),
        (Some(decoded), None) => Some(decoded),
        (None, None) => None,
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// `%61` → `a`; `%2f` → `%2F`; a malformed `%` stays as it is.
fn decode_unreserved(path: &str) -> Option<String> {
    if !path.contains('%') {
        return None;
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            let byte = h * 16 + l;
            if unreserved(byte) {
                out.push(char::from(byte));
                changed = true;
            } else {
                let upper = format!("%{byte:02X}");
                changed |= upper != path[i..i + 3];
                out.push_str(&upper);
            }
            i += 3;
            continue;
        }
        // Multi-byte UTF-8 passes whole: only ASCII is ever looked at above.
        let len = path[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&path[i..i + len]);
        i += len;
    }
    changed.then_some(out)
}

/// RFC 3986 §5.2.4 over an absolute path; `None` when there is no dot segment.
fn remove_dot_segments(path: &str) -> Option<String> {
    let has_dots = path
        .split('/')
        .any(|segment| segment == "." || segment == "..");
    if !has_dots {
        return None;
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (n, segment) in segments.iter().enumerate() {
        let last = n + 1 == segments.len();
        match *segment {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            other => out.push(other),
        }
    }
    Some(format!("/{}", out.join("/")))
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn paths_are_normalized_as_rfc_3986_says() {
        for (given, normal) in [
            ("/admin", None),
            ("/", None),
            ("/a//b", None),
            ("/./admin", Some("/admin")),
            ("/x/../admin", Some("/admin")),
            ("/../../admin", Some("/admin")),
            ("/a/b/..", Some("/a/")),
            ("/a/.", Some("/a/")),
            ("/%61dmin", Some("/admin")),
            ("/%2e%2e/admin", Some("/admin")),
            ("/a%2fb", Some("/a%2Fb")),
            ("/a%2Fb", None),
            ("/100%", None),
            ("/%zz", None),
            ("/caf\u{e9}/%7e", Some("/caf\u{e9}/~")),
        ] {
            assert_eq!(normalize(given).as_deref(), normal, "{given}");
        }
    }
}
