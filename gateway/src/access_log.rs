//! The access log: one JSON line per request on stdout, off unless `--access-log` is given.
//! Written when the response head is sent, so `duration_ms` is the time to the response head.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{StatusCode, Version};
use serde::Serialize;

use ferry_proxy::forwarding::Downstream;

use crate::pipeline::Context;

#[derive(Debug, Serialize)]
struct Line<'a> {
    /// Seconds since the Unix epoch, with milliseconds.
    time: f64,
    client: SocketAddr,
    tls: bool,
    protocol: &'a str,
    method: &'a str,
    host: &'a str,
    path: &'a str,
    status: u16,
    duration_ms: f64,
    ingress: Option<&'a str>,
    service: Option<&'a str>,
    upstream: Option<SocketAddr>,
    request_id: &'a str,
    retries: u32,
}

/// One request's line.
pub fn line(
    cx: &Context,
    down: &Downstream,
    status: StatusCode,
    version: Version,
    elapsed: Duration,
) -> String {
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_millis() as f64) / 1000.0);
    let line = Line {
        time,
        client: down.peer,
        tls: down.tls,
        protocol: match version {
            Version::HTTP_2 => "HTTP/2",
            Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        },
        method: cx.method.as_str(),
        host: &cx.host,
        path: &cx.path,
        status: status.as_u16(),
        duration_ms: elapsed.as_secs_f64() * 1000.0,
        ingress: cx.ingress.as_deref(),
        service: cx.service.as_deref(),
        upstream: cx.endpoint,
        request_id: cx
            .request_id
            .as_ref()
            .and_then(|id| id.to_str().ok())
            .unwrap_or_default(),
        retries: cx.retries,
    };
    serde_json::to_string(&line).unwrap_or_default()
}

/// Writes the line to stdout; a closed stdout loses the line, never the request.
pub fn write(
    cx: &Context,
    down: &Downstream,
    status: StatusCode,
    version: Version,
    elapsed: Duration,
) {
    let mut text = line(cx, down, status, version, elapsed);
    text.push('\n');
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_json_object_with_the_request() {
        let cx = Context {
            method: http::Method::POST,
            host: "shop.example.com".into(),
            path: "/cart?id=1".into(),
            ingress: Some("shop/shop".into()),
            service: Some("shop/web:80".into()),
            endpoint: Some("127.0.0.1:8080".parse().unwrap()),
            request_id: Some(http::HeaderValue::from_static("abc")),
            retries: 1,
        };
        let down = Downstream::new(
            "10.0.0.1:5555".parse().unwrap(),
            "127.0.0.1:8443".parse().unwrap(),
            true,
        );
        let text = line(
            &cx,
            &down,
            StatusCode::CREATED,
            Version::HTTP_2,
            Duration::from_millis(12),
        );
        assert!(!text.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["status"], 201);
        assert_eq!(v["method"], "POST");
        assert_eq!(v["protocol"], "HTTP/2");
        assert_eq!(v["path"], "/cart?id=1");
        assert_eq!(v["service"], "shop/web:80");
        assert_eq!(v["upstream"], "127.0.0.1:8080");
        assert_eq!(v["request_id"], "abc");
        assert_eq!(v["duration_ms"], 12.0);
        assert_eq!(v["client"], "10.0.0.1:5555");
    }
}
