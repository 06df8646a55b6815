//! The admin API of `ferry up`.

use crate::{DEADLINE, Running, eventually, get, get_json, repo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_on_the_demo() {
    let up = Running::start(vec![repo().join("configs/demo")]).await;
    assert_eq!(get(up.admin, "/live").await.0, 200);

    // Ready once every part serves the first view (the in-process parts take it from their
    // streams; a probe polls, as this does).
    eventually(DEADLINE, "/ready", || async {
        let (status, body) = get(up.admin, "/ready").await;
        let ready: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status == 200 && ready["ready"] == true).then_some(())
    })
    .await;

    let config = get_json(up.admin, "/config").await;
    // 1 for the files; the demo's Pods becoming Ready may already have made it 2.
    assert!(
        config["version"].as_u64().unwrap() >= 1,
        "{}",
        config["version"]
    );
    let hosts: Vec<&str> = config["virtual_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, vec!["shop.example.com"]);
    let cert = &config["certificates"][0];
    assert_eq!(
        cert["key_pem"], "<redacted>",
        "private keys are not shown by default"
    );
    let with_keys = get_json(up.admin, "/config?private_keys=true").await;
    assert!(
        with_keys["certificates"][0]["key_pem"]
            .as_str()
            .unwrap()
            .contains("PRIVATE KEY")
    );
    let snapshot: ferry_model::Snapshot = serde_json::from_value(with_keys).unwrap();
    snapshot.validate().unwrap();

    // The demo's Pods becoming Ready publish new versions at any moment: what is checked is
    // that they are all accepted and counted, not which one this read meets.
    let status = get_json(up.admin, "/status").await;
    assert_eq!(status["state"], "ok");
    assert!(status["version"].as_u64().unwrap() >= 1, "{status}");
    assert!(status["last_rejected"].is_null());

    let (code, metrics) = get(up.admin, "/metrics").await;
    assert_eq!(code, 200);
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("missing {name:?} in\n{metrics}"))
    };
    assert!(value("ferry_control_snapshot_version") >= 1);
    assert!(value("ferry_control_reloads_total{result=\"accepted\"}") >= 1);
    assert_eq!(value("ferry_control_config_rejected"), 0);
    assert_eq!(value("ferry_control_objects{kind=\"Ingress\"}"), 1);
    assert_eq!(get(up.admin, "/nope").await.0, 404);
    up.stop().await;
}
