use super::*;
use http::header::{HeaderMap, HeaderValue};

fn req(method: &str, target: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut b = Request::builder().method(method).uri(target);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

#[test]
fn request_filter_refuses_what_nginx_refuses() {
    let via = Via::new();
    let host = ("host", "shop.example.com");
    let long = format!("/{}", "a".repeat(MAX_TARGET));
    let fits = format!("/{}", "a".repeat(MAX_TARGET - 1));
    let table: Vec<(Request<()>, Result<(), Failure>)> = vec![
        (req("GET", "/", &[host]), Ok(())),
        (req("GET", &fits, &[host]), Ok(())),
        (req("GET", &long, &[host]), Err(Failure::UriTooLong)),
        (
            req("GET", "/", &[host, ("host", "admin.example.com")]),
            Err(Failure::DuplicateHost),
        ),
        (req("GET", "/", &[host, host]), Err(Failure::DuplicateHost)),
        (
            req("GET", "/", &[("host", "evil@shop.example.com")]),
            Err(Failure::BadHost),
        ),
        (
            req("GET", "/", &[("host", "shop.example.com:8o")]),
            Err(Failure::BadHost),
        ),
        (
            req("GET", "/", &[("host", "shop example.com")]),
            Err(Failure::BadHost),
        ),
        (req("GET", "/", &[]), Err(Failure::NoHost)),
        (
            req("GET", "http://u@shop.example.com/", &[host]),
            Err(Failure::BadHost),
        ),
        (req("GET", "http://other.example/", &[host]), Ok(())),
        (
            req("POST", "/", &[host, ("transfer-encoding", "gzip, chunked")]),
            Err(Failure::UnknownCoding),
        ),
        (
            req(
                "POST",
                "/",
                &[
                    host,
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ],
            ),
            Err(Failure::UnknownCoding),
        ),
        (
            req("POST", "/", &[host, ("transfer-encoding", "Chunked")]),
            Ok(()),
        ),
        (
            req("CONNECT", "shop.example.com:443", &[host]),
            Err(Failure::MethodNotAllowed),
        ),
        (req("TRACE", "/", &[host]), Err(Failure::MethodNotAllowed)),
        (req("GET", "/", &[host, ("via", "1.1 other-proxy")]), Ok(())),
    ];
    for (r, want) in table {
        let what = format!("{} {} {:?}", r.method(), r.uri(), r.headers());
        assert_eq!(check(&r, &via), want, "{what}");
    }
}

#[test]
fn via_names_this_gateway_and_finds_it_in_any_entry() {
    let (via, other) = (Via::new(), Via::new());
    let mine = via.value(Version::HTTP_11);
    let mine = mine.to_str().unwrap();
    assert!(mine.starts_with("1.1 ferry-") && mine.len() == "1.1 ferry-".len() + 16);
    assert_eq!(
        via.value(Version::HTTP_2).to_str().unwrap(),
        mine.replace("1.1", "2")
    );
    assert_ne!(via.pseudonym(), other.pseudonym(), "one per instance");
    let others = other.value(Version::HTTP_11).to_str().unwrap().to_owned();
    for (entry, seen) in [
        (mine.to_owned(), true),
        (format!("1.0 fred, {mine}"), true),
        (
            format!("1.0 fred, HTTP/1.1  {} (comment)", via.pseudonym()),
            true,
        ),
        (others, false),
        (format!("1.1 {}x", via.pseudonym()), false),
        ("1.1 fred".to_owned(), false),
    ] {
        let mut h = HeaderMap::new();
        h.append(header::VIA, HeaderValue::from_static("1.1 first"));
        h.append(header::VIA, HeaderValue::from_str(&entry).unwrap());
        assert_eq!(via.seen_in(&h), seen, "{entry}");
        let r = req("GET", "/", &[("host", "a"), ("via", &entry)]);
        let want = if seen { Err(Failure::Loop) } else { Ok(()) };
        assert_eq!(check(&r, &via), want, "{entry}");
    }
}

#[test]
fn paths_are_normalized_keeping_the_query() {
    for (raw, want) in [
        ("/api/../admin?x=/../y", Ok("/admin?x=/../y")),
        ("//admin", Ok("/admin")),
        ("/%61dmin?q", Ok("/admin?q")),
        ("/../admin", Err(Failure::BadPath(PathError::AboveRoot))),
        ("/admin%00", Err(Failure::BadPath(PathError::Nul))),
        ("/a%zz", Err(Failure::BadPath(PathError::BadEscape))),
    ] {
        let got = normalized(PathAndQuery::try_from(raw).unwrap());
        assert_eq!(
            got.as_ref().map(PathAndQuery::as_str).map_err(|f| *f),
            want,
            "{raw}"
        );
    }
    // A normal path is the same value: the request's buffer, not a copy.
    let raw = PathAndQuery::from_static("/api/v1?x=1");
    let same = normalized(raw.clone()).unwrap();
    assert_eq!(same.as_str().as_ptr(), raw.as_str().as_ptr());
}
