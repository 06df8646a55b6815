//! Which backend serves a request, and how: the router's answer refined by the Ingress
//! annotations. Regex paths (`use-regex`, `rewrite-target`), canaries, and the options of the
//! Ingress whose route or default backend matched.
//!
//! Precedence on a host, as nginx orders the locations ingress-nginx writes: an Exact path
//! that equals the request path first; then the regex paths, longest written path first, the
//! first that matches (case-insensitive, anchored at the start); then the longest Prefix path;
//! then the default backends. A regex route's `rewrite-target` replaces the matched part of
//! the path (`$1`… are its capture groups); the query is kept.
//!
//! A route with a canary sends a request to the canary's backend when its header says so
//! (`canary-by-header`: equal to `canary-by-header-value`, or `always` when no value is set;
//! `never` keeps it on the main backend), else when its cookie is `always` (`never` keeps it),
//! else with probability `weight / weight_total`.
//!
//! A default backend takes the options of the Ingress that owns it, as ingress-nginx applies an
//! Ingress's annotations to its `defaultBackend`: a host's default all of them; the catch-all
//! (an Ingress with only a `defaultBackend`) all but the rewrite group, which ingress-nginx
//! leaves off its catch-all server (`ssl-redirect`, `force-ssl-redirect`, `app-root`,
//! `rewrite-target`, `use-regex`). A snapshot that names no owner gets the defaults.

use std::collections::HashMap;
use std::sync::Arc;

use ferry_model::{Backend, HostMatch, IngressOptions, IngressRef, PathType, Route, Snapshot};
use ferry_proxy::router::{HostRoutes, Router, Target};
use http::HeaderMap;
use regex::Regex;

/// The routes of one snapshot, literal and regex, with the Ingress options.
#[derive(Debug)]
pub struct Routes {
    /// Every route whose Ingress does not use regex paths.
    router: Router,
    /// Per virtual host: the regex routes, longest written path first.
    regex: HashMap<HostMatch, Vec<RegexRoute>>,
    options: Vec<Arc<IngressOptions>>,
    /// The catch-all default backend's, without the rewrite group.
    catch_all_options: Option<IngressOptions>,
}

#[derive(Debug)]
struct RegexRoute {
    regex: Regex,
    route: Route,
}

/// The decision for one request.
#[derive(Debug)]
pub struct Selected<'r> {
    pub backend: &'r Backend,
    /// The route that matched; none when a default backend serves the request.
    pub route: Option<&'r Route>,
    /// The Ingress that serves the request: the route's, or the default backend's owner.
    pub ingress: Option<&'r IngressRef>,
    /// The options of the route's Ingress, or of the default backend's (see the module docs).
    pub options: Option<&'r IngressOptions>,
    /// The path and query to send upstream, when `rewrite-target` changed them.
    pub rewritten: Option<String>,
    /// The canary's backend was chosen.
    pub canary: bool,
}

impl Routes {
    pub fn compile(snapshot: &Snapshot) -> Routes {
        let regex_ingress = |route: &Route| {
            snapshot
                .ingress_options(&route.ingress)
                .is_some_and(|o| o.use_regex)
        };
        let mut literal = snapshot.clone();
        let mut regex: HashMap<HostMatch, Vec<RegexRoute>> = HashMap::new();
        for vh in &mut literal.virtual_hosts {
            // Only a host with regex routes is copied; the others stay shared.
            if !vh.routes.iter().any(regex_ingress) {
                continue;
            }
            let vh = Arc::make_mut(vh);
            let (with_regex, plain): (Vec<Route>, Vec<Route>) =
                vh.routes.drain(..).partition(|r| regex_ingress(r));
            vh.routes = plain;
            let mut compiled: Vec<RegexRoute> = with_regex
                .into_iter()
                .filter_map(|route| {
                    match Regex::new(&IngressOptions::path_pattern(&route.path)) {
                        Ok(regex) => Some(RegexRoute { regex, route }),
                        // The control plane compiled it already: only a hand-written
                        // snapshot gets here.
                        Err(e) => {
                            tracing::warn!(path = %route.path, error = %e, "regex path not served");
                            None
                        }
                    }
                })
                .collect();
            compiled.sort_by_key(|r| std::cmp::Reverse(r.route.path.len()));
            if !compiled.is_empty() {
                regex.insert(vh.host.clone(), compiled);
            }
        }
        let router = Router::compile(&literal);
        let catch_all_options = router
            .default_backend_ingress()
            .and_then(|i| snapshot.ingress_options(i))
            .map(|o| IngressOptions {
                rewrite_target: None,
                use_regex: false,
                ssl_redirect: None,
                force_ssl_redirect: false,
                app_root: None,
                ..o.clone()
            });
        Routes {
            router,
            regex,
            options: snapshot.ingress_options.clone(),
            catch_all_options,
        }
    }

    pub fn version(&self) -> u64 {
        self.router.version()
    }

    fn options(&self, ingress: &IngressRef) -> Option<&IngressOptions> {
        self.options
            .binary_search_by(|o| o.ingress.cmp(ingress))
            .ok()
            .map(|i| &*self.options[i])
    }

