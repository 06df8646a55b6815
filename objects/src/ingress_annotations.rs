//! Ingress annotations: ingress-nginx's names under `nginx.ingress.kubernetes.io/`, and the same
//! names under `ferry.dev/`, which win when both are set. Each value is checked and read into a
//! typed field of [`IngressOptions`] (or the canary settings); no annotation text reaches the
//! data plane except values whose every character was checked here (paths, cookie and header
//! names). Other prefixes are not ferry's and are left alone; an unknown name under
//! `ferry.dev/` is a warning, since it is most likely a typo.
//!
//! Where ingress-nginx is loose, ferry follows it: booleans as Go's `ParseBool`, case-insensitive
//! backend protocols, integer seconds. Regular expressions are Rust `regex` syntax (ingress-nginx
//! uses PCRE): every path of an Ingress with `use-regex` (or `rewrite-target`) must compile on
//! its own, and is matched from the start of the path, case-insensitively.

use std::collections::BTreeMap;

use ferry_model::{BackendProtocol, CookieAffinity, IngressOptions};
use k8s_openapi::api::networking::v1::Ingress;
use regex::RegexBuilder;

use crate::validate::Check;

pub const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";
pub const FERRY_PREFIX: &str = "ferry.dev/";

const REWRITE_TARGET: &str = "rewrite-target";
const USE_REGEX: &str = "use-regex";
const BACKEND_PROTOCOL: &str = "backend-protocol";
const PROXY_BODY_SIZE: &str = "proxy-body-size";
const PROXY_CONNECT_TIMEOUT: &str = "proxy-connect-timeout";
const PROXY_READ_TIMEOUT: &str = "proxy-read-timeout";
const PROXY_SEND_TIMEOUT: &str = "proxy-send-timeout";
const SSL_REDIRECT: &str = "ssl-redirect";
const FORCE_SSL_REDIRECT: &str = "force-ssl-redirect";
const APP_ROOT: &str = "app-root";
const CANARY: &str = "canary";
const CANARY_WEIGHT: &str = "canary-weight";
const CANARY_WEIGHT_TOTAL: &str = "canary-weight-total";
const CANARY_BY_HEADER: &str = "canary-by-header";
const CANARY_BY_HEADER_VALUE: &str = "canary-by-header-value";
const CANARY_BY_COOKIE: &str = "canary-by-cookie";
const AFFINITY: &str = "affinity";
const SESSION_COOKIE_NAME: &str = "session-cookie-name";
const SESSION_COOKIE_MAX_AGE: &str = "session-cookie-max-age";
const SESSION_COOKIE_PATH: &str = "session-cookie-path";

/// What a canary Ingress may set besides the canary settings (session stickiness, as
/// ingress-nginx); the rest of its annotations are the main Ingress's business.
const AFFINITY_NAMES: [&str; 4] = [
    AFFINITY,
    SESSION_COOKIE_NAME,
    SESSION_COOKIE_MAX_AGE,
    SESSION_COOKIE_PATH,
];
const CANARY_NAMES: [&str; 5] = [
    CANARY_WEIGHT,
    CANARY_WEIGHT_TOTAL,
    CANARY_BY_HEADER,
    CANARY_BY_HEADER_VALUE,
    CANARY_BY_COOKIE,
];
/// Every name ferry reads.
pub const KNOWN: [&str; 20] = [
    REWRITE_TARGET,
    USE_REGEX,
    BACKEND_PROTOCOL,
    PROXY_BODY_SIZE,
    PROXY_CONNECT_TIMEOUT,
    PROXY_READ_TIMEOUT,
    PROXY_SEND_TIMEOUT,
    SSL_REDIRECT,
    FORCE_SSL_REDIRECT,
    APP_ROOT,
    CANARY,
    CANARY_WEIGHT,
    CANARY_WEIGHT_TOTAL,
    CANARY_BY_HEADER,
    CANARY_BY_HEADER_VALUE,
    CANARY_BY_COOKIE,
    AFFINITY,
    SESSION_COOKIE_NAME,
    SESSION_COOKIE_MAX_AGE,
    SESSION_COOKIE_PATH,
];

