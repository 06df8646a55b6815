//! Label selectors, as `k8s.io/apimachinery/pkg/labels` evaluates them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A `LabelSelector` (workloads): every matchLabels pair and every expression must hold. An
/// empty selector matches everything.
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs = selector
        .match_labels
        .as_ref()
        .is_none_or(|m| equality(m, labels));
    pairs
        && selector.match_expressions.iter().flatten().all(|e| {
            let value = labels.get(&e.key);
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// An equality selector (a Service's `spec.selector`): every pair must be present.
pub fn equality(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn match_labels_and_expressions() {
        let pod = labels(&[("app", "web"), ("release", "summer")]);
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                expr("release", "In", &["summer", "autumn"]),
                expr("tier", "DoesNotExist", &[]),
                expr("app", "Exists", &[]),
                expr("release", "NotIn", &["spring"]),
            ]),
        };
        assert!(matches(&sel, &pod));
        let spring = labels(&[("app", "web"), ("release", "spring")]);
        assert!(!matches(&sel, &spring));
        assert!(matches(&LabelSelector::default(), &spring));
    }

    #[test]
    fn equality_needs_every_pair() {
        let pod = labels(&[("app", "web"), ("release", "summer")]);
        assert!(equality(&labels(&[("release", "summer")]), &pod));
        assert!(!equality(&labels(&[("release", "spring")]), &pod));
        assert!(!equality(&labels(&[("app", "web"), ("x", "y")]), &pod));
    }
}
