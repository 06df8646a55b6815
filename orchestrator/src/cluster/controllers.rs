//! The controllers' glue in the live cluster: the declared Deployments and ReplicaSets taken
//! in, the pure Deployment and ReplicaSet controllers ([`crate::deployment`],
//! [`crate::replicaset`]) run over what exists, and their actions carried out (ReplicaSets
//! made, scaled and deleted; Pods made for them from their template).

use super::*;

impl LocalCluster {
    pub(super) fn sync_deployments(
        &mut self,
        declared: &BTreeMap<NamespacedName, Arc<Deployment>>,
    ) {
        let gone: Vec<NamespacedName> = self
            .deployments
            .keys()
            .filter(|k| !declared.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            self.deployments.remove(&key);
        }
        for (key, d) in declared {
            match self.deployments.get_mut(key) {
                Some(live) if Arc::ptr_eq(&live.applied, d) || *live.applied == **d => {}
                Some(live) => {
                    let meta = live.live.metadata.clone();
                    let generation = meta.generation.unwrap_or(1);
                    let changed = live.live.spec != d.spec;
                    live.applied = d.clone();
                    live.live = (**d).clone();
                    live.live.metadata.uid = meta.uid;
                    live.live.metadata.creation_timestamp = meta.creation_timestamp;
                    live.live.metadata.generation =
                        Some(if changed { generation + 1 } else { generation });
                    live.live.status = None;
                }
                None => {
                    let mut live = (**d).clone();
                    live.metadata.uid = Some(self.uid());
                    live.metadata.generation = Some(1);
                    if live.metadata.creation_timestamp.is_none() {
                        live.metadata.creation_timestamp = Some(now());
                    }
                    live.status = None;
                    self.deployments.insert(
                        key.clone(),
                        LiveDeployment {
                            applied: d.clone(),
                            live,
                        },
                    );
                }
            }
        }
    }