const DEFAULT_COOKIE_NAME: &str = "INGRESSCOOKIE";
const DEFAULT_WEIGHT_TOTAL: u32 = 100;
/// Compiled-size limit for path regexes: well under the `regex` crate's default (10 MiB), so
/// every accepted path also compiles with the defaults, and a few thousand of them stay cheap.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// What one Ingress's annotations say, typed.
#[derive(Debug, Default)]
pub struct Annotations {
    /// `ingress` is left empty: the caller knows which Ingress it read. For a canary Ingress
    /// only `affinity` is kept.
    pub options: IngressOptions,
    /// Set when `canary` is true.
    pub canary: Option<CanaryAnnotations>,
}

/// The canary settings of a canary Ingress (see [`ferry_model::Canary`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryAnnotations {
    pub weight: u32,
    pub weight_total: u32,
    pub by_header: Option<String>,
    pub by_header_value: Option<String>,
    pub by_cookie: Option<String>,
}

/// The annotations of one object, by the names ferry reads.
struct Reader<'a> {
    all: &'a BTreeMap<String, String>,
}

/// One annotation as found: its field path (naming the key that won) and its value.
struct Found<'a> {
    field: String,
    value: &'a str,
}

impl<'a> Reader<'a> {
    /// `ferry.dev/NAME` if set, else `nginx.ingress.kubernetes.io/NAME`.
    fn get(&self, name: &str) -> Option<Found<'a>> {
        [FERRY_PREFIX, NGINX_PREFIX].into_iter().find_map(|prefix| {
            let key = format!("{prefix}{name}");
            self.all.get(&key).map(|value| Found {
                field: field(&key),
                value,
            })
        })
    }
}

fn field(key: &str) -> String {
    format!("metadata.annotations[{key}]")
}

/// Reads and checks the annotations of an Ingress; problems go to `c`.
pub(crate) fn read(c: &mut Check<'_>, ing: &Ingress) -> Annotations {
    let Some(all) = ing.metadata.annotations.as_ref() else {
        return Annotations::default();
    };
    for key in all.keys() {
        if let Some(name) = key.strip_prefix(FERRY_PREFIX)
            && !KNOWN.contains(&name)
        {
            c.warning(
                &field(key),
                format!(
                    "unknown annotation; ignored (ferry reads {})",
                    KNOWN.join(", ")
                ),
            );
        }
    }
    let r = Reader { all };

    let rewrite_target = r.get(REWRITE_TARGET).and_then(|f| rewrite_target(c, &f));
    let use_regex = r.get(USE_REGEX).and_then(|f| boolean(c, &f)) == Some(true);
    let mut options = IngressOptions {
        use_regex: use_regex || rewrite_target.is_some(),
        rewrite_target,
        backend_protocol: r
            .get(BACKEND_PROTOCOL)
            .and_then(|f| backend_protocol(c, &f)),
        proxy_body_size: r.get(PROXY_BODY_SIZE).and_then(|f| size(c, &f)),
        proxy_connect_timeout_ms: r.get(PROXY_CONNECT_TIMEOUT).and_then(|f| timeout(c, &f)),
        proxy_read_timeout_ms: r.get(PROXY_READ_TIMEOUT).and_then(|f| timeout(c, &f)),
        proxy_send_timeout_ms: r.get(PROXY_SEND_TIMEOUT).and_then(|f| timeout(c, &f)),
        ssl_redirect: r.get(SSL_REDIRECT).and_then(|f| boolean(c, &f)),
        force_ssl_redirect: r.get(FORCE_SSL_REDIRECT).and_then(|f| boolean(c, &f)) == Some(true),
        app_root: r.get(APP_ROOT).and_then(|f| app_root(c, &f)),
        affinity: None,
        ..IngressOptions::default()
    };
    let canary_enabled = r.get(CANARY).and_then(|f| boolean(c, &f)) == Some(true);
    // A canary's own use-regex is ignored, so it says nothing about its cookie's path.
    options.affinity = affinity(c, &r, options.use_regex && !canary_enabled);

    let canary = canary_enabled.then(|| canary_settings(c, &r));
    if canary_enabled {
        for name in KNOWN {
            if name == CANARY || CANARY_NAMES.contains(&name) || AFFINITY_NAMES.contains(&name) {
                continue;
            }
            if let Some(f) = r.get(name) {
                c.warning(
                    &f.field,
                    "ignored on a canary Ingress: the main Ingress's annotations apply",
                );
            }
        }
        options = IngressOptions {
            affinity: options.affinity,
            ..IngressOptions::default()
        };
    } else {
        for name in CANARY_NAMES {
            if let Some(f) = r.get(name) {
                c.warning(
                    &f.field,
                    "ignored: this Ingress is not a canary (canary: \"true\")",
                );
            }
        }
        if options.use_regex {
            regex_paths(c, ing, options.rewrite_target.as_deref());
        }
    }
    Annotations { options, canary }
}

