use std::fs;

use super::*;

const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {ports: [{port: 80}]}\n";

#[test]
fn reads_directories_recursively_skipping_hidden_and_other_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    fs::write(dir.path().join("sub/a.yaml"), SVC).unwrap();
    fs::write(dir.path().join("b.yml"), SVC.replace("web", "api")).unwrap();
    fs::write(
        dir.path().join("c.json"),
        r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop"}}"#,
    )
    .unwrap();
    fs::write(dir.path().join(".hidden.yaml"), "garbage: [").unwrap();
    fs::write(dir.path().join("notes.txt"), "garbage: [").unwrap();
    let mut source = FileSource::new(vec![dir.path().to_owned()]);
    let reading = source.read();
    assert!(reading.problems.is_empty(), "{:?}", reading.problems);
    assert_eq!(reading.manifests.len(), 3);
}

#[test]
fn only_changed_files_are_parsed_again() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    fs::write(&a, SVC).unwrap();
    fs::write(&b, SVC.replace("web", "api")).unwrap();
    let mut source = FileSource::new(vec![dir.path().to_owned()]);
    let first = source.read();
    let second = source.read();
    for (x, y) in first.manifests.iter().zip(&second.manifests) {
        assert!(Arc::ptr_eq(x, y), "unchanged files come from the cache");
    }
    // Save by rename, as editors do.
    let tmp = dir.path().join(".a.yaml.swp");
    fs::write(&tmp, SVC.replace("80", "81")).unwrap();
    fs::rename(&tmp, &a).unwrap();
    let third = source.read();
    let web = third.manifests.iter().find(|m| m.name() == "web").unwrap();
    assert!(!Arc::ptr_eq(
        web,
        first.manifests.iter().find(|m| m.name() == "web").unwrap()
    ));
    let api = third.manifests.iter().find(|m| m.name() == "api").unwrap();
    assert!(Arc::ptr_eq(
        api,
        first.manifests.iter().find(|m| m.name() == "api").unwrap()
    ));
}

#[test]
fn duplicates_across_files_and_missing_paths_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.yaml"), SVC).unwrap();
    fs::write(dir.path().join("b.yaml"), SVC).unwrap();
    let reading = FileSource::new(vec![dir.path().to_owned()]).read();
    let lines: Vec<String> = reading.problems.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let want = format!(
        "{}: Service shop/web: metadata.name: Duplicate value: \"web\": already defined in {}",
        dir.path().join("b.yaml").display(),
        dir.path().join("a.yaml").display()
    );
    assert_eq!(lines[0], want);

    let reading = FileSource::new(vec![dir.path().join("nope")]).read();
    assert!(reading.problems[0].is_error());
    assert!(
        reading.problems[0].to_string().contains("nope"),
        "{}",
        reading.problems[0]
    );
}

#[tokio::test]
async fn settle_waits_for_quiet() {
    let (tx, mut rx) = mpsc::channel(1);
    tx.try_send(()).unwrap();
    assert!(settle(&mut rx, Duration::from_millis(20)).await);
    drop(tx);
    assert!(
        !settle(&mut rx, Duration::from_millis(20)).await,
        "a closed watcher ends the loop"
    );
}

#[tokio::test]
async fn a_file_feed_lists_first_then_relists_after_each_change() {
    use crate::source::{Cause, Source};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.yaml");
    fs::write(&file, SVC).unwrap();
    let mut feed = FileFeed::start(vec![dir.path().to_owned()], Duration::from_millis(20)).unwrap();
    let list = feed.next().await.unwrap();
    assert_eq!(list.cause, Cause::Applied);
    assert_eq!(list.reading.manifests.len(), 1);
    feed.acknowledge(true);
    // An edit made after the list (and before anyone waits) is the next update, not lost.
    fs::write(&file, format!("{SVC}---\n{}", SVC.replace("web", "api"))).unwrap();
    let next = tokio::time::timeout(ferry_testing::DEADLINE, feed.next())
        .await
        .expect("the edit is seen")
        .unwrap();
    assert_eq!(next.reading.manifests.len(), 2);
}
