//! The request router: which backend serves a request, from its Host and its path.
//!
//! [`Router::compile`] turns a [`Snapshot`]'s virtual hosts into an immutable index; the gateway
//! compiles one per accepted snapshot and swaps it in whole, so a request sees one snapshot's
//! routes, never a mix. [`Router::route`] answers without locking or allocating. This module
//! reads the model only.
//!
//! # Matching
//!
//! **Host** (the `Host` header or `:authority`): compared without ASCII case; a port is ignored
//! (`shop.example.com:8443`, `[::1]:8080`); one trailing dot is dropped as nginx does
//! (`shop.example.com.` is `shop.example.com`, an absolute name for the same host). An exact
//! host beats a wildcard, and a wildcard beats the virtual host of rules without a host (which
//! takes every Host, an empty one included). `*.foo.com` takes exactly one more non-empty label:
//! `bar.foo.com`, not `baz.bar.foo.com`, not `foo.com`. A name longer than 253 characters is not
//! a DNS name and matches only the rules without a host.
//!
//! **Path**: only the path is matched; everything from the first `?` on is ignored, so the
//! caller may pass the request target's path-and-query as it came. An empty path is `/`. A path
//! that does not start with `/` (the asterisk form `*` of `OPTIONS *`) matches no route. Paths
//! are matched as bytes, case-sensitively, without percent-decoding or dot-segment removal:
//! normalizing a path is the request pipeline's business before it routes.
//! - `Exact`: the path equals the route's path, byte for byte (`/foo` is not `/foo/`).
//! - `Prefix` and `ImplementationSpecific`: element-wise on `/`-separated elements, trailing
//!   slashes ignored on both sides: `/foo` and `/foo/` both take `/foo`, `/foo/` and `/foo/bar`
//!   and never `/foobar`; `/` takes every path. Empty elements in the middle count (`/a//b` is
//!   not `/a/b`).
//!
//! **Precedence** among the routes that match, computed here whatever the snapshot's order: the
//! longest matching path first, where a Prefix path is measured without its trailing slashes (it
//! matches as if they were not there); on a tie Exact beats Prefix. So a matching Exact route
//! always wins: it equals the whole path, and no matching Prefix is longer. Between Prefix paths
//! that differ only in trailing slashes (`/foo` and `/foo/`) the longer one as written wins (the
//! control plane's display order), then `Prefix` over `ImplementationSpecific`; a route that
//! repeats another's path and type exactly loses to the one before it in the snapshot (the
//! control plane never sends both: the older Ingress keeps the path).
//!
//! **Defaults**: when the Host picks a virtual host and no path matches, that host's default
//! backend serves it, else the snapshot's default backend, else nothing (404). The routes of
//! other virtual hosts are not tried. When no virtual host takes the Host, the snapshot's default
//! backend serves it, else 404.

use std::collections::hash_map::Entry;

use ferry_model::{
    Backend, ClusterKey, HostMatch, IngressRef, PathType, Route, Snapshot, VirtualHost,
};

/// The maps looked up per request, hashed with foldhash rather than SipHash (a fifth of the
/// cost for a short key; two lookups of the Host were 2% of the gateway's instructions per
/// request). Their keys come from the snapshot, so a client's Host cannot lengthen a probe.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The longest DNS name, without its trailing dot: longer Hosts match only rules without a host.
const MAX_HOST: usize = 253;

/// Maps of at most this many keys are scanned rather than hashed: comparing a few short strings
/// is faster than hashing one (`cargo bench -p ferry-proxy --bench router`).
const SCAN_MAX: usize = 8;

/// The compiled routing index of one snapshot.
#[derive(Debug, Default)]
pub struct Router {
    version: u64,
    hosts: Vec<HostRoutes>,
    /// Lowercase name without trailing dot → index in `hosts`.
    exact: HashMap<Box<[u8]>, usize>,
    /// `.foo.com` (lowercase, with the dot) → index in `hosts`.
    wildcard: HashMap<Box<[u8]>, usize>,
    /// The virtual host of rules without a host.
    any: Option<usize>,
    default_backend: Option<Backend>,
    default_backend_ingress: Option<IngressRef>,
}

