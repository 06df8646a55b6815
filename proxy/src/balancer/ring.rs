//! The consistent-hash ring: 160 points per endpoint (ketama's number), placed by a hash of the
//! endpoint's address alone, so adding or removing one endpoint moves only the keys that land
//! on its points (about 1/N of them) and every gateway replica, in any process, builds the same
//! ring from the same endpoints.

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

fn address_hash(addr: &SocketAddr) -> u64 {
    let h = match addr.ip() {
        IpAddr::V4(v4) => fnv1a(FNV_OFFSET, &v4.octets()),
        IpAddr::V6(v6) => fnv1a(FNV_OFFSET, &v6.octets()),
    };
    fnv1a(h, &addr.port().to_be_bytes())
}

#[derive(Debug, Default)]
pub(crate) struct Ring {
    /// (point, endpoint index), sorted.
    points: Box<[(u64, u32)]>,
}

impl Ring {
    pub(crate) fn build(addrs: impl ExactSizeIterator<Item = SocketAddr>) -> Ring {
        let mut points = Vec::with_capacity(addrs.len() * POINTS as usize);
        for (i, addr) in addrs.enumerate() {
            let h = address_hash(&addr);
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            points.extend((0..POINTS).map(|p| (mix(fnv1a(h, &p.to_le_bytes())), index)));
        }
        // Two endpoints' points that collide are ordered by index: still the same in every
        // process for the same endpoint list.
        points.sort_unstable();
        Ring {
            points: points.into_boxed_slice(),
        }
    }

    /// Endpoint indexes from the owner of `key` on, clockwise, once round the ring. An endpoint
    /// comes up once per point: callers skip the ones they cannot use.
    pub(crate) fn walk(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let h = mix(key);
        let start = self.points.partition_point(|&(p, _)| p < h);
        let (before, after) = self.points.split_at(start);
        after.iter().chain(before).map(|&(_, i)| i as usize)
    }
}
