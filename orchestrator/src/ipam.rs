//! Address allocators: what the API server's service IP and node port allocators and a node's
//! pod CIDR do, for one machine.
//!
//! Pod IPs come from the pod range (127.1.0.0/16 by default), cluster IPs from the service
//! range (127.2.0.0/16): all of 127.0.0.0/8 routes to the loopback interface on Linux, so
//! every Pod can bind its own address and many replicas listen on the same port. The first
//! and last address of a range are never handed out, as on a real network.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use ferry_model::Cidr;

fn to_int(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn host_bits(cidr: Cidr) -> u32 {
    let bits = if cidr.addr().is_ipv4() { 32 } else { 128 };
    u32::from(bits - cidr.prefix())
}

/// How many addresses a range can hand out: all but the first and the last.
pub fn usable(cidr: Cidr) -> u128 {
    match host_bits(cidr) {
        0 | 1 => 0,
        bits if bits >= 127 => u128::MAX,
        bits => (1u128 << bits) - 2,
    }
}

/// The `n`-th usable address (0-based), if the range has one.
fn nth(cidr: Cidr, n: u128) -> Option<IpAddr> {
    (n < usable(cidr)).then(|| {
        let v = to_int(cidr.addr()) + 1 + n;
        match cidr.addr() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(v).unwrap_or(0))),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
        }
    })
}

/// The index of a usable address of the range.
fn index(cidr: Cidr, ip: IpAddr) -> Option<u128> {
    if !cidr.contains(ip) {
        return None;
    }
    let n = to_int(ip).checked_sub(to_int(cidr.addr()) + 1)?;
    (n < usable(cidr)).then_some(n)
}

/// Hands out the addresses of one range, lowest free first after the last one handed out,
/// so a freed address is not reused at once (a client still talking to the old Pod reaches
/// nothing rather than a stranger).
#[derive(Clone, Debug)]
pub struct IpAllocator {
    cidr: Cidr,
    used: BTreeSet<u128>,
    next: u128,
}

impl IpAllocator {
    pub fn new(cidr: Cidr) -> IpAllocator {
        IpAllocator {
            cidr,
            used: BTreeSet::new(),
            next: 0,
        }
    }

    pub fn cidr(&self) -> Cidr {
        self.cidr
    }

    pub fn allocate(&mut self) -> Option<IpAddr> {
        let usable = usable(self.cidr);
        if self.used.len() as u128 >= usable {
            return None;
        }
        let mut n = self.next;
        loop {
            if n >= usable {
                n = 0;
            }
            if self.used.insert(n) {
                self.next = n + 1;
                return nth(self.cidr, n);
            }
            n += 1;
        }
    }

    /// Claims a given address (a Service that names its cluster IP); false when it is outside
    /// the range or taken.
    pub fn reserve(&mut self, ip: IpAddr) -> bool {
        index(self.cidr, ip).is_some_and(|n| self.used.insert(n))
    }

    /// Whether the range hands this address out at all (not its first or last).
    pub fn is_usable(&self, ip: IpAddr) -> bool {
        index(self.cidr, ip).is_some()
    }

    pub fn release(&mut self, ip: IpAddr) {
        if let Some(n) = index(self.cidr, ip) {
            self.used.remove(&n);
        }
    }

    pub fn in_use(&self) -> usize {
        self.used.len()
    }
}

/// Node ports, 30000–32767 as the API server's default range.
#[derive(Clone, Debug)]
pub struct PortAllocator {
    range: std::ops::RangeInclusive<u16>,
    used: BTreeSet<u16>,
    next: u16,
}

impl Default for PortAllocator {
    fn default() -> Self {
        PortAllocator {
            range: 30000..=32767,
            used: BTreeSet::new(),
            next: 30000,
        }
    }
}

impl PortAllocator {
    pub fn allocate(&mut self) -> Option<u16> {
        let (lo, hi) = (*self.range.start(), *self.range.end());
        if self.used.len() > usize::from(hi - lo) {
            return None;
        }
        let mut p = self.next;
        loop {
            if !self.range.contains(&p) {
                p = lo;
            }
            if self.used.insert(p) {
                self.next = p.wrapping_add(1);
                return Some(p);
            }
            p = p.wrapping_add(1);
        }
    }

    pub fn reserve(&mut self, port: u16) -> bool {
        self.range.contains(&port) && self.used.insert(port)
    }

    pub fn release(&mut self, port: u16) {
        self.used.remove(&port);
    }
}

#[cfg(test)]
mod tests;