/// One virtual host, compiled: its routes indexed by exact path and by path elements.
#[derive(Debug)]
pub struct HostRoutes {
    host: HostMatch,
    tls: bool,
    default_backend: Option<Backend>,
    default_backend_ingress: Option<IngressRef>,
    /// As in the snapshot; the indexes below point into it.
    routes: Vec<Route>,
    exact: StrMap,
    prefixes: PathTrie,
}

/// What serves a request: the backend, and why it was chosen.
#[derive(Clone, Copy, Debug)]
pub struct Match<'r> {
    /// The virtual host that took the request's Host; none when none did and the snapshot's
    /// default backend serves it.
    pub host: Option<&'r HostRoutes>,
    pub target: Target<'r>,
}

/// Why a backend was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'r> {
    /// A route of the virtual host matched the path.
    Route(&'r Route),
    /// The virtual host took the request but none of its paths matched: the `defaultBackend`
    /// of its Ingress.
    HostDefault(&'r Backend),
    /// The snapshot's catch-all default backend: no virtual host took the request, or the one
    /// that did has neither a matching path nor a default of its own.
    Default(&'r Backend),
}

impl<'r> Match<'r> {
    pub fn backend(&self) -> &'r Backend {
        match self.target {
            Target::Route(r) => &r.backend,
            Target::HostDefault(b) | Target::Default(b) => b,
        }
    }

    /// The cluster to forward to; none when the backend's Service or port does not exist or
    /// the backend is a `resource` (the gateway answers 503).
    pub fn cluster(&self) -> Option<&'r ClusterKey> {
        self.backend().cluster()
    }

    /// The matched route, when a route (not a default backend) serves the request.
    pub fn route(&self) -> Option<&'r Route> {
        match self.target {
            Target::Route(r) => Some(r),
            Target::HostDefault(_) | Target::Default(_) => None,
        }
    }
}

impl Router {
    /// Indexes the snapshot's virtual hosts. Never fails: every snapshot has a meaning (see the
    /// module docs); checking it is [`Snapshot::validate`]'s job. A virtual host that repeats
    /// another's host loses to the one before it.
    pub fn compile(snapshot: &Snapshot) -> Router {
        let mut router = Router {
            version: snapshot.version,
            default_backend: snapshot.default_backend.clone(),
            default_backend_ingress: snapshot.default_backend_ingress.clone(),
            ..Router::default()
        };
        for vh in &snapshot.virtual_hosts {
            let index = router.hosts.len();
            let taken = match &vh.host {
                HostMatch::Exact(name) => claim(&mut router.exact, name, index),
                HostMatch::Wildcard(suffix) => claim(&mut router.wildcard, suffix, index),
                HostMatch::Any => {
                    let first = router.any.is_none();
                    if first {
                        router.any = Some(index);
                    }
                    first
                }
            };
            if taken {
                router.hosts.push(HostRoutes::compile(vh));
            }
        }
        router
    }

    /// The version of the snapshot this router was compiled from.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The Ingress that owns the snapshot's catch-all default backend, when the snapshot names
    /// it ([`Target::Default`] serves with its options).
    pub fn default_backend_ingress(&self) -> Option<&IngressRef> {
        self.default_backend_ingress.as_ref()
    }