/// Go's `strconv.ParseBool`, which ingress-nginx uses.
fn boolean(c: &mut Check<'_>, f: &Found<'_>) -> Option<bool> {
    match f.value {
        "true" | "True" | "TRUE" | "t" | "T" | "1" => Some(true),
        "false" | "False" | "FALSE" | "f" | "F" | "0" => Some(false),
        v => {
            c.invalid(&f.field, &v, "must be true or false");
            None
        }
    }
}

/// A non-negative decimal integer, digits only (no sign, no spaces).
fn digits(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// nginx's size syntax: bytes, or a number with `k`, `m` or `g` (either case).
fn size(c: &mut Check<'_>, f: &Found<'_>) -> Option<u64> {
    let v = f.value;
    let (number, shift) = match v.as_bytes().last() {
        Some(b'k' | b'K') => (&v[..v.len() - 1], 10),
        Some(b'm' | b'M') => (&v[..v.len() - 1], 20),
        Some(b'g' | b'G') => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    let bytes = digits(number).and_then(|n| n.checked_mul(1 << shift));
    if bytes.is_none() {
        c.invalid(
            &f.field,
            &v,
            "must be a size in bytes, optionally with a k, m or g suffix (such as 8m); 0 means unlimited",
        );
    }
    bytes
}

/// Whole seconds, as ingress-nginx takes them, optionally with an `s`; in milliseconds.
fn timeout(c: &mut Check<'_>, f: &Found<'_>) -> Option<u64> {
    let v = f.value;
    let ms = digits(v.strip_suffix('s').unwrap_or(v))
        .filter(|&s| s > 0)
        .and_then(|s| s.checked_mul(1000));
    if ms.is_none() {
        c.invalid(
            &f.field,
            &v,
            "must be a positive whole number of seconds (such as 60 or 60s)",
        );
    }
    ms
}

fn backend_protocol(c: &mut Check<'_>, f: &Found<'_>) -> Option<BackendProtocol> {
    let p = match f.value.to_ascii_uppercase().as_str() {
        "HTTP" => BackendProtocol::HTTP,
        "HTTPS" => BackendProtocol::HTTPS,
        "GRPC" => BackendProtocol::GRPC,
        "GRPCS" => BackendProtocol::GRPCS,
        "H2C" => BackendProtocol::H2C,
        _ => {
            c.error(
                &f.field,
                format!(
                    "Unsupported value: {:?}: supported values: \"HTTP\", \"HTTPS\", \"GRPC\", \"GRPCS\", \"H2C\"",
                    f.value
                ),
            );
            return None;
        }
    };
    Some(p)
}

/// ingress-nginx's rule (`^/?[-._~a-zA-Z0-9/$:]*$`), with `$` only as `$1`…`$9`.
fn rewrite_target(c: &mut Check<'_>, f: &Found<'_>) -> Option<String> {
    let v = f.value;
    if v.is_empty() {
        c.invalid(&f.field, &v, "must not be empty (such as /$1)");
        return None;
    }
    if !v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/$:".contains(&b))
    {
        c.invalid(
            &f.field,
            &v,
            "may hold only letters, digits, '-', '.', '_', '~', '/', ':' and $1…$9",
        );
        return None;
    }
    let bytes = v.as_bytes();
    let dangling = bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'$' && !matches!(bytes.get(i + 1), Some(b'1'..=b'9')));
    if dangling {
        c.invalid(
            &f.field,
            &v,
            "a '$' must start a capture group reference, $1 to $9",
        );
        return None;
    }
    Some(v.to_owned())
}

/// The highest `$N` a (checked) rewrite target refers to.
fn highest_reference(target: &str) -> usize {
    let bytes = target.as_bytes();
    bytes
        .windows(2)
        .filter(|w| w[0] == b'$')
        .map(|w| usize::from(w[1] - b'0'))
        .max()
        .unwrap_or(0)
}

/// An absolute path for a redirect: URI path and query characters only, and never `//…`,
/// which a browser would read as another host.
fn app_root(c: &mut Check<'_>, f: &Found<'_>) -> Option<String> {
    let v = f.value;
    let ok = v.starts_with('/')
        && !v.starts_with("//")
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b));
    if !ok {
        c.invalid(
            &f.field,
            &v,
            "must be an absolute path (such as /app), not starting with //",
        );
        return None;
    }
    Some(v.to_owned())
}

