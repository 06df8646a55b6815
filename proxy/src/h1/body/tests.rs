use super::*;

/// Feeds `bytes` whole: how many belong to the body, or the refusal.
fn delimit(body: Body, bytes: &[u8]) -> Result<Step, Malformed> {
    Delimiter::new(body).feed(bytes)
}

fn chunked(bytes: &str) -> Result<Step, Malformed> {
    delimit(Body::Chunked, bytes.as_bytes())
}

#[test]
fn a_length_counts_down_and_leaves_what_follows() {
    let mut d = Delimiter::new(Body::Length(5));
    assert_eq!(
        d.feed(b"hel").unwrap(),
        Step {
            used: 3,
            done: false
        }
    );
    assert_eq!(d.finish(), Err(Malformed::Truncated));
    assert_eq!(
        d.feed(b"loGET /").unwrap(),
        Step {
            used: 2,
            done: true
        }
    );
    assert_eq!(
        d.feed(b"GET /").unwrap(),
        Step {
            used: 0,
            done: true
        }
    );
    assert_eq!(d.finish(), Ok(()));
    assert!(Delimiter::new(Body::Empty).is_done());
    assert!(Delimiter::new(Body::Length(0)).is_done());
}

#[test]
fn until_close_takes_everything_and_ends_with_the_connection() {
    let mut d = Delimiter::new(Body::UntilClose);
    assert_eq!(
        d.feed(b"HTTP/1.1 200 OK\r\n").unwrap(),
        Step {
            used: 17,
            done: false
        }
    );
    assert_eq!(d.finish(), Ok(()));
}

#[test]
fn a_chunked_body_with_extensions_and_trailers_is_delimited() {
    let body = "5;ext=1\r\nhello\r\n6 ; a=\"b c\"\r\n world\r\nA\r\n0123456789\r\n0\r\nX-Trailer: yes\r\nX-Other:\tno\r\n\r\n";
    let stream = format!("{body}GET /next HTTP/1.1\r\n\r\n");
    assert_eq!(
        chunked(&stream),
        Ok(Step {
            used: body.len(),
            done: true
        })
    );
    assert_eq!(
        chunked("0\r\n\r\n"),
        Ok(Step {
            used: 5,
            done: true
        })
    );
    assert_eq!(
        chunked("000\r\n\r\n"),
        Ok(Step {
            used: 7,
            done: true
        })
    );
    assert!(!chunked("ffFF\r\n").unwrap().done);
}

#[test]
fn a_truncated_chunked_body_is_noticed_at_the_end() {
    let mut d = Delimiter::new(Body::Chunked);
    assert!(!d.feed(b"5\r\nhel").unwrap().done);
    assert_eq!(d.finish(), Err(Malformed::Truncated));
}

#[test]
fn broken_chunk_sizes_are_refused() {
    for bad in [
        "zz\r\nhello\r\n0\r\n\r\n",
        "\r\nhello\r\n",
        ";ext\r\n",
        " 5\r\nhello\r\n",
        "5 5\r\nhello\r\n",
        "-5\r\n",
        "0x5\r\n",
        // 2^64: does not fit.
        "10000000000000000\r\n",
        "5\rhello\r\n",
    ] {
        assert_eq!(chunked(bad), Err(Malformed::BadChunk), "{bad:?}");
    }
    assert!(
        !chunked("ffffffffffffffff\r\n").unwrap().done,
        "2^64 - 1 fits"
    );
}

#[test]
fn bare_lf_in_the_chunked_framing_is_refused() {
    for bad in [
        "5\nhello\r\n0\r\n\r\n",
        "5;ext\nhello\r\n0\r\n\r\n",
        "5\r\nhello\n0\r\n\r\n",
        "5\r\nhello\r\n0\n\r\n",
        "5\r\nhello\r\n0\r\n\n",
        "0\r\nX-T: a\n\r\n",
    ] {
        assert_eq!(chunked(bad), Err(Malformed::BadChunk), "{bad:?}");
    }
}