    /// What serves a request for `host` (the Host header or `:authority`, port allowed) and
    /// `path` (the query after `?` is ignored); none means 404.
    pub fn route(&self, host: &str, path: &str) -> Option<Match<'_>> {
        self.route_on(self.virtual_host(host), path)
    }

    /// [`Router::route`] for a virtual host already looked up with [`Router::virtual_host`],
    /// for a caller that needs the host first (the HTTP→HTTPS redirect of TLS hosts).
    pub fn route_on<'r>(&'r self, host: Option<&'r HostRoutes>, path: &str) -> Option<Match<'r>> {
        if let Some(h) = host {
            if let Some(r) = h.route(path) {
                return Some(Match {
                    host,
                    target: Target::Route(r),
                });
            }
            if let Some(b) = &h.default_backend {
                return Some(Match {
                    host,
                    target: Target::HostDefault(b),
                });
            }
        }
        self.default_backend.as_ref().map(|b| Match {
            host,
            target: Target::Default(b),
        })
    }

    /// The virtual host that takes requests for `host`: exact name, else wildcard, else the
    /// rules without a host.
    pub fn virtual_host(&self, host: &str) -> Option<&HostRoutes> {
        let name = host_name(host.as_bytes());
        let mut buf = [0u8; MAX_HOST];
        let found = match buf.get_mut(..name.len()) {
            Some(lower) => {
                lower.copy_from_slice(name);
                lower.make_ascii_lowercase();
                let lower: &[u8] = lower;
                self.exact.get(lower).or_else(|| {
                    // `*.foo.com` takes `bar.foo.com`: everything after a non-empty first label.
                    let dot = lower.iter().position(|&b| b == b'.').filter(|&i| i > 0)?;
                    self.wildcard.get(&lower[dot..])
                })
            }
            None => None,
        };
        found.or(self.any.as_ref()).and_then(|&i| self.hosts.get(i))
    }
}

/// Enters a host name (lowercase, without one trailing dot) unless an earlier virtual host has it.
fn claim(map: &mut HashMap<Box<[u8]>, usize>, name: &str, index: usize) -> bool {
    let mut key = name.to_ascii_lowercase().into_bytes();
    if key.last() == Some(&b'.') {
        key.pop();
    }
    match map.entry(key.into_boxed_slice()) {
        Entry::Vacant(v) => {
            v.insert(index);
            true
        }
        Entry::Occupied(_) => false,
    }
}

/// The name in a Host header: without the port, and without one trailing dot.
fn host_name(host: &[u8]) -> &[u8] {
    let end = if host.first() == Some(&b'[') {
        // An IPv6 literal: the port follows the bracket.
        host.iter()
            .position(|&b| b == b']')
            .map_or(host.len(), |i| i + 1)
    } else {
        host.iter().position(|&b| b == b':').unwrap_or(host.len())
    };
    let name = &host[..end];
    name.strip_suffix(b".").unwrap_or(name)
}

impl HostRoutes {
    fn compile(vh: &VirtualHost) -> HostRoutes {
        let routes = &vh.routes;
        let mut exact: HashMap<Box<str>, u32> = HashMap::default();
        let mut trie = TrieBuilder::default();
        for (i, r) in routes.iter().enumerate() {
            let Ok(index) = u32::try_from(i) else { break };
            if r.path_type.is_exact() {
                exact.entry(r.path.as_str().into()).or_insert(index);
                continue;
            }
            let prefix = r.path.trim_end_matches('/');
            let node = if prefix.is_empty() {
                Some(0)
            } else {
                // A path that does not start with `/` can match no request path.
                prefix.strip_prefix('/').map(|p| trie.node(p))
            };
            if let Some(node) = node {
                let best = &mut trie.nodes[node].route;
                if best.is_none_or(|b| outranks(r, &routes[b as usize])) {
                    *best = Some(index);
                }
            }
        }
        HostRoutes {
            host: vh.host.clone(),
            tls: vh.tls,
            default_backend: vh.default_backend.clone(),
            default_backend_ingress: vh.default_backend_ingress.clone(),
            routes: routes.clone(),
            exact: StrMap::from(exact),
            prefixes: trie.build(),
        }
    }

    /// The host as the snapshot names it.
    pub fn host(&self) -> &HostMatch {
        &self.host
    }

    /// The host is listed in some Ingress's `spec.tls`.
    pub fn tls(&self) -> bool {
        self.tls
    }

    pub fn default_backend(&self) -> Option<&Backend> {
        self.default_backend.as_ref()
    }

