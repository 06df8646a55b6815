//! Criterion: translate a generated cluster of 10,000 Services, 100,000 endpoints and 5,000
//! Ingresses into a Snapshot. `cargo bench --bench translate`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use ferry_control::translate::translate;
use ferry_objects::manifest;
use ferry_objects::store::Store;

mod generate;

fn store(namespaces: usize, services: usize, endpoints: generate::Endpoints) -> Store {
    let mut manifests = Vec::new();
    for (name, text) in generate::cluster(namespaces, services, 1, endpoints) {
        let loaded = manifest::parse(&name, text.as_bytes());
        assert!(loaded.problems.is_empty(), "{:?}", &loaded.problems[..1]);
        manifests.extend(loaded.manifests.into_iter().map(Arc::new));
    }
    // The Pods' endpoints reach the control plane as the slices the controller writes.
    Store::from_manifests(generate::with_controller(&manifests))
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("translate");
    group.sample_size(10);
    let cases = [
        ("1k_services_slices", 10, generate::Endpoints::Slices),
        ("10k_services_slices", 100, generate::Endpoints::Slices),
        ("10k_services_half_pods", 100, generate::Endpoints::Mixed),
    ];
    for (label, namespaces, endpoints) in cases {
        let store = store(namespaces, 100, endpoints);
        group.bench_function(label, |b| {
            b.iter(|| black_box(translate(black_box(&store))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
