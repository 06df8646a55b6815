//! Serving through changes and on its own: answers never fail while the Service changes under
//! query load, and `ferry dns` serves a snapshot file.

use std::collections::HashSet;
use std::fs;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;

use super::{ask, data, free_port, question, running};
use crate::{DEADLINE, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_under_query_load_never_fail_a_query() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yaml");
    let service = |ip: u8| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\nspec:\n  clusterIP: 10.96.1.{ip}\n  ports: [{{port: 80}}]\n"
        )
    };
    fs::write(&file, service(1)).unwrap();
    let up = running(dir.path()).await;
    let dns = up.dns;

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    // Two clients on a two-thread runtime: load enough to interleave with every swap, not so
    // much that the control plane's reloads starve on a busy CI machine.
    for _ in 0..2 {
        let (stop, answered) = (stop.clone(), answered.clone());
        clients.push(tokio::spawn(async move {
            let mut seen = HashSet::new();
            while !stop.load(Ordering::Relaxed) {
                let r = ask(dns, "web.shop.svc.cluster.local.", RecordType::A).await;
                assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{r}");
                assert_eq!(
                    r.answers.len(),
                    1,
                    "one address, old or new, never none: {r}"
                );
                seen.insert(data(&r)[0].clone());
                answered.fetch_add(1, Ordering::Relaxed);
            }
            seen
        }));
    }
    for i in 2..=12u8 {
        fs::write(&file, service(i)).unwrap();
        up.wait_version(u64::from(i)).await;
    }
    eventually(DEADLINE, "the last address served", || async {
        let r = ask(dns, "web.shop.svc.cluster.local.", RecordType::A).await;
        (data(&r) == vec!["10.96.1.12"]).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = HashSet::new();
    for c in clients {
        seen.extend(c.await.unwrap());
    }
    assert!(answered.load(Ordering::Relaxed) > 100);
    assert!(seen.len() > 1, "the clients saw the changes: {seen:?}");
    up.stop().await;
}

#[test]
fn ferry_dns_serves_a_snapshot_file() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let snapshot = serde_json::json!({
        "version": 3,
        "services": [{
            "namespace": "shop", "name": "web", "type": "ClusterIP",
            "cluster_ips": ["10.96.0.10"], "headless": false, "ports": [],
            "session_affinity": {"type": "None"}, "publish_not_ready_addresses": false,
            "endpoints": []
        }],
        "clusters": [], "virtual_hosts": [], "certificates": []
    });
    let file = dir.path().join("snapshot.json");
    fs::write(&file, snapshot.to_string()).unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["dns", "--snapshot"])
        .arg(&file)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin",
            "127.0.0.1:0",
        ])
        .args(["--dns-upstream", "127.0.0.1:9"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let answer = rt.block_on(eventually(DEADLINE, "ferry dns answers", || async {
        let q = question("web.shop.svc.cluster.local.", RecordType::A, None);
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(&q.to_vec().unwrap(), addr).await.unwrap();
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf)).await {
            Ok(Ok(n)) => Message::from_vec(&buf[..n]).ok(),
            _ => None,
        }
    }));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(data(&answer), vec!["10.96.0.10"]);

    // A bad file is a clear error naming it.
    let bad = dir.path().join("bad.json");
    fs::write(&bad, "{").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["dns", "--snapshot"])
        .arg(&bad)
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--snapshot") && stderr.contains("bad.json"),
        "{stderr}"
    );
}
