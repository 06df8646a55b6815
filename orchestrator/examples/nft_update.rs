//! How long `nft -f` takes to write the Services table of netns mode with many endpoints:
//! SERVICES Services of ENDPOINTS endpoints each (default 100 x 100 = 10,000), made anew, then
//! changed by one endpoint turning unready (the round's usual change), then unchanged (which
//! writes nothing). Needs root and `nft`; the table (`ip ferry_bench_services`) is deleted at
//! the end. `cargo run --release -p ferry-orchestrator --example nft_update`.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_orchestrator::network::{Protocol, Ruleset, ServicePort};

const TABLE: &str = "ferry_bench_services";

fn nft(script: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(script.as_bytes())
        .map_err(|e| format!("nft: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(started.elapsed())
}

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), String> {
    let (services, endpoints) = (env("SERVICES", 100), env("ENDPOINTS", 100));
    let pod_cidr = "10.250.0.0/16".parse().map_err(|_| "cidr")?;
    let mut ports: Vec<ServicePort> = (0..services)
        .map(|s| ServicePort {
            namespace: "bench".into(),
            name: format!("svc-{s}"),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            cluster_ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 251, 0, 1)) + s),
            port: 80,
            node_port: None,
            affinity: None,
            endpoints: (0..endpoints)
                .map(|e| {
                    let ip = u32::from(Ipv4Addr::new(10, 250, 0, 2)) + s * endpoints + e;
                    SocketAddrV4::new(Ipv4Addr::from(ip), 8080)
                })
                .collect(),
        })
        .collect();
    let built = Instant::now();
    let first = Ruleset::build(TABLE, "fbr-bench", pod_cidr, &ports);
    let build_time = built.elapsed();
    let script = first.script(None);
    let full = nft(&script)?;
    ports[0].endpoints.pop();
    let second = Ruleset::build(TABLE, "fbr-bench", pod_cidr, &ports);
    let change = nft(&second.script(Some(&first)))?;
    let unchanged = second == Ruleset::build(TABLE, "fbr-bench", pod_cidr, &ports);
    let _ = nft(&format!("delete table ip {TABLE}\n"));
    println!(
        "{} endpoints ({services} Services x {endpoints}): ruleset built in {build_time:?}, {} bytes; \
         nft -f made anew {full:?}; one endpoint unready {change:?}; unchanged writes nothing: {unchanged}",
        services * endpoints,
        script.len()
    );
    Ok(())
}
