use std::borrow::Cow;

use proptest::prelude::*;

use super::*;

fn norm(path: &str) -> Result<String, PathError> {
    normalize_path(path).map(Cow::into_owned)
}

#[test]
fn the_issue_s_paths_normalize_as_nginx_routes_them() {
    for (raw, want) in [
        ("/api/../admin", "/admin"),
        ("//admin", "/admin"),
        ("/./admin", "/admin"),
        ("/%61dmin", "/admin"),
        ("/api//v1///x", "/api/v1/x"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/..", "/"),
        ("/a/%2e%2E/b", "/b"),
        ("/a/.%2e/b", "/b"),
        ("/%7Euser/%41%5a", "/~user/AZ"),
        ("/", "/"),
        ("//", "/"),
        ("/a/", "/a/"),
        ("/.well-known/x", "/.well-known/x"),
        ("/a/.../b", "/a/.../b"),
        ("/a..b/c.", "/a..b/c."),
    ] {
        assert_eq!(norm(raw), Ok(want.to_owned()), "{raw}");
    }
}

#[test]
fn reserved_escapes_stay_encoded_with_upper_case_hex() {
    // An encoded slash is data, not a separator: it never splits or climbs a segment.
    assert_eq!(
        norm("/api%2f..%2fadmin"),
        Ok("/api%2F..%2Fadmin".to_owned())
    );
    assert_eq!(norm("/a%20b/%3f"), Ok("/a%20b/%3F".to_owned()));
    assert_eq!(norm("/caf%c3%a9"), Ok("/caf%C3%A9".to_owned()));
}

#[test]
fn what_nginx_answers_400_is_an_error() {
    for (raw, want) in [
        ("/../admin", PathError::AboveRoot),
        ("/a/../../admin", PathError::AboveRoot),
        ("/..", PathError::AboveRoot),
        ("/%2e%2e/admin", PathError::AboveRoot),
        ("/admin%00", PathError::Nul),
        ("/admin%00.html", PathError::Nul),
        ("/a%zz", PathError::BadEscape),
        ("/a%4", PathError::BadEscape),
        ("/a%", PathError::BadEscape),
        ("*", PathError::NotAbsolute),
        ("", PathError::NotAbsolute),
        ("admin", PathError::NotAbsolute),
    ] {
        assert_eq!(norm(raw), Err(want), "{raw}");
    }
}

#[test]
fn a_normal_path_is_borrowed_not_copied() {
    for path in ["/", "/api/v1/items", "/a/", "/.well-known/acme", "/x.y/..z"] {
        assert!(
            matches!(normalize_path(path), Ok(Cow::Borrowed(p)) if p == path),
            "{path}"
        );
    }
}

#[test]
fn hosts_follow_rfc_9112_s_grammar() {
    for good in [
        "shop.example.com",
        "shop.example.com:8080",
        "shop.example.com:",
        "SHOP.Example.COM.",
        "127.0.0.1:80",
        "[::1]",
        "[::1]:8443",
        "[2001:db8::1]:65535",
        "xn--bcher-kva.example",
        "a%2Db.example",
        "under_score.example",
    ] {
        assert!(valid_host(good.as_bytes()), "{good} should be accepted");
    }
    for bad in [
        "",
        "user@shop.example.com",
        "user:pw@shop.example.com",
        "shop example.com",
        "shop.example.com ",
        "shop.example.com:80x",
        "shop.example.com:65536",
        "shop.example.com:999999",
        "shop.example.com:-1",
        "shop.example.com/evil",
        "shop.example.com\\evil",
        ":80",
        "[::1",
        "[::1]x",
        "[zz::1]",
        "[]",
        "a%2.example",
        "shop.example.com\t",
        "a\"b",
    ] {
        assert!(!valid_host(bad.as_bytes()), "{bad:?} should be refused");
    }
}

/// A path segment: unreserved characters, some reserved ones, and escapes of reserved octets.
fn segment() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            "[a-zA-Z0-9_~-]",
            Just(".".to_owned()),
            Just("%2F".to_owned()),
            Just("%3F".to_owned()),
            Just(":".to_owned()),
            Just("@".to_owned()),
        ],
        1..6,
    )
    .prop_map(|parts| parts.concat())
    .prop_filter("not a dot segment", |s| s != "." && s != "..")
}

/// Spells `path` another way nginx treats as the same: unreserved octets escaped, `./` and
/// `x/../` inserted, slashes doubled.
fn respell(path: &str, choices: &[u8]) -> String {
    let mut out = String::new();
    let mut choice = choices.iter().cycle();
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
            match choice.next().copied().unwrap_or(0) % 4 {
                1 => out.push_str("./"),
                2 => out.push_str("junk/../"),
                3 => out.push('/'),
                _ => {}
            }
        }
        let bytes = segment.as_bytes();
        for (j, c) in segment.chars().enumerate() {
            // Not the hex digits of an escape.
            let in_escape = bytes[j.saturating_sub(2)..j].contains(&b'%');
            if c.is_ascii_alphanumeric()
                && !in_escape
                && choice.next().copied().unwrap_or(0) % 3 == 0
            {
                out.push_str(&format!("%{:02x}", c as u8));
            } else {
                out.push(c);
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Normalizing twice changes nothing, and the result has no escape of an unreserved octet,
    /// no empty segment but a trailing one, and no dot segment.
    #[test]
    fn normal_paths_are_fixed_points(raw in "(/|//|/\\.|/\\.\\.|[a-z]|%2[eE]|%41|%2F|\\.)*") {
        let path = format!("/{raw}");
        if let Ok(once) = normalize_path(&path) {
            let twice = normalize_path(&once).unwrap();
            prop_assert_eq!(&twice, &once);
            prop_assert!(matches!(normalize_path(&once), Ok(Cow::Borrowed(_))));
            prop_assert!(once.starts_with('/'));
            let inner = once.strip_suffix('/').unwrap_or(&once);
            for segment in inner.split('/').skip(1) {
                prop_assert!(!segment.is_empty() && segment != "." && segment != "..", "{}", once);
            }
            prop_assert!(!once.contains("%2E") && !once.contains("%41"), "{}", once);
        }
    }

    /// Any other spelling of a normal path normalizes back to it: routing cannot be dodged.
    #[test]
    fn respellings_normalize_to_the_same_path(
        segments in proptest::collection::vec(segment(), 0..5),
        trailing in any::<bool>(),
        choices in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        let mut path = format!("/{}", segments.join("/"));
        if trailing && !segments.is_empty() {
            path.push('/');
        }
        let normal = normalize_path(&path).unwrap().into_owned();
        let respelled = respell(&path, &choices);
        prop_assert_eq!(normalize_path(&respelled).unwrap().into_owned(), normal, "{}", respelled);
    }
}
