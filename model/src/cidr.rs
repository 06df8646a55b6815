//! An address range in CIDR notation (`127.2.0.0/16`, `fd00:2::/108`): the local runtime's pod
//! and service ranges (`--pod-cidr`, `--service-cidr`), which the L4 proxy serves and the
//! allocators hand addresses out of. Parsed strictly.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A network: an address whose bits past `prefix` are zero, and the prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `127.2.0.0/16`: where `ferry up` puts cluster IPs.
    pub const V4_LOOPBACK_SERVICES: Cidr = Cidr {
        addr: IpAddr::V4(std::net::Ipv4Addr::new(127, 2, 0, 0)),
        prefix: 16,
    };
    /// `127.1.0.0/16`: where `ferry up` puts Pod IPs.
    pub const V4_LOOPBACK_PODS: Cidr = Cidr {
        addr: IpAddr::V4(std::net::Ipv4Addr::new(127, 1, 0, 0)),
        prefix: 16,
    };

    /// The network `addr/prefix`; the prefix must fit the family and `addr` must have no bits set
    /// past it (a typo more often than not: `127.2.0.1/16` says neither what it means).
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, CidrError> {
        Cidr::check(addr, prefix).map_err(|reason| CidrError {
            input: format!("{addr}/{prefix}"),
            reason,
        })
    }

    fn check(addr: IpAddr, prefix: u8) -> Result<Cidr, String> {
        let bits = bits(addr);
        if prefix > bits {
            return Err(format!(
                "the prefix length must be at most {bits} for {}",
                family(addr)
            ));
        }
        let network = Cidr { addr, prefix }.network();
        if network != addr {
            return Err(format!(
                "host bits are set past the prefix (the network is {network}/{prefix})"
            ));
        }
        Ok(Cidr { addr, prefix })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in this network (never across families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(ip)) << 96, self.prefix)
                    == u128::from(u32::from(net)) << 96
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => masked(u128::from(ip), self.prefix) == net.into(),
            _ => false,
        }
    }

    /// `addr` with the bits past the prefix cleared.
    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let bits = masked(u128::from(u32::from(a)) << 96, self.prefix) >> 96;
                IpAddr::V4((bits as u32).into())
            }
            IpAddr::V6(a) => IpAddr::V6(masked(a.into(), self.prefix).into()),
        }
    }
}

/// Keeps the top `prefix` bits of a 128-bit value.
fn masked(value: u128, prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => value & (u128::MAX << (128 - u32::from(p.min(128)))),
    }
}

fn bits(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

fn family(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// A range that does not parse, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("CIDR {input}: {reason}")]
pub struct CidrError {
    pub input: String,
    pub reason: String,
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `ADDRESS/PREFIX`, e.g. `127.2.0.0/16` or `fd00:2::/108`.
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let fail = |reason: &str| CidrError {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (addr, prefix) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| fail("expected ADDRESS/PREFIX, e.g. 127.2.0.0/16"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| fail("the address is not an IPv4 or IPv6 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| fail("the prefix length is not a number from 0 to 128"))?;
        Cidr::check(addr, prefix).map_err(|reason| fail(&reason))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests;
