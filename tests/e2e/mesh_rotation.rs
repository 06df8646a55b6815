//! Issuance, renewal and both CA rotations with traffic flowing: a real `ferry control` with a
//! short `--workload-cert-ttl`, the client and the (strict) server sidecar as the built binary
//! with Pod tokens, an echo app behind the server, and `ferry load` through the client's
//! outbound listener all along. While it runs: a renewal, `ferry identity rotate` (new
//! intermediate), `--root` (two roots trusted) and `--root --finish` (old root dropped), each
//! seen in the chain the server sidecar serves (`openssl s_client`), and the final leaf verified
//! by `openssl verify` against the new root and refused by the old one. Not one request fails.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::push::{ControlPlane, loopback0};
use crate::sidecar::control::two_sidecars;
use crate::sidecar::curl;
use crate::{DEADLINE, eventually};

/// How long the load runs: longer than every step below takes on a busy machine.
const LOAD: &str = "50s";

/// A root rotation waits for every sidecar to renew twice (onto the two-root bundle, then onto
/// the new root): more than one [`DEADLINE`] may pass on a loaded machine.
const FINISH_DEADLINE: Duration = Duration::from_secs(60);

/// The PEM certificates of `text`, each without whitespace (so two encodings compare equal).
fn certificates(text: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    text.split(BEGIN)
        .skip(1)
        .filter_map(|rest| rest.split_once(END))
        .map(|(body, _)| body.split_whitespace().collect())
        .collect()
}

fn pem(body: &str) -> String {
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// The chain the sidecar at `inbound` serves (leaf first), as `openssl s_client` receives it;
/// empty when the handshake did not get that far. No client certificate is shown, so the
/// sidecar refuses the connection after sending its chain.
async fn served_chain(inbound: SocketAddr) -> Vec<String> {
    let run = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &inbound.to_string(),
            "-showcerts",
            "-tls1_3",
        ])
        // The mesh's ALPN: what makes the inbound listener take it for another sidecar.
        .args(["-alpn", "ferry.dev/mesh/v1"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(5), run).await {
        Ok(Ok(out)) => certificates(&String::from_utf8_lossy(&out.stdout)),
        _ => Vec::new(),
    }
}

/// The served chain once it has a leaf and an intermediate.
async fn chain(inbound: SocketAddr) -> Vec<String> {
    eventually(
        DEADLINE,
        "openssl s_client gets the served chain",
        || async {
            let chain = served_chain(inbound).await;
            (chain.len() >= 2).then_some(chain)
        },
    )
    .await
}

/// The certificates of the state directory's `file`.
fn state_certificates(state: &Path, file: &str) -> Vec<String> {
    certificates(&std::fs::read_to_string(state.join(file)).unwrap())
}

/// `ferry identity rotate --state-dir state` with `flags`: whether it succeeded, and its output.
fn rotate(state: &Path, flags: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["identity", "rotate"])
        .args(flags)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Whether `openssl verify` accepts `leaf` through `intermediate` up to `root` alone.
fn verifies(dir: &Path, leaf: &str, intermediate: &str, root: &str) -> (bool, String) {
    let write = |name: &str, body: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem(body)).unwrap();
        path
    };
    let (leaf, intermediate, root) = (
        write("leaf.pem", leaf),
        write("intermediate.pem", intermediate),
        write("root.pem", root),
    );
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&root)
        .arg("-untrusted")
        .arg(&intermediate)
        .arg(&leaf)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_and_both_rotations_under_load_fail_no_request() {
    let (manifests, state, run) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let control = ControlPlane::start_with(
        manifests.path(),
        state.path(),
        loopback0(),
        &["--workload-cert-ttl", "8s"],
    )
    .await;
    let sidecars = two_sidecars(
        &control,
        manifests.path(),
        state.path(),
        run.path(),
        "strict",
    )
    .await;
    let (client, server) = (sidecars.client, sidecars.server);
    let outbound = client.outbound;
    eventually(DEADLINE, "curl through both sidecars", || async {
        let (ok, body) = curl(&format!("http://{outbound}/hello")).await;
        (ok && body.starts_with("GET /hello")).then_some(())
    })
    .await;

    // Bounded: it ends by itself, after every step below (killed if the test fails first).
    let report = run.path().join("load.json");
    let mut load = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["load", &format!("http://{outbound}/hello")])
        .args(["-H", "Host: api.shop.svc"])
        .args(["--rate", "200", "--connections", "8", "--duration", LOAD])
        .arg("--json")
        .arg(&report)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let inbound = server.inbound;

    // Renewal: the served leaf changes while the intermediate stays.
    let first = chain(inbound).await;
    eventually(DEADLINE, "the server sidecar renews its leaf", || async {
        let now = served_chain(inbound).await;
        (now.len() >= 2 && now[0] != first[0] && now[1] == first[1]).then_some(())
    })
    .await;

    // (1) A new intermediate under the same root: served within seconds.
    let (ok, out) = rotate(state.path(), &[]);
    assert!(ok, "ferry identity rotate: {out}");
    let intermediate = state_certificates(state.path(), "intermediate.crt");
    assert_ne!(intermediate[0], first[1], "rotate wrote a new intermediate");
    eventually(DEADLINE, "the new intermediate is served", || async {
        let now = served_chain(inbound).await;
        (now.len() >= 2 && now[1] == intermediate[0]).then_some(())
    })
    .await;

    // (2) A new root joins the bundle, the old one still trusted.
    let old_root = state_certificates(state.path(), "root.crt").remove(0);
    let (ok, out) = rotate(state.path(), &["--root"]);
    assert!(ok, "ferry identity rotate --root: {out}");
    let bundle = state_certificates(state.path(), "ca.crt");
    assert_eq!(bundle.len(), 2, "two roots trusted during the rotation");
    assert!(bundle.contains(&old_root));

    // (3) Finished once every workload renewed onto the new root; refused until then.
    eventually(
        FINISH_DEADLINE,
        "ferry identity rotate --root --finish",
        || async {
            rotate(state.path(), &["--root", "--finish"])
                .0
                .then_some(())
        },
    )
    .await;
    let new_root = state_certificates(state.path(), "root.crt").remove(0);
    assert_ne!(new_root, old_root);
    assert_eq!(
        state_certificates(state.path(), "ca.crt"),
        [new_root.as_str()],
        "only the new root trusted"
    );
    let served = eventually(DEADLINE, "a leaf from the new root is served", || async {
        let now = served_chain(inbound).await;
        (now.len() >= 2 && verifies(run.path(), &now[0], &now[1], &new_root).0).then_some(now)
    })
    .await;
    let (old_ok, old_out) = verifies(run.path(), &served[0], &served[1], &old_root);
    assert!(
        !old_ok,
        "the old root alone must not verify the leaf: {old_out}"
    );
    // And traffic still flows after the old root is gone.
    let (ok, body) = curl(&format!("http://{outbound}/hello")).await;
    assert!(ok && body.starts_with("GET /hello"), "{body}");
    assert_eq!(
        load.try_wait().unwrap(),
        None,
        "the load ended before the rotations did: it did not span them"
    );

    let status = load.wait().await.unwrap();
    assert!(status.success(), "ferry load: {status}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(report["responses"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["requests"], report["responses"], "{report}");
    let errors = report["errors"].as_object().unwrap();
    assert!(
        errors.values().all(|n| n == 0),
        "failed requests: {errors:?}"
    );
    let codes: Vec<&String> = report["status_codes"].as_object().unwrap().keys().collect();
    assert_eq!(codes, ["200"], "{report}");
}
