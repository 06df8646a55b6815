//! The control plane's `TokenReview`s (`authentication.k8s.io/v1`), through the source's
//! client: how a sidecar's Kubernetes ServiceAccount token is checked
//! ([`crate::identity::review`]). The control plane's ClusterRole must allow `create` on
//! `tokenreviews` (`configs/kubernetes/10-rbac.yaml`).

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::identity::review::{Review, TokenReviewer};

/// Reviews tokens with the API server the source watches.
#[derive(Clone)]
pub struct KubeReviewer {
    client: Client,
    server: String,
}

impl std::fmt::Debug for KubeReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeReviewer")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl KubeReviewer {
    pub fn new(connection: &super::Connection) -> KubeReviewer {
        KubeReviewer {
            client: connection.client.clone(),
            server: connection.server.clone(),
        }
    }
}

#[tonic::async_trait]
impl TokenReviewer for KubeReviewer {
    async fn review(&self, token: &str, audience: &str) -> Result<Review, String> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: Some(vec![audience.to_owned()]),
            },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| format!("{}: TokenReview: {e}", self.server))?;
        let status = answer.status.unwrap_or_default();
        let user = status.user.unwrap_or_default();
        Ok(Review {
            authenticated: status.authenticated.unwrap_or(false),
            username: user.username.unwrap_or_default(),
            audiences: status.audiences.unwrap_or_default(),
            extra: user.extra.unwrap_or_default().into_iter().collect(),
            error: status.error.unwrap_or_default(),
        })
    }
}
