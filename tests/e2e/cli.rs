//! The `ferry` binary as users run it.

use std::fs;
use std::process::Command;

use crate::{DEADLINE, Running, eventually, repo};

fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

#[test]
fn check_accepts_the_demo_and_reports_each_problem_on_one_line() {
    let ok = ferry()
        .args(["check", "-f"])
        .arg(repo().join("configs/demo"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    fs::write(
        &bad,
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports:\n  - {name: a, port: 80}\n  - {name: a, port: 70000}\n---\napiVersion: v9\nkind: Gizmo\nmetadata: {name: g}\n",
    )
    .unwrap();
    let out = ferry().args(["check", "-f"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let file = bad.display();
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        vec![
            format!("{file}:1: Service default/web: spec.ports[1].name: Duplicate value: \"a\""),
            format!(
                "{file}:1: Service default/web: spec.ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive"
            ),
        ]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("warning: {file}:2: Gizmo default/g: kind: kind Gizmo (v9) is not one ferry reads; ignored")), "{stderr}");
}

#[test]
fn garbage_never_panics_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("junk.yaml");
    fs::write(&f, b"\xff\xfe\x00garbage: [ {").unwrap();
    let out = ferry().args(["check", "-f"]).arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("{}: ", f.display())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_lists_what_a_running_instance_serves() {
    let up = Running::start(vec![repo().join("configs/demo")]).await;
    // The local runtime runs the demo's Pods; wait until both Services have them ready.
    eventually(DEADLINE, "the demo's endpoints ready", || async {
        let config = crate::get_json(up.admin, "/config").await;
        let ready = |s: &serde_json::Value| {
            s["endpoints"]
                .as_array()
                .map_or(0, |e| e.iter().filter(|e| e["ready"] == true).count())
        };
        config["services"]
            .as_array()?
            .iter()
            .all(|s| ready(s) == 2)
            .then_some(())
    })
    .await;
    let admin = up.admin.to_string();
    let run = |args: &[&str]| {
        let out = ferry()
            .arg("get")
            .args(args)
            .args(["--admin", &admin])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let routes = run(&["routes"]);
    let lines: Vec<Vec<&str>> = routes
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        vec!["HOST", "PATH", "PATHTYPE", "BACKEND", "READY", "INGRESS"]
    );
    assert_eq!(
        lines[1],
        vec![
            "shop.example.com",
            "/api",
            "Prefix",
            "api:8080",
            "2",
            "shop/shop"
        ]
    );
    assert_eq!(
        lines[2],
        vec![
            "shop.example.com",
            "/",
            "Prefix",
            "web:http",
            "2",
            "shop/shop"
        ]
    );

    let services = run(&["svc", "-o", "wide"]);
    // The demo names no cluster IP: web's is allocated from the test's service range.
    assert!(
        services.lines().any(|l| {
            let mut columns: Vec<&str> = l.split_whitespace().collect();
            let cluster_ip = if columns.len() > 3 {
                columns.remove(3)
            } else {
                ""
            };
            cluster_ip.starts_with("127.")
                && columns
                    == [
                        "shop",
                        "web",
                        "ClusterIP",
                        "<none>",
                        "80/TCP",
                        "2/2",
                        "http",
                        "None",
                    ]
        }),
        "{services}"
    );
    let json: serde_json::Value = serde_json::from_str(&run(&["ingresses", "-o", "json"])).unwrap();
    assert_eq!(json[0]["hosts"][0], "shop.example.com");
    assert_eq!(json[0]["tls"], true);
    let yaml = run(&["endpoints", "-o", "yaml"]);
    assert!(yaml.contains("service: web"), "{yaml}");
    up.stop().await;

    let out = ferry()
        .args(["get", "routes", "--admin", &admin])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the admin API"));
}
