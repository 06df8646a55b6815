//! Server-side search-path completion (CoreDNS's autopath, without its Pod watch).
//!
//! A Pod's resolv.conf searches `<ns>.svc.<zone> svc.<zone> <zone>` and then the node's own
//! search domains, with `ndots:5`: a lookup of `example.com` first asks for
//! `example.com.<ns>.svc.<zone>`, fails, and walks on, one round trip per step. When that first
//! name does not exist, ferry walks the rest of the list itself and answers with a CNAME to the
//! first name that resolves, so the Pod needs one round trip. The namespace comes from the name
//! asked, so no Pod lookup by client address is needed (and nothing is kept per Pod).

use hickory_proto::rr::Name;

/// The names a resolver would try after `qname` = `X.<ns>.svc.<zone>`, in order: `X.svc.<zone>`,
/// `X.<zone>`, `X.<search>` for each host search domain, and `X.` itself. `None` when `qname`
/// is not a first search step.
pub fn candidates(qname: &Name, origin: &Name, host_search: &[Name]) -> Option<Vec<Name>> {
    let total = usize::from(qname.num_labels());
    let zone = usize::from(origin.num_labels());
    // X has at least one label; then <ns>, svc, the zone.
    if total < zone + 3 || !origin.zone_of(qname) {
        return None;
    }
    let labels: Vec<&[u8]> = qname.iter().collect();
    let x_len = total - zone - 2;
    if !labels[x_len + 1].eq_ignore_ascii_case(b"svc") {
        return None;
    }
    let mut x = Name::from_labels(labels[..x_len].iter().copied()).ok()?;
    x.set_fqdn(false);
    let svc = Name::from_labels(std::iter::once(&b"svc"[..]))
        .ok()?
        .append_domain(origin)
        .ok()?;
    let mut out = Vec::with_capacity(host_search.len() + 3);
    for domain in [&svc, origin].into_iter().chain(host_search) {
        if let Ok(name) = x.clone().append_domain(domain) {
            out.push(name);
        }
    }
    out.push(x.append_domain(&Name::root()).ok()?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn walks_the_pod_search_list_in_order() {
        let zone = n("cluster.local.");
        let got = candidates(
            &n("example.com.shop.svc.cluster.local."),
            &zone,
            &[n("corp.example.")],
        )
        .unwrap();
        let want = [
            "example.com.svc.cluster.local.",
            "example.com.cluster.local.",
            "example.com.corp.example.",
            "example.com.",
        ];
        assert_eq!(got, want.iter().map(|s| n(s)).collect::<Vec<_>>());
    }

    #[test]
    fn service_in_another_namespace_is_the_first_candidate() {
        let got = candidates(
            &n("web.other.shop.svc.cluster.local."),
            &n("cluster.local."),
            &[],
        )
        .unwrap();
        assert_eq!(got[0], n("web.other.svc.cluster.local."));
    }

    #[test]
    fn only_first_search_steps_qualify() {
        let zone = n("cluster.local.");
        for name in [
            "shop.svc.cluster.local.",     // no X
            "web.shop.pod.cluster.local.", // not under svc
            "example.com.",                // outside the zone
            "a.b.svc.other.local.",        // another zone
        ] {
            assert_eq!(candidates(&n(name), &zone, &[]), None, "{name}");
        }
    }

    #[test]
    fn case_of_svc_does_not_matter() {
        let got = candidates(
            &n("Example.COM.shop.SVC.cluster.local."),
            &n("cluster.local."),
            &[],
        )
        .unwrap();
        assert_eq!(got.last().unwrap().to_ascii(), "Example.COM.");
    }
}
