use super::*;
use ferry::up::ConnectionLimits;

/// The flags' defaults are the parts' own.
#[test]
fn connection_flags_default_to_the_parts_defaults() {
    let cli = Cli::try_parse_from(["ferry", "up"]).unwrap();
    let Command::Up {
        admin_args,
        dns_args,
        l4_args,
        ..
    } = cli.command
    else {
        panic!("not up");
    };
    let defaults = ConnectionLimits::default();
    assert_eq!(admin_args.limits(), defaults.admin);
    assert_eq!(dns_args.tcp_limits(), defaults.dns_tcp);
    assert_eq!(l4_args.l4_idle_timeout, defaults.l4_idle);
    assert_eq!(
        l4_args.l4_max_connections as usize,
        defaults.l4_max_connections
    );
}

/// `--pod-network` is auto unless named, and `--pod-cidr` and `--service-cidr` have no
/// defaults of their own: the mode chosen gives them.
#[test]
fn the_pod_network_is_auto_unless_named_and_its_ranges_follow_the_mode() {
    let cli = Cli::try_parse_from(["ferry", "up"]).unwrap();
    let Command::Up {
        pod_network,
        pod_cidr,
        service_cidr,
        ..
    } = cli.command
    else {
        panic!("not up");
    };
    assert!(matches!(pod_network, PodNetworkArg::Auto));
    assert_eq!((pod_cidr, service_cidr), (None, None));
    use ferry_orchestrator::network::{PodNetwork, default_service_cidr};
    assert_eq!(
        default_service_cidr(PodNetwork::Netns).to_string(),
        "10.96.0.0/16"
    );
    assert_eq!(
        default_service_cidr(PodNetwork::Loopback).to_string(),
        "127.2.0.0/16"
    );
    let cli = Cli::try_parse_from([
        "ferry",
        "up",
        "--pod-network",
        "netns",
        "--pod-cidr",
        "10.9.0.0/16",
    ])
    .unwrap();
    let Command::Up {
        pod_network,
        pod_cidr,
        ..
    } = cli.command
    else {
        panic!("not up");
    };
    assert!(matches!(pod_network, PodNetworkArg::Netns));
    assert_eq!(pod_cidr, Some("10.9.0.0/16".parse().unwrap()));
    let err = Cli::try_parse_from(["ferry", "up", "--pod-network", "bridge"]).unwrap_err();
    assert!(
        err.to_string()
            .contains("possible values: auto, netns, loopback"),
        "{err}"
    );
}

/// `ferry exec` takes the command after `--`, its own flags before.
#[test]
fn exec_takes_the_command_after_the_double_dash() {
    let cli = Cli::try_parse_from([
        "ferry",
        "exec",
        "-n",
        "shop",
        "web-1",
        "-c",
        "app",
        "--",
        "sh",
        "-c",
        "echo -n hi",
    ])
    .unwrap();
    let Command::Exec {
        pod,
        container,
        target,
        command,
    } = cli.command
    else {
        panic!("not exec");
    };
    assert_eq!((pod.as_str(), container.as_deref()), ("web-1", Some("app")));
    assert_eq!(target.namespace.as_deref(), Some("shop"));
    assert_eq!(command, ["sh", "-c", "echo -n hi"]);
    assert!(
        Cli::try_parse_from(["ferry", "exec", "web-1"]).is_err(),
        "no command"
    );
}

#[test]
fn the_api_flags_default_to_6443_and_the_state_dir() {
    let cli = Cli::try_parse_from(["ferry", "up"]).unwrap();
    let Command::Up { api_args, .. } = cli.command else {
        panic!("not up");
    };
    assert_eq!(
        api_args.api,
        ApiAddr(Some("127.0.0.1:6443".parse().unwrap()))
    );
    assert_eq!(api_args.write_kubeconfig, None);
    assert_eq!(api_args.state.state_dir, None);
    let cli = Cli::try_parse_from([
        "ferry",
        "up",
        "--api",
        "127.0.0.1:0",
        "--state-dir",
        "/tmp/s",
        "--write-kubeconfig",
        "/tmp/k",
    ])
    .unwrap();
    let Command::Up { api_args, .. } = cli.command else {
        panic!("not up");
    };
    assert_eq!(api_args.state.dir(), Ok(PathBuf::from("/tmp/s")));
    assert_eq!(api_args.write_kubeconfig, Some(PathBuf::from("/tmp/k")));
    let cli = Cli::try_parse_from(["ferry", "kubeconfig", "--state-dir", "/tmp/s"]).unwrap();
    let Command::Kubeconfig { state } = cli.command else {
        panic!("not kubeconfig");
    };
    assert_eq!(state.dir(), Ok(PathBuf::from("/tmp/s")));
    // `none` serves no API (a machine whose 6443 is taken, by k3s say).
    let cli = Cli::try_parse_from(["ferry", "up", "--api", "none"]).unwrap();
    let Command::Up { api_args, .. } = cli.command else {
        panic!("not up");
    };
    assert_eq!(api_args.api, ApiAddr(None));
    let err = Cli::try_parse_from(["ferry", "up", "--api", "6443"]).unwrap_err();
    assert!(err.to_string().contains("or none"), "{err}");
}