    /// Whether `host` is a TLS host (listed in a `spec.tls` entry).
    pub fn tls_host(&self, host: &str) -> bool {
        self.virtual_host(host).is_some_and(|h| h.tls())
    }

    /// The virtual host that takes `host`: looked up once per request, for
    /// [`Routes::select_in`] and whether it is a TLS host.
    pub fn virtual_host(&self, host: &str) -> Option<&HostRoutes> {
        self.router.virtual_host(host)
    }

    /// The backend for a request; none means 404. `random` is drawn only for a weighted
    /// canary.
    pub fn select(
        &self,
        host: &str,
        path_and_query: &str,
        headers: &impl RequestFields,
        random: impl FnOnce() -> u64,
    ) -> Option<Selected<'_>> {
        self.select_in(self.virtual_host(host), path_and_query, headers, random)
    }

    /// [`Routes::select`] in the virtual host [`Routes::virtual_host`] found.
    pub fn select_in<'r>(
        &'r self,
        vhost: Option<&'r HostRoutes>,
        path_and_query: &str,
        headers: &impl RequestFields,
        random: impl FnOnce() -> u64,
    ) -> Option<Selected<'r>> {
        let literal = self.router.route_on(vhost, path_and_query);
        let exact = literal
            .as_ref()
            .and_then(|m| m.route())
            .is_some_and(|r| r.path_type == PathType::Exact);
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let regex_hit = if exact {
            None
        } else {
            vhost
                .and_then(|h| self.regex.get(h.host()))
                .and_then(|list| list.iter().find(|r| r.regex.is_match(path)))
        };
        let (route, backend, options, rewritten, ingress) = match (regex_hit, literal) {
            (Some(hit), _) => {
                let options = self.options(&hit.route.ingress);
                let rewritten = options
                    .and_then(|o| o.rewrite_target.as_deref())
                    .map(|target| {
                        let mut out = hit.regex.replacen(path, 1, target).into_owned();
                        if !out.starts_with('/') {
                            out.insert(0, '/');
                        }
                        if let Some(q) = query {
                            out.push('?');
                            out.push_str(q);
                        }
                        out
                    });
                let ingress = Some(&hit.route.ingress);
                (
                    Some(&hit.route),
                    &hit.route.backend,
                    options,
                    rewritten,
                    ingress,
                )
            }
            (None, Some(m)) => match m.target {
                Target::Route(r) => (
                    Some(r),
                    &r.backend,
                    self.options(&r.ingress),
                    None,
                    Some(&r.ingress),
                ),
                Target::HostDefault(b) => {
                    let owner = m.host.and_then(HostRoutes::default_backend_ingress);
                    (None, b, owner.and_then(|i| self.options(i)), None, owner)
                }
                Target::Default(b) => (
                    None,
                    b,
                    self.catch_all_options.as_ref(),
                    None,
                    self.router.default_backend_ingress(),
                ),
            },
            (None, None) => return None,
        };
        let (backend, canary) = match route.and_then(|r| r.canary.as_ref()) {
            Some(c) if canary_chosen(c, headers, random) => (&c.backend, true),
            _ => (backend, false),
        };
        Some(Selected {
            backend,
            route,
            ingress,
            options,
            rewritten,
            canary,
        })
    }
}

/// ingress-nginx's order: header, then cookie, then weight.
fn canary_chosen(
    canary: &ferry_model::Canary,
    headers: &impl RequestFields,
    random: impl FnOnce() -> u64,
) -> bool {
    if let Some(name) = &canary.by_header
        && let Some(value) = headers.first(name.as_str())
    {
        match &canary.by_header_value {
            Some(want) if value == want => return true,
            Some(_) => {}
            None if value == "always" => return true,
            None if value == "never" => return false,
            None => {}
        }
    }
    if let Some(name) = &canary.by_cookie {
        match headers.cookie(name) {
            Some("always") => return true,
            Some("never") => return false,
            _ => {}
        }
    }
    canary.weight > 0
        && canary.weight_total > 0
        && random() % u64::from(canary.weight_total) < u64::from(canary.weight)
}

/// A request's header fields as routing reads them: hyper's map, or the fast path's head
/// parsed in place.
pub trait RequestFields {
    /// The first value of the field `name` (any case), when it is text.
    fn first(&self, name: &str) -> Option<&str>;
    /// A cookie's value from the request's Cookie fields.
    fn cookie(&self, name: &str) -> Option<&str>;
}

impl RequestFields for HeaderMap {
    fn first(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.to_str().ok())
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        cookie(self, name)
    }
}

impl RequestFields for ferry_proxy::h1::Fields<'_> {
    fn first(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        cookie_in(
            self.iter()
                .filter(|f| f.is("cookie"))
                .filter_map(|f| std::str::from_utf8(f.value).ok()),
            name,
        )
    }
}

/// A cookie's value from the request's Cookie headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    cookie_in(
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        name,
    )
}

/// A cookie's value from Cookie field values.
fn cookie_in<'h>(values: impl Iterator<Item = &'h str>, name: &str) -> Option<&'h str> {
    values
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests;
