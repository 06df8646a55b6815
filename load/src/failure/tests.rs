use std::io;

use super::Failure;

/// An error that wraps another, as hyper's and rustls's do.
#[derive(Debug)]
struct Wrapped(io::Error);

impl std::fmt::Display for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("wrapped")
    }
}

impl std::error::Error for Wrapped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn io_errors_are_sorted_by_kind_through_the_source_chain() {
    for (kind, want) in [
        (io::ErrorKind::ConnectionReset, Failure::Reset),
        (io::ErrorKind::BrokenPipe, Failure::Reset),
        (io::ErrorKind::UnexpectedEof, Failure::Reset),
        (io::ErrorKind::ConnectionRefused, Failure::Connect),
        (io::ErrorKind::TimedOut, Failure::Timeout),
        (io::ErrorKind::InvalidData, Failure::Protocol),
    ] {
        let e = io::Error::from(kind);
        assert_eq!(Failure::classify(&e), want, "{kind:?}");
        assert_eq!(
            Failure::classify(&Wrapped(io::Error::from(kind))),
            want,
            "{kind:?}"
        );
    }
}

#[test]
fn an_http2_error_that_is_not_a_reset_is_a_protocol_error() {
    // Resets and GOAWAYs come from the peer (see the e2e tests); a bare reason is ours.
    let e = h2::Error::from(h2::Reason::PROTOCOL_ERROR);
    assert_eq!(Failure::classify(&e), Failure::Protocol);
}

#[test]
fn names_and_indices_follow_the_report_order() {
    let names: Vec<_> = Failure::ALL.iter().map(|f| f.name()).collect();
    assert_eq!(names, ["connect", "tls", "timeout", "reset", "protocol"]);
    for (i, f) in Failure::ALL.iter().enumerate() {
        assert_eq!(f.index(), i);
    }
}
