//! The `ferry` binary: parses the command line and hands each subcommand to its crate.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ferry::get::{self, Resource};
use ferry::up::{ConnectionLimits, Up, UpConfig};
use ferry::workloads;
use ferry_runtime::telemetry::{self, LogFormat};

mod cli;

use cli::*;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match cli.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    if let Err(e) = telemetry::init(format) {
        eprintln!("ferry: {e}");
        return ExitCode::FAILURE;
    }
    // As Go does at start: the soft limit of 1,024 descriptors is far below what the hard limit
    // allows, and every connection, Pod pipe and DNS socket takes one.
    ferry_runtime::descriptors::raise_nofile_limit();
    if let Command::Check {
        paths,
        identity,
        state_dir,
    } = cli.command
    {
        return match (identity, state_dir) {
            (true, Some(dir)) => check_identity(&dir),
            _ => check(paths),
        };
    }
    if let Command::Identity { action } = cli.command {
        return identity(action);
    }
    if let Command::Load(args) = cli.command {
        return load(*args);
    }
    if let Command::Kubeconfig { state } = &cli.command {
        return kubeconfig(state);
    }
    if let Command::Exec {
        pod,
        container,
        target,
        command,
    } = cli.command
    {
        return exec(&pod, container.as_deref(), &target, &command);
    }
    // The gateway runs its workers on current-thread runtimes (the first on this one): no work
    // stealing, no wake-ups across threads. The sidecar takes `--workers` (default one thread).
    let mut builder = match &cli.command {
        Command::Gateway { .. } => tokio::runtime::Builder::new_current_thread(),
        Command::Sidecar(args) => ferry::sidecar::runtime(args.workers),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async_main(cli.command));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `ferry kubeconfig`: prints the kubeconfig `ferry up` keeps in its state directory.
fn kubeconfig(state: &StateDirArg) -> ExitCode {
    let dir = match state.dir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::FAILURE;
        }
    };
    let path = ferry_orchestrator::apiserver::kubeconfig_path(&dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "ferry: {}: {e} (`ferry up --state-dir {}` writes it)",
                path.display(),
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}

