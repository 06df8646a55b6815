//! What ferry reads and how it holds it to the API server's rules: only regular files, and
//! the API server's limits on objects.

use std::fs;
use std::path::Path;
use std::process::Command;

use ferry::up::Up;

use crate::{DEADLINE, Running, eventually, get_json, up_config};

const WEB: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  ports: [{name: http, port: 80}]\n";

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

fn ports(config: &serde_json::Value) -> Vec<u64> {
    config["services"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect()
}

/// A named pipe called `*.yaml` in a watched directory once hung the control loop for good
/// (a worker blocked in `open()`): now it is skipped with a warning, edits to the other files
/// apply, and ferry shuts down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_pipe_in_a_watched_directory_is_skipped_and_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yaml");
    fs::write(&web, WEB).unwrap();
    let pipe = dir.path().join("pipe.yaml");
    mkfifo(&pipe);
    let start = tokio::spawn(Running::start(vec![dir.path().to_owned()]));
    let started = tokio::time::timeout(DEADLINE, start).await;
    // A reader stuck in open() is let go (opening a pipe for reading and writing never
    // blocks), so a failure ends the test rather than hanging it.
    if started.is_err() {
        drop(fs::OpenOptions::new().read(true).write(true).open(&pipe));
    }
    let up = started.expect("ferry starts").unwrap();
    assert_eq!(ports(&get_json(up.admin, "/config").await), [80]);
    let status = get_json(up.admin, "/status").await;
    let warnings = status["warnings"].to_string();
    assert!(
        warnings.contains(&pipe.display().to_string()) && warnings.contains("named pipe"),
        "{status}"
    );

    // An edit next to the pipe, and one that touches the pipe itself, are both seen.
    fs::write(&web, WEB.replace("port: 80", "port: 81")).unwrap();
    up.wait_version(2).await;
    assert_eq!(ports(&get_json(up.admin, "/config").await), [81]);
    fs::remove_file(&pipe).unwrap();
    mkfifo(&pipe);
    fs::write(&web, WEB.replace("port: 80", "port: 82")).unwrap();
    eventually(DEADLINE, "the second edit", || async {
        (ports(&get_json(up.admin, "/config").await) == [82]).then_some(())
    })
    .await;

    // Shutdown completes (`stop` waits for the whole run to end).
    up.stop().await;
}

/// A path named with `-f` that is not a regular file or a directory is a clear error, naming
/// it, for `ferry up` and `ferry check` alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_pipe_given_with_f_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let pipe = dir.path().join("pipe.yaml");
    mkfifo(&pipe);
    let want = format!(
        "{}: a named pipe (FIFO), not a regular file: ferry reads manifests only from regular files",
        pipe.display()
    );

    let err = Up::build(up_config(vec![pipe.clone()])).await.unwrap_err();
    assert!(err.to_string().contains(&want), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["check", "-f"])
        .arg(&pipe)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), want);
}

/// The API server's limit on annotations, as `ferry check` reports it: the file, the object
/// and `metadata.annotations`.
#[test]
fn check_refuses_annotations_over_256_kib() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yaml");
    let annotated = |value: usize| {
        WEB.replace(
            "namespace: shop}",
            &format!(
                "namespace: shop, annotations: {{k: '{}'}}}}",
                "x".repeat(value)
            ),
        )
    };
    let check = || {
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["check", "-f"])
            .arg(&file)
            .output()
            .unwrap()
    };
    // One byte of key and 262,143 of value: exactly the limit.
    fs::write(&file, annotated(262_143)).unwrap();
    let out = check();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    fs::write(&file, annotated(262_144)).unwrap();
    let out = check();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        format!(
            "{}: Service shop/web: metadata.annotations: Too long: may not be more than 262144 bytes",
            file.display()
        )
    );
}
