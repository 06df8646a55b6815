use std::time::Duration;

use super::parse;

#[test]
fn units_and_bare_seconds() {
    assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse("250us"), Ok(Duration::from_micros(250)));
    assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse("3"), Ok(Duration::from_secs(3)));
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    for bad in ["", "s", "ten", "10x", "1..2s", "-1s", "1e999s"] {
        assert!(parse(bad).is_err(), "{bad:?} should be refused");
    }
}
