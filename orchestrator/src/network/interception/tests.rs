use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::*;

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

const NODE: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);

#[test]
fn ports_and_ranges_are_read_and_bad_values_name_the_annotation() {
    assert_eq!(
        ports("a", " 25, 8000-8100,25 ,"),
        Ok(vec![PortRange(25, 25), PortRange(8000, 8100)])
    );
    assert_eq!(ports("a", ""), Ok(Vec::new()));
    for bad in ["0", "70000", "http", "90-80", "1-", "-5"] {
        let e = ports(SKIP_INBOUND_ANNOTATION, bad).expect_err(bad);
        assert!(
            e.starts_with("annotation ferry.dev/skip-inbound-ports: "),
            "{bad}: {e}"
        );
    }
    let e = Interception::of(
        Some(&annotations(&[(SKIP_OUTBOUND_ANNOTATION, "53,x")])),
        NODE,
        Vec::new(),
    )
    .expect_err("a bad annotation");
    assert!(
        e.contains("ferry.dev/skip-outbound-ports") && e.contains("\"x\""),
        "{e}"
    );
}

#[test]
fn the_table_redirects_tcp_both_ways_with_its_exceptions() {
    let i = Interception::of(
        Some(&annotations(&[
            (SKIP_INBOUND_ANNOTATION, "7777"),
            (SKIP_OUTBOUND_ANNOTATION, "5432,9000-9100"),
        ])),
        NODE,
        vec![8080, 8080, 9090],
    )
    .expect("good annotations");
    assert_eq!(
        i.script(),
        "table inet ferry_mesh {}\n\
         delete table inet ferry_mesh\n\
         table inet ferry_mesh {\n\
         \tchain inbound {\n\
         \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
         \t\tiifname \"lo\" accept\n\
         \t\ttcp dport { 4143, 4191 } accept comment \"the sidecar's own\"\n\
         \t\tip saddr 10.244.0.1 tcp dport { 8080, 9090 } accept comment \"the kubelet's probes of the app\"\n\
         \t\ttcp dport { 7777 } accept comment \"ferry.dev/skip-inbound-ports\"\n\
         \t\tmeta l4proto tcp redirect to :4143\n\
         \t}\n\
         \tchain outbound {\n\
         \t\ttype nat hook output priority -100; policy accept;\n\
         \t\tmeta mark 0x00666572 accept comment \"the sidecar's own connections\"\n\
         \t\tip daddr 127.0.0.0/8 accept\n\
         \t\toifname \"lo\" accept\n\
         \t\tip daddr 10.244.0.1 tcp dport 7443 accept comment \"the control plane\"\n\
         \t\ttcp dport { 5432, 9000-9100 } accept comment \"ferry.dev/skip-outbound-ports\"\n\
         \t\tmeta l4proto tcp redirect to :4140\n\
         \t}\n\
         \tchain client_address {\n\
         \t\ttype route hook output priority mangle; policy accept;\n\
         \t\tmeta mark 0x00666572 oifname \"lo\" ip saddr != 127.0.0.0/8 ct state new ct mark set 0x00666573 comment \"the sidecar's connection to the app from its client's address\"\n\
         \t\tct direction reply ct mark 0x00666573 meta mark set 0x00666573 comment \"the app's replies to it: routed back to the sidecar\"\n\
         \t}\n\
         \tchain client_replies {\n\
         \t\ttype filter hook prerouting priority mangle; policy accept;\n\
         \t\tiifname \"lo\" ct direction reply ct mark 0x00666573 meta mark set 0x00666573\n\
         \t}\n\
         }\n"
    );
    assert_eq!(
        i.install().routes,
        [
            "rule add fwmark 0x666573 lookup 4143",
            "route add local 0.0.0.0/0 dev lo table 4143"
        ]
    );
}

