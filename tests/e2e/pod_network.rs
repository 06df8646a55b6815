//! The pod network in netns mode end to end: each Pod in a network namespace of its own on the
//! node bridge, reached on its own IP from the node and through the gateway; containers of one
//! Pod sharing its localhost; the node's nftables table dropping and counting what a Pod sends
//! beyond the node; and everything removed on shutdown, or at the next start after a SIGKILL.
//!
//! These need root (or CAP_NET_ADMIN), `ip` and `nft`: without them each test says why it is
//! skipped. Each test has a pod range of its own (10.201.N.0/24), so they run side by side.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use ferry_orchestrator::ipam::Cidr;
use ferry_orchestrator::network::{Names, PodNetwork, can_create_namespaces};
use serde_json::Value;
use tempfile::TempDir;

use crate::{DEADLINE, Running, eventually, get_json};

/// Whether this machine lets the tests make network namespaces; says why not when it does not.
pub(crate) fn netns_or_skip(test: &str) -> bool {
    match can_create_namespaces() {
        Ok(()) => true,
        Err(why) => {
            eprintln!("skipped {test}: netns mode cannot run here: {why}");
            false
        }
    }
}

pub(crate) fn write(dir: &Path, yaml: &str) {
    let tmp = dir.join(".app.yaml.tmp");
    std::fs::write(&tmp, yaml).unwrap();
    std::fs::rename(tmp, dir.join("app.yaml")).unwrap();
}

/// `ferry up` in process, in netns mode on `pod_cidr` (10.201.N.0/24) and its own service
/// range ([`service_cidr_of`]).
pub(crate) async fn start(yaml: &str, pod_cidr: &str) -> (TempDir, Running) {
    let dir = TempDir::new().unwrap();
    write(dir.path(), yaml);
    let cidr: Cidr = pod_cidr.parse().unwrap();
    let services: Cidr = service_cidr_of(pod_cidr).parse().unwrap();
    let running = Running::start_with(vec![dir.path().to_owned()], |c| {
        c.pod_network = PodNetwork::Netns;
        c.local.cluster.pod_cidr = cidr;
        c.local.cluster.service_cidr = services;
    })
    .await;
    (dir, running)
}

/// The service range of a test's pod range: 10.211.N.0/24 for 10.201.N.0/24 (each instance's
/// service range is routed to its own bridge, so no two may share one).
pub(crate) fn service_cidr_of(pod_cidr: &str) -> String {
    pod_cidr.replacen("10.201.", "10.211.", 1)
}

pub(crate) async fn pods(admin: SocketAddr) -> Vec<Value> {
    get_json(admin, "/api/v1/pods").await["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

pub(crate) fn ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

pub(crate) async fn wait_ready(admin: SocketAddr, n: usize, what: &str) -> Vec<Value> {
    eventually(DEADLINE, what, || async {
        let all = pods(admin).await;
        (all.len() == n && all.iter().all(ready)).then_some(all)
    })
    .await
}

pub(crate) fn field<'a>(pod: &'a Value, pointer: &str) -> &'a str {
    pod.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// A system command, also where `/usr/sbin` is not on the `PATH`.
pub(crate) fn sbin(name: &str) -> Command {
    let found = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.exists());
    Command::new(found.unwrap_or_else(|| PathBuf::from(name)))
}

