use super::*;

#[test]
fn labels() {
    for ok in ["a", "web", "web-1", "1abc", "a".repeat(63).as_str()] {
        assert!(dns1123_label(ok).is_ok(), "{ok}");
    }
    for bad in ["", "-a", "a-", "A", "a.b", "a_b", "a".repeat(64).as_str()] {
        assert!(dns1123_label(bad).is_err(), "{bad}");
    }
}

#[test]
fn subdomains_and_wildcards() {
    assert!(dns1123_subdomain("foo.bar.com").is_ok());
    assert!(dns1123_subdomain("foo..com").is_err());
    assert!(dns1123_subdomain("foo.com.").is_err());
    assert!(dns1123_subdomain(&"a.".repeat(127)).is_err());
    assert!(wildcard_dns1123_subdomain("*.foo.com").is_ok());
    assert!(wildcard_dns1123_subdomain("*foo.com").is_err());
    assert!(wildcard_dns1123_subdomain("*.*.foo.com").is_err());
    assert!(wildcard_dns1123_subdomain("foo.com").is_err());
}

#[test]
fn service_names_start_with_a_letter() {
    assert!(dns1035_label("web").is_ok());
    assert!(dns1035_label("1web").is_err());
}

#[test]
fn iana_service_names() {
    assert!(iana_svc_name("http").is_ok());
    assert!(iana_svc_name("http-alt").is_ok());
    assert_eq!(
        iana_svc_name("8080").unwrap_err(),
        "must contain at least one letter (a-z)"
    );
    assert!(iana_svc_name("a--b").is_err());
    assert!(iana_svc_name("-ab").is_err());
    assert!(iana_svc_name("sixteen-letters-").is_err());
    assert!(iana_svc_name("HTTP").is_err());
}

#[test]
fn qualified_names_and_label_values() {
    for ok in [
        "app",
        "app.kubernetes.io/name",
        "kubernetes.io/service-name",
        "My_Name.1",
    ] {
        assert!(qualified_name(ok).is_ok(), "{ok}");
    }
    for bad in ["", "/app", "a/b/c", "-app", "Bad_Prefix/app"] {
        assert!(qualified_name(bad).is_err(), "{bad}");
    }
    assert!(label_value("").is_ok());
    assert!(label_value("summer").is_ok());
    assert!(label_value("a b").is_err());
}
