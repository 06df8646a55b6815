#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::{ExecOptions, exit_status, negotiate, options, session};
use crate::kubelet::ExecPlan;

fn params(query: &str) -> Vec<(String, String)> {
    super::super::query_params(query)
}

#[test]
fn options_are_read_as_the_api_server_reads_them() {
    let o = options(&params(
        "command=sh&command=-c&command=echo%20hi&container=web&stdout=true&stderr=true",
    ))
    .unwrap();
    assert_eq!(o.command, ["sh", "-c", "echo hi"]);
    assert_eq!(o.container.as_deref(), Some("web"));
    assert!(o.stdout && o.stderr && !o.stdin && !o.tty);
    assert_eq!(
        options(&params("stdout=true")).unwrap_err(),
        "you must specify at least 1 command"
    );
    assert_eq!(
        options(&params("command=ls")).unwrap_err(),
        "you must specify at least 1 of stdin, stdout, stderr"
    );
    // A terminal has one output: stderr goes to stdout's channel.
    let tty = options(&params(
        "command=sh&stdin=true&stdout=true&stderr=true&tty=true",
    ))
    .unwrap();
    assert!(tty.tty && tty.stdout && !tty.stderr);
}

#[test]
fn the_subprotocol_is_v5_else_v4() {
    assert_eq!(
        negotiate("v4.channel.k8s.io, v5.channel.k8s.io"),
        Some("v5.channel.k8s.io")
    );
    assert_eq!(negotiate("v4.channel.k8s.io"), Some("v4.channel.k8s.io"));
    assert_eq!(negotiate("channel.k8s.io,base64.channel.k8s.io"), None);
    assert_eq!(negotiate(""), None);
}

#[test]
fn the_error_channel_says_success_or_the_exit_code_as_client_go_reads_it() {
    assert_eq!(
        exit_status(0, &["true".into()]),
        json!({"metadata": {}, "status": "Success"})
    );
    let failed = exit_status(3, &["sh".into()]);
    assert_eq!(failed["status"], "Failure");
    assert_eq!(failed["reason"], "NonZeroExitCode");
    assert_eq!(
        failed["details"]["causes"],
        json!([{"reason": "ExitCode", "message": "3"}])
    );
}

/// A session over an in-memory socket: the client's end, and the session's task.
async fn run(
    options: ExecOptions,
    v5: bool,
) -> (
    WebSocketStream<tokio::io::DuplexStream>,
    tokio::task::JoinHandle<()>,
) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let plan = ExecPlan {
        container: "c".into(),
        defaulted_from: Vec::new(),
        enter: Vec::new(),
        env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
        working_dir: None,
    };
    let task = tokio::spawn(async move {
        let ws = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
        session(ws, &plan, &options, v5).await;
    });
    let client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
    (client, task)
}

/// Every channel's bytes until the server closes.
async fn collect(client: &mut WebSocketStream<tokio::io::DuplexStream>) -> [Vec<u8>; 4] {
    let mut out: [Vec<u8>; 4] = Default::default();
    let read = async {
        while let Some(message) = client.next().await {
            match message.unwrap() {
                Message::Binary(data) => {
                    let channel = usize::from(data[0]);
                    out[channel].extend_from_slice(&data[1..]);
                }
                Message::Close(frame) => {
                    // client-go takes only a normal closure as the end of the session.
                    assert_eq!(frame.map(|f| u16::from(f.code)), Some(1000));
                    break;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(ferry_testing::DEADLINE, read)
        .await
        .expect("the session ends within the deadline");
    out
}

#[tokio::test]
async fn stdin_is_carried_and_closed_by_v5s_close_frame_and_the_exit_code_is_reported() {
    let options = options(&params(
        "command=sh&command=-c&command=cat;echo%20oops%20>%262;exit%203&stdin=true&stdout=true&stderr=true",
    ))
    .unwrap();
    let (mut client, task) = run(options, true).await;
    client
        .send(Message::Binary(Bytes::from_static(b"\x00hello\n")))
        .await
        .unwrap();
    // A resize is taken and ignored.
    client
        .send(Message::Binary(Bytes::from_static(
            b"\x04{\"Width\":80,\"Height\":24}",
        )))
        .await
        .unwrap();
    client
        .send(Message::Binary(Bytes::from_static(&[255, 0])))
        .await
        .unwrap();
    let [_, stdout, stderr, error] = collect(&mut client).await;
    assert_eq!(stdout, b"hello\n");
    assert_eq!(stderr, b"oops\n");
    let status: Value = serde_json::from_slice(&error).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_command_that_succeeds_reports_success_and_a_missing_one_an_internal_error() {
    let ok = options(&params("command=echo&command=hi&stdout=true")).unwrap();
    let (mut client, _task) = run(ok, false).await;
    let [_, stdout, _, error] = collect(&mut client).await;
    assert_eq!(stdout, b"hi\n");
    let status: Value = serde_json::from_slice(&error).unwrap();
    assert_eq!(status, json!({"metadata": {}, "status": "Success"}));

    let missing = options(&params("command=/nonexistent/ferry-nope&stdout=true")).unwrap();
    let (mut client, _task) = run(missing, true).await;
    let [_, _, _, error] = collect(&mut client).await;
    let status: Value = serde_json::from_slice(&error).unwrap();
    assert_eq!(status["status"], "Failure");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/ferry-nope"),
        "{status}"
    );
}

#[tokio::test]
async fn the_client_going_away_kills_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 600", pid_file.display());
    let options = ExecOptions {
        command: vec!["sh".into(), "-c".into(), script],
        stdout: true,
        ..ExecOptions::default()
    };
    let (client, task) = run(options, true).await;
    let pid: i32 =
        ferry_testing::eventually(ferry_testing::DEADLINE, "the command's pid", || async {
            std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
        })
        .await;
    drop(client);
    tokio::time::timeout(ferry_testing::DEADLINE, task)
        .await
        .unwrap()
        .unwrap();
    ferry_testing::eventually(ferry_testing::DEADLINE, "the command killed", || async {
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "));
        (!alive).then_some(())
    })
    .await;
}

#[tokio::test]
async fn with_a_terminal_stderr_comes_on_the_stdout_channel() {
    let tty = options(&params(
        "command=sh&command=-c&command=echo%20out;echo%20err%20>%262&stdout=true&stderr=true&tty=true",
    ))
    .unwrap();
    let (mut client, _task) = run(tty, true).await;
    let [_, stdout, stderr, _] = collect(&mut client).await;
    let mut lines: Vec<&str> = std::str::from_utf8(&stdout).unwrap().lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["err", "out"]);
    assert!(stderr.is_empty());
}
