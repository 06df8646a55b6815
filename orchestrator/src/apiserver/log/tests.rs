#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use ferry_objects::files::Reading;
use ferry_objects::object::{Manifest, Object, Origin};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::super::State;
use super::super::store::Store;
use super::super::watch::ApiBody;
use super::{LogOptions, options, pod_log, render};
use crate::kubelet::{Config, Kubelet};

const NS: &str = "test";

/// A Pod in namespace `test` with these containers (restartPolicy as given).
pub(crate) fn pod(name: &str, restart: &str, containers: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "uid": format!("{name}-uid")},
        "spec": {"restartPolicy": restart, "containers": containers},
    }))
    .unwrap()
}

/// An API server's state whose store holds `pod` and whose kubelet runs it.
pub(crate) fn serving(pod: &Pod) -> (State, Kubelet) {
    let kubelet = Kubelet::new(Config {
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(500),
        ..Config::default()
    });
    kubelet.run(pod, IpAddr::V4(Ipv4Addr::LOCALHOST), Vec::new());
    let store = Arc::new(Store::new());
    store.record(&Reading {
        manifests: vec![Arc::new(Manifest {
            origin: Origin {
                file: "test.yaml".into(),
                doc: None,
            },
            object: Object::Pod(Box::new(pod.clone())),
        })],
        problems: Vec::new(),
    });
    let state = State {
        store,
        token: "secret".into(),
        server: "https://127.0.0.1:6443".into(),
        cluster: None,
        stopping: tokio::sync::watch::Sender::new(false),
        kubelet: std::sync::OnceLock::new(),
        signer: crate::apiserver::tokens::tests::signer(),
    };
    let _ = state.kubelet.set(kubelet.clone());
    (state, kubelet)
}

fn params(query: &str) -> Vec<(String, String)> {
    super::super::query_params(query)
}

/// The status and whole body of a log request.
async fn get(state: &State, name: &str, query: &str) -> (u16, String) {
    let r = pod_log(state, NS, name, &params(query));
    let code = r.status().as_u16();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (code, String::from_utf8_lossy(&body).into_owned())
}

fn message(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    v["message"].as_str().unwrap().to_owned()
}

fn at(second: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000 + second).unwrap()
}

#[test]
fn options_are_read_as_the_api_server_reads_them() {
    let read = |query: &str| options(&params(query), at(100));
    let o = read("container=web&follow=true&tailLines=10&limitBytes=5&timestamps=true").unwrap();
    assert_eq!(o.container.as_deref(), Some("web"));
    assert!(o.follow && !o.previous && o.timestamps);
    assert_eq!((o.tail_lines, o.limit_bytes), (Some(10), Some(5)));
    assert!(read("previous=1").unwrap().previous);
    assert!(!read("follow=false").unwrap().follow);
    assert_eq!(read("sinceSeconds=30").unwrap().since, Some(at(70)));
    assert_eq!(
        read("sinceTime=2027-01-15T08:00:00Z").unwrap().since,
        Some("2027-01-15T08:00:00Z".parse().unwrap())
    );
    for (query, says) in [
        (
            "tailLines=-1",
            "tailLines: Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            "limitBytes=0",
            "limitBytes: Invalid value: 0: must be greater than or equal to 1",
        ),
        (
            "tailLines=x",
            "tailLines: Invalid value: \"x\": must be an integer",
        ),
        (
            "follow=maybe",
            "follow: Invalid value: \"maybe\": must be true or false",
        ),
        (
            "sinceSeconds=0",
            "sinceSeconds: Invalid value: 0: must be greater than or equal to 1",
        ),
        (
            "sinceTime=yesterday",
            "sinceTime: Invalid value: \"yesterday\": not an RFC 3339 time",
        ),
        (
            "sinceSeconds=5&sinceTime=2027-01-15T08:00:00Z",
            "at most one of sinceTime or sinceSeconds",
        ),
    ] {
        let e = read(query).unwrap_err();
        assert!(e.starts_with(says), "{query}: {e}");
    }
}

#[test]
fn render_tails_filters_by_time_and_prefixes_the_time() {
    let pieces = vec![
        (at(0), bytes::Bytes::from_static(b"a\n")),
        (at(10), bytes::Bytes::from_static(b"b\n")),
        (
            at(20) + jiff::SignedDuration::from_millis(5),
            bytes::Bytes::from_static(b"c"),
        ),
    ];
    let all = LogOptions::default();
    assert_eq!(render(&pieces, &all, true), b"a\nb\nc");
    let tail = LogOptions {
        tail_lines: Some(2),
        ..LogOptions::default()
    };
    assert_eq!(render(&pieces, &tail, true), b"b\nc");
    assert_eq!(
        render(&pieces, &tail, false),
        b"a\nb\nc",
        "a follow's later chunks are not tailed"
    );
    let zero = LogOptions {
        tail_lines: Some(0),
        ..LogOptions::default()
    };
    assert_eq!(render(&pieces, &zero, true), b"");
    let since = LogOptions {
        since: Some(at(10)),
        timestamps: true,
        ..LogOptions::default()
    };
    assert_eq!(
        String::from_utf8(render(&pieces, &since, true)).unwrap(),
        "2027-01-15T08:00:10Z b\n2027-01-15T08:00:20.005Z c"
    );
}

