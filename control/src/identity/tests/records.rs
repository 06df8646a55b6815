//! The holders table as the running CA keeps it: when it is written, and what it forgets.

use super::*;

fn web_pods() -> PodDirectory {
    let pods = PodDirectory::default();
    let mut view = PodView::default();
    view.insert("shop", "web-1", PodRecord::new("uid-1", "web"));
    pods.replace(view);
    pods
}

fn on_disk(dir: &std::path::Path) -> Vec<(u64, String)> {
    Holders::read(dir)
        .unwrap()
        .behind(u64::MAX, std::time::SystemTime::now())
        .into_iter()
        .map(|h| (h.generation, h.pod.clone()))
        .collect()
}

#[test]
fn the_table_is_written_once_a_tick_and_at_once_when_behind_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (service, tokens) = service(dir.path(), web_pods());
    let ca = service.ca();
    let file = dir.path().join(holders::FILE);
    for _ in 0..3 {
        certify_web(&service, &tokens);
    }
    assert!(!file.exists(), "not rewritten on every Certify");
    ca.flush();
    assert_eq!(on_disk(dir.path()), [(0, "web-1".to_owned())]);
    let written = std::fs::read_to_string(&file).unwrap();
    ca.flush();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);

    // rotate --root moved the directory's generation; this control plane has not reloaded,
    // so it still issues at 0: that record is behind the directory, and written at once.
    std::fs::remove_file(&file).unwrap();
    assert_eq!(rotate::rotate_root(dir.path()).unwrap(), 1);
    assert_eq!(certify_web(&service, &tokens).1, 0);
    assert_eq!(on_disk(dir.path()), [(0, "web-1".to_owned())]);

    // At the current generation it waits for the tick: the file names the older one.
    ca.reload_if_changed().unwrap().expect("reloaded");
    assert_eq!(certify_web(&service, &tokens).1, 1);
    assert_eq!(on_disk(dir.path()), [(0, "web-1".to_owned())]);
    // The switch decides on the table in memory and writes it first, so --finish, which
    // reads the file, sees the certificate issued at 1 (before the switch to 2).
    assert_eq!(ca.switch_issuing_if_settled().unwrap(), Some(2));
    assert_eq!(on_disk(dir.path()), [(1, "web-1".to_owned())]);
    let e = rotate::finish_root_rotation(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("shop/web-1") && e.contains("generation 2"),
        "{e}"
    );

    // A Certify that took generation 1 before the reload records after the switch: behind
    // the directory, so written at once (--finish must not miss it).
    std::fs::remove_file(&file).unwrap();
    ca.issued(Holding {
        namespace: "shop".into(),
        pod: "web-1".into(),
        uid: "uid-1".into(),
        generation: 1,
        not_after: std::time::SystemTime::now() + Duration::from_secs(600),
    });
    assert_eq!(on_disk(dir.path()), [(1, "web-1".to_owned())]);
    ca.reload_if_changed().unwrap().expect("reloaded");
    assert_eq!(certify_web(&service, &tokens).1, 2);
    // Stopping writes the last records.
    drop(service);
    drop(ca);
    assert_eq!(on_disk(dir.path()), [(2, "web-1".to_owned())]);
}

fn holding(pod: &str, uid: &str, generation: u64) -> Holding {
    Holding {
        namespace: "shop".into(),
        pod: pod.into(),
        uid: uid.into(),
        generation,
        not_after: std::time::SystemTime::now() + Duration::from_secs(600),
    }
}

#[test]
fn a_deleted_pods_certificate_stops_holding_the_root_switch_back() {
    let dir = tempfile::tempdir().unwrap();
    let pods = PodDirectory::default();
    let ca = Ca::load(None, dir.path())
        .unwrap()
        .with_pods(pods.clone(), Duration::from_secs(600));
    ca.issued(holding("web-1", "uid-1", 0));
    ca.issued(holding("web-2", "uid-2", 0));
    assert_eq!(rotate::rotate_root(dir.path()).unwrap(), 1);
    ca.reload_if_changed().unwrap().expect("reloaded");
    ca.issued(holding("web-1", "uid-1", 1));
    // No Pod view published yet (a control plane starting): nothing is forgotten.
    ca.follow_pods();
    assert_eq!(
        ca.switch_issuing_if_settled().unwrap(),
        None,
        "web-2 is behind"
    );
    // web-2 deleted; web-1 is there (and a web-2 recreated, another uid, holds nothing yet).
    let mut view = PodView::default();
    view.insert("shop", "web-1", PodRecord::new("uid-1", "web"));
    view.insert("shop", "web-2", PodRecord::new("uid-2b", "web"));
    pods.replace(view);
    ca.follow_pods();
    assert_eq!(ca.switch_issuing_if_settled().unwrap(), Some(2));
    assert_eq!(on_disk(dir.path()), [(1, "web-1".to_owned())]);
}

#[test]
fn a_corrupt_table_is_set_aside_and_every_pod_is_assumed_behind_until_it_renews() {
    let dir = tempfile::tempdir().unwrap();
    // A CA made, then a rotation under way, and the table damaged.
    drop(Ca::load(None, dir.path()).unwrap());
    assert_eq!(rotate::rotate_root(dir.path()).unwrap(), 1);
    let file = dir.path().join(holders::FILE);
    std::fs::write(&file, "1 100 shop/web-1 uid-1\ngarbage\n").unwrap();
    assert!(Holders::read(dir.path()).is_err());
    let pods = PodDirectory::default();
    let ca = Ca::load(None, dir.path())
        .expect("starts all the same")
        .with_pods(pods.clone(), Duration::from_secs(600));
    assert_eq!(
        std::fs::read(dir.path().join(holders::CORRUPT)).unwrap(),
        std::fs::read(&file).unwrap(),
        "a copy kept aside"
    );
    // Until the first Pod view, nothing is assumed yet: no switch, and the file stays as
    // found (a restart now is as cautious).
    ca.issued(holding("web-1", "uid-1", 1));
    ca.flush();
    assert_eq!(ca.switch_issuing_if_settled().unwrap(), None);
    assert!(Holders::read(dir.path()).is_err());
    let mut view = PodView::default();
    view.insert("shop", "web-1", PodRecord::new("uid-1", "web"));
    view.insert("shop", "api-1", PodRecord::new("uid-a", "api"));
    pods.replace(view);
    ca.follow_pods();
    // api-1 may hold anything: the switch waits for it (web-1 renewed at 1 already).
    assert_eq!(ca.switch_issuing_if_settled().unwrap(), None);
    assert_eq!(
        on_disk(dir.path()),
        [(0, "api-1".to_owned()), (1, "web-1".to_owned())]
    );
    let not_after = Holders::read(dir.path())
        .unwrap()
        .behind(1, std::time::SystemTime::now())[0]
        .not_after;
    assert!(not_after <= std::time::SystemTime::now() + Duration::from_secs(600));
    ca.issued(holding("api-1", "uid-a", 1));
    assert_eq!(ca.switch_issuing_if_settled().unwrap(), Some(2));
}