#[test]
fn without_annotations_or_probes_only_the_sidecars_ports_are_exempt() {
    let script = Interception::of(None, NODE, Vec::new())
        .expect("no annotations")
        .script();
    assert!(!script.contains("probes"), "{script}");
    assert!(!script.contains("skip"), "{script}");
    assert!(script.contains("meta l4proto tcp redirect to :4143"));
    assert!(script.contains("meta l4proto tcp redirect to :4140"));
}

/// Listens on `port` in a namespace and says where the first connection landed and what its
/// original destination was (`SO_ORIGINAL_DST`; `none` where no NAT ever looked at it).
const SERVE: &str = r#"
import socket, struct, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(1)
s.settimeout(20)
print("listening", flush=True)
c, _ = s.accept()
local = "%s:%d" % c.getsockname()
try:
    d = c.getsockopt(socket.SOL_IP, 80, 16)
    orig = "%s:%d" % (socket.inet_ntoa(d[4:8]), struct.unpack("!H", d[2:4])[0])
except OSError:
    orig = "none"
print(local, orig, flush=True)
c.close()
"#;

/// Connects, with `SO_MARK` when a mark is given, and waits for the listener to close.
const CONNECT: &str = r#"
import socket, sys
s = socket.socket()
if len(sys.argv) > 3:
    s.setsockopt(socket.SOL_SOCKET, 36, int(sys.argv[3]))
s.settimeout(5)
s.connect((sys.argv[1], int(sys.argv[2])))
# Held open until the listener has looked at it.
s.recv(1)
print("connected")
"#;

/// Accepts one connection on `port` and sends the connection's peer address back, as an app
/// that records who called it.
const APP: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(1)
s.settimeout(20)
print("listening", flush=True)
c, peer = s.accept()
c.sendall(("%s:%d" % peer).encode())
c.close()
print("%s:%d" % peer, flush=True)
"#;

/// Connects as the sidecar does to its app: marked, from another address (IP_TRANSPARENT,
/// bound to argv[1]); prints what the app answered.
const FROM_CLIENT: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, 36, int(sys.argv[4]))
s.setsockopt(socket.SOL_IP, 19, 1)
s.bind((sys.argv[1], 0))
s.settimeout(5)
s.connect((sys.argv[2], int(sys.argv[3])))
print(s.recv(100).decode(), flush=True)
"#;

/// Two namespaces joined by a veth pair, removed when dropped.
struct Pair {
    ip: PathBuf,
    names: [String; 2],
}

