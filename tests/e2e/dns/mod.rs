//! Cluster DNS end to end: `ferry up` on manifests, queried over real UDP and TCP sockets. One
//! module per topic; the helpers they share (the test cluster, queries over UDP and TCP, a
//! running `ferry up`) are here.

mod forwarding;
mod kube_system;
mod records;
mod serving;
mod spec;

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::Running;

const CLUSTER: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, "fd00::10"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  ports: [{name: pg, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-1
  namespace: shop
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
endpoints:
- addresses: [10.1.0.1]
  hostname: db-0
- addresses: [10.1.0.2]
- addresses: [10.1.0.3]
  conditions: {ready: false}
ports: [{name: pg, port: 15432, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec:
  type: ExternalName
  externalName: example.com
"#;

fn big_headless(count: usize) -> String {
    let endpoints: String = (1..=count)
        .map(|i| format!("- addresses: [10.2.{}.{}]\n", i / 250, i % 250 + 1))
        .collect();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: big, namespace: shop}}\nspec:\n  clusterIP: None\n  ports: [{{name: http, port: 80}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: big-1\n  namespace: shop\n  labels: {{kubernetes.io/service-name: big}}\naddressType: IPv4\nendpoints:\n{endpoints}ports: [{{name: http, port: 8080}}]\n"
    )
}

fn write_cluster(dir: &Path) {
    fs::write(dir.join("cluster.yaml"), CLUSTER).unwrap();
    fs::write(dir.join("big.yaml"), big_headless(60)).unwrap();
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn question(qname: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), qtype));
    if let Some(payload) = edns {
        let mut e = Edns::new();
        e.set_max_payload(payload);
        m.set_edns(e);
    }
    m
}

/// Sends raw bytes over UDP and waits for one answer.
async fn udp_raw(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

async fn udp(server: SocketAddr, m: &Message) -> Message {
    let bytes = udp_raw(server, &m.to_vec().unwrap())
        .await
        .expect("an answer over UDP");
    let reply = Message::from_vec(&bytes).unwrap();
    assert_eq!(reply.metadata.id, m.metadata.id);
    reply
}

async fn tcp(server: SocketAddr, m: &Message) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let bytes = m.to_vec().unwrap();
    stream.write_u16(bytes.len() as u16).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

pub async fn ask(server: SocketAddr, qname: &str, qtype: RecordType) -> Message {
    udp(server, &question(qname, qtype, None)).await
}

pub fn data(m: &Message) -> Vec<String> {
    let mut out: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    out.sort();
    out
}

async fn running(dir: &Path) -> Running {
    let up = Running::start(vec![dir.to_owned()]).await;
    up.wait_version(1).await;
    up
}

/// A port free for both UDP and TCP on 127.0.0.1, for a server that must know it in advance.
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
