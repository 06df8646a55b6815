//! The subscription behind [`InboundPolicy`]: `Destination.GetInboundPolicy` for this Pod,
//! each answer applied as it arrives, reopened with jittered back-off when the stream ends or
//! the control plane is away (the policy in force stays meanwhile).

use std::sync::Arc;
use std::time::Duration;

use ferry_model::proto;
use ferry_runtime::Shutdown;
use ferry_runtime::subscribe::backoff::Backoff;
use ferry_runtime::subscribe::grpc::destination_client::DestinationClient;
use ferry_runtime::subscribe::{channel, with_token};

use super::InboundPolicy;
use crate::discover::ControlConfig;

/// Whose inbound policy to ask for, and of whom.
#[derive(Clone, Debug)]
pub struct PolicyConfig {
    pub control: ControlConfig,
    /// The Pod the sidecar serves.
    pub namespace: String,
    pub pod: String,
}

/// Keeps `policy` current until shutdown.
pub async fn follow(config: PolicyConfig, policy: Arc<InboundPolicy>, mut shutdown: Shutdown) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            ended = stream(&config, &policy, &mut backoff) => match ended {
                Ok(()) => tracing::debug!("the control plane ended the inbound policy subscription"),
                Err(e) => tracing::warn!(error = %e, "inbound policy subscription failed; the policy in force stays"),
            },
        }
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

async fn stream(
    config: &PolicyConfig,
    policy: &InboundPolicy,
    backoff: &mut Backoff,
) -> Result<(), String> {
    let control = &config.control;
    let h2 = channel(&control.url, &control.roots_pem()).await?;
    let mut client = DestinationClient::with_origin(h2, control.url.clone());
    let request = proto::GetInboundPolicy {
        caller: Some(proto::Caller {
            node: control.node.clone(),
            name: control.caller.clone(),
        }),
        namespace: config.namespace.clone(),
        pod: config.pod.clone(),
    };
    let mut answers = client
        .get_inbound_policy(with_token(request, &control.token)?)
        .await
        .map_err(|s| {
            format!(
                "Destination.GetInboundPolicy {}/{}: {}",
                config.namespace,
                config.pod,
                s.message()
            )
        })?
        .into_inner();
    while let Some(answer) = answers
        .message()
        .await
        .map_err(|s| s.message().to_owned())?
    {
        backoff.reset();
        let version = answer.version;
        let policies = answer.authorization.len();
        match policy.apply(answer) {
            Ok(()) => {
                let mode = policy.current().mode;
                tracing::info!(version, policies, ?mode, "inbound policy applied");
            }
            Err(e) => tracing::warn!(
                version,
                error = %e,
                "inbound policy refused; the previous one stays in force"
            ),
        }
    }
    Ok(())
}
