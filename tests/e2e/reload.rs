//! Hot reload: valid changes publish a new version; invalid ones are rejected whole while the
//! last good snapshot keeps serving.

use std::fs;

use crate::{DEADLINE, Running, eventually, get, get_json};

const WEB: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  ports: [{name: http, port: 80}]\n";

fn ingress(path: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: shop, namespace: shop}}\nspec:\n  rules:\n  - host: shop.example.com\n    http:\n      paths:\n      - path: {path}\n        pathType: Prefix\n        backend:\n          service: {{name: web, port: {{number: 80}}}}\n"
    )
}

fn route_paths(config: &serde_json::Value) -> Vec<String> {
    config["virtual_hosts"][0]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_changes_publish_and_invalid_ones_are_rejected_whole() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("web.yaml"), WEB).unwrap();
    let ingress_file = dir.path().join("ingress.yaml");
    fs::write(&ingress_file, ingress("/")).unwrap();
    let up = Running::start(vec![dir.path().to_owned()]).await;
    assert_eq!(up.version().await, 1);

    // A valid change: a new version with the new route.
    fs::write(&ingress_file, ingress("/shop")).unwrap();
    up.wait_version(2).await;
    assert_eq!(
        route_paths(&get_json(up.admin, "/config").await),
        vec!["/shop"]
    );

    // An invalid change in one file and a valid one in another: rejected whole.
    fs::write(&ingress_file, ingress("no-slash")).unwrap();
    fs::write(
        dir.path().join("web.yaml"),
        WEB.replace("port: 80", "port: 81"),
    )
    .unwrap();
    let status = eventually(DEADLINE, "the change to be rejected", || async {
        let s = get_json(up.admin, "/status").await;
        (s["state"] == "rejected").then_some(s)
    })
    .await;
    let problem = &status["last_rejected"]["problems"][0];
    assert_eq!(problem["file"], ingress_file.display().to_string());
    assert_eq!(problem["object"]["kind"], "Ingress");
    assert_eq!(problem["object"]["namespace"], "shop");
    assert_eq!(problem["object"]["name"], "shop");
    assert_eq!(problem["field"], "spec.rules[0].http.paths[0].path");
    assert_eq!(
        problem["message"],
        "Invalid value: \"no-slash\": must be an absolute path"
    );
    let config = get_json(up.admin, "/config").await;
    assert_eq!(config["version"], 2, "the last good snapshot keeps serving");
    assert_eq!(
        config["services"][0]["ports"][0]["port"], 80,
        "nothing of the rejected change leaks"
    );
    let metrics = get(up.admin, "/metrics").await.1;
    assert!(
        metrics.contains("ferry_control_config_rejected 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferry_control_config_problems{severity=\"error\"} 1"),
        "{metrics}"
    );

    // Fixed by saving through a rename, as editors do: accepted, both changes in.
    let tmp = dir.path().join(".ingress.yaml.tmp");
    fs::write(&tmp, ingress("/fixed")).unwrap();
    fs::rename(&tmp, &ingress_file).unwrap();
    up.wait_version(3).await;
    let config = get_json(up.admin, "/config").await;
    assert_eq!(route_paths(&config), vec!["/fixed"]);
    assert_eq!(config["services"][0]["ports"][0]["port"], 81);
    let status = get_json(up.admin, "/status").await;
    assert_eq!(status["state"], "ok");
    assert_eq!(
        status["last_rejected"]["problems"][0]["field"], "spec.rules[0].http.paths[0].path",
        "history is kept"
    );

    // Deleting a file removes its objects.
    fs::remove_file(&ingress_file).unwrap();
    up.wait_version(4).await;
    assert!(
        get_json(up.admin, "/config").await["virtual_hosts"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_file_is_watched_through_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.yaml");
    fs::write(&file, format!("{WEB}---\n{}", ingress("/"))).unwrap();
    fs::write(dir.path().join("other.yaml"), "not: [watched").unwrap();
    let up = Running::start(vec![file.clone()]).await;
    assert_eq!(up.version().await, 1);
    let tmp = dir.path().join("all.yaml.new");
    fs::write(&tmp, format!("{WEB}---\n{}", ingress("/b"))).unwrap();
    fs::rename(&tmp, &file).unwrap();
    up.wait_version(2).await;
    assert_eq!(
        route_paths(&get_json(up.admin, "/config").await),
        vec!["/b"]
    );
    // Touching a file that is not ferry's publishes nothing new.
    fs::write(dir.path().join("other.yaml"), "still: [not watched").unwrap();
    fs::write(&file, format!("{WEB}---\n{}", ingress("/c"))).unwrap();
    up.wait_version(3).await;
    assert_eq!(up.version().await, 3);
    up.stop().await;
}

/// An edit made after the first reading but before the control loop runs is not lost: the
/// paths are watched from before the first reading (list, then watch), so a file written the
/// moment `ferry up` has started is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_between_the_first_reading_and_the_loop_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("web.yaml"), WEB).unwrap();
    let ingress_file = dir.path().join("ingress.yaml");
    fs::write(&ingress_file, ingress("/")).unwrap();
    let up = ferry::up::Up::build(crate::up_config(vec![dir.path().to_owned()]))
        .await
        .unwrap();
    let admin = up.admin_addr();
    // The edit lands before the loop starts, and its event has been delivered by the time the
    // loop looks: nothing else will wake it.
    fs::write(&ingress_file, ingress("/early")).unwrap();
    let (trigger, shutdown) = ferry_runtime::shutdown::channel();
    let task = tokio::spawn(async move { up.run(shutdown).await.unwrap() });
    eventually(DEADLINE, "the early edit to be applied", || async {
        let config = get_json(admin, "/config").await;
        (route_paths(&config) == ["/early"]).then_some(())
    })
    .await;
    trigger.trigger();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_configuration_at_start_is_an_error_naming_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("bad.yaml"), ingress("x")).unwrap();
    let config = crate::up_config(vec![dir.path().to_owned()]);
    let err = ferry::up::Up::build(config).await.unwrap_err().to_string();
    assert!(
        err.contains(
            "bad.yaml: Ingress shop/shop: spec.rules[0].http.paths[0].path: Invalid value: \"x\""
        ),
        "{err}"
    );
}