/// An HTTP token (RFC 9110): what header and cookie names are made of.
fn token(c: &mut Check<'_>, f: &Found<'_>, what: &str) -> Option<String> {
    let ok = !f.value.is_empty()
        && f.value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !ok {
        c.invalid(
            &f.field,
            &f.value,
            &format!("must be a valid {what} (letters, digits and !#$%&'*+-.^_`|~)"),
        );
        return None;
    }
    Some(f.value.to_owned())
}

fn affinity(c: &mut Check<'_>, r: &Reader<'_>, use_regex: bool) -> Option<CookieAffinity> {
    let found = r.get(AFFINITY);
    let enabled = match &found {
        Some(f) if f.value == "cookie" => true,
        Some(f) => {
            c.error(
                &f.field,
                format!(
                    "Unsupported value: {:?}: supported values: \"cookie\"",
                    f.value
                ),
            );
            false
        }
        None => false,
    };
    let name = r
        .get(SESSION_COOKIE_NAME)
        .and_then(|f| token(c, &f, "cookie name"));
    let max_age_seconds = r.get(SESSION_COOKIE_MAX_AGE).and_then(|f| {
        let n = digits(f.value).filter(|&n| n > 0);
        if n.is_none() {
            c.invalid(
                &f.field,
                &f.value,
                "must be a positive whole number of seconds",
            );
        }
        n
    });
    let path = r.get(SESSION_COOKIE_PATH).and_then(|f| {
        let ok = f.value.starts_with('/')
            && !f.value.starts_with("//")
            && f.value.bytes().all(|b| b.is_ascii_graphic() && b != b';');
        if !ok {
            c.invalid(
                &f.field,
                &f.value,
                "must be an absolute path without ';', spaces or control characters",
            );
            return None;
        }
        Some(f.value.to_owned())
    });
    let Some(found) = found.filter(|_| enabled) else {
        if r.get(AFFINITY).is_none() {
            for n in [
                SESSION_COOKIE_NAME,
                SESSION_COOKIE_MAX_AGE,
                SESSION_COOKIE_PATH,
            ] {
                if let Some(f) = r.get(n) {
                    c.warning(&f.field, "ignored without affinity: cookie");
                }
            }
        }
        return None;
    };
    if use_regex && path.is_none() {
        c.warning(
            &found.field,
            "session-cookie-path is not set while paths are regular expressions: the cookie's path is /",
        );
    }
    Some(CookieAffinity {
        name: name.unwrap_or_else(|| DEFAULT_COOKIE_NAME.to_owned()),
        max_age_seconds,
        path: path.or_else(|| use_regex.then(|| "/".to_owned())),
    })
}

