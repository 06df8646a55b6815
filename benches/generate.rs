//! A generated cluster for the scale benchmarks: `namespaces` namespaces, each with
//! `services_per_ns` Services of 10 endpoints and one Ingress per two Services. At 100
//! namespaces × 100 Services: 10,000 Services, 100,000 endpoints, 5,000 Ingresses.
//!
//! The endpoints come from EndpointSlices (how ferry sees a real cluster, where Kubernetes'
//! own controller computed them), or half of them from Pods selected by their Service (how the
//! local runtime's clusters look), which [`with_controller`] turns into EndpointSlices as the
//! local cluster's EndpointSlice controller does before the control plane sees them.

use std::fmt::Write as _;
use std::sync::Arc;

use ferry_objects::object::{Manifest, Origin};

pub const ENDPOINTS_PER_SERVICE: usize = 10;

/// Where the endpoints come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoints {
    /// All from EndpointSlices.
    Slices,
    /// Half from EndpointSlices, half from Pods selected by the Service.
    Mixed,
}

/// The manifests with the EndpointSlices the local cluster's EndpointSlice controller writes
/// for the Pods among them (what `ferry up` hands the control plane).
pub fn with_controller(manifests: &[Arc<Manifest>]) -> Vec<Arc<Manifest>> {
    let origin = Origin {
        file: "<endpointslice controller>".into(),
        doc: None,
    };
    ferry_orchestrator::endpointslice::reconcile(manifests, &origin)
}

/// The manifests, as `files_per_ns` YAML files per namespace: (file name, text).
pub fn cluster(
    namespaces: usize,
    services_per_ns: usize,
    files_per_ns: usize,
    endpoints: Endpoints,
) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let per_file = services_per_ns.div_ceil(files_per_ns);
    for n in 0..namespaces {
        let ns = format!("ns-{n}");
        for f in 0..files_per_ns {
            let mut text = String::new();
            for s in f * per_file..((f + 1) * per_file).min(services_per_ns) {
                service(&mut text, &ns, n, s, endpoints);
            }
            files.push((format!("{ns}-{f}.yaml"), text));
        }
    }
    files
}

fn service(out: &mut String, ns: &str, n: usize, s: usize, endpoints: Endpoints) {
    let name = format!("svc-{s}");
    let addr = |e: usize| {
        let id = (n * 100_000) + s * ENDPOINTS_PER_SERVICE + e;
        format!(
            "10.{}.{}.{}",
            (id >> 16) & 0xff,
            (id >> 8) & 0xff,
            id & 0xff
        )
    };
    let with_selector = endpoints == Endpoints::Mixed && s.is_multiple_of(2);
    let selector = if with_selector {
        format!("  selector: {{app: {name}}}\n")
    } else {
        String::new()
    };
    let _ = write!(
        out,
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{selector}  ports:\n  - {{name: http, port: 80, targetPort: http}}\n  - {{name: grpc, port: 9090, targetPort: 9090}}\n---\n"
    );
    if with_selector {
        for e in 0..ENDPOINTS_PER_SERVICE {
            let _ = write!(
                out,
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}-{e}, namespace: {ns}, labels: {{app: {name}, pod-template-hash: abc{s}}}}}\nspec:\n  containers:\n  - name: app\n    image: ferry/echo\n    ports: [{{name: http, containerPort: 8080}}]\nstatus:\n  podIP: {}\n  conditions: [{{type: Ready, status: \"True\"}}]\n---\n",
                addr(e)
            );
        }
    } else {
        let _ = write!(
            out,
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}, {{name: grpc, port: 9090}}]\nendpoints:\n"
        );
        for e in 0..ENDPOINTS_PER_SERVICE {
            let _ = writeln!(
                out,
                "- addresses: [\"{}\"]\n  zone: zone-{}",
                addr(e),
                e % 3
            );
        }
        out.push_str("---\n");
    }
    if s % 2 == 1 {
        let prev = format!("svc-{}", s - 1);
        let _ = write!(
            out,
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: ing-{s}, namespace: {ns}}}\nspec:\n  rules:\n  - host: {name}.{ns}.example.com\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: {prev}, port: {{name: http}}}}}}}}\n      - {{path: /api, pathType: Exact, backend: {{service: {{name: {name}, port: {{number: 80}}}}}}}}\n---\n"
        );
    }
}
