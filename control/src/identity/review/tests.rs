use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::identity::pods::PodRecord;

fn review() -> Review {
    Review {
        authenticated: true,
        username: "system:serviceaccount:shop:web".into(),
        audiences: vec![AUDIENCE.into()],
        extra: vec![
            (POD_NAME_EXTRA.into(), vec!["web-1".into()]),
            (POD_UID_EXTRA.into(), vec!["uid-1".into()]),
        ],
        error: String::new(),
    }
}

fn view(uid: &str, service_account: &str) -> PodView {
    let mut view = PodView::default();
    view.insert("shop", "web-1", PodRecord::new(uid, service_account));
    view
}

#[test]
fn an_authenticated_pod_bound_review_proves_the_pods_identity() {
    let reviewed = review().reviewed(AUDIENCE).unwrap();
    assert_eq!(reviewed.pod, "web-1");
    assert_eq!(
        reviewed
            .verify(&view("uid-1", "web"), "cluster.local")
            .unwrap(),
        WorkloadId::new("cluster.local", "shop", "web")
    );
    // Deleted, recreated, or running as another ServiceAccount now.
    let refused = |view: PodView| reviewed.verify(&view, "cluster.local").unwrap_err();
    assert!(matches!(
        refused(PodView::default()),
        TokenError::UnknownPod { .. }
    ));
    assert!(matches!(
        refused(view("uid-2", "web")),
        TokenError::Uid { .. }
    ));
    assert!(matches!(
        refused(view("uid-1", "admin")),
        TokenError::ServiceAccount { .. }
    ));
}

#[test]
fn unauthenticated_other_audiences_users_or_unbound_tokens_are_refused() {
    let refused = |r: Review| r.reviewed(AUDIENCE).unwrap_err().to_string();
    let e = refused(Review {
        authenticated: false,
        error: "token has expired".into(),
        ..review()
    });
    assert!(e.contains("token has expired"), "{e}");
    // The API server authenticated it, but not for ferry (or said no audience at all).
    let e = refused(Review {
        audiences: vec!["https://kubernetes.default.svc".into()],
        ..review()
    });
    assert!(e.contains("audiences"), "{e}");
    assert!(
        refused(Review {
            audiences: vec![],
            ..review()
        })
        .contains("audiences")
    );
    for user in [
        "admin",
        "system:serviceaccount:shop",
        "system:serviceaccount::web",
        "system:serviceaccount:a:b:c",
    ] {
        let e = refused(Review {
            username: user.into(),
            ..review()
        });
        assert!(e.contains("not a ServiceAccount"), "{user}: {e}");
    }
    let e = refused(Review {
        extra: vec![(POD_NAME_EXTRA.into(), vec!["web-1".into()])],
        ..review()
    });
    assert!(e.contains(POD_UID_EXTRA), "{e}");
}

#[derive(Debug, Default)]
struct Counting {
    calls: AtomicUsize,
    answer: Option<Review>,
}

#[tonic::async_trait]
impl TokenReviewer for Counting {
    async fn review(&self, _token: &str, audience: &str) -> Result<Review, String> {
        assert_eq!(audience, AUDIENCE);
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.answer
            .clone()
            .ok_or_else(|| "connection refused".to_owned())
    }
}

#[tokio::test]
async fn positive_reviews_are_cached_refusals_and_failures_are_not() {
    let reviewer = Arc::new(Counting {
        answer: Some(review()),
        ..Counting::default()
    });
    let tokens = ServiceAccountTokens::new(reviewer.clone());
    for _ in 0..3 {
        assert_eq!(tokens.reviewed("hd.token-a.sg").await.unwrap().pod, "web-1");
    }
    assert_eq!(reviewer.calls.load(Ordering::SeqCst), 1);
    tokens.reviewed("hd.token-b.sg").await.unwrap();
    assert_eq!(reviewer.calls.load(Ordering::SeqCst), 2);

    let refusing = Arc::new(Counting {
        answer: Some(Review {
            authenticated: false,
            ..review()
        }),
        ..Counting::default()
    });
    let tokens = ServiceAccountTokens::new(refusing.clone());
    for _ in 0..2 {
        assert!(matches!(
            tokens.reviewed("hd.t.sg").await,
            Err(TokenError::Review(_))
        ));
    }
    assert_eq!(refusing.calls.load(Ordering::SeqCst), 2);

    let down = ServiceAccountTokens::new(Arc::new(Counting::default()));
    assert!(matches!(
        down.reviewed("hd.t.sg").await,
        Err(TokenError::ReviewUnavailable(_))
    ));
}

#[tokio::test]
async fn what_is_not_a_jwt_is_refused_without_a_review() {
    let reviewer = Arc::new(Counting {
        answer: Some(review()),
        ..Counting::default()
    });
    let tokens = ServiceAccountTokens::new(reviewer.clone());
    let long = format!("a.{}.c", "b".repeat(TOKEN_MAX_BYTES));
    for token in [
        "",
        "opaque",
        "a.b",
        "a..c",
        "a.b.c.d",
        "a.b c.d",
        "a.b/.c",
        long.as_str(),
    ] {
        assert!(
            matches!(tokens.reviewed(token).await, Err(TokenError::Malformed(_))),
            "{token:.20}"
        );
    }
    assert_eq!(reviewer.calls.load(Ordering::SeqCst), 0);
}

/// An API server that never answers.
#[derive(Debug)]
struct Hung;

#[tonic::async_trait]
impl TokenReviewer for Hung {
    async fn review(&self, _token: &str, _audience: &str) -> Result<Review, String> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_review_without_an_answer_is_unavailable_after_the_timeout() {
    assert_eq!(REVIEW_TIMEOUT, Duration::from_secs(5));
    let timeout = Duration::from_millis(50);
    let tokens = ServiceAccountTokens::new(Arc::new(Hung)).with_timeout(timeout);
    let started = std::time::Instant::now();
    let e = tokens.reviewed("hd.t.sg").await.unwrap_err();
    assert!(matches!(e, TokenError::ReviewUnavailable(_)), "{e}");
    assert!(started.elapsed() >= timeout);
}

#[test]
fn the_cache_is_bounded_and_ages_out() {
    let cache = ReviewCache::default();
    let reviewed = review().reviewed(AUDIENCE).unwrap();
    let now = Instant::now();
    cache.insert("a", reviewed.clone(), now);
    assert_eq!(cache.get("a", now + CACHE_TTL / 2), Some(reviewed.clone()));
    assert_eq!(cache.get("a", now + CACHE_TTL), None);
    for i in 0..CACHE_ENTRIES + 10 {
        cache.insert(&format!("t{i}"), reviewed.clone(), now);
    }
    assert_eq!(cache.len(), CACHE_ENTRIES);
    // A JWT that expired is never kept; one about to expire is kept no longer than it lives.
    use base64::Engine;
    let jwt = |exp: u64| {
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{{\"exp\":{exp}}}"));
        format!("eyJhbGciOiJFUzI1NiJ9.{payload}.sig")
    };
    let fresh = ReviewCache::default();
    fresh.insert(&jwt(1), reviewed.clone(), now);
    assert!(fresh.is_empty());
    let soon = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 5;
    fresh.insert(&jwt(soon), reviewed.clone(), now);
    assert!(fresh.get(&jwt(soon), now).is_some());
    assert!(
        fresh
            .get(&jwt(soon), now + Duration::from_secs(10))
            .is_none()
    );
}