impl Pair {
    fn exec(&self, ns: usize, argv: &[&str]) -> Command {
        let mut c = Command::new(&self.ip);
        c.args(["netns", "exec", &self.names[ns]]).args(argv);
        c
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new(&self.ip).args(args).output().expect("ip runs");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A listener in namespace `ns`, once it listens.
    fn serve(&self, ns: usize, port: u16) -> (Child, BufReader<std::process::ChildStdout>) {
        let mut child = self
            .exec(ns, &["python3", "-c", SERVE, &port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut out = BufReader::new(child.stdout.take().expect("its stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("a line");
        assert_eq!(line.trim(), "listening");
        (child, out)
    }

    /// What the app on `port` in namespace `ns` answers a connection made from `from` to
    /// `to` the way the sidecar makes it; `None` when it got no answer.
    fn connect_from(&self, ns: usize, from: &str, to: &str, port: u16) -> Option<String> {
        let (port, mark) = (port.to_string(), ferry_model::mesh::SOCKET_MARK.to_string());
        let out = self
            .exec(ns, &["python3", "-c", FROM_CLIENT, from, to, &port, &mark])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// An app in namespace `ns` that answers with its peer's address, once it listens.
    fn app(&self, ns: usize, port: u16) -> (Child, BufReader<std::process::ChildStdout>) {
        let mut child = self
            .exec(ns, &["python3", "-c", APP, &port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut out = BufReader::new(child.stdout.take().expect("its stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("a line");
        assert_eq!(line.trim(), "listening");
        (child, out)
    }

    fn connect(&self, ns: usize, to: &str, port: u16, mark: Option<u32>) -> bool {
        let (port, mark) = (port.to_string(), mark.map(|m| m.to_string()));
        let mut argv = vec!["python3", "-c", CONNECT, to, &port];
        argv.extend(mark.as_deref());
        self.exec(ns, &argv)
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = Command::new(&self.ip).args(["netns", "del", ns]).status();
        }
    }
}

/// What a listener saw: where its connection landed and its original destination.
fn seen(server: (Child, BufReader<std::process::ChildStdout>)) -> String {
    let (mut child, mut out) = server;
    let mut line = String::new();
    let _ = out.read_line(&mut line);
    let _ = child.kill();
    let _ = child.wait();
    line.trim().to_owned()
}

/// Two namespaces, `pod` (10.250.0.1) and `peer` (10.250.0.2), the pod's with the table and
/// the policy route of `interception`; `None` (and why, printed) where that cannot be made.
fn pod_and_peer(test: &str, tag: &str, interception: &Interception) -> Option<Pair> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped {test}: network namespaces and nft need root");
        return None;
    }
    let (Some(ip), Some(nft)) = (
        crate::network::find_program("ip"),
        crate::network::find_program("nft"),
    ) else {
        eprintln!("skipped {test}: needs the ip and nft commands (iproute2, nftables)");
        return None;
    };
    if Command::new("python3").arg("-V").output().is_err() {
        eprintln!("skipped {test}: needs python3 for its sockets");
        return None;
    }
    let id = std::process::id();
    let pair = Pair {
        ip,
        names: [
            format!("ferry-t-{tag}-{id}"),
            format!("ferry-t-{tag}p-{id}"),
        ],
    };
    let [pod, peer] = &pair.names;
    pair.ip(&["netns", "add", pod]);
    pair.ip(&["netns", "add", peer]);
    pair.ip(&[
        "-n", pod, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", peer,
    ]);
    for (ns, addr) in [(pod, "10.250.0.1/24"), (peer, "10.250.0.2/24")] {
        pair.ip(&["-n", ns, "addr", "add", addr, "dev", "eth0"]);
        pair.ip(&["-n", ns, "link", "set", "eth0", "up"]);
        pair.ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    let install = interception.install();
    let nft = nft.display().to_string();
    let mut child = pair
        .exec(0, &[&nft, "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft runs");
    std::io::Write::write_all(
        &mut child.stdin.take().expect("its stdin"),
        install.nft.as_bytes(),
    )
    .expect("the script written");
    assert!(
        child.wait().expect("nft ends").success(),
        "nft took the table"
    );
    for line in &install.routes {
        let args: Vec<&str> = ["-n", pod.as_str()]
            .into_iter()
            .chain(line.split(' '))
            .collect();
        pair.ip(&args);
    }
    Some(pair)
}

/// The kernel's own word: with the table in a Pod's namespace, the app's outbound TCP lands
/// on the outbound port and inbound TCP on the inbound port, each with its original
/// destination; the sidecar's marked sockets and the skipped ports are left alone.
#[test]
fn the_kernel_redirects_and_keeps_the_original_destination() {
    let test = "the_kernel_redirects_and_keeps_the_original_destination";
    let interception = Interception::of(
        Some(&annotations(&[
            (SKIP_INBOUND_ANNOTATION, "7777"),
            (SKIP_OUTBOUND_ANNOTATION, "9999"),
        ])),
        Ipv4Addr::new(10, 250, 0, 3),
        Vec::new(),
    )
    .expect("good annotations");
    let Some(pair) = pod_and_peer(test, "mesh", &interception) else {
        return;
    };

    // The app connects to another Pod: the outbound listener has it, to the original address.
    let outbound = pair.serve(0, ferry_model::mesh::OUTBOUND_PORT);
    assert!(pair.connect(0, "10.250.0.2", 8080, None));
    assert_eq!(seen(outbound), "127.0.0.1:4140 10.250.0.2:8080");

    // The sidecar's own (marked) connection reaches the peer itself.
    let direct = pair.serve(1, 8080);
    assert!(pair.connect(0, "10.250.0.2", 8080, Some(ferry_model::mesh::SOCKET_MARK)));
    assert_eq!(seen(direct), "10.250.0.2:8080 none");

    // A skipped outbound port too (nothing listens on 4140 now: a redirect would be refused).
    let skipped = pair.serve(1, 9999);
    assert!(pair.connect(0, "10.250.0.2", 9999, None));
    assert_eq!(seen(skipped), "10.250.0.2:9999 none");

    // A client reaching the Pod lands on the inbound port.
    let inbound = pair.serve(0, ferry_model::mesh::INBOUND_PORT);
    assert!(pair.connect(1, "10.250.0.1", 8080, None));
    assert_eq!(seen(inbound), "10.250.0.1:4143 10.250.0.1:8080");

    // A skipped inbound port reaches the app's own listener (nothing on 4143 now).
    let app = pair.serve(0, 7777);
    assert!(pair.connect(1, "10.250.0.1", 7777, None));
    assert_eq!(seen(app), "10.250.0.1:7777 10.250.0.1:7777");
    // And a port not skipped, with no sidecar listening, is refused rather than let through.
    let app = pair.serve(0, 8081);
    assert!(
        !pair.connect(1, "10.250.0.1", 8081, None),
        "redirected to the absent sidecar"
    );
    let (mut child, _) = app;
    let _ = child.kill();
    let _ = child.wait();
}

/// The kernel's own word on the real client address: the sidecar's connection to its app,
/// made from the client's address, reaches the app (which sees that address) and the app's
/// replies come back to the sidecar instead of leaving for the real client; the Pod's other
/// traffic is redirected as before.
#[test]
fn the_app_sees_the_clients_address_and_its_replies_reach_the_sidecar() {
    let test = "the_app_sees_the_clients_address_and_its_replies_reach_the_sidecar";
    let interception =
        Interception::of(None, Ipv4Addr::new(10, 250, 0, 3), Vec::new()).expect("no annotations");
    let Some(pair) = pod_and_peer(test, "addr", &interception) else {
        return;
    };
    // The sidecar in the Pod connects to its app from the peer's address.
    let (mut app, mut app_out) = pair.app(0, 8080);
    let answer = pair.connect_from(0, "10.250.0.2", "10.250.0.1", 8080);
    let mut line = String::new();
    let _ = app_out.read_line(&mut line);
    let _ = app.kill();
    let _ = app.wait();
    let answer = answer.expect("the app's reply reached the sidecar");
    assert!(answer.starts_with("10.250.0.2:"), "{answer}");
    assert_eq!(line.trim(), answer, "the app saw the client's address");

    // The peer itself is unaffected: its own connection to the Pod is still redirected to
    // the inbound port, and the Pod's app still reaches the peer through the outbound port.
    let inbound = pair.serve(0, ferry_model::mesh::INBOUND_PORT);
    assert!(pair.connect(1, "10.250.0.1", 8080, None));
    assert_eq!(seen(inbound), "10.250.0.1:4143 10.250.0.1:8080");
    let outbound = pair.serve(0, ferry_model::mesh::OUTBOUND_PORT);
    assert!(pair.connect(0, "10.250.0.2", 8080, None));
    assert_eq!(seen(outbound), "127.0.0.1:4140 10.250.0.2:8080");
    // And the sidecar's own marked connection to the peer goes out to it, not to `lo`.
    let direct = pair.serve(1, 8080);
    assert!(pair.connect(0, "10.250.0.2", 8080, Some(ferry_model::mesh::SOCKET_MARK)));
    assert_eq!(seen(direct), "10.250.0.2:8080 none");
}
