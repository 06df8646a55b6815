//! The inbound policy the control plane sends for this Pod (`Destination.GetInboundPolicy`),
//! held where the inbound side reads it: the AuthorizationPolicies that select the workload,
//! compiled into an [`Authorizer`], and the mTLS mode. Each answer is converted once, where it
//! arrives, and swapped in whole ([`ArcSwap`]), so a connection or request reads one
//! consistent policy and never waits for the control plane. An answer that does not convert
//! (a field the model refuses) is refused: the last good policy keeps deciding, and the
//! refusal is logged and counted.
//!
//! Until the first answer the policy is "allow all" with the mode the sidecar was started
//! with (`--mtls-mode`); [`follow`] keeps the subscription open, reconnecting with back-off.

mod follow;

use std::sync::Arc;

use arc_swap::ArcSwap;
use ferry_model::mesh::WorkloadId;
use ferry_model::policy::{Authorizer, Decision, HttpRequest, Request};
use ferry_model::proto;
use ferry_model::proto::ProtoError;
use ferry_model::proto::policy::{to_authorization, to_mtls_mode};
use ferry_model::workload;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::authorize::Authorize;
use crate::inbound::MtlsMode;

pub use follow::{PolicyConfig, follow};

/// One answer, converted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The control plane's snapshot version the answer was computed from (0 before any).
    pub version: u64,
    pub mode: MtlsMode,
    pub authorizer: Authorizer,
}

impl Policy {
    /// Converts an answer; the error names the field the model refuses.
    pub fn from_answer(answer: proto::InboundPolicy) -> Result<Policy, ProtoError> {
        let mode = match to_mtls_mode(answer.mtls_mode)? {
            workload::MtlsMode::Strict => MtlsMode::Strict,
            workload::MtlsMode::Permissive => MtlsMode::Permissive,
        };
        Ok(Policy {
            version: answer.version,
            mode,
            authorizer: Authorizer::new(to_authorization(answer.authorization)?),
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    /// `namespace/name` of the policy that decided; empty when none did (allowed by default,
    /// or no ALLOW policy matched).
    policy: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpdateLabels {
    result: &'static str,
}

/// The inbound policy in force: an [`Authorize`] whose answers and mTLS mode follow the
/// control plane.
#[derive(Debug)]
pub struct InboundPolicy {
    current: ArcSwap<Policy>,
    decisions: Family<DecisionLabels, Counter>,
    updates: Family<UpdateLabels, Counter>,
}

impl InboundPolicy {
    /// Allows everything and takes plaintext as `mode` says, until the first answer.
    pub fn new(mode: MtlsMode) -> InboundPolicy {
        InboundPolicy {
            current: ArcSwap::from_pointee(Policy {
                version: 0,
                mode,
                authorizer: Authorizer::default(),
            }),
            decisions: Family::default(),
            updates: Family::default(),
        }
    }

    /// Registers `ferry_sidecar_policy_decisions` (by deciding policy and result) and
    /// `ferry_sidecar_policy_updates` (answers applied or refused).
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "ferry_sidecar_policy_decisions",
            "Inbound authorization decisions by the AuthorizationPolicy that decided (empty: none) and result (allowed, allowed_by_default, denied, not_allowed)",
            self.decisions.clone(),
        );
        registry.register(
            "ferry_sidecar_policy_updates",
            "Inbound policy answers from the control plane, by result (applied, refused)",
            self.updates.clone(),
        );
    }

    /// The policy in force.
    pub fn current(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// Converts and swaps in an answer; a refused one leaves the policy in force as it was.
    pub fn apply(&self, answer: proto::InboundPolicy) -> Result<(), ProtoError> {
        match Policy::from_answer(answer) {
            Ok(policy) => {
                self.current.store(Arc::new(policy));
                self.count_update("applied");
                Ok(())
            }
            Err(e) => {
                self.count_update("refused");
                Err(e)
            }
        }
    }

    fn count_update(&self, result: &'static str) {
        self.updates.get_or_create(&UpdateLabels { result }).inc();
    }

    /// Decides with the policy in force, and counts the decision.
    pub fn decide(
        &self,
        peer: Option<&WorkloadId>,
        port: u16,
        http: Option<(&http::Method, &str)>,
    ) -> Decision {
        let principal = peer.map(WorkloadId::principal);
        let request = Request {
            principal: principal.as_deref(),
            namespace: peer.map(|p| p.namespace.as_str()),
            port,
            http: http.map(|(method, path)| HttpRequest {
                method: method.as_str(),
                path,
            }),
        };
        let decision = self.current.load().authorizer.authorize(&request);
        let result = match &decision {
            Decision::AllowedByDefault => "allowed_by_default",
            Decision::Allowed(_) => "allowed",
            Decision::Denied(_) => "denied",
            Decision::NotAllowed => "not_allowed",
        };
        let policy = decision
            .policy()
            .map(ToString::to_string)
            .unwrap_or_default();
        self.decisions
            .get_or_create(&DecisionLabels { policy, result })
            .inc();
        decision
    }
}

impl Authorize for InboundPolicy {
    fn authorize(
        &self,
        peer: Option<&WorkloadId>,
        port: u16,
        http: Option<(&http::Method, &str)>,
    ) -> bool {
        let decision = self.decide(peer, port, http);
        if !decision.is_allowed() {
            tracing::debug!(port, peer = ?peer.map(ToString::to_string), ?decision, "denied by policy");
        }
        decision.is_allowed()
    }

    fn mtls_mode(&self) -> Option<MtlsMode> {
        Some(self.current.load().mode)
    }
}

#[cfg(test)]
mod tests;