fn ip(args: &[&str]) -> String {
    let out = sbin("ip").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The instance's network namespaces.
fn namespaces(names: &Names) -> Vec<String> {
    let prefix = format!("ferry-{}-", names.id);
    ip(&["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

fn link_exists(name: &str) -> bool {
    sbin("ip")
        .args(["link", "show", "dev", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// The instance's nftables table as `nft` lists it, if it exists.
fn table(names: &Names) -> Option<String> {
    let out = sbin("nft")
        .args(["list", "table", "inet", &names.table])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The packets the drop rule counted.
fn dropped(names: &Names) -> Option<u64> {
    let table = table(names)?;
    let line = table
        .lines()
        .find(|l| l.contains("counter") && l.contains("pod traffic beyond the node"))?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == "packets")?;
    words.next()?.parse().ok()
}

pub(crate) fn assert_nothing_left(names: &Names) {
    assert_eq!(namespaces(names), Vec::<String>::new(), "namespaces left");
    assert!(!link_exists(&names.bridge), "bridge {} left", names.bridge);
    assert!(table(names).is_none(), "table {} left", names.table);
    let services = sbin("nft")
        .args(["list", "table", "ip", &names.services])
        .output()
        .unwrap();
    assert!(!services.status.success(), "table {} left", names.services);
    let etc: Vec<String> = std::fs::read_dir("/etc/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("ferry-{}-", names.id)))
        .collect();
    assert_eq!(etc, Vec::<String>::new(), "/etc/netns dirs left");
    let veths: Vec<String> = ip(&["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .filter(|l| l.starts_with(&format!("fv{}", &names.id[..5])))
        .map(str::to_owned)
        .collect();
    assert_eq!(veths, Vec::<String>::new(), "veths left");
}

const SAME_PORT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: web
          image: ferry/echo
          ports: [{name: http, containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: shop}
spec:
  rules:
    - host: web.test
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#;

/// Two Pods listen on the same port, each in its namespace on its own IP from the pod range:
/// the node reaches each on its IP (probes too: they turn Ready), and the gateway reaches both
/// through the Ingress. On shutdown every namespace, veth, the bridge and the table go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_listen_on_the_same_port_each_on_its_own_ip() {
    if !netns_or_skip("two_pods_listen_on_the_same_port_each_on_its_own_ip") {
        return;
    }
    let cidr: Cidr = "10.201.1.0/24".parse().unwrap();
    let names = Names::of(cidr);
    let (_dir, running) = start(SAME_PORT, "10.201.1.0/24").await;
    let all = wait_ready(running.admin, 2, "two ready Pods").await;
    let mut seen = Vec::new();
    for pod in &all {
        let (name, pod_ip) = (field(pod, "/metadata/name"), field(pod, "/status/podIP"));
        let addr: IpAddr = pod_ip.parse().unwrap();
        assert!(cidr.contains(addr), "{pod_ip} in {cidr}");
        assert_ne!(pod_ip, "10.201.1.1", "the gateway is the node's");
        assert_eq!(field(pod, "/status/hostIP"), "10.201.1.1");
        let IpAddr::V4(v4) = addr else { panic!() };
        assert!(namespaces(&names).contains(&names.netns(v4)));
        // From the node, through the bridge, on the Pod's own IP.
        let (status, answered) = crate::local::one_request(SocketAddr::new(addr, 8080), pod_ip)
            .await
            .unwrap();
        assert_eq!((status, answered.as_str()), (200, name));
        seen.push(name.to_owned());
    }
    assert_ne!(seen[0], seen[1]);
    assert!(link_exists(&names.bridge));

    // Pod to Pod, across the bridge.
    let ferry = env!("CARGO_BIN_EXE_ferry");
    let other_ip = field(&all[1], "/status/podIP");
    let out = Command::new(ferry)
        .args([
            "exec",
            "-n",
            "shop",
            &seen[0],
            "--admin",
            &running.admin.to_string(),
        ])
        .args([
            "--",
            ferry,
            "load",
            &format!("http://{other_ip}:8080/"),
            "--requests",
            "1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // The gateway reaches both Pods on their IPs.
    let through_gateway = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let through_gateway = &through_gateway;
    eventually(
        DEADLINE,
        "both Pods answer through the gateway",
        || async move {
            let answer = crate::local::one_request(running.http, "web.test").await;
            let mut seen = through_gateway.lock().unwrap();
            if let Ok((200, pod)) = answer {
                seen.insert(pod);
            }
            (seen.len() == 2).then_some(())
        },
    )
    .await;

    running.stop().await;
    assert_nothing_left(&names);
}

/// The seeds' two-container shape: the echo app and a second container that fetches
/// `http://localhost:9000` in the same Pod (its log says so, and its exec readiness probe, run
/// in the Pod's namespace too, does the same). Two replicas use the same localhost port, which
/// only a network per Pod allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_of_a_pod_talk_over_localhost() {
    if !netns_or_skip("containers_of_a_pod_talk_over_localhost") {
        return;
    }
    let ferry = env!("CARGO_BIN_EXE_ferry");
    let yaml = format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: proxy, namespace: shop}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: proxy}}}}
  template:
    metadata: {{labels: {{app: proxy}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: app
          image: ferry/echo
          ports: [{{containerPort: 9000}}]
        - name: fetch
          image: busybox
          command:
            - sh
            - -c
            - until {ferry} load http://localhost:9000/ --requests 1 >/dev/null 2>&1; do sleep 0.2; done; echo fetched localhost; exec sleep 3600
          readinessProbe:
            exec: {{command: [{ferry}, load, "http://localhost:9000/", --requests, "1"]}}
            periodSeconds: 1
"#
    );
    let (_dir, running) = start(&yaml, "10.201.2.0/24").await;
    let all = wait_ready(running.admin, 2, "two ready two-container Pods").await;
    for pod in &all {
        let name = field(pod, "/metadata/name").to_owned();
        let admin = running.admin.to_string();
        eventually(
            DEADLINE,
            &format!("{name}'s fetch container fetched"),
            || {
                let (name, admin) = (name.clone(), admin.clone());
                async move {
                    let out = Command::new(ferry)
                        .args([
                            "logs", &name, "-c", "fetch", "-n", "shop", "--admin", &admin,
                        ])
                        .output()
                        .unwrap();
                    String::from_utf8_lossy(&out.stdout)
                        .contains("fetched localhost")
                        .then_some(())
                }
            },
        )
        .await;
    }
    running.stop().await;
    assert_nothing_left(&Names::of("10.201.2.0/24".parse().unwrap()));
}

/// A Pod sending to 192.0.2.1 (TEST-NET-1, reserved for documentation; nothing else outside is
/// ever tried) is dropped at the node, and the drop rule's counter counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_drops_and_counts_what_a_pod_sends_beyond_it() {
    if !netns_or_skip("the_node_drops_and_counts_what_a_pod_sends_beyond_it") {
        return;
    }
    let ferry = env!("CARGO_BIN_EXE_ferry");
    let yaml = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: outbound, namespace: shop}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: out
      image: busybox
      command: [{ferry}, load, "http://192.0.2.1:80/", --requests, "1", --timeout, 1s]
"#
    );
    let names = Names::of("10.201.3.0/24".parse().unwrap());
    let (_dir, running) = start(&yaml, "10.201.3.0/24").await;
    let rules = table(&names).expect("the table exists while ferry runs");
    assert!(!rules.contains("masquerade"), "{rules}");
    let counted = eventually(DEADLINE, "the drop rule counts a packet", || async {
        dropped(&names).filter(|&n| n > 0)
    })
    .await;
    assert!(counted > 0);
    // And the Pod never got through: its load exits 1 ("cannot connect"), so it restarts.
    let pod = eventually(DEADLINE, "the container failed", || async {
        pods(running.admin).await.into_iter().find(|p| {
            p.pointer("/status/containerStatuses/0/lastState/terminated")
                .is_some()
        })
    })
    .await;
    assert_eq!(
        pod.pointer("/status/containerStatuses/0/lastState/terminated/exitCode"),
        Some(&Value::from(1)),
        "{pod}"
    );
    running.stop().await;
    assert_nothing_left(&names);
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves no `ferry up`
/// holding its range.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The built `ferry up`, logging to a file.
fn spawn_up(dir: &Path, cidr: &str, log: &Path) -> Up {
    let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["up", "-f"])
        .arg(dir)
        .args([
            "--pod-network",
            "netns",
            "--pod-cidr",
            cidr,
            "--service-cidr",
            &service_cidr_of(cidr),
            "--http",
            "127.0.0.1:0",
            "--https",
            "127.0.0.1:0",
            "--dns",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--dns-upstream",
            "127.0.0.1:9",
            "--api",
            "127.0.0.1:0",
        ])
        // The API server's CA and kubeconfig beside the log, never in the user's state dir.
        .arg("--state-dir")
        .arg(log.with_extension("state"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Up(child)
}

/// The admin address from the log's "ferry is up admin=ADDR" line, once it is written.
async fn admin_of(log: &Path, Up(child): &mut Up) -> SocketAddr {
    eventually(DEADLINE, "ferry is up", || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Ok(Some(status)) = child.try_wait() {
            panic!("ferry up exited with {status}: {text}");
        }
        let addr = text
            .lines()
            .find(|l| l.contains("ferry is up"))
            .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("admin=")))
            .and_then(|a| a.parse().ok());
        async move { addr }
    })
    .await
}

/// `ferry up` killed with SIGKILL leaves its namespaces, veths, bridge and table; the next
/// start with the same range removes them, says so, runs its Pods again without an error, and
/// a graceful stop leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_a_killed_ferry_up_are_removed_at_the_next_start() {
    if !netns_or_skip("leftovers_of_a_killed_ferry_up_are_removed_at_the_next_start") {
        return;
    }
    let cidr = "10.201.4.0/24";
    let names = Names::of(cidr.parse().unwrap());
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop}
spec:
  containers:
    - name: web
      image: ferry/echo
      ports: [{containerPort: 8080}]
      # Ready once it listens.
      readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
"#,
    );
    let logs = TempDir::new().unwrap();
    let first_log: PathBuf = logs.path().join("first.log");
    let mut first = spawn_up(dir.path(), cidr, &first_log);
    let admin = admin_of(&first_log, &mut first).await;
    wait_ready(admin, 1, "the Pod of the first ferry").await;
    let left = namespaces(&names);
    assert_eq!(left.len(), 1, "{left:?}");

    first.0.kill().unwrap(); // SIGKILL
    first.0.wait().unwrap();
    assert_eq!(
        namespaces(&names),
        left,
        "a killed ferry leaves its namespace"
    );
    assert!(link_exists(&names.bridge) && table(&names).is_some());

    let second_log = logs.path().join("second.log");
    let mut second = spawn_up(dir.path(), cidr, &second_log);
    let admin = admin_of(&second_log, &mut second).await;
    let text = std::fs::read_to_string(&second_log).unwrap();
    assert!(
        text.contains("removed the pod network a ferry with this --pod-cidr left behind")
            && text.contains(&left[0]),
        "{text}"
    );
    assert!(!text.contains("ERROR"), "{text}");
    let pod = wait_ready(admin, 1, "the Pod of the second ferry").await;
    let pod_ip: IpAddr = field(&pod[0], "/status/podIP").parse().unwrap();
    let (status, _) = crate::local::one_request(SocketAddr::new(pod_ip, 8080), "web")
        .await
        .unwrap();
    assert_eq!(status, 200);

    // SIGTERM: a graceful stop removes it all.
    let term = Command::new("kill")
        .args(["-TERM", &second.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let exited = tokio::task::spawn_blocking(move || second.0.wait().unwrap())
        .await
        .unwrap();
    assert!(exited.success(), "{exited}");
    assert_nothing_left(&names);
}

/// `ferry exec` runs a command in the Pod's network namespace with the container's environment
/// (and exits as the command did); a `hostNetwork: true` Pod keeps the node's network: the
/// node's address, no namespace of its own, and exec runs in the node's network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_in_the_pods_namespace_and_host_network_pods_keep_the_nodes() {
    if !netns_or_skip("exec_runs_in_the_pods_namespace_and_host_network_pods_keep_the_nodes") {
        return;
    }
    use std::os::unix::fs::MetadataExt as _;
    let ferry = env!("CARGO_BIN_EXE_ferry");
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: own, namespace: shop}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: app
      image: ferry/echo
      ports: [{containerPort: 9000}]
      env: [{name: GREETING, value: hello}]
      readinessProbe: {httpGet: {path: /healthz, port: 9000}, periodSeconds: 1}
    - {name: side, image: busybox, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: host, namespace: shop}
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
    - name: app
      image: ferry/echo
      ports: [{containerPort: 8080}]
      readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
"#;
    let cidr = "10.201.5.0/24";
    let names = Names::of(cidr.parse().unwrap());
    let (_dir, running) = start(yaml, cidr).await;
    let all = wait_ready(running.admin, 2, "two ready Pods").await;
    let admin = running.admin.to_string();
    let exec = |pod: &str, extra: &[&str], script: &str| {
        Command::new(ferry)
            .args(["exec", "-n", "shop", pod, "--admin", &admin])
            .args(extra)
            .args(["--", "sh", "-c", script])
            .output()
            .unwrap()
    };

    let own = all
        .iter()
        .find(|p| field(p, "/metadata/name") == "own")
        .unwrap();
    let own_ip = field(own, "/status/podIP");
    let IpAddr::V4(v4) = own_ip.parse().unwrap() else {
        panic!()
    };
    let inode = std::fs::metadata(Path::new("/run/netns").join(names.netns(v4)))
        .unwrap()
        .ino();
    let out = exec(
        "own",
        &[],
        "echo $POD_NAME $GREETING; readlink /proc/self/ns/net; exit 7",
    );
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("own hello\nnet:[{inode}]\n")
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Defaulted container \"app\" out of: app, side"),
        "{out:?}"
    );
    // The other container shares the namespace: localhost is the app's.
    let out = exec(
        "own",
        &["-c", "side"],
        &format!("{ferry} load http://localhost:9000/ --requests 1 >/dev/null && echo reached"),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "reached\n", "{out:?}");
    // And the node, on its address on the pod network (the hostNetwork Pod's echo).
    let out = exec(
        "own",
        &["-c", "side"],
        &format!("{ferry} load http://10.201.5.1:8080/ --requests 1 >/dev/null && echo reached"),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "reached\n", "{out:?}");
    let out = exec("own", &["-c", "nope"], "true");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("container nope is not valid for pod own; choose one of: [app side]"),
        "{out:?}"
    );

    // hostNetwork: the node's address (the gateway), no namespace, the node's network.
    let host = all
        .iter()
        .find(|p| field(p, "/metadata/name") == "host")
        .unwrap();
    assert_eq!(field(host, "/status/podIP"), "10.201.5.1");
    assert_eq!(field(host, "/status/hostIP"), "10.201.5.1");
    assert_eq!(namespaces(&names), vec![names.netns(v4)]);
    let (status, pod) = crate::local::one_request("10.201.5.1:8080".parse().unwrap(), "host")
        .await
        .unwrap();
    assert_eq!((status, pod.as_str()), (200, "host"));
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    let out = exec("host", &[], "readlink /proc/self/ns/net");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        ours.to_string_lossy()
    );

    running.stop().await;
    assert_nothing_left(&names);
}

