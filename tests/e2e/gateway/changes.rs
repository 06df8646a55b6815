//! Configuration changes while requests flow: a reload changes routes and keeps open
//! connections and tunnels, hundreds of changes under load fail no request.

use std::fs;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{
    backend, h1, ingress, open_tunnel, request, secret, served_by, service, text, tls_get, up_with,
    upgrade_echo,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_routes_and_keeps_open_connections() {
    let (web, api) = (backend("web").await, backend("api").await);
    let dir = tempfile::tempdir().unwrap();
    let up = up_with(
        dir.path(),
        &[
            ("web.yaml", service("web", &[web.addr.port()])),
            ("api.yaml", service("api", &[api.addr.port()])),
            ("ingress.yaml", ingress(&[("/v1", "web")], false)),
        ],
    )
    .await;
    let mut sender = h1(up.http).await;
    let res = sender
        .send_request(request("shop.example.com", "/v1"))
        .await
        .unwrap();
    assert_eq!(served_by(&text(res).await.1), "web");

    fs::write(
        dir.path().join("ingress.yaml"),
        ingress(&[("/v2", "api")], false),
    )
    .unwrap();
    up.wait_version(2).await;
    // The same keep-alive connection, now on the new routes.
    sender.ready().await.expect("the connection is still open");
    let res = sender
        .send_request(request("shop.example.com", "/v2"))
        .await
        .unwrap();
    assert_eq!(served_by(&text(res).await.1), "api");
    sender.ready().await.unwrap();
    let res = sender
        .send_request(request("shop.example.com", "/v1"))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_changes_under_load_fail_no_request_and_keep_a_tunnel() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (web, ws) = (backend("web").await, upgrade_echo().await);
    let cert = rcgen::generate_simple_self_signed(vec!["shop.example.com".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let up = up_with(
        dir.path(),
        &[
            ("web.yaml", service("web", &[web.addr.port()])),
            ("ws.yaml", service("ws", &[ws.port()])),
            ("tls.yaml", secret(&cert)),
            (
                "ingress.yaml",
                ingress(&[("/", "web"), ("/ws", "ws")], true),
            ),
        ],
    )
    .await;

    // A host without TLS for the plain-HTTP clients and the tunnel (shop.example.com
    // redirects), published straight onto the bus like every change below.
    let base = up.bus.current();
    let mut snapshot = (*base).clone();
    let mut plain = (*snapshot.virtual_hosts[0]).clone();
    plain.host = ferry_model::HostMatch::parse("plain.example.com");
    plain.tls = false;
    snapshot.virtual_hosts.push(Arc::new(plain));
    snapshot.version += 1;
    assert!(up.bus.publish(snapshot.clone()));
    up.wait_version(snapshot.version).await;
    let mut tunnel = open_tunnel(up.http, "plain.example.com", "/ws").await;

    // Clients on keep-alive connections, over TLS (h2) and plain HTTP/1.1, all the while.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (stop, served, addr) = (stop.clone(), served.clone(), up.http);
        clients.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            while !stop.load(Ordering::Relaxed) {
                sender.ready().await.unwrap();
                let res = sender
                    .send_request(request("plain.example.com", "/"))
                    .await
                    .unwrap();
                let (status, body) = text(res).await;
                assert_eq!(status, 200, "{body}");
                served.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let tls_client = {
        let (stop, served, addr) = (stop.clone(), served.clone(), up.https);
        let root = cert.cert.der().clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, body, _, _) =
                    tls_get(addr, "shop.example.com", Some(&root), "/").await;
                assert_eq!(status, 200, "{body}");
                served.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // 300 changes: routes added and removed on both hosts, and the certificate's hosts list
    // rewritten, each a new snapshot the gateway compiles and swaps.
    for i in 0..300u32 {
        let mut next = snapshot.clone();
        next.version += 1;
        for vh in &mut next.virtual_hosts {
            let vh = Arc::make_mut(vh);
            let mut extra = vh.routes[0].clone();
            extra.path = format!("/extra-{i}");
            vh.routes.insert(0, extra);
        }
        if i % 10 == 0 {
            for c in &mut next.certificates {
                Arc::make_mut(c).hosts =
                    vec!["shop.example.com".into(), format!("h{i}.example.com")];
            }
        }
        assert!(up.bus.publish(next.clone()));
        snapshot = next;
        if i % 30 == 0 {
            up.wait_version(snapshot.version).await;
        }
    }
    up.wait_version(snapshot.version).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    tls_client.await.unwrap();
    assert!(
        served.load(Ordering::Relaxed) > 50,
        "the clients ran during the changes"
    );

    // The tunnel opened before all that still carries bytes.
    let mut buf = [0u8; 5];
    tunnel.write_all(b"still").await.unwrap();
    tunnel.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"still");
    // Closed here, or shutdown would wait for it (a tunnel is closed at the drain's end).
    drop(tunnel);
    up.stop().await;
}
