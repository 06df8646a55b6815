use super::Target;

#[test]
fn http_and_https_with_default_and_explicit_ports() {
    let t = Target::parse("http://127.0.0.1:8080/a/b?c=d").unwrap();
    assert!(!t.tls);
    assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 8080));
    assert_eq!(t.authority.as_str(), "127.0.0.1:8080");
    assert_eq!(t.path_and_query.as_str(), "/a/b?c=d");

    let t = Target::parse("https://example.com").unwrap();
    assert!(t.tls);
    assert_eq!((t.host.as_str(), t.port), ("example.com", 443));
    assert_eq!(t.path_and_query.as_str(), "/");

    let t = Target::parse("http://[::1]/x").unwrap();
    assert_eq!((t.host.as_str(), t.port), ("::1", 80));
    assert_eq!(
        t.absolute_uri(&t.authority).unwrap().to_string(),
        "http://[::1]/x"
    );
}

#[test]
fn bad_urls_say_why() {
    for (url, why) in [
        ("", "bad URL"),
        ("localhost:8080", "scheme"),
        ("ftp://host/", "unsupported scheme"),
        ("http:///path", "bad URL"),
        ("http://host:0/", "port 0"),
        ("http://host:99999/", "invalid port"),
        ("http://host:/", "empty port"),
        ("http://u:p@host/", "user information"),
        ("/just/a/path", "scheme"),
    ] {
        let err = Target::parse(url).unwrap_err();
        assert!(err.contains(why), "{url:?}: {err}");
    }
}

#[test]
fn ipv6_with_a_port() {
    let t = Target::parse("https://[::1]:8443/").unwrap();
    assert_eq!((t.host.as_str(), t.port), ("::1", 8443));
}
