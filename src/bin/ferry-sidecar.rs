//! `ferry-sidecar`: `ferry sidecar` as a program of its own, the one `ferry up` injects into
//! meshed Pods. Same flags, same code (`ferry::sidecar`); only the sidecar is linked, so each
//! Pod maps a binary a fraction of `ferry`'s size, and its resident pages (read at start,
//! touched by fault-around) are that much fewer (benches/mesh, issue 17).

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use ferry_runtime::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "ferry-sidecar",
    version,
    about = "The ferry mesh sidecar of one Pod: mTLS in and out, authorization, per-request balancing (as `ferry sidecar`)"
)]
struct Cli {
    /// Log line format (filter with RUST_LOG).
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    log_format: LogFormatArg,
    #[command(flatten)]
    sidecar: ferry::sidecar::Args,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match cli.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    if let Err(e) = telemetry::init(format) {
        eprintln!("ferry-sidecar: {e}");
        return ExitCode::FAILURE;
    }
    ferry_runtime::descriptors::raise_nofile_limit();
    let runtime = match ferry::sidecar::runtime(cli.sidecar.workers)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry-sidecar: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let (trigger, shutdown) = ferry_runtime::shutdown::channel();
        tokio::spawn(async move {
            ferry_runtime::shutdown::signal().await;
            tracing::info!("shutting down");
            trigger.trigger();
        });
        ferry::sidecar::run(cli.sidecar, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-sidecar: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_injected_arguments_parse_as_for_ferry_sidecar() {
        // What `ferry up` injects (src/up/program.rs, orchestrator/src/inject.rs), with the
        // Pod's name and namespace as the downward API gives them.
        let cli = Cli::try_parse_from([
            "ferry-sidecar",
            "--log-format",
            "json",
            "--control",
            "https://10.244.0.1:7443",
            "--control-ca",
            "/state/ca.crt",
            "--token-file",
            "/state/sidecars/uid/token",
            "--namespace",
            "shop",
            "--pod",
            "web-0",
        ])
        .unwrap();
        assert!(matches!(cli.log_format, LogFormatArg::Json));
        assert_eq!(cli.sidecar.pod, "web-0");
        assert_eq!(cli.sidecar.workers, 1);
        // No subcommand: `ferry-sidecar sidecar ...` is refused, not taken as a flag's value.
        assert!(Cli::try_parse_from(["ferry-sidecar", "sidecar"]).is_err());
    }
}
