//! One Pod's side of the pod network: its namespace, its veth pair into the node bridge and
//! its resolv.conf, made and removed with batches of `ip` commands.

use super::*;

/// One Pod's network: its namespace and veth pair, made by [`Sandbox::setup`] and removed by
/// [`Sandbox::teardown`] (or when dropped).
#[derive(Debug)]
pub(crate) struct Sandbox {
    pub(crate) netns: String,
    pub(super) veth: String,
    pub(super) ip: Ipv4Addr,
    pub(super) gateway: Ipv4Addr,
    pub(super) bridge: String,
    pub(super) program: PathBuf,
    /// The Pod's `/etc/resolv.conf` (`None`: the node's), written to `/etc/netns/<netns>/`.
    pub(crate) resolv_conf: Option<String>,
    /// A meshed Pod's interception table and policy route ([`super::interception`]),
    /// installed in its namespace before any container starts.
    pub(crate) interception: Option<super::interception::Install>,
    pub(super) nft: PathBuf,
    pub(super) torn_down: AtomicBool,
}

impl Sandbox {
    /// The `ip -batch` lines run on the node: the namespace, the veth pair with its Pod end
    /// (`eth0`) in the namespace, the node end on the bridge.
    pub(crate) fn node_lines(&self) -> Vec<String> {
        let (netns, veth, bridge) = (&self.netns, &self.veth, &self.bridge);
        vec![
            format!("netns add {netns}"),
            format!("link add {veth} type veth peer name eth0 netns {netns}"),
            format!("link set {veth} master {bridge} up"),
            // A Pod reaching itself through its Service: with br_netfilter the DNATed packet
            // is bridged back out of the port it came in on (kubelet's hairpin-veth mode).
            format!("link set dev {veth} type bridge_slave hairpin on"),
        ]
    }

    /// The `ip -batch` lines run in the namespace: `lo` up, the Pod's address (a /32, as
    /// Calico and the ptp plugin give it), the gateway on the link and the default route via
    /// it. Every packet a Pod sends, to other Pods too, is routed by the node, so the replies
    /// of a connection DNATed to a Pod pass the node's conntrack whether or not bridged
    /// traffic is filtered (br_netfilter).
    pub(crate) fn pod_lines(&self) -> Vec<String> {
        vec![
            "link set lo up".to_owned(),
            format!("addr add {}/32 dev eth0", self.ip),
            "link set eth0 up".to_owned(),
            format!("route add {} dev eth0 scope link", self.gateway),
            format!("route add default via {} dev eth0", self.gateway),
        ]
    }

    /// `/etc/netns/<netns>`, where `ip netns exec` finds the Pod's resolv.conf.
    fn etc_dir(&self) -> PathBuf {
        Path::new(ETC_NETNS).join(&self.netns)
    }

    /// The lines that remove it again (run with `-force`, so each is tried).
    pub(crate) fn teardown_lines(&self) -> Vec<String> {
        vec![
            format!("link del {}", self.veth),
            format!("netns del {}", self.netns),
        ]
    }

    /// Makes the Pod's network; on failure removes what was made (and whatever had its names:
    /// they are this Pod's), so it can be tried again.
    pub(crate) async fn setup(&self) -> Result<(), String> {
        self.torn_down.store(false, Ordering::Release);
        let made = async {
            batch(&self.program, &[], &self.node_lines()).await?;
            batch(&self.program, &["-n", &self.netns], &self.pod_lines()).await?;
            if let Some(install) = &self.interception {
                let nft = self.nft.to_string_lossy();
                pipe(
                    &self.program,
                    &["netns", "exec", &self.netns, &nft, "-f", "-"],
                    &install.nft,
                )
                .await?;
                batch(&self.program, &["-n", &self.netns], &install.routes).await?;
            }
            if let Some(resolv) = &self.resolv_conf {
                let dir = self.etc_dir();
                let path = dir.join("resolv.conf");
                tokio::fs::create_dir_all(&dir)
                    .await
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                tokio::fs::write(&path, resolv)
                    .await
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            Ok(())
        }
        .await;
        if made.is_err() {
            self.teardown().await;
        }
        made
    }

    /// Removes the Pod's network; once.
    pub(crate) async fn teardown(&self) {
        if self.torn_down.swap(true, Ordering::AcqRel) {
            return;
        }
        // Errors are for parts never made or gone already.
        let _ = batch(&self.program, &["-force"], &self.teardown_lines()).await;
        let _ = tokio::fs::remove_dir_all(self.etc_dir()).await;
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !self.torn_down.swap(true, Ordering::AcqRel) {
            let input = self.teardown_lines().join("\n") + "\n";
            let _ = run(&self.program, &["-force", "-batch", "-"], Some(&input));
            let _ = std::fs::remove_dir_all(self.etc_dir());
        }
    }
}

/// Runs `ip <options> -batch -` with the lines on its stdin.
async fn batch(program: &Path, options: &[&str], lines: &[String]) -> Result<(), String> {
    let mut args: Vec<&str> = options.to_vec();
    args.extend(["-batch", "-"]);
    pipe(program, &args, &(lines.join("\n") + "\n")).await
}

/// Runs `program args` with `input` on its stdin; the error shows the command and its stderr.
async fn pipe(program: &Path, args: &[&str], input: &str) -> Result<(), String> {
    use tokio::io::AsyncWriteExt as _;
    let shown = || {
        format!(
            "{} {}: {}",
            program.display(),
            args.join(" "),
            input.trim_end().replace('\n', "; ")
        )
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("`{}`: {e}", shown()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(|e| format!("`{}`: writing its input: {e}", shown()))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("`{}`: {e}", shown()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            shown(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
