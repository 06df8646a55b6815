//! The Pods' lifecycle in the live cluster: what the kubelet reports (observed), the Pods the
//! manifests declare, starting Pods on their own address, and marking, signalling and removing
//! the ones to go (a terminating Pod is signalled once the update without its endpoints is
//! published, and no earlier than its termination delay).

use super::*;

impl LocalCluster {
    /// Brings in what the kubelet reports, and forgets terminated Pods.
    pub(super) fn observe_pods(&mut self) {
        let mut gone = Vec::new();
        for (key, p) in &mut self.pods {
            if !p.here || !p.started {
                if p.deleting() && !p.started {
                    gone.push(key.clone());
                }
                continue;
            }
            match self.kubelet.status(&key.namespace, &key.name) {
                Some(status) => p.pod.status = Some(status),
                None if p.deleting()
                    && (p.stop_sent || !self.kubelet.is_running(&key.namespace, &key.name)) =>
                {
                    gone.push(key.clone());
                }
                None => {}
            }
        }
        self.forget_pods(gone);
    }

    /// Forgets Pods marked for deletion that never started (Pending, or run on another
    /// node): there is no container to wait for, so they go in the round that deleted them.
    pub(super) fn forget_unstarted_deleted(&mut self) {
        let gone: Vec<NamespacedName> = self
            .pods
            .iter()
            .filter(|(_, p)| p.deleting() && !p.started)
            .map(|(k, _)| k.clone())
            .collect();
        self.forget_pods(gone);
    }

    /// Removes Pods, releasing their addresses; a declared Pod waiting to replace one is made.
    fn forget_pods(&mut self, gone: Vec<NamespacedName>) {
        for key in gone {
            if let Some(p) = self.pods.remove(&key) {
                if let Some(ip) = p.ip {
                    self.pod_ips.release(ip);
                }
                if let Some(next) = p.replace_with {
                    self.create_declared_pod(key, next);
                }
            }
        }
    }

