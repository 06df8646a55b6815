//! The crate's one error: each says what went wrong in words a user can act on.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command-line input: a URL, a duration, a header, a combination of options.
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("cannot connect to {url} ({addr}): {message}")]
    Connect {
        url: String,
        addr: SocketAddr,
        message: String,
    },
    #[error("TLS with {url} failed: {message}")]
    Tls { url: String, message: String },
    #[error("{url}: {message}")]
    Protocol { url: String, message: String },
    #[error("cannot start the load threads: {0}")]
    Runtime(std::io::Error),
}
