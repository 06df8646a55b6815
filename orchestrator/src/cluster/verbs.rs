//! What kubectl's verbs read of the live cluster: an object's namespace from its name, a
//! Deployment's `rollout history` and the template `rollout undo` goes back to. `ferry scale`
//! and `ferry rollout undo` change the declared Deployment ([`crate::Handle::scale`],
//! [`crate::Handle::undo`]); `scale` and `undo` here act on the live one alone, for tests.

use super::*;

impl LocalCluster {
    /// The namespace of the one object of that name, when `namespace` is not given.
    pub fn find_namespace(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<String, ApiError> {
        if let Some(ns) = namespace {
            return Ok(ns.to_owned());
        }
        let names: Vec<&NamespacedName> = match kind {
            "deployment" => self.deployments.keys().collect(),
            "replicaset" => self.replica_sets.keys().collect(),
            _ => self.pods.keys().collect(),
        };
        let found: Vec<&String> = names
            .iter()
            .filter(|k| k.name == name)
            .map(|k| &k.namespace)
            .collect();
        match found.as_slice() {
            [] => Err(ApiError::NotFound(format!("{kind} {name}"))),
            [ns] => Ok((*ns).clone()),
            several => Err(ApiError::Invalid(format!(
                "{kind} {name} exists in several namespaces ({}): name one with -n",
                several
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Scales the live Deployment alone (the local cluster's own tests; `ferry scale` and
    /// `kubectl scale` change the declared one, [`crate::Handle::scale`]).
    pub fn scale(&mut self, namespace: &str, name: &str, replicas: i32) -> Result<(), ApiError> {
        if replicas < 0 {
            return Err(ApiError::Invalid(format!(
                "--replicas {replicas}: must be greater than or equal to 0"
            )));
        }
        let d = self
            .deployments
            .get_mut(&NamespacedName::new(namespace, name))
            .ok_or_else(|| ApiError::NotFound(format!("deployment {namespace}/{name}")))?;
        let spec = d.live.spec.get_or_insert_with(Default::default);
        if spec.replicas != Some(replicas) {
            spec.replicas = Some(replicas);
            d.live.metadata.generation = Some(d.live.metadata.generation.unwrap_or(1) + 1);
        }
        Ok(())
    }

    /// The revisions of a Deployment: (revision, ReplicaSet name, change cause), oldest first.
    pub fn history(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<(u64, String, Option<String>)>, ApiError> {
        let d = self
            .deployments
            .get(&NamespacedName::new(namespace, name))
            .ok_or_else(|| ApiError::NotFound(format!("deployment {namespace}/{name}")))?;
        let uid = d.live.metadata.uid.as_deref().unwrap_or_default();
        let mut revisions: Vec<(u64, String, Option<String>)> = self
            .replica_sets
            .values()
            .filter(|r| controller_uid(&r.rs.metadata) == Some(uid))
            .map(|r| {
                (
                    revision(&r.rs.metadata),
                    r.rs.metadata.name.clone().unwrap_or_default(),
                    r.rs.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(CHANGE_CAUSE_ANNOTATION).cloned()),
                )
            })
            .collect();
        revisions.sort();
        Ok(revisions)
    }

    /// The template a rollback goes to (`rollout undo`): that of the revision named, by
    /// default the one before the current, without its `pod-template-hash` label.
    pub fn rollback_template(
        &self,
        namespace: &str,
        name: &str,
        to_revision: Option<u64>,
    ) -> Result<(u64, PodTemplateSpec), ApiError> {
        let history = self.history(namespace, name)?;
        let current = history.last().map(|h| h.0);
        let target = match to_revision {
            Some(0) | None => history
                .iter()
                .rev()
                .find(|h| Some(h.0) != current)
                .ok_or_else(|| {
                    ApiError::Invalid(format!(
                        "no rollout history found for deployment {namespace}/{name}"
                    ))
                })?,
            Some(n) => history.iter().find(|h| h.0 == n).ok_or_else(|| {
                ApiError::NotFound(format!("revision {n} of deployment {namespace}/{name}"))
            })?,
        };
        let (revision, rs_name) = (target.0, target.1.clone());
        let mut template = self
            .replica_sets
            .get(&NamespacedName::new(namespace, rs_name))
            .and_then(|r| r.rs.spec.as_ref())
            .and_then(|s| s.template.clone())
            .ok_or_else(|| ApiError::NotFound(format!("revision {revision}")))?;
        if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(TEMPLATE_HASH_LABEL);
        }
        Ok((revision, template))
    }

    /// `rollout undo` on the live Deployment alone (the local cluster's own tests; the
    /// commands go through the declared objects, [`crate::Handle::undo`]).
    pub fn undo(
        &mut self,
        namespace: &str,
        name: &str,
        to_revision: Option<u64>,
    ) -> Result<u64, ApiError> {
        let (revision, template) = self.rollback_template(namespace, name, to_revision)?;
        let d = self
            .deployments
            .get_mut(&NamespacedName::new(namespace, name))
            .ok_or_else(|| ApiError::NotFound(format!("deployment {namespace}/{name}")))?;
        let spec = d.live.spec.get_or_insert_with(Default::default);
        if spec.template != template {
            spec.template = template;
            d.live.metadata.generation = Some(d.live.metadata.generation.unwrap_or(1) + 1);
        }
        Ok(revision)
    }
}