    /// Marks a Pod terminating; its endpoints go at the next publish and the kubelet stops it
    /// after that ([`LocalCluster::stop_terminating`]).
    pub(super) fn delete_pod(&mut self, key: &NamespacedName) {
        let default_delay = self.config.termination_delay;
        if let Some(p) = self.pods.get_mut(key)
            && p.pod.metadata.deletion_timestamp.is_none()
        {
            let spec = p.pod.spec.as_ref();
            let grace = spec
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30);
            // A Pod that is not ready has no endpoint to drain.
            let delay = match pre_stop_sleep(&p.pod) {
                Some(d) => d,
                None if pod_ready(&p.pod) => default_delay,
                None => Duration::ZERO,
            };
            p.pod.metadata.deletion_timestamp = Some(now());
            p.pod.metadata.deletion_grace_period_seconds = Some(grace);
            p.stop_at = Some(Instant::now() + delay.min(crate::kubelet::MAX_GRACE));
        }
    }

    pub(super) fn sync_declared_pods(&mut self, declared: &BTreeMap<NamespacedName, Arc<Pod>>) {
        let gone: Vec<NamespacedName> = self
            .pods
            .iter()
            .filter(|(k, p)| p.applied.is_some() && !declared.contains_key(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            if let Some(p) = self.pods.get_mut(&key) {
                p.replace_with = None;
            }
            self.delete_pod(&key);
        }
        for (key, pod) in declared {
            let here = self.is_here(pod);
            match self.pods.get_mut(key) {
                None => self.create_declared_pod(key.clone(), pod.clone()),
                Some(live) if live.applied.as_ref().is_some_and(|a| **a == **pod) => {}
                // Bound to this node now: ours to run from here on.
                Some(live) if !live.here && here => {
                    self.pods.remove(key);
                    self.create_declared_pod(key.clone(), pod.clone());
                }
                Some(live) if !live.here => {
                    live.pod = admitted(pod);
                    live.applied = Some(pod.clone());
                }
                // Only labels or annotations changed (an API update): the running Pod takes
                // them, as the API server's Pods are mutable only there.
                Some(live)
                    if live
                        .applied
                        .as_ref()
                        .is_some_and(|a| same_but_metadata(a, pod)) =>
                {
                    live.pod.metadata.labels.clone_from(&pod.metadata.labels);
                    live.pod
                        .metadata
                        .annotations
                        .clone_from(&pod.metadata.annotations);
                    live.applied = Some(pod.clone());
                }
                Some(live) => {
                    // Pods are immutable: a changed manifest replaces the Pod once the old
                    // one has terminated.
                    live.replace_with = Some(pod.clone());
                    self.delete_pod(key);
                }
            }
        }
    }

    /// Whether this node runs the Pod: one bound to no node is scheduled here.
    pub(super) fn is_here(&self, pod: &Pod) -> bool {
        pod.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_none_or(|n| n == self.config.node_name)
    }

    /// A declared Pod (from a file), as the API server would store it: admitted through the
    /// ServiceAccount admission's defaulting like a Pod made through the API (whether the
    /// ServiceAccount exists is checked before: [`LocalCluster::admit`]).
    pub(super) fn create_declared_pod(&mut self, key: NamespacedName, declared: Arc<Pod>) {
        let here = self.is_here(&declared);
        let mut pod = admitted(&declared);
        if here {
            pod.metadata.uid = Some(self.uid());
            pod.metadata.creation_timestamp.get_or_insert_with(now);
            pod.status = Some(PodStatus {
                phase: Some("Pending".into()),
                ..PodStatus::default()
            });
            if let Some(spec) = pod.spec.as_mut() {
                spec.node_name = Some(self.config.node_name.clone());
            }
        }
        self.add_pod(key, pod, Some(declared), here);
    }

    /// Adds a Pod that has not run yet, the newest in creation order; one this node runs is
    /// admitted first, which may inject the mesh's sidecar ([`crate::inject`]): the Pod is
    /// changed, never the manifest or template it came from.
    pub(super) fn add_pod(
        &mut self,
        key: NamespacedName,
        mut pod: Pod,
        applied: Option<Arc<Pod>>,
        here: bool,
    ) {
        if here {
            let namespace = self.namespaces.get(&key.namespace);
            match crate::inject::inject(&mut pod, namespace, self.kubelet.mesh()) {
                crate::inject::Outcome::Ignored(why) => {
                    tracing::warn!(pod = %format!("{}/{}", key.namespace, key.name), "{why}");
                    if let Some(events) = self.kubelet.events() {
                        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
                        events.warning(
                            crate::events::Involved::pod(&key.namespace, &key.name, uid),
                            "ferry-sidecar-injector",
                            "SidecarNotInjected",
                            why,
                        );
                    }
                }
                crate::inject::Outcome::Injected => {
                    tracing::debug!(pod = %format!("{}/{}", key.namespace, key.name), "the mesh's sidecar injected");
                }
                crate::inject::Outcome::NotAsked | crate::inject::Outcome::AlreadyInjected => {}
            }
        }
        let seq = self.next_seq();
        self.pods.insert(
            key,
            LivePod {
                pod,
                applied,
                here,
                ip: None,
                started: false,
                stop_at: None,
                stop_sent: false,
                seq,
                replace_with: None,
            },
        );
    }

    /// Gives new Pods an address and hands them to the kubelet.
    pub(super) fn start_pods(&mut self, services: &[Arc<Manifest>], problems: &mut Vec<Problem>) {
        let mut env_by_ns: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for m in services {
            if let Object::Service(svc) = &m.object {
                env_by_ns
                    .entry(m.namespace().to_owned())
                    .or_default()
                    .extend(service_env::for_service(m.name(), svc));
            }
        }
        let keys: Vec<NamespacedName> = self
            .pods
            .iter()
            .filter(|(_, p)| p.here && !p.started && !p.deleting())
            .map(|(k, _)| k.clone())
            .collect();
        // Terminating Pods still hold their processes and addresses.
        let mut running = self.pods.values().filter(|p| p.here && p.started).count();
        let (mut over_limit, mut out_of_addresses) = (0, 0);
        // In netns mode the node's bridge holds the range's first address (the Pods' gateway),
        // and hostNetwork Pods have the node's address rather than one of the range.
        let netns = self.kubelet.network().map(|node| node.gateway());
        if let Some(gateway) = netns {
            self.pod_ips.reserve(IpAddr::V4(gateway));
        }
        for key in keys {
            let host_network = netns.is_some()
                && self.pods.get(&key).is_some_and(|p| {
                    p.pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.host_network)
                        .unwrap_or(false)
                });
            let ip = if running >= self.config.max_pods {
                over_limit += 1;
                None
            } else if host_network {
                Some(self.kubelet.host_ip())
            } else {
                let ip = self.pod_ips.allocate();
                out_of_addresses += usize::from(ip.is_none());
                ip
            };
            let Some(p) = self.pods.get_mut(&key) else {
                continue;
            };
            let Some(ip) = ip else {
                // Pending, as the scheduler leaves a Pod no node can take.
                let message = if running >= self.config.max_pods {
                    format!(
                        "0/1 nodes are available: 1 Too many pods (--max-pods {}).",
                        self.config.max_pods
                    )
                } else {
                    format!(
                        "0/1 nodes are available: the pod range {} is full (--pod-cidr).",
                        self.pod_ips.cidr()
                    )
                };
                p.pod.status = Some(PodStatus {
                    phase: Some("Pending".into()),
                    conditions: Some(vec![PodCondition {
                        type_: "PodScheduled".into(),
                        status: "False".into(),
                        reason: Some("Unschedulable".into()),
                        message: Some(message),
                        last_transition_time: Some(now()),
                        ..PodCondition::default()
                    }]),
                    ..PodStatus::default()
                });
                continue;
            };
            let env = env_by_ns.get(&key.namespace).cloned().unwrap_or_default();
            // The node's address is not the range's to release.
            p.ip = (!host_network).then_some(ip);
            p.started = true;
            running += 1;
            self.kubelet.run(&p.pod, ip, env);
            if let Some(status) = self.kubelet.status(&key.namespace, &key.name) {
                p.pod.status = Some(status);
            }
        }
        let warn = |message: String| Problem {
            severity: Severity::Warning,
            file: ORIGIN.into(),
            doc: None,
            object: None,
            field: String::new(),
            message,
        };
        if over_limit > 0 {
            problems.push(warn(format!(
                "{over_limit} Pod(s) wait: this node runs at most {} Pods (--max-pods)",
                self.config.max_pods
            )));
        }
        if out_of_addresses > 0 {
            problems.push(warn(format!(
                "{out_of_addresses} Pod(s) wait: the pod range {} is full (--pod-cidr)",
                self.pod_ips.cidr()
            )));
        }
    }

    /// Signals the kubelet to stop the Pods marked terminating; called once the snapshot
    /// without their endpoints is published.
    pub fn stop_terminating(&mut self) {
        let now = Instant::now();
        for (key, p) in &mut self.pods {
            if p.here
                && p.started
                && p.deleting()
                && !p.stop_sent
                && p.stop_at.is_none_or(|at| at <= now)
            {
                let grace = Duration::from_secs(
                    p.pod
                        .metadata
                        .deletion_grace_period_seconds
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(30),
                );
                // A preStop sleep counts within the grace period, as in Kubernetes, which
                // leaves the process at least 2 s after it.
                let grace = match pre_stop_sleep(&p.pod) {
                    Some(sleep) => grace.saturating_sub(sleep).max(Duration::from_secs(2)),
                    None => grace,
                };
                self.kubelet.stop(&key.namespace, &key.name, grace);
                p.stop_sent = true;
            }
        }
    }

    /// When the next terminating Pod is due to be signalled.
    pub fn next_stop(&self) -> Option<Instant> {
        self.pods
            .values()
            .filter(|p| p.here && p.started && p.deleting() && !p.stop_sent)
            .filter_map(|p| p.stop_at)
            .min()
    }
}

/// Whether two declarations of a Pod differ at most in their labels and annotations.
fn same_but_metadata(a: &Pod, b: &Pod) -> bool {
    let strip = |p: &Pod| {
        let mut p = p.clone();
        p.metadata.labels = None;
        p.metadata.annotations = None;
        p
    };
    strip(a) == strip(b)
}

/// `declared` with its ServiceAccount defaulted (`spec.serviceAccountName` and the deprecated
/// `spec.serviceAccount`, `default` when it names none), as admission stores a Pod; the
/// manifest itself stays as written, so comparing it with the next reading is unaffected.
fn admitted(declared: &Pod) -> Pod {
    let mut pod = declared.clone();
    crate::serviceaccount::default_pod_spec(pod.spec.get_or_insert_with(Default::default));
    pod
}