/// Two instances on one machine: the same range is refused while the first holds it, an
/// overlapping one is refused naming the route (the first's bridge), and a disjoint one runs
/// beside it with names of its own. Started at once from threads, overlapping ranges still
/// never both start.
#[test]
fn a_second_instance_with_an_overlapping_range_is_refused() {
    use ferry_orchestrator::network::{Error, Node};
    if !netns_or_skip("a_second_instance_with_an_overlapping_range_is_refused") {
        return;
    }
    let services = |c: &str| -> Cidr { service_cidr_of(c).parse().unwrap() };
    let first = Node::setup("10.201.6.0/24".parse().unwrap(), services("10.201.6.0/24")).unwrap();
    let same =
        Node::setup("10.201.6.0/24".parse().unwrap(), services("10.201.6.0/24")).unwrap_err();
    assert!(matches!(same, Error::InUse { .. }), "{same}");
    assert!(
        same.to_string()
            .contains("another ferry up runs with this pod range")
    );
    // Only this test's ranges are in 10.201.6.0/23 (the others run beside it).
    let wider =
        Node::setup("10.201.6.0/23".parse().unwrap(), services("10.201.6.0/23")).unwrap_err();
    assert_eq!(
        wider.to_string(),
        format!(
            "--pod-cidr 10.201.6.0/23 overlaps the route 10.201.6.0/24 (dev {}) of this machine: another ferry up, or a network of its own, uses it; choose another --pod-cidr",
            first.names().bridge
        )
    );
    let beside = Node::setup("10.201.7.0/24".parse().unwrap(), services("10.201.7.0/24")).unwrap();
    assert_ne!(beside.names().bridge, first.names().bridge);
    drop((first, beside));

    let racers: Vec<_> = ["10.201.8.0/24", "10.201.8.0/25"]
        .into_iter()
        .map(|c| std::thread::spawn(move || Node::setup(c.parse().unwrap(), services(c))))
        .collect();
    let results: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    let started = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(started, 1, "{results:?}");
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(Error::RouteOverlap { .. }))),
        "{results:?}"
    );
}