    pub(super) fn sync_declared_replica_sets(
        &mut self,
        declared: &BTreeMap<NamespacedName, Arc<ReplicaSet>>,
    ) {
        // Deployment-made ReplicaSets whose Deployment is gone, and declared ones no longer
        // declared, are deleted; their Pods go with them.
        let deployment_uids: Vec<String> = self
            .deployments
            .values()
            .filter_map(|d| d.live.metadata.uid.clone())
            .collect();
        let gone: Vec<NamespacedName> = self
            .replica_sets
            .iter()
            .filter(|(k, r)| match &r.applied {
                Some(_) => !declared.contains_key(*k),
                None => !controller_uid(&r.rs.metadata)
                    .is_some_and(|uid| deployment_uids.iter().any(|d| d == uid)),
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            self.delete_replica_set(&key);
        }
        for (key, rs) in declared {
            match self.replica_sets.get_mut(key) {
                Some(live) if live.applied.as_ref().is_some_and(|a| **a == **rs) => {}
                Some(live) => {
                    let meta = live.rs.metadata.clone();
                    live.rs = (**rs).clone();
                    live.rs.metadata.uid = meta.uid;
                    live.rs.metadata.creation_timestamp = meta.creation_timestamp;
                    live.rs.metadata.generation = Some(meta.generation.unwrap_or(1) + 1);
                    live.applied = Some(rs.clone());
                }
                None => {
                    let mut live = (**rs).clone();
                    live.metadata.uid = Some(self.uid());
                    live.metadata.generation = Some(1);
                    live.metadata.creation_timestamp.get_or_insert_with(now);
                    self.replica_sets.insert(
                        key.clone(),
                        LiveReplicaSet {
                            rs: live,
                            applied: Some(rs.clone()),
                        },
                    );
                }
            }
        }
    }

    pub(super) fn delete_replica_set(&mut self, key: &NamespacedName) {
        let Some(rs) = self.replica_sets.remove(key) else {
            return;
        };
        let uid = rs.rs.metadata.uid.unwrap_or_default();
        let owned: Vec<NamespacedName> = self
            .pods
            .iter()
            .filter(|(_, p)| p.owner_uid() == Some(uid.as_str()))
            .map(|(k, _)| k.clone())
            .collect();
        for key in owned {
            self.delete_pod(&key);
        }
    }

    /// What each owner (by uid) has of Pods, built once per step so the controllers do not
    /// scan every Pod for every ReplicaSet.
    pub(super) fn pod_views_by_owner(&self) -> HashMap<&str, Vec<PodView>> {
        let mut by_owner: HashMap<&str, Vec<PodView>> = HashMap::new();
        for p in self.pods.values() {
            if let Some(uid) = p.owner_uid() {
                by_owner.entry(uid).or_default().push(p.view());
            }
        }
        by_owner
    }

    pub(super) fn run_deployment_controllers(&mut self) {
        // Each Deployment's ReplicaSets as its controller sees them, gathered in one pass.
        let mut owned_by: HashMap<String, Vec<deployment::Owned>> = HashMap::new();
        {
            let views = self.pod_views_by_owner();
            for r in self.replica_sets.values() {
                let Some(owner) = controller_uid(&r.rs.metadata) else {
                    continue;
                };
                let rs_uid = r.rs.metadata.uid.as_deref().unwrap_or_default();
                let views = views.get(rs_uid).map_or(&[][..], Vec::as_slice);
                let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
                owned_by
                    .entry(owner.to_owned())
                    .or_default()
                    .push(deployment::Owned {
                        name: r.rs.metadata.name.clone().unwrap_or_default(),
                        hash: r
                            .rs
                            .metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(TEMPLATE_HASH_LABEL).cloned())
                            .unwrap_or_default(),
                        revision: revision(&r.rs.metadata),
                        replicas: r.rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                        pods: count(views.iter().filter(|v| !v.finished).count()),
                        available: count(replicaset::active(views).filter(|v| v.ready).count()),
                    });
            }
        }
        let keys: Vec<NamespacedName> = self.deployments.keys().cloned().collect();
        for key in keys {
            let Some(d) = self.deployments.get(&key).map(|d| d.live.clone()) else {
                continue;
            };
            let uid = d.metadata.uid.clone().unwrap_or_default();
            let owned = owned_by.remove(&uid).unwrap_or_default();
            // Being deleted (Foreground): its ReplicaSets go, none is made.
            if d.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let plan = deployment::reconcile(&d, &owned);
            let ns = key.namespace.clone();
            for (name, n) in plan.scale {
                if let Some(r) = self
                    .replica_sets
                    .get_mut(&NamespacedName::new(ns.clone(), name))
                {
                    let spec = r.rs.spec.get_or_insert_with(ReplicaSetSpec::default);
                    let from = spec.replicas.unwrap_or(1);
                    crate::events::scaling_replica_set(
                        self.kubelet.events(),
                        &d.metadata,
                        r.rs.metadata.name.as_deref().unwrap_or_default(),
                        from,
                        n,
                    );
                    spec.replicas = Some(n);
                    r.rs.metadata.generation = Some(r.rs.metadata.generation.unwrap_or(1) + 1);
                }
            }
            for (name, rev) in plan.revise {
                if let Some(r) = self
                    .replica_sets
                    .get_mut(&NamespacedName::new(ns.clone(), name))
                {
                    r.rs.metadata
                        .annotations
                        .get_or_insert_with(BTreeMap::new)
                        .insert(REVISION_ANNOTATION.into(), rev.to_string());
                }
            }
            for name in plan.delete {
                self.delete_replica_set(&NamespacedName::new(ns.clone(), name));
            }
            if let Some((hash, rev, replicas)) = plan.create {
                let rs = self.new_replica_set(&d, &hash, rev, replicas);
                let name = rs.metadata.name.clone().unwrap_or_default();
                crate::events::scaling_replica_set(
                    self.kubelet.events(),
                    &d.metadata,
                    &name,
                    0,
                    replicas,
                );
                if let Some(live) = self.deployments.get_mut(&key) {
                    deployment::new_replica_set_created(&mut live.live.status, &name, now());
                }
                self.replica_sets.insert(
                    NamespacedName::new(ns.clone(), name),
                    LiveReplicaSet { rs, applied: None },
                );
            }
        }
    }