#[test]
fn durations_read_as_nginx_writes_them_and_never_zero() {
    assert_eq!(positive_duration("60s"), Ok(Duration::from_secs(60)));
    assert_eq!(positive_duration("75"), Ok(Duration::from_secs(75)));
    assert_eq!(positive_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(positive_duration("2m"), Ok(Duration::from_secs(120)));
    let zero = positive_duration("0s").unwrap_err();
    assert!(zero.contains("more than zero"), "{zero}");
    let junk = positive_duration("soon").unwrap_err();
    assert!(junk.contains("invalid duration"), "{junk}");
}

#[test]
fn zero_timeouts_are_refused() {
    let err = Cli::try_parse_from(["ferry", "up", "--dns-tcp-idle-timeout", "0s"]).unwrap_err();
    assert!(err.to_string().contains("must be more than zero"), "{err}");
    let err = Cli::try_parse_from([
        "ferry",
        "dns",
        "--snapshot",
        "s.json",
        "--dns-tcp-max-connections",
        "0",
    ])
    .unwrap_err();
    assert!(err.to_string().contains("dns-tcp-max-connections"), "{err}");
    let err = Cli::try_parse_from(["ferry", "up", "--l4-max-connections", "0"]).unwrap_err();
    assert!(err.to_string().contains("l4-max-connections"), "{err}");
}

#[test]
fn a_part_alone_takes_a_snapshot_file_or_a_control_plane_with_its_ca_and_token() {
    for part in ["gateway", "dns"] {
        let err = Cli::try_parse_from(["ferry", part]).unwrap_err();
        assert!(err.to_string().contains("--snapshot"), "{err}");
        let err = Cli::try_parse_from(["ferry", part, "--control", "https://c:7443"]).unwrap_err();
        assert!(err.to_string().contains("--control-ca"), "{err}");
        let err = Cli::try_parse_from([
            "ferry",
            part,
            "--snapshot",
            "s.json",
            "--control",
            "https://c:7443",
            "--control-ca",
            "ca.crt",
            "--token-file",
            "t",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("cannot be used with"), "{err}");
        Cli::try_parse_from([
            "ferry",
            part,
            "--control",
            "https://c:7443",
            "--control-ca",
            "ca.crt",
            "--token-file",
            "t",
        ])
        .unwrap();
    }
    let err = Cli::try_parse_from(["ferry", "control", "-f", "m"]).unwrap_err();
    assert!(err.to_string().contains("--state-dir"), "{err}");
}

#[test]
fn control_args_read_the_ca_and_the_token_and_name_the_file_they_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), "CA").unwrap();
    std::fs::write(dir.path().join("join-token"), "abc\n").unwrap();
    let args = |token: &str| ControlArgs {
        control: Some("https://c:7443".parse().unwrap()),
        control_ca: Some(dir.path().join("ca.crt")),
        token_file: Some(dir.path().join(token)),
        name: Some("edge-1".to_owned()),
        node: None,
    };
    let Ok(ferry::alone::SnapshotSource::Control(config)) =
        args("join-token").source(None, ferry_runtime::subscribe::Role::Gateway)
    else {
        panic!("a control source");
    };
    assert_eq!(
        (config.token.as_str(), config.name.as_str()),
        ("abc", "edge-1")
    );
    assert_eq!(config.ca_pem, b"CA");
    let err = args("missing")
        .source(None, ferry_runtime::subscribe::Role::Gateway)
        .unwrap_err();
    assert!(
        err.contains("--token-file") && err.contains("missing"),
        "{err}"
    );
}

/// `ferry get mesh` (or `top`) takes a namespace or -A, and a window.
#[test]
fn get_mesh_takes_a_namespace_and_a_window() {
    let cli =
        Cli::try_parse_from(["ferry", "get", "top", "-n", "shop", "--window", "500ms"]).unwrap();
    let Command::Get {
        resource,
        namespace,
        window,
        ..
    } = cli.command
    else {
        panic!("not get");
    };
    assert_eq!(resource, Resource::Mesh);
    assert_eq!(namespace.as_deref(), Some("shop"));
    assert_eq!(window, Some(Duration::from_millis(500)));
    assert!(Cli::try_parse_from(["ferry", "get", "mesh", "-n", "a", "-A"]).is_err());
    assert!(Cli::try_parse_from(["ferry", "get", "mesh", "--window", "soon"]).is_err());
}