#[test]
fn data_longer_than_its_size_is_refused() {
    assert_eq!(
        chunked("5\r\nhello!\r\n0\r\n\r\n"),
        Err(Malformed::BadChunk)
    );
    assert_eq!(chunked("5\r\nhell\r\n0\r\n\r\n"), Err(Malformed::BadChunk));
}

#[test]
fn controls_in_extensions_and_bad_trailers_are_refused() {
    for bad in [
        "5;a\0b\r\nhello\r\n0\r\n\r\n",
        "0\r\nX-T: a\r\n folded\r\n\r\n",
        "0\r\n folded: a\r\n\r\n",
        "0\r\nNoColon\r\n\r\n",
        "0\r\nX T: a\r\n\r\n",
        "0\r\nX-T: a\0b\r\n\r\n",
        "0\r\n: empty name\r\n\r\n",
    ] {
        assert_eq!(chunked(bad), Err(Malformed::BadChunk), "{bad:?}");
    }
}

#[test]
fn extensions_and_trailers_are_limited_to_16_kib() {
    let within = format!(
        "1;{}\r\na\r\n0\r\n\r\n",
        "e".repeat(MAX_EXTENSIONS as usize)
    );
    assert!(chunked(&within).unwrap().done);
    // Across chunks: the limit is the body's.
    let half = "e".repeat(MAX_EXTENSIONS as usize / 2 + 1);
    let over = format!("1;{half}\r\na\r\n1;{half}\r\na\r\n0\r\n\r\n");
    assert_eq!(chunked(&over), Err(Malformed::BadChunk));
    let trailer = |n: usize| format!("0\r\nX-T: {}\r\n\r\n", "t".repeat(n));
    assert!(chunked(&trailer(MAX_TRAILERS - 10)).unwrap().done);
    assert_eq!(chunked(&trailer(MAX_TRAILERS)), Err(Malformed::BadChunk));
}

/// The content `unframe` finds in `bytes` fed in pieces of `size`, and what is left after.
fn unframed(body: Body, bytes: &[u8], size: usize) -> Result<(Vec<u8>, usize), Malformed> {
    let mut d = Delimiter::new(body);
    let (mut content, mut at) = (Vec::new(), 0);
    // Each read: the bytes not taken yet, up to `size` more.
    let mut end = size.min(bytes.len());
    loop {
        let run = d.unframe(&bytes[at..end])?;
        content.extend_from_slice(&bytes[at + run.skip..at + run.skip + run.data]);
        at += run.skip + run.data;
        if run.done {
            return Ok((content, bytes.len() - at));
        }
        if at == end {
            if end == bytes.len() {
                d.finish()?;
                return Ok((content, 0));
            }
            end = (end + size).min(bytes.len());
        }
    }
}

#[test]
fn unframing_passes_the_chunks_content_alone_however_it_is_read() {
    let body = b"5;name=value\r\nhello\r\n19\r\n, world and more after it\r\n0\r\nExpires: never\r\n\r\nGET /next";
    for size in [1, 2, 3, 7, 64, body.len()] {
        let (content, left) = unframed(Body::Chunked, body, size).unwrap();
        assert_eq!(
            content, b"hello, world and more after it",
            "reads of {size}"
        );
        assert_eq!(left, b"GET /next".len(), "reads of {size}");
    }
    // A length's and an until-close body's bytes are all content.
    assert_eq!(
        unframed(Body::Length(5), b"hello, next", 3).unwrap(),
        (b"hello".to_vec(), 6)
    );
    assert_eq!(
        unframed(Body::UntilClose, b"all of it", 4).unwrap(),
        (b"all of it".to_vec(), 0)
    );
    // The framing's rules hold as they do when it is passed on.
    assert_eq!(
        unframed(Body::Chunked, b"5\nhello\r\n0\r\n\r\n", 4),
        Err(Malformed::BadChunk)
    );
    assert_eq!(
        unframed(Body::Chunked, b"5\r\nhel", 2),
        Err(Malformed::Truncated)
    );
}