fn canary_settings(c: &mut Check<'_>, r: &Reader<'_>) -> CanaryAnnotations {
    let weight_total = r
        .get(CANARY_WEIGHT_TOTAL)
        .and_then(|f| {
            let n = digits(f.value)
                .and_then(|n| u32::try_from(n).ok())
                .filter(|&n| n > 0);
            if n.is_none() {
                c.invalid(
                    &f.field,
                    &f.value,
                    &format!("must be a whole number from 1 to {}", u32::MAX),
                );
            }
            n
        })
        .unwrap_or(DEFAULT_WEIGHT_TOTAL);
    let weight = r
        .get(CANARY_WEIGHT)
        .and_then(|f| {
            let n = digits(f.value)
                .and_then(|n| u32::try_from(n).ok())
                .filter(|&n| n <= weight_total);
            if n.is_none() {
                c.invalid(
                    &f.field,
                    &f.value,
                    &format!(
                        "must be a whole number from 0 to {weight_total} (canary-weight-total)"
                    ),
                );
            }
            n
        })
        .unwrap_or(0);
    let by_header = r
        .get(CANARY_BY_HEADER)
        .and_then(|f| token(c, &f, "header name"));
    let by_header_value = r.get(CANARY_BY_HEADER_VALUE).and_then(|f| {
        let v = f.value;
        let ok =
            !v.is_empty() && v.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) && v.trim() == v;
        if !ok {
            c.invalid(
                &f.field,
                &v,
                "must be a header value: visible ASCII characters, no leading or trailing spaces",
            );
            return None;
        }
        if r.get(CANARY_BY_HEADER).is_none() {
            c.warning(&f.field, "ignored without canary-by-header");
            return None;
        }
        Some(v.to_owned())
    });
    let by_cookie = r
        .get(CANARY_BY_COOKIE)
        .and_then(|f| token(c, &f, "cookie name"));
    CanaryAnnotations {
        weight,
        weight_total,
        by_header,
        by_header_value,
        by_cookie,
    }
}

/// Every path of a `use-regex` Ingress must compile; a rewrite target should not refer to more
/// groups than a path has.
fn regex_paths(c: &mut Check<'_>, ing: &Ingress, rewrite_target: Option<&str>) {
    let highest = rewrite_target.map_or(0, highest_reference);
    let rules = ing.spec.iter().flat_map(|s| s.rules.iter().flatten());
    for (i, rule) in rules.enumerate() {
        for (j, p) in rule.http.iter().flat_map(|h| h.paths.iter()).enumerate() {
            let at = format!("spec.rules[{i}].http.paths[{j}].path");
            let path = p.path.as_deref().unwrap_or_default();
            let compiled = RegexBuilder::new(path)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .and_then(|_| {
                    RegexBuilder::new(&IngressOptions::path_pattern(path))
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                });
            match compiled {
                Err(e) => c.invalid(
                    &at,
                    &path,
                    &format!(
                        "must be a regular expression (use-regex; Rust regex syntax): {}",
                        regex_error(&e)
                    ),
                ),
                Ok(re) => {
                    let groups = re.captures_len() - 1;
                    if highest > groups
                        && let Some(target) = rewrite_target
                    {
                        c.warning(
                            &at,
                            format!(
                                "rewrite-target {target:?} refers to ${highest}, but this path has {groups} capture group(s); the missing ones are replaced by nothing"
                            ),
                        );
                    }
                }
            }
        }
    }
}

/// The one line of a regex error that says what is wrong.
fn regex_error(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(s) => s
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or(s)
            .to_owned(),
        regex::Error::CompiledTooBig(limit) => {
            format!("too large once compiled (over {limit} bytes)")
        }
        other => other.to_string(),
    }
}