fn check_identity(dir: &std::path::Path) -> ExitCode {
    match ferry::identity::check(dir, std::time::SystemTime::now()) {
        Ok((report, 0)) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Ok((report, _)) => {
            print!("{report}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("ferry: {e}");
            ExitCode::FAILURE
        }
    }
}

fn identity(action: cli::IdentityCommand) -> ExitCode {
    let cli::IdentityCommand::Rotate {
        root,
        finish,
        state_dir,
    } = action;
    let rotation = match (root, finish) {
        (false, _) => ferry::identity::Rotation::Intermediate,
        (true, false) => ferry::identity::Rotation::Root,
        (true, true) => ferry::identity::Rotation::FinishRoot,
    };
    match ferry::identity::rotate(&state_dir, rotation) {
        Ok(said) => {
            print!("{said}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferry: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(paths: Vec<PathBuf>) -> ExitCode {
    let problems = ferry_control::check(paths);
    let errors = problems.iter().filter(|p| p.is_error()).count();
    for p in &problems {
        if p.is_error() {
            println!("{p}");
        } else {
            eprintln!("warning: {p}");
        }
    }
    if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `ferry load` runs its own worker threads, so it does not use the shared runtime.
fn load(args: ferry_load::Args) -> ExitCode {
    use std::io::IsTerminal;
    let result = ferry_load::Config::from_args(args).and_then(|mut config| {
        config.progress = std::io::stdout().is_terminal();
        ferry_load::run(&config)
    });
    match result {
        Ok(results) => {
            print!("{}", results.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferry load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A shutdown that also comes once `parent` is no longer this process's parent (it died and
/// this process was re-parented). Polled, since a parent-death signal needs unsafe code between
/// fork and exec; the parent names itself, so a parent gone before this runs is noticed too.
fn with_parent(parent: u32, shutdown: ferry_runtime::Shutdown) -> ferry_runtime::Shutdown {
    let (trigger, both) = ferry_runtime::shutdown::channel();
    tokio::spawn(async move {
        let mut shutdown = shutdown;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                () = shutdown.wait() => break,
                _ = tick.tick() => if std::os::unix::process::parent_id() != parent {
                    tracing::info!(parent, "the parent process is gone; shutting down");
                    break;
                },
            }
        }
        trigger.trigger();
    });
    both
}

/// `ferry exec`: asks the running ferry how, then runs the command here, with the terminal's
/// stdin, stdout and stderr, and exits as it did (128 + the signal when one ended it).
fn exec(
    pod: &str,
    container: Option<&str>,
    target: &Target,
    command: &[std::ffi::OsString],
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ns = target.namespace.as_deref();
    let planned = runtime.block_on(workloads::exec_plan(target.admin, ns, pod, container));
    drop(runtime);
    let plan = match planned {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !plan.defaulted_from.is_empty() {
        eprintln!(
            "Defaulted container {:?} out of: {}",
            plan.container,
            plan.defaulted_from.join(", ")
        );
    }
    let status = workloads::exec_command(&plan, command).map(|mut c| c.status());
    match status {
        Err(e) => {
            eprintln!("ferry: {e}");
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!(
                "ferry: cannot run {:?}: {e}",
                command.first().unwrap_or(&"".into())
            );
            ExitCode::from(127)
        }
        Ok(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt as _;
            let code = status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(1);
            ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
        }
    }
}

/// A command that follows until told to stop (`logs -f`, `rollout status`), stopped by Ctrl-C or
/// SIGTERM as well: `async_main` handles those signals, so they no longer end the process.
async fn until_signal<E>(
    mut shutdown: ferry_runtime::Shutdown,
    command: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), E> {
    tokio::select! {
        result = command => result,
        () = shutdown.wait() => Ok(()),
    }
}

async fn async_main(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    let (trigger, shutdown) = ferry_runtime::shutdown::channel();
    tokio::spawn(async move {
        ferry_runtime::shutdown::signal().await;
        tracing::info!("shutting down");
        trigger.trigger();
    });
    match command {
        Command::Up {
            paths,
            http,
            https,
            dns,
            admin,
            admin_args,
            cluster_domain,
            dns_args,
            l4_args,
            access_log,
            client_timeouts,
            pod_network,
            pod_cidr,
            service_cidr,
            max_pods,
            api_args,
            source_args,
        } => {
            use ferry_orchestrator::network;
            source_args.check()?;
            let connections = ConnectionLimits {
                admin: admin_args.limits(),
                dns_tcp: dns_args.tcp_limits(),
                l4_idle: l4_args.l4_idle_timeout,
                l4_max_connections: l4_args.l4_max_connections as usize,
            };
            let (dns_upstreams, dns_search) = ferry::dns::host_resolver(dns_args.dns_upstream);
            // Every flag but the local cluster's, which each source fills in its own way.
            let state_dir = api_args.state.dir()?;
            let config = |local, pod_network, api| UpConfig {
                paths,
                http,
                https,
                dns,
                dns_upstreams,
                dns_search,
                dns_autopath: dns_args.dns_autopath,
                access_log,
                client_header_timeout: client_timeouts.client_header_timeout,
                keepalive_timeout: client_timeouts.keepalive_timeout,
                admin,
                cluster_domain,
                debounce: Duration::from_millis(100),
                local,
                pod_network,
                connections,
                api,
                mesh_state_dir: Some(state_dir.clone()),
            };
            if source_args.source == SourceArg::Kubernetes {
                // No local cluster: its flags (-f, the pod network and ranges, --api, the L4
                // proxy's) are not used.
                let loopback = network::PodNetwork::Loopback;
                let config = config(ferry_orchestrator::Config::default(), loopback, None);
                let source = ferry::up::kubernetes::Source {
                    kubeconfig: source_args.kubeconfig,
                    publish_address: source_args.publish_address,
                };
                ferry::up::kubernetes::UpKubernetes::build(&config, source)
                    .await?
                    .run(shutdown)
                    .await?;
                return Ok(());
            }
            let mode = match pod_network {
                PodNetworkArg::Auto => network::Mode::Auto,
                PodNetworkArg::Netns => network::Mode::Netns,
                PodNetworkArg::Loopback => network::Mode::Loopback,
            };
            let (choice, service_cidr) = network::choose_with_services(
                mode,
                pod_cidr,
                service_cidr,
                network::can_create_namespaces,
            )?;
            match choice.network {
                network::PodNetwork::Netns => {
                    tracing::info!(pod_cidr = %choice.pod_cidr, "pod network: a network namespace per Pod ({})", choice.why)
                }
                network::PodNetwork::Loopback => {
                    tracing::info!(pod_cidr = %choice.pod_cidr, "pod network: Pods on loopback addresses of the host ({})", choice.why)
                }
            }
            let mut local = ferry_orchestrator::Config::default();
            local.cluster.pod_cidr = choice.pod_cidr;
            local.cluster.service_cidr = service_cidr;
            local.cluster.max_pods = max_pods;
            let api = api_args
                .api
                .0
                .map(|addr| ferry_orchestrator::apiserver::Config {
                    addr,
                    state_dir: state_dir.clone(),
                    kubeconfig: api_args.write_kubeconfig,
                });
            let config = config(local, choice.network, api);
            Up::build(config).await?.run(shutdown).await?;
        }
        Command::Dns {
            snapshot,
            control,
            listen,
            admin,
            cluster_domain,
            dns_args,
            workers,
        } => {
            let tcp = dns_args.tcp_limits();
            let (upstreams, search) = ferry::dns::host_resolver(dns_args.dns_upstream);
            let dns = ferry_dns::Config {
                tcp,
                upstreams,
                search,
                autopath: dns_args.dns_autopath,
                // 0: one per CPU this process may use.
                workers: workers.map_or(0, usize::from),
                ..ferry_dns::Config::new(listen, cluster_domain)
            };
            let config = ferry::dns::DnsConfig {
                source: control.source(snapshot, ferry_runtime::subscribe::Role::Dns)?,
                dns,
                admin,
            };
            ferry::dns::run(config, shutdown).await?;
        }
        Command::Gateway {
            snapshot,
            control,
            http,
            https,
            admin,
            access_log,
            client_timeouts,
            workers,
        } => {
            let workers = workers.map_or_else(
                || std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
                usize::from,
            );
            let config = ferry::gateway::GatewayConfig {
                source: control.source(snapshot, ferry_runtime::subscribe::Role::Gateway)?,
                gateway: ferry_gateway::Config {
                    access_log,
                    client_header_timeout: client_timeouts.client_header_timeout,
                    keepalive_timeout: client_timeouts.keepalive_timeout,
                    workers,
                    ..ferry_gateway::Config::new(http, https)
                },
                admin,
            };
            ferry::gateway::run(config, shutdown).await?;
        }
        Command::Control {
            paths,
            listen,
            state_dir,
            admin,
            cluster_domain,
            source_args,
            identity_args,
        } => {
            source_args.check()?;
            let kubernetes = (source_args.source == SourceArg::Kubernetes).then_some(
                ferry::up::kubernetes::Source {
                    kubeconfig: source_args.kubeconfig,
                    publish_address: source_args.publish_address,
                },
            );
            if kubernetes.is_none() && paths.is_empty() {
                return Err("-f PATH is required (or --source kubernetes)".into());
            }
            if kubernetes.is_some() && !paths.is_empty() {
                return Err("-f is not read with --source kubernetes".into());
            }
            let config = ferry::control::ControlConfig {
                paths,
                kubernetes,
                push: ferry_control::push::PushConfig {
                    identity: identity_args.config()?,
                    cluster_domain,
                    ..ferry_control::push::PushConfig::new(listen, state_dir)
                },
                admin,
                debounce: Duration::from_millis(100),
            };
            ferry::control::run(config, shutdown).await?;
        }
        Command::Get {
            resource,
            output,
            admin,
            namespace,
            all_namespaces: _,
            window,
        } => {
            if resource != Resource::Mesh && (namespace.is_some() || window.is_some()) {
                return Err("-n and --window apply to `ferry get mesh` only: the other lists show every namespace".into());
            }
            if resource == Resource::Mesh {
                let window = window.unwrap_or(Duration::from_secs(1));
                let report =
                    ferry::mesh_top::get(admin, namespace.as_deref(), window, output).await?;
                for warning in &report.warnings {
                    eprintln!("warning: {warning}");
                }
                print!("{}", report.text);
            } else if let Some(workload) = resource.workload() {
                print!("{}", workloads::get(admin, workload, output).await?);
            } else if resource == Resource::Proxies {
                let proxies = ferry::proxies::fetch(admin).await?;
                let now = ferry_runtime::status::now_ms();
                print!("{}", ferry::proxies::render(&proxies, output, now)?);
            } else {
                let snapshot = get::fetch(admin).await?;
                print!("{}", get::render(&snapshot, resource, output)?);
            }
        }
        Command::Logs {
            pod,
            container,
            follow,
            target,
        } => {
            let ns = target.namespace.as_deref();
            let mut out = std::io::stdout();
            let logs = workloads::logs(
                target.admin,
                ns,
                &pod,
                container.as_deref(),
                follow,
                &mut out,
            );
            until_signal(shutdown, logs).await?;
        }
        Command::Scale {
            deployment,
            replicas,
            target,
        } => {
            let ns = target.namespace.as_deref();
            print!(
                "{}",
                workloads::scale(target.admin, ns, &deployment, replicas).await?
            );
        }
        Command::Rollout { action } => match action {
            Rollout::Status {
                deployment,
                timeout,
                target,
            } => {
                let ns = target.namespace.as_deref();
                let mut out = std::io::stdout();
                let status = workloads::status(target.admin, ns, &deployment, timeout, &mut out);
                until_signal(shutdown, status).await?;
            }
            Rollout::History { deployment, target } => {
                let ns = target.namespace.as_deref();
                print!(
                    "{}",
                    workloads::history(target.admin, ns, &deployment).await?
                );
            }
            Rollout::Undo {
                deployment,
                to_revision,
                target,
            } => {
                let ns = target.namespace.as_deref();
                print!(
                    "{}",
                    workloads::undo(target.admin, ns, &deployment, to_revision).await?
                );
            }
        },
        Command::Echo {
            listen,
            name,
            parent_pid,
        } => {
            let pod = std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| name.clone());
            let echo = ferry::echo::Echo::build(listen, name, pod).await?;
            tracing::info!(listen = %echo.local_addr()?, "echo is up");
            let shutdown = match parent_pid {
                Some(parent) => with_parent(parent, shutdown),
                None => shutdown,
            };
            echo.run(shutdown).await;
        }
        Command::Sidecar(args) => ferry::sidecar::run(*args, shutdown).await?,
        Command::Check { .. }
        | Command::Identity { .. }
        | Command::Load(_)
        | Command::Exec { .. }
        | Command::Kubeconfig { .. } => {}
    }
    Ok(())
}
