//! The URL under load: scheme, host, port and path, checked once before the run.

use http::uri::{Authority, PathAndQuery, Scheme, Uri};

#[cfg(test)]
mod tests;

/// A parsed `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The URL as given, for reports.
    pub url: String,
    pub tls: bool,
    /// Host name or IP literal, without brackets.
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written in the URL: the `Host` header and the h2 `:authority`.
    pub authority: Authority,
    pub path_and_query: PathAndQuery,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let bad = |why: &str| format!("bad URL {url:?}: {why}");
        let uri: Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        let tls = match uri.scheme() {
            Some(s) if *s == Scheme::HTTP => false,
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) => {
                return Err(bad(&format!(
                    "unsupported scheme {s:?} (use http or https)"
                )));
            }
            None => return Err(bad("missing scheme (use http:// or https://)")),
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| bad("missing host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user information in the URL is not supported"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        // `Authority::port` hides a port that is not a u16; read what was written.
        let written = authority.as_str();
        let after_host = match written.rfind(']') {
            Some(i) => &written[i + 1..],
            None => written.rfind(':').map_or("", |i| &written[i..]),
        };
        let port = match after_host.strip_prefix(':') {
            Some("") => return Err(bad("empty port")),
            Some(p) => match p.parse::<u16>() {
                Ok(0) => return Err(bad("port 0")),
                Ok(p) => p,
                Err(_) => return Err(bad(&format!("invalid port {p:?}"))),
            },
            None if tls => 443,
            None => 80,
        };
        let path_and_query = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        Ok(Target {
            url: url.to_string(),
            tls,
            host: host.to_string(),
            port,
            authority,
            path_and_query,
        })
    }

    /// The absolute URI an h2 request carries (`:scheme`, `:authority`, `:path`).
    pub fn absolute_uri(&self, authority: &Authority) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(if self.tls {
                Scheme::HTTPS
            } else {
                Scheme::HTTP
            })
            .authority(authority.clone())
            .path_and_query(self.path_and_query.clone())
            .build()
    }
}