/// `auto` tries for real: a user who may not create network namespaces gets loopback mode and
/// a log line saying why, and `--pod-network netns` is refused for them with the reason. Run as
/// `nobody` through `setpriv` (util-linux), so it needs root to start with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_falls_back_to_loopback_where_namespaces_cannot_be_made() {
    let ferry = env!("CARGO_BIN_EXE_ferry");
    let as_nobody = || {
        let mut c = sbin("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", ferry]);
        c
    };
    match as_nobody().arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            eprintln!(
                "skipped auto_falls_back_to_loopback_where_namespaces_cannot_be_made: cannot run ferry as nobody (needs root, and the binary readable by nobody): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!(
                "skipped auto_falls_back_to_loopback_where_namespaces_cannot_be_made: no setpriv: {e}"
            );
            return;
        }
    }
    // An empty manifest directory nobody may read.
    let manifests = TempDir::new().unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(manifests.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let manifests = manifests.path().to_str().unwrap().to_owned();
    // The API server's state, somewhere nobody may write (never the user's state dir).
    let state = TempDir::new().unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let state = state.path().to_str().unwrap().to_owned();
    let common = [
        "up",
        "-f",
        &manifests,
        "--http",
        "127.0.0.1:0",
        "--https",
        "127.0.0.1:0",
        "--dns",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--dns-upstream",
        "127.0.0.1:9",
        "--service-cidr",
        "127.201.9.0/24",
        "--api",
        "127.0.0.1:0",
        "--state-dir",
        &state,
    ];
    let refused = as_nobody()
        .args(common)
        .args(["--pod-network", "netns"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("ferry: --pod-network netns: ferry cannot create network namespaces here: cannot create a network namespace"),
        "{refused:?}"
    );

    let logs = TempDir::new().unwrap();
    let log = logs.path().join("auto.log");
    let child = as_nobody()
        .args(common)
        .args(["--pod-network", "auto"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut up = Up(child);
    let line = eventually(DEADLINE, "the pod network's log line", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Ok(Some(status)) = up.0.try_wait() {
            panic!("ferry up exited with {status}: {text}");
        }
        let line = text
            .lines()
            .find(|l| l.contains("pod network:"))
            .map(str::to_owned);
        async move { line }
    })
    .await;
    assert!(
        line.contains("pod network: Pods on loopback addresses of the host (--pod-network auto: ferry cannot create network namespaces (cannot create a network namespace")
            && line.contains("pod_cidr=127.1.0.0/16"),
        "{line}"
    );
}

/// A Pod whose network cannot be made waits (ContainerCreating) and is tried again with
/// back-off, as the kubelet retries a failed sandbox: here a namespace already holds its name
/// (what a Pod whose teardown failed would leave); the failed try removes it, and the next
/// makes the Pod's network, so the Pod runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_whose_network_fails_is_tried_again() {
    if !netns_or_skip("a_pod_whose_network_fails_is_tried_again") {
        return;
    }
    let cidr = "10.201.10.0/24";
    let names = Names::of(cidr.parse().unwrap());
    let (dir, running) = start("", cidr).await;
    // The first Pod gets the first address after the gateway.
    let taken = names.netns("10.201.10.2".parse().unwrap());
    let made = sbin("ip").args(["netns", "add", &taken]).status().unwrap();
    assert!(made.success());
    write(
        dir.path(),
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: web
      image: ferry/echo
      ports: [{containerPort: 8080}]
      readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
"#,
    );
    let pod = wait_ready(
        running.admin,
        1,
        "the Pod runs after its network is tried again",
    )
    .await;
    assert_eq!(field(&pod[0], "/status/podIP"), "10.201.10.2");
    let inside = ip(&["-n", &taken, "-o", "-4", "addr", "show", "dev", "eth0"]);
    assert!(inside.contains("10.201.10.2/32"), "{inside}");
    let (status, _) = crate::local::one_request("10.201.10.2:8080".parse().unwrap(), "web")
        .await
        .unwrap();
    assert_eq!(status, 200);
    running.stop().await;
    assert_nothing_left(&names);
}
