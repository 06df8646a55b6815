//! The consistent-hash ring: 160 points per endpoint (ketama's number), placed by a hash of the
//! endpoint's address alone, so adding or removing one endpoint moves only the keys that land
//! on its points (about 1/N of them) and every gateway replica, in any process, builds the same
//! ring from the same endpoints.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

/// Points per endpoint: the spread of keys over endpoints is within about ±10 % at this count.
pub(crate) const POINTS: u32 = 160;

/// FNV-1a over `bytes`, from `seed`: stable across processes and releases, unlike std's hasher.
fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(seed, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// splitmix64's finalizer: every input bit moves every output bit.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// An affinity key from any bytes (a cookie's value, a header): the same bytes give the same key
/// in every process.
pub fn affinity_key(bytes: &[u8]) -> u64 {
    mix(fnv1a(FNV_OFFSET, bytes))
}

/// The affinity key of a client address, for Service `sessionAffinity: ClientIP`. An IPv4
/// client and its IPv4-mapped IPv6 form (`::ffff:a.b.c.d`, what a dual-stack listener sees)
/// give the same key.
pub fn client_ip_key(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => affinity_key(&v4.octets()),
        IpAddr::V6(v6) => affinity_key(&v6.octets()),
    }
}

/// The ring points of the endpoint at `addr`, the `index`-th of its balancer.
fn points_of(addr: &SocketAddr, index: usize) -> impl Iterator<Item = (u64, u32)> {
    let h = address_hash(addr);
    let index = u32::try_from(index).unwrap_or(u32::MAX);
    (0..POINTS).map(move |p| (mix(fnv1a(h, &p.to_le_bytes())), index))
}

fn address_hash(addr: &SocketAddr) -> u64 {
    let h = match addr.ip() {
        IpAddr::V4(v4) => fnv1a(FNV_OFFSET, &v4.octets()),
        IpAddr::V6(v6) => fnv1a(FNV_OFFSET, &v6.octets()),
    };
    fnv1a(h, &addr.port().to_be_bytes())
}

#[derive(Debug, Default, PartialEq)]
pub(crate) struct Ring {
    /// The points, sorted; `owners[i]` is the endpoint index of `points[i]`. Apart, so that the
    /// search reads only the points.
    pub(super) points: Box<[u64]>,
    pub(super) owners: Box<[u32]>,
    /// `starts[b]` is the first point whose top bits are `b` or more: a lookup searches only
    /// its bucket's one or two points, not the whole ring (160,000 points at 1,000 endpoints).
    starts: Box<[u32]>,
    /// 64 minus the bits of a bucket number.
    shift: u32,
}

impl Ring {
    pub(crate) fn build(addrs: impl ExactSizeIterator<Item = SocketAddr>) -> Ring {
        let mut pairs = Vec::with_capacity(addrs.len() * POINTS as usize);
        for (i, addr) in addrs.enumerate() {
            pairs.extend(points_of(&addr, i));
        }
        // Two endpoints' points that collide are ordered by index: still the same in every
        // process for the same endpoint list.
        pairs.sort_unstable();
        Ring::from_sorted(pairs)
    }

    /// The ring of `addrs`, from the ring of `old` (what this ring was built from): the points
    /// of endpoints in both are kept in order, the added endpoints' points merged in. Linear in
    /// the ring's size where a build sorts it; the same ring as [`Ring::build`] gives.
    pub(crate) fn rebuild(&self, old: &[SocketAddr], addrs: &[SocketAddr]) -> Ring {
        let index: HashMap<SocketAddr, u32> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| (*a, u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        let remap: Vec<Option<u32>> = old.iter().map(|a| index.get(a).copied()).collect();
        let kept = self
            .points
            .iter()
            .zip(self.owners.iter())
            .filter_map(|(&p, &o)| Some((p, remap.get(o as usize).copied().flatten()?)));
        let old: HashSet<&SocketAddr> = old.iter().collect();
        let mut added: Vec<(u64, u32)> = addrs
            .iter()
            .enumerate()
            .filter(|(_, a)| !old.contains(a))
            .flat_map(|(i, a)| points_of(a, i))
            .collect();
        added.sort_unstable();
        let mut pairs = Vec::with_capacity(addrs.len() * POINTS as usize);
        let mut added = added.into_iter().peekable();
        for k in kept {
            while let Some(a) = added.next_if(|a| *a < k) {
                pairs.push(a);
            }
            pairs.push(k);
        }
        pairs.extend(added);
        // Kept points that collide may have changed order with their new indexes: sort then,
        // so that the ring is exactly the one a build makes (a collision is one in billions).
        if pairs.windows(2).any(|w| w[0] > w[1]) {
            pairs.sort_unstable();
        }
        Ring::from_sorted(pairs)
    }

    fn from_sorted(pairs: Vec<(u64, u32)>) -> Ring {
        let (points, owners): (Vec<u64>, Vec<u32>) = pairs.into_iter().unzip();
        // About two points per bucket.
        let bits = (usize::BITS - points.len().leading_zeros())
            .saturating_sub(2)
            .min(24);
        let shift = 64 - bits;
        let mut starts = Vec::with_capacity((1 << bits) + 1);
        let mut i = 0;
        for b in 0..=(1u64 << bits) {
            while i < points.len() && bucket(points[i], shift) < b {
                i += 1;
            }
            starts.push(u32::try_from(i).unwrap_or(u32::MAX));
        }
        Ring {
            points: points.into_boxed_slice(),
            owners: owners.into_boxed_slice(),
            starts: starts.into_boxed_slice(),
            shift,
        }
    }

    /// Endpoint indexes from the owner of `key` on, clockwise, once round the ring. An endpoint
    /// comes up once per point: callers skip the ones they cannot use.
    pub(crate) fn walk(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let h = mix(key);
        let b = bucket(h, self.shift) as usize;
        let (lo, hi) = match (self.starts.get(b), self.starts.get(b + 1)) {
            (Some(&lo), Some(&hi)) => (lo as usize, hi as usize),
            _ => (0, self.points.len()),
        };
        let start = lo + self.points[lo..hi].partition_point(|&p| p < h);
        let (before, after) = self.owners.split_at(start);
        after.iter().chain(before).map(|&i| i as usize)
    }
}

/// The bucket of a point: its top `64 - shift` bits (none when the shift is 64).
fn bucket(point: u64, shift: u32) -> u64 {
    point.checked_shr(shift).unwrap_or(0)
}