    pub(super) fn new_replica_set(
        &mut self,
        d: &Deployment,
        hash: &str,
        rev: u64,
        replicas: i32,
    ) -> ReplicaSet {
        let spec = d.spec.clone().unwrap_or_default();
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(TEMPLATE_HASH_LABEL.into(), hash.into());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(TEMPLATE_HASH_LABEL.into(), hash.into());
        let mut annotations = BTreeMap::from([(REVISION_ANNOTATION.to_owned(), rev.to_string())]);
        if let Some(cause) = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CHANGE_CAUSE_ANNOTATION))
        {
            annotations.insert(CHANGE_CAUSE_ANNOTATION.into(), cause.clone());
        }
        let name = format!("{}-{hash}", d.metadata.name.as_deref().unwrap_or_default());
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: d.metadata.namespace.clone(),
                uid: Some(self.uid()),
                generation: Some(1),
                creation_timestamp: Some(now()),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                annotations: Some(annotations),
                owner_references: Some(vec![owner("Deployment", &d.metadata)]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        }
    }

    pub(super) fn run_replica_set_controllers(&mut self) {
        let mut views_by: HashMap<String, Vec<PodView>> = self
            .pod_views_by_owner()
            .into_iter()
            .map(|(uid, views)| (uid.to_owned(), views))
            .collect();
        let keys: Vec<NamespacedName> = self.replica_sets.keys().cloned().collect();
        for key in keys {
            let Some(r) = self.replica_sets.get(&key) else {
                continue;
            };
            let rs = r.rs.clone();
            let uid = rs.metadata.uid.clone().unwrap_or_default();
            let views = views_by.remove(&uid).unwrap_or_default();
            // Being deleted (Foreground): its Pods go, none is made.
            if rs.metadata.deletion_timestamp.is_some() {
                for v in views {
                    self.delete_pod(&NamespacedName::new(key.namespace.clone(), v.name));
                }
                continue;
            }
            let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let plan = replicaset::reconcile(replicas, &views);
            for name in plan.delete {
                crate::events::replica_set_pod(self.kubelet.events(), &rs.metadata, &name, false);
                self.delete_pod(&NamespacedName::new(key.namespace.clone(), name));
            }
            // At most 500 new Pods in one step, so a typo of a zero more does not fork-bomb
            // the machine in one go.
            for _ in 0..plan.create.min(500) {
                self.create_owned_pod(&key.namespace, &rs);
            }
        }
    }

    pub(super) fn create_owned_pod(&mut self, namespace: &str, rs: &ReplicaSet) {
        let template: PodTemplateSpec = rs
            .spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .unwrap_or_default();
        let base = rs.metadata.name.clone().unwrap_or_default();
        let name = loop {
            let name = format!("{base}-{}", self.suffix());
            if !self
                .pods
                .contains_key(&NamespacedName::new(namespace, name.clone()))
            {
                break name;
            }
        };
        let meta = template.metadata.unwrap_or_default();
        let mut spec = template.spec.unwrap_or_default();
        spec.node_name = Some(self.config.node_name.clone());
        let mut pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                generate_name: Some(format!("{base}-")),
                namespace: Some(namespace.to_owned()),
                uid: Some(self.uid()),
                creation_timestamp: Some(now()),
                labels: meta.labels,
                annotations: meta.annotations,
                owner_references: Some(vec![owner("ReplicaSet", &rs.metadata)]),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                ..PodStatus::default()
            }),
        };
        if let Err(e) = crate::serviceaccount::admit(&mut pod, namespace, &self.service_accounts) {
            // As the ReplicaSet controller: a FailedCreate Event, and the next round tries
            // again (a ServiceAccount made later lets the Pods be made).
            crate::events::replica_set_failed_create(
                self.kubelet.events(),
                &rs.metadata,
                &format!("pods \"{base}-\" is forbidden: {e}"),
            );
            return;
        }
        crate::events::replica_set_pod(self.kubelet.events(), &rs.metadata, &name, true);
        self.add_pod(NamespacedName::new(namespace, name), pod, None, true);
    }
}
