use super::*;

fn pod(name: &str, running: bool, ready: bool, restarts: i32, created: u64) -> PodView {
    PodView {
        name: name.into(),
        deleting: false,
        finished: false,
        running,
        ready,
        restarts,
        created,
    }
}

#[test]
fn creates_what_is_missing_not_counting_deleting_or_finished() {
    let mut gone = pod("a", true, true, 0, 1);
    gone.deleting = true;
    let mut done = pod("b", false, false, 0, 2);
    done.finished = true;
    let pods = [gone, done, pod("c", true, true, 0, 3)];
    assert_eq!(
        reconcile(3, &pods),
        Plan {
            create: 2,
            delete: vec![]
        }
    );
    assert_eq!(reconcile(1, &pods), Plan::default());
}

#[test]
fn deletes_the_least_useful_first() {
    let pods = [
        pod("old-ready", true, true, 0, 1),
        pod("young-ready", true, true, 0, 5),
        pod("not-ready", true, false, 0, 2),
        pod("pending", false, false, 0, 3),
        pod("crashy-ready", true, true, 4, 0),
    ];
    assert_eq!(reconcile(4, &pods).delete, vec!["pending"]);
    assert_eq!(reconcile(3, &pods).delete, vec!["pending", "not-ready"]);
    assert_eq!(
        reconcile(1, &pods).delete,
        vec!["pending", "not-ready", "crashy-ready", "young-ready"]
    );
    assert_eq!(reconcile(0, &pods).delete.len(), 5);
    assert_eq!(reconcile(-1, &pods).delete.len(), 5);
}