    /// The Ingress that owns this host's default backend, when the snapshot names it
    /// ([`Target::HostDefault`] serves with its options).
    pub fn default_backend_ingress(&self) -> Option<&IngressRef> {
        self.default_backend_ingress.as_ref()
    }

    /// The routes, in the snapshot's order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route that takes `path`, by the module's rules; none when no path matches (the
    /// default backends are [`Router::route_on`]'s business).
    pub fn route(&self, path: &str) -> Option<&Route> {
        let path = match path.find('?') {
            Some(q) => &path[..q],
            None => path,
        };
        let path = if path.is_empty() { "/" } else { path };
        let elements = path.strip_prefix('/')?;
        let index = self
            .exact
            .get(path)
            .or_else(|| self.prefixes.longest(elements))?;
        self.routes.get(index as usize)
    }
}

/// Between two Prefix routes with the same elements: the longer as written, then `Prefix` over
/// `ImplementationSpecific`; otherwise the one already there stays.
fn outranks(candidate: &Route, current: &Route) -> bool {
    let rank = |r: &Route| (r.path.len(), r.path_type == PathType::Prefix);
    rank(candidate) > rank(current)
}

/// Prefix routes by path element: node 0 is `/`; each edge is one element.
#[derive(Debug)]
struct PathTrie {
    nodes: Vec<Node>,
}

#[derive(Debug)]
struct Node {
    route: Option<u32>,
    children: StrMap,
}

impl PathTrie {
    /// The route of the deepest node along `elements` (the path after its leading `/`).
    fn longest(&self, elements: &str) -> Option<u32> {
        let mut node = self.nodes.first()?;
        let mut best = node.route;
        for element in elements.split('/') {
            if node.children.is_empty() {
                break;
            }
            let Some(next) = node.children.get(element) else {
                break;
            };
            node = &self.nodes[next as usize];
            best = node.route.or(best);
        }
        best
    }
}

#[derive(Debug)]
struct TrieBuilder {
    nodes: Vec<BuildNode>,
}

#[derive(Debug, Default)]
struct BuildNode {
    route: Option<u32>,
    children: HashMap<Box<str>, u32>,
}

impl Default for TrieBuilder {
    fn default() -> Self {
        TrieBuilder {
            nodes: vec![BuildNode::default()],
        }
    }
}

impl TrieBuilder {
    /// The node for `elements` (a path without its leading and trailing slashes), made as needed.
    fn node(&mut self, elements: &str) -> usize {
        let mut at = 0;
        for element in elements.split('/') {
            let fresh = self.nodes.len();
            let next = *self.nodes[at]
                .children
                .entry(element.into())
                .or_insert(fresh as u32);
            if next as usize == fresh {
                self.nodes.push(BuildNode::default());
            }
            at = next as usize;
        }
        at
    }

    fn build(self) -> PathTrie {
        PathTrie {
            nodes: self
                .nodes
                .into_iter()
                .map(|n| Node {
                    route: n.route,
                    children: StrMap::from(n.children),
                })
                .collect(),
        }
    }
}

/// A read-only map from strings to indexes: a list scan when small, hashed when not.
#[derive(Debug)]
enum StrMap {
    Scan(Vec<(Box<str>, u32)>),
    Hash(HashMap<Box<str>, u32>),
}

impl From<HashMap<Box<str>, u32>> for StrMap {
    fn from(map: HashMap<Box<str>, u32>) -> Self {
        if map.len() <= SCAN_MAX {
            StrMap::Scan(map.into_iter().collect())
        } else {
            StrMap::Hash(map)
        }
    }
}

impl StrMap {
    fn get(&self, key: &str) -> Option<u32> {
        match self {
            StrMap::Scan(entries) => entries.iter().find(|(k, _)| **k == *key).map(|&(_, v)| v),
            StrMap::Hash(map) => map.get(key).copied(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            StrMap::Scan(entries) => entries.is_empty(),
            StrMap::Hash(map) => map.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests;