#[tokio::test]
async fn a_containers_log_is_served_with_the_api_servers_errors_and_followed_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let p = pod(
        "p",
        "Never",
        json!([
            {"name": "a", "image": "sh", "command": ["sh", "-c", "printf 'one\\ntwo\\nthree\\n'; exec sleep 600"]},
            {"name": "b", "image": "sh", "env": [{"name": "GO", "value": go.to_str().unwrap()}],
             "command": ["sh", "-c", "echo start; while [ ! -e \"$GO\" ]; do sleep 0.05; done; echo after"]},
        ]),
    );
    let (state, kubelet) = serving(&p);

    let (code, body) = get(&state, "p", "").await;
    assert_eq!(
        (code, message(&body).as_str()),
        (
            400,
            "a container name must be specified for pod p, choose one of: [a b]"
        )
    );
    let (code, body) = get(&state, "p", "container=nope").await;
    assert_eq!(
        (code, message(&body).as_str()),
        (
            400,
            "container nope is not valid for pod p; choose one of: [a b]"
        )
    );
    let (code, body) = get(&state, "nope", "container=a").await;
    assert_eq!(
        (code, message(&body).as_str()),
        (404, "pods \"nope\" not found")
    );

    ferry_testing::eventually(ferry_testing::DEADLINE, "container a's log", || async {
        let (code, body) = get(&state, "p", "container=a").await;
        (code == 200 && body == "one\ntwo\nthree\n").then_some(())
    })
    .await;
    assert_eq!(
        get(&state, "p", "container=a&tailLines=2").await,
        (200, "two\nthree\n".into())
    );
    assert_eq!(
        get(&state, "p", "container=a&limitBytes=4").await,
        (200, "one\n".into())
    );
    // Each line behind when it was written; since an hour ago is all of it.
    let (code, body) = get(&state, "p", "container=a&timestamps=true&tailLines=1").await;
    let (time, line) = body.split_once(' ').unwrap();
    assert_eq!((code, line), (200, "three\n"));
    let time: jiff::Timestamp = time.parse().unwrap();
    assert!(time <= jiff::Timestamp::now(), "{time}");
    assert_eq!(
        get(&state, "p", "container=a&sinceSeconds=3600").await,
        (200, "one\ntwo\nthree\n".into())
    );
    let future = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60)).to_string();
    assert_eq!(
        get(&state, "p", &format!("container=a&sinceTime={future}")).await,
        (200, String::new())
    );
    let (code, body) = get(&state, "p", "container=a&previous=true").await;
    assert_eq!(
        (code, message(&body).as_str()),
        (
            400,
            "previous terminated container \"a\" in pod \"p\" not found"
        )
    );

    // Follow: what is there, then a line written after the request, then the end of the run.
    ferry_testing::eventually(ferry_testing::DEADLINE, "container b started", || async {
        (get(&state, "p", "container=b").await == (200, "start\n".into())).then_some(())
    })
    .await;
    let r = pod_log(&state, NS, "p", &params("container=b&follow=true"));
    assert_eq!(r.status().as_u16(), 200);
    let ApiBody::Watch(mut stream) = r.into_body() else {
        panic!("a follow streams");
    };
    assert_eq!(next(&mut stream).await.as_deref(), Some(&b"start\n"[..]));
    std::fs::write(&go, b"").unwrap();
    let mut rest = Vec::new();
    while let Some(chunk) = next(&mut stream).await {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"after\n", "the follow ends with the container's run");
    kubelet.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn previous_is_the_run_before_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("n");
    let p = pod(
        "r",
        "Always",
        json!([{"name": "c", "image": "sh", "env": [{"name": "N", "value": count.to_str().unwrap()}],
                "command": ["sh", "-c", "n=$(($(cat \"$N\" 2>/dev/null || echo 0) + 1)); echo $n > \"$N\"; echo run $n; exit 1"]}]),
    );
    let (state, kubelet) = serving(&p);
    ferry_testing::eventually(
        ferry_testing::DEADLINE,
        "two runs, one previous",
        || async {
            let (pc, previous) = get(&state, "r", "previous=true").await;
            let (cc, current) = get(&state, "r", "").await;
            let number = |s: &str| s.strip_prefix("run ")?.trim_end().parse::<u32>().ok();
            match (pc, cc, number(&previous), number(&current)) {
                (200, 200, Some(p), Some(c)) if c == p + 1 => Some(()),
                _ => None,
            }
        },
    )
    .await;
    kubelet.shutdown(Duration::from_secs(1)).await;
}

/// The follow's next chunk, within the deadline.
async fn next(stream: &mut super::WatchBody) -> Option<bytes::Bytes> {
    tokio::time::timeout(ferry_testing::DEADLINE, stream.next_line())
        .await
        .expect("the follow answers within the deadline")
}
