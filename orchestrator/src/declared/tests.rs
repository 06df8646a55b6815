#![allow(clippy::unwrap_used)]

use super::*;
use ferry_objects::manifest;
use ferry_objects::object::Kind;

fn files(yaml: &str) -> Reading {
    let loaded = manifest::parse("app.yaml", yaml.as_bytes());
    assert!(loaded.problems.is_empty(), "{:#?}", loaded.problems);
    Reading {
        manifests: loaded.manifests.into_iter().map(Arc::new).collect(),
        problems: Vec::new(),
    }
}

const WEB: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: ferry/echo, ports: [{containerPort: 8080}]}]
";

fn key(kind: Kind, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind,
        namespace: namespace.into(),
        name: name.into(),
    }
}

fn annotations(d: &Declared, k: &ObjectKey) -> BTreeMap<String, String> {
    d.get(k)
        .unwrap()
        .object
        .metadata()
        .annotations
        .clone()
        .unwrap_or_default()
}

fn replicas(d: &Declared, k: &ObjectKey) -> Option<i32> {
    match &d.get(k).unwrap().object {
        Object::Deployment(d) => d.spec.as_ref().unwrap().replicas,
        _ => None,
    }
}

/// kubectl writes the object as in the file, its namespace filled in, `annotations: {}`,
/// compact JSON with sorted keys and a newline: an apply of the same file then finds no
/// difference.
#[test]
fn a_file_object_carries_the_last_applied_annotation_as_kubectl_writes_it() {
    let d = Declared::default().with_files(&files(WEB));
    let web = key(Kind::Deployment, "default", "web");
    assert_eq!(
        annotations(&d, &web)[LAST_APPLIED],
        "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"annotations\":{},\"labels\":{\"app\":\"web\"},\"name\":\"web\",\"namespace\":\"default\"},\"spec\":{\"replicas\":2,\"selector\":{\"matchLabels\":{\"app\":\"web\"}},\"template\":{\"metadata\":{\"labels\":{\"app\":\"web\"}},\"spec\":{\"containers\":[{\"image\":\"ferry/echo\",\"name\":\"web\",\"ports\":[{\"containerPort\":8080}]}]}}}}\n"
    );
    assert_eq!(d.source(&web), Some(Source::File));
}

/// An object created through the API stays when the files change; a file object that left
/// the files is deleted; a file object whose file did not change keeps what the API did to
/// it (a scale) until its file changes it.
#[test]
fn a_file_change_is_applied_as_kubectl_apply_and_keeps_the_apis_objects() {
    let web = key(Kind::Deployment, "default", "web");
    let svc = key(Kind::Service, "default", "web");
    let api = key(Kind::Service, "default", "api");
    let service = "
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80}]}
";
    let mut d = Declared::default().with_files(&files(&format!("{WEB}{service}")));
    let from_api = manifest::parse(
        "api.json",
        br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"api","namespace":"default"},"spec":{"ports":[{"port":81}]}}"#,
    );
    d.put(from_api.manifests[0].clone());
    assert!(set_replicas(&mut d, &web, 5));
    assert_eq!(d.source(&api), Some(Source::Api));

    // The Service leaves the files, the Deployment's file is unchanged.
    let d = d.with_files(&files(WEB));
    assert!(
        d.get(&svc).is_none(),
        "a file object that left the files is deleted"
    );
    assert_eq!(d.source(&api), Some(Source::Api), "the API's object stays");
    assert_eq!(
        replicas(&d, &web),
        Some(5),
        "the scale stays while the file says the same"
    );

    // The Deployment's file changes: the file wins, as kubectl apply.
    let d = d.with_files(&files(&WEB.replace("replicas: 2", "replicas: 3")));
    assert_eq!(replicas(&d, &web), Some(3));
    assert!(annotations(&d, &web)[LAST_APPLIED].contains("\"replicas\":3"));
    assert_eq!(d.source(&api), Some(Source::Api));
}

/// A file object deleted through the API comes back with the next change of the files, as
/// `kubectl apply -f` of the directory would make it again.
#[test]
fn a_file_object_deleted_through_the_api_comes_back_with_the_next_file_change() {
    let web = key(Kind::Deployment, "default", "web");
    let mut d = Declared::default().with_files(&files(WEB));
    d.remove(&web);
    let d = d.with_files(&files(WEB));
    assert!(d.get(&web).is_some());
}

/// The template `kubectl rollout undo` sends (read from the API: `protocol: TCP` on every
/// port, `resources: {}`) is the file's own once declared, so its template hash is the same.
#[test]
fn a_template_read_back_from_the_api_is_the_declared_one() {
    let d = Declared::default().with_files(&files(WEB));
    let web = key(Kind::Deployment, "default", "web");
    let template = |m: &Manifest| match &m.object {
        Object::Deployment(d) => d.spec.as_ref().unwrap().template.clone(),
        _ => unreachable!(),
    };
    let declared = template(d.get(&web).unwrap());
    let echoed = WEB.replace(
        "ports: [{containerPort: 8080}]",
        "ports: [{containerPort: 8080, protocol: TCP}], resources: {}",
    );
    let mut read_back = files(&echoed).manifests[0].object.clone();
    canonical(&mut read_back);
    let read_back = template(&Manifest {
        origin: d.get(&web).unwrap().origin.clone(),
        object: read_back,
    });
    assert_eq!(read_back, declared);
    assert_eq!(
        crate::deployment::template_hash(&read_back),
        crate::deployment::template_hash(&declared)
    );
}
