//! `WatchAuthority` over the trait method (what tonic calls): the token is checked again as
//! the Pod view changes.

use ferry_model::proto::AuthorityRequest;
use ferry_runtime::subscribe::grpc::identity_server::Identity;
use tokio_stream::StreamExt;

use super::*;

async fn next<S: tokio_stream::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the stream answers within 10 s")
}

#[tokio::test]
async fn the_stream_ends_unauthenticated_once_the_pod_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let pods = PodDirectory::default();
    let mut view = PodView::default();
    view.insert("shop", "web-1", PodRecord::new("uid-1", "web"));
    view.insert("shop", "api-1", PodRecord::new("uid-a", "api"));
    pods.replace(view.clone());
    let (service, tokens) = service(dir.path(), pods.clone());
    let request = tonic::Request::new(AuthorityRequest {
        token: tokens.mint(&claims()),
    });
    let mut stream = Identity::watch_authority(&service, request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut stream).await.unwrap().unwrap().generation, 0);

    // Another Pod goes: the stream carries on, sending nothing new.
    let mut without_api = PodView::default();
    without_api.insert("shop", "web-1", PodRecord::new("uid-1", "web"));
    pods.replace(without_api);
    assert_eq!(rotate::rotate_intermediate(dir.path()).unwrap(), 1);
    service.ca().reload_if_changed().unwrap().expect("reloaded");
    assert_eq!(next(&mut stream).await.unwrap().unwrap().generation, 1);

    // web-1 deleted and made again under its name (another uid): its old token is dead.
    let mut recreated = PodView::default();
    recreated.insert("shop", "web-1", PodRecord::new("uid-2", "web"));
    pods.replace(recreated);
    let refused = next(&mut stream).await.unwrap().unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(
        refused.message().contains("shop/web-1"),
        "{}",
        refused.message()
    );
    assert!(next(&mut stream).await.is_none(), "the stream ended");

    // And a new stream with it is refused at once.
    let Err(again) = Identity::watch_authority(
        &service,
        tonic::Request::new(AuthorityRequest {
            token: tokens.mint(&claims()),
        }),
    )
    .await
    else {
        panic!("a dead token's stream is refused");
    };
    assert_eq!(again.code(), tonic::Code::Unauthenticated);
}
