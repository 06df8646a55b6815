use clap::Parser;

use super::*;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
    let mut argv = vec![
        "sidecar",
        "--control",
        "https://127.0.0.1:7443",
        "--control-ca",
        "ca.crt",
        "--join-token-file",
        "join-token",
        "--namespace",
        "shop",
        "--pod",
        "web-0",
    ];
    argv.extend_from_slice(extra);
    Cli::try_parse_from(argv).map(|c| c.args)
}

#[test]
fn the_pod_token_means_certificates_from_the_control_plane() {
    let args = parse(&["--token-file", "token"]).unwrap();
    assert_eq!(
        credential_source(&args).unwrap(),
        CredentialSource::Control(&PathBuf::from("token"))
    );
    let args = parse(&[
        "--certificate",
        "a.crt",
        "--key",
        "a.key",
        "--trust-bundle",
        "b.crt",
    ])
    .unwrap();
    assert!(matches!(
        credential_source(&args).unwrap(),
        CredentialSource::Files { .. }
    ));
}

#[test]
fn neither_or_both_ways_to_credentials_is_a_clear_error() {
    let neither = parse(&[]).unwrap();
    let e = credential_source(&neither).unwrap_err();
    assert!(
        e.contains("--token-file") && e.contains("--certificate"),
        "{e}"
    );
    let both = parse(&[
        "--token-file",
        "token",
        "--certificate",
        "a.crt",
        "--key",
        "a.key",
        "--trust-bundle",
        "b.crt",
    ])
    .unwrap_err();
    assert!(both.to_string().contains("cannot be used with"), "{both}");
    let partial = parse(&["--certificate", "a.crt"]).unwrap_err();
    assert!(partial.to_string().contains("--key"), "{partial}");
}

#[test]
fn an_empty_or_missing_token_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("token");
    std::fs::write(&empty, " \n").unwrap();
    let e = read_token("--token-file", &empty).unwrap_err();
    assert!(e.contains("--token-file") && e.contains("empty"), "{e}");
    let missing = dir.path().join("absent");
    let e = read_token("--join-token-file", &missing).unwrap_err();
    assert!(
        e.contains("--join-token-file") && e.contains("absent"),
        "{e}"
    );
    std::fs::write(&empty, "v1.abc.def\n").unwrap();
    assert_eq!(read_token("--token-file", &empty).unwrap(), "v1.abc.def");
}

#[test]
fn one_worker_is_a_current_thread_runtime_and_more_are_a_pool() {
    use tokio::runtime::RuntimeFlavor;
    let args = parse(&["--token-file", "token"]).unwrap();
    assert_eq!(args.workers, 1);
    let one = runtime(args.workers).enable_all().build().unwrap();
    assert_eq!(one.handle().runtime_flavor(), RuntimeFlavor::CurrentThread);
    let args = parse(&["--token-file", "token", "--workers", "3"]).unwrap();
    let three = runtime(args.workers).enable_all().build().unwrap();
    assert_eq!(three.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
    assert_eq!(three.metrics().num_workers(), 3);
    let e = parse(&["--token-file", "token", "--workers", "0"]).unwrap_err();
    assert!(e.to_string().contains("--workers"), "{e}");
}
