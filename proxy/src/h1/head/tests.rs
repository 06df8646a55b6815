use super::*;

/// A parsed head's parts: method, target, version, length, fields.
type Parsed = (String, String, Version, usize, Vec<(String, String)>);

fn request(bytes: &[u8]) -> Result<Option<Parsed>, Malformed> {
    let mut parser = Parser::requests(Limits::default());
    Ok(parser.request(bytes)?.map(|h| {
        let fields = h
            .fields
            .iter()
            .map(|f| {
                (
                    String::from_utf8_lossy(f.name).into_owned(),
                    String::from_utf8_lossy(f.value).into_owned(),
                )
            })
            .collect();
        (
            h.method.to_owned(),
            h.target.to_owned(),
            h.version,
            h.len,
            fields,
        )
    }))
}

fn refused(bytes: &[u8]) -> Malformed {
    match request(bytes) {
        Err(e) => e,
        Ok(parsed) => panic!("{:?} was taken: {parsed:?}", String::from_utf8_lossy(bytes)),
    }
}

#[test]
fn a_request_head_is_parsed_into_views_of_the_buffer() {
    let head =
        b"GET /a?b=c HTTP/1.1\r\nHost: shop.example.com\r\nX-Empty:\r\nAccept:  */* \r\n\r\nbody";
    let (method, target, version, len, fields) = request(head).unwrap().unwrap();
    assert_eq!((method.as_str(), target.as_str()), ("GET", "/a?b=c"));
    assert_eq!(version, Version::HTTP_11);
    assert_eq!(len, head.len() - 4, "the body is not the head's");
    let want = [
        ("Host", "shop.example.com"),
        ("X-Empty", ""),
        ("Accept", "*/*"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    assert_eq!(fields, want);
    let (_, _, version, ..) = request(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
    assert_eq!(version, Version::HTTP_10);
}

#[test]
fn a_head_split_anywhere_is_parsed_once_it_is_all_there() {
    let head = b"\r\nPOST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
    let end = head.len() - 3;
    for cut in 0..end {
        let mut parser = Parser::requests(Limits::default());
        assert!(
            parser.request(&head[..cut]).unwrap().is_none(),
            "cut at {cut}"
        );
        let parsed = parser.request(head).unwrap().unwrap();
        assert_eq!(
            (parsed.target, parsed.len),
            ("/upload", end),
            "cut at {cut}"
        );
    }
    // A byte at a time.
    let mut parser = Parser::requests(Limits::default());
    for n in 1..end {
        assert!(parser.request(&head[..n]).unwrap().is_none());
    }
    assert_eq!(parser.request(&head[..end]).unwrap().unwrap().len, end);
}

#[test]
fn the_parser_is_reused_for_the_next_head() {
    let mut parser = Parser::requests(Limits::default());
    let first = b"GET /one HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n";
    assert_eq!(parser.request(first).unwrap().unwrap().fields.len(), 2);
    let second = b"GET /two HTTP/1.1\r\n\r\n";
    let head = parser.request(second).unwrap().unwrap();
    assert_eq!((head.target, head.fields.len()), ("/two", 0));
    assert!(head.fields.get("a").is_none());
}

#[test]
fn bare_lf_is_refused_anywhere_in_the_head() {
    for head in [
        "GET / HTTP/1.1\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\n",
        "GET / HTTP/1.1\r\nHost: a\n\n",
        "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\nContent-Length: 5\r\n\r\n",
    ] {
        assert_eq!(refused(head.as_bytes()), Malformed::BareLf, "{head:?}");
    }
    // Refused as soon as it comes, before the head ends.
    let mut parser = Parser::requests(Limits::default());
    assert_eq!(
        parser.request(b"GET / HTTP/1.1\nHost").unwrap_err(),
        Malformed::BareLf
    );
}

#[test]
fn obs_fold_is_refused() {
    for head in [
        "GET / HTTP/1.1\r\nX-A: one\r\n two\r\n\r\n",
        "GET / HTTP/1.1\r\nX-A: one\r\n\ttwo\r\n\r\n",
        "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
    ] {
        assert_eq!(refused(head.as_bytes()), Malformed::ObsFold, "{head:?}");
    }
    let mut parser = Parser::responses(Limits::default());
    assert_eq!(
        parser
            .response(b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n")
            .unwrap_err(),
        Malformed::ObsFold
    );
}

#[test]
fn nul_cr_and_other_controls_in_values_are_refused() {
    for value in ["a\0b", "a\rb", "\x0b", "a\x7fb", "\x1b[0m"] {
        let head = format!("GET / HTTP/1.1\r\nX-A: {value}\r\n\r\n");
        assert_eq!(
            refused(head.as_bytes()),
            Malformed::ControlInField,
            "{value:?}"
        );
    }
    // A tab is whitespace, and bytes past ASCII are obs-text: both allowed.
    assert!(
        request(b"GET / HTTP/1.1\r\nX-A: a\tb \xc3\xa9\r\n\r\n")
            .unwrap()
            .is_some()
    );
    // NUL in the target or a name.
    assert_eq!(refused(b"GET /a\0b HTTP/1.1\r\n\r\n"), Malformed::StartLine);
    assert_eq!(
        refused(b"GET / HTTP/1.1\r\nX\0A: a\r\n\r\n"),
        Malformed::FieldName
    );
}

#[test]
fn bad_names_and_start_lines_are_refused() {
    assert_eq!(
        refused(b"POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\n"),
        Malformed::FieldName,
        "whitespace before the colon (RFC 9112 section 5.1)"
    );
    assert_eq!(
        refused(b"GET / HTTP/1.1\r\nNoColon\r\n\r\n"),
        Malformed::FieldName
    );
    for line in [
        "GET /\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(refused(line.as_bytes()), Malformed::StartLine, "{line:?}");
    }
    assert_eq!(
        refused(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        Malformed::StartLine,
        "HTTP/2's preface is not HTTP/1"
    );
}

#[test]
fn a_target_past_8_kib_gets_414_as_soon_as_it_passes() {
    let at_limit = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_TARGET - 1));
    assert!(request(at_limit.as_bytes()).unwrap().is_some());
    let over = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_TARGET));
    assert_eq!(refused(over.as_bytes()), Malformed::TargetTooLong);
    assert_eq!(Malformed::TargetTooLong.status(), 414);
    // Before the line ends, whatever the reads: 414 rather than 431 for a line past 64 KiB.
    let long = format!("\r\nOPTIONS /{}", "a".repeat(200_000));
    for step in [1, 7, 4096, long.len()] {
        let mut parser = Parser::requests(Limits::default());
        let mut refusal = None;
        for end in (step..long.len() + step).step_by(step) {
            if let Err(e) = parser.request(&long.as_bytes()[..end.min(long.len())]) {
                refusal = Some((e, end));
                break;
            }
        }
        let (e, end) = refusal.expect("refused");
        assert_eq!(e, Malformed::TargetTooLong, "step {step}");
        assert!(end <= MAX_TARGET + 12 + step, "step {step}: at {end}");
    }
}

#[test]
fn heads_past_64_kib_or_100_fields_get_431() {
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(70_000));
    assert_eq!(refused(big.as_bytes()), Malformed::HeadTooLarge);
    // Partial: refused once past the limit, without waiting for the end.
    let mut parser = Parser::requests(Limits::default());
    assert_eq!(
        parser.request(&big.as_bytes()[..MAX_HEAD + 1]).unwrap_err(),
        Malformed::HeadTooLarge
    );
    let fields = |n: usize| -> String {
        let many: String = (0..n).map(|i| format!("X-H{i}: v\r\n")).collect();
        format!("GET / HTTP/1.1\r\n{many}\r\n")
    };
    assert!(request(fields(MAX_FIELDS).as_bytes()).unwrap().is_some());
    assert_eq!(
        refused(fields(MAX_FIELDS + 1).as_bytes()),
        Malformed::TooManyFields
    );
    assert_eq!(refused(fields(120).as_bytes()), Malformed::TooManyFields);
    assert_eq!(Malformed::TooManyFields.status(), 431);
    assert_eq!(Malformed::HeadTooLarge.status(), 431);
    // A long header within the limit is no target: never 414.
    let long_header = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    assert!(request(long_header.as_bytes()).unwrap().is_some());
}

#[test]
fn a_response_head_is_parsed() {
    let mut parser = Parser::responses(Limits::default());
    let head = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno";
    let parsed = parser.response(head).unwrap().unwrap();
    assert_eq!((parsed.status, parsed.reason), (404, "Not Found"));
    assert_eq!(parsed.version, Version::HTTP_11);
    assert_eq!(parsed.len, head.len() - 2);
    assert_eq!(parsed.fields.get("content-length"), Some(&b"2"[..]));
    // No reason phrase at all.
    let parsed = parser.response(b"HTTP/1.0 204 \r\n\r\n").unwrap().unwrap();
    assert_eq!(
        (parsed.status, parsed.reason, parsed.version),
        (204, "", Version::HTTP_10)
    );
    assert_eq!(
        parser.response(b"HTTP/1.1 20 OK\r\n\r\n").unwrap_err(),
        Malformed::StartLine
    );
    assert_eq!(
        parser
            .response(b"HTTP/1.1 200 OK\nA: b\r\n\r\n")
            .unwrap_err(),
        Malformed::BareLf
    );
}
