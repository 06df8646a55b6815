//! Which Ingresses are ferry's (`translate::class`).

use super::*;

#[test]
fn ingress_class_decides_which_ingresses_are_ferrys() {
    let class = |name: &str, controller: &str, default: bool| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: {name}\n  annotations: {{ingressclass.kubernetes.io/is-default-class: \"{default}\"}}\nspec: {{controller: {controller}}}\n---\n"
        )
    };
    let classed = |name: &str, class: &str| {
        let rule = path(
            &format!("{name}.example.com"),
            "/",
            "Prefix",
            "web",
            "{number: 80}",
        );
        let class = if class.is_empty() {
            String::new()
        } else {
            format!("  ingressClassName: {class}\n")
        };
        ingress(name, "2026-01-01T00:00:00Z", &format!("{class}{rule}"))
    };
    let served = |yaml: &str| -> Vec<String> {
        let t = translate(&store(yaml));
        t.snapshot
            .virtual_hosts
            .iter()
            .map(|v| v.host.to_string())
            .collect()
    };

    // No IngressClass at all: Ingresses without a class are ferry's.
    assert_eq!(
        served(&[SERVICES.to_owned(), classed("plain", "")].concat()),
        vec!["plain.example.com"]
    );

    // Ours by name; another controller's is not; no class and ferry not default: not ours.
    let yaml = [
        SERVICES.to_owned(),
        class("ferry", "ferry.dev/ingress", false),
        class("nginx", "k8s.io/ingress-nginx", true),
        classed("ours", "ferry"),
        classed("theirs", "nginx"),
        classed("plain", ""),
    ]
    .concat();
    assert_eq!(served(&yaml), vec!["ours.example.com"]);

    // ferry's class is the default: Ingresses without a class are ferry's.
    let yaml = [
        SERVICES.to_owned(),
        class("ferry", "ferry.dev/ingress", true),
        classed("plain", ""),
        classed("missing", "nope"),
    ]
    .concat();
    let t = translate(&store(&yaml));
    assert_eq!(t.snapshot.virtual_hosts.len(), 1);
    assert_eq!(
        warnings(&t),
        vec![
            "t.yaml:6: Ingress shop/missing: spec.ingressClassName: IngressClass \"nope\" does not exist; this Ingress is not served"
        ]
    );
}
