//! The echo app over HTTP/1.1 and h2c.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_describes_each_request_over_http1_and_h2c() {
    let echo =
        ferry::echo::Echo::build("127.0.0.1:0".parse().unwrap(), "web".into(), "web-0".into())
            .await
            .unwrap();
    let addr = echo.local_addr().unwrap();
    let (trigger, shutdown) = ferry_runtime::shutdown::channel();
    let task = tokio::spawn(echo.run(shutdown));

    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("/orders?id=7")
        .header("host", "shop.example.com")
        .header("x-a", "1")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let res = h1.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["name"], "web");
    assert_eq!(body["pod"], "web-0");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/orders");
    assert_eq!(body["query"], "id=7");
    assert_eq!(body["host"], "shop.example.com");
    assert_eq!(body["headers"]["x-a"], "1");
    assert_eq!(body["body_bytes"], 5);
    assert_eq!(body["peer"], local.to_string(), "the connection's peer");

    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("http://api.example.com/v1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = h2.send_request(req).await.unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    let body: serde_json::Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["host"], "api.example.com");
    assert_eq!(body["path"], "/v1");

    trigger.trigger();
    task.await.unwrap();
}

/// Gone, or a zombie nobody reaps (PID 1 in a container may not).
fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echo_with_parent_pid_exits_with_its_killed_parent() {
    use std::io::BufRead;
    // A shell starts the echo in the background and waits; the shell is then killed outright,
    // as a ferry killed with SIGKILL would be.
    let script = format!(
        "{} echo --listen 127.0.0.1:0 --parent-pid $$ >/dev/null 2>&1 & echo $!; wait",
        env!("CARGO_BIN_EXE_ferry")
    );
    let mut shell = std::process::Command::new("sh")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(shell.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let echo: u32 = line.trim().parse().unwrap();
    assert!(!exited(echo), "the echo runs");
    shell.kill().unwrap();
    shell.wait().unwrap();
    crate::eventually(
        crate::DEADLINE,
        "the echo exits with its parent",
        || async { exited(echo).then_some(()) },
    )
    .await;
}
