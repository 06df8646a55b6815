//! What one run does: the command-line arguments (`Args`, parsed by clap in the binary) and the
//! checked form the engine runs (`Config`). Every bad input becomes an `Error::Invalid` here,
//! before any connection is opened.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::Error;
use crate::duration;
use crate::target::Target;
use crate::tls::TlsOptions;

#[cfg(test)]
mod tests;

/// `ferry load` on the command line.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// URL to load: http://HOST[:PORT]/PATH or https://...
    #[arg(value_name = "URL")]
    pub url: String,
    /// How long to run (default 10s), e.g. 30s, 500ms, 2m.
    #[arg(short = 'd', long, value_name = "D", value_parser = duration::parse, conflicts_with = "requests")]
    pub duration: Option<Duration>,
    /// Send exactly N requests instead of running for a duration.
    #[arg(short = 'n', long, value_name = "N")]
    pub requests: Option<u64>,
    /// Connections per target.
    #[arg(short = 'c', long, value_name = "C", default_value_t = 10)]
    pub connections: usize,
    /// Open model: a constant total rate in requests per second, latency measured from each
    /// request's intended send time. Without it: closed model, back to back.
    #[arg(short = 'r', long, value_name = "R")]
    pub rate: Option<f64>,
    /// Worker threads (default: the number of CPUs).
    #[arg(short = 't', long, value_name = "T")]
    pub threads: Option<usize>,
    /// Speak HTTP/1.1 with keep-alive (the default).
    #[arg(long, conflicts_with = "h2")]
    pub http1: bool,
    /// Speak HTTP/2: over TLS by ALPN, over plain TCP with prior knowledge (h2c).
    #[arg(long)]
    pub h2: bool,
    /// HTTP/2, closed model: requests in flight per connection.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub streams: usize,
    /// Do not verify the server's certificate.
    #[arg(short = 'k', long)]
    pub insecure: bool,
    /// Verify the server against these PEM CA certificates instead of the system's.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Server name for TLS SNI and verification (default: the URL's host).
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,
    /// A request header, 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'")]
    pub headers: Vec<String>,
    /// Request method.
    #[arg(short = 'm', long, value_name = "M", default_value = "GET")]
    pub method: String,
    /// Request body.
    #[arg(long, value_name = "STRING", conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Request body read from a file.
    #[arg(long, value_name = "F")]
    pub body_file: Option<PathBuf>,
    /// Per-request timeout, also the connect timeout.
    #[arg(long, value_name = "D", value_parser = duration::parse, default_value = "10s")]
    pub timeout: Duration,
    /// Load sent before measuring starts, not recorded.
    #[arg(long, value_name = "D", value_parser = duration::parse, default_value = "0s")]
    pub warmup: Duration,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report with plots to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also load BASELINE_URL, alternating in slices, and report the target's overhead.
    #[arg(long, value_name = "BASELINE_URL")]
    pub compare: Option<String>,
}

/// HTTP/1.1 or HTTP/2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

impl Protocol {
    pub fn alpn(self) -> &'static [u8] {
        match self {
            Protocol::Http1 => b"http/1.1",
            Protocol::Http2 => b"h2",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
        }
    }
}

/// When the measured part of a run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Duration(Duration),
    Requests(u64),
}

/// A checked run.
#[derive(Clone, Debug)]
pub struct Config {
    pub target: Target,
    /// `--compare`: the baseline loaded alternately with the target.
    pub baseline: Option<Target>,
    pub limit: Limit,
    /// Per target.
    pub connections: usize,
    /// HTTP/2 closed model: requests in flight per connection; 1 for HTTP/1.1.
    pub streams: usize,
    pub threads: usize,
    /// Open model: requests per second, in total.
    pub rate: Option<f64>,
    pub protocol: Protocol,
    pub tls: TlsOptions,
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub timeout: Duration,
    pub warmup: Duration,
    pub json: Option<PathBuf>,
    pub html: Option<PathBuf>,
    /// Print a progress line each second (the binary sets it when stdout is a terminal).
    pub progress: bool,
}

/// The limit without `--duration` or `--requests`.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

impl Config {
    pub fn from_args(args: Args) -> Result<Config, Error> {
        let invalid = |m: String| Error::Invalid(m);
        let target = Target::parse(&args.url).map_err(invalid)?;
        let baseline = args
            .compare
            .as_deref()
            .map(Target::parse)
            .transpose()
            .map_err(invalid)?;
        let limit = match (args.duration, args.requests) {
            (Some(_), Some(_)) => {
                return Err(invalid("use --duration or --requests, not both".into()));
            }
            (_, Some(0)) => return Err(invalid("--requests must be at least 1".into())),
            (_, Some(n)) => Limit::Requests(n),
            (Some(d), None) if d.is_zero() => {
                return Err(invalid("--duration must be more than 0".into()));
            }
            (Some(d), None) => Limit::Duration(d),
            (None, None) => Limit::Duration(DEFAULT_DURATION),
        };
        if baseline.is_some() && matches!(limit, Limit::Requests(_)) {
            return Err(invalid(
                "--compare alternates time slices: use it with --duration, not --requests".into(),
            ));
        }
        if args.connections == 0 {
            return Err(invalid("--connections must be at least 1".into()));
        }
        let protocol = if args.h2 {
            Protocol::Http2
        } else {
            Protocol::Http1
        };
        if args.streams == 0 {
            return Err(invalid("--streams must be at least 1".into()));
        }
        if args.streams > 1 && protocol == Protocol::Http1 {
            return Err(invalid(
                "--streams needs --h2: an HTTP/1.1 connection carries one request at a time".into(),
            ));
        }
        let threads = match args.threads {
            Some(0) => return Err(invalid("--threads must be at least 1".into())),
            Some(t) => t,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        // A thread without a connection would only idle.
        let targets = if baseline.is_some() { 2 } else { 1 };
        let threads = threads.min(args.connections * targets);
        if let Some(rate) = args.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(invalid(format!(
                "--rate must be a positive number of requests per second, not {rate}"
            )));
        }
        let method = Method::from_bytes(args.method.as_bytes())
            .map_err(|_| invalid(format!("invalid method {:?}", args.method)))?;
        let mut headers = HeaderMap::new();
        for h in &args.headers {
            let (name, value) = parse_header(h).map_err(invalid)?;
            headers.append(name, value);
        }
        let body = match (args.body, &args.body_file) {
            (Some(b), _) => Bytes::from(b),
            (None, Some(path)) => {
                Bytes::from(std::fs::read(path).map_err(|source| Error::Read {
                    path: path.clone(),
                    source,
                })?)
            }
            (None, None) => Bytes::new(),
        };
        if args.timeout.is_zero() {
            return Err(invalid("--timeout must be more than 0".into()));
        }
        Ok(Config {
            target,
            baseline,
            limit,
            connections: args.connections,
            streams: args.streams,
            threads,
            rate: args.rate,
            protocol,
            tls: TlsOptions {
                insecure: args.insecure,
                cacert: args.cacert,
                sni: args.sni,
            },
            method,
            headers,
            body,
            timeout: args.timeout,
            warmup: args.warmup,
            json: args.json,
            html: args.html,
            progress: false,
        })
    }

    /// The model's name in reports.
    pub fn model(&self) -> &'static str {
        if self.rate.is_some() {
            "open"
        } else {
            "closed"
        }
    }
}

/// `Name: value` → a header; the value may be empty.
pub fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("invalid header {text:?}: expected 'Name: value'"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("invalid header name in {text:?}"))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("invalid header value in {text:?}"))?;
    Ok((name, value))
}
