//! The zone's arena: every name's entry, one after another, in one allocation, so that what a
//! Service costs is its bytes and not an allocation (header, rounding, a pointer to it) per
//! key, per record list and per shared target, and so that a lookup reads one place: the
//! key it compares, and right after it the answers it sends.
//!
//! An entry, where the index points:
//! - the name's key ([`key_of`](super::key_of): its uncompressed wire form, lowercase, which
//!   ends at its root label, so it needs no length);
//! - its pre-encoded answers: a length (2 bytes) and then, one after another, a type (2
//!   bytes), a length (2 bytes) and that many bytes of [`Encoded`](super::Encoded) answer;
//! - its records: a length (4 bytes) and then each record as its type's low byte and a fixed
//!   payload: an address, or an SRV's weight and port, and a name as the offset of that
//!   name's entry in the arena (4 bytes).
//!
//! A name that records point at but that the zone does not hold (an ExternalName's target)
//! has an entry too, with no answers and no records, that the index does not list.
//!
//! Lengths and numbers are big-endian. Offsets are 32 bits: an arena is at most
//! [`MAX_ARENA`] bytes, and a zone that would need more is refused when compiled.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{Data, MAX_KEY, Target};

/// The most bytes an arena holds: offsets into it are `u32`.
pub(super) const MAX_ARENA: usize = u32::MAX as usize;

/// What an entry holds besides its key, its answers and its records: their two lengths.
pub(super) const ENTRY_OVERHEAD: usize = 2 + 4;

/// One name's entry, read.
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry<'a> {
    pub key: &'a [u8],
    /// The pre-encoded answers, in the format above (the hot path reads them without
    /// reading an `Entry`: it knows the key's length).
    #[cfg_attr(not(test), allow(dead_code))]
    pub answers: &'a [u8],
    records: &'a [u8],
}

impl<'a> Entry<'a> {
    /// The entry at `at`, if `arena` holds a whole one there (it always does where the index
    /// and records point; anything else reads as no entry, never a panic).
    pub fn at(arena: &'a [u8], at: Target) -> Option<Entry<'a>> {
        let at = at as usize;
        let key = key_at(arena, at)?;
        let mut rest = arena.get(at + key.len()..)?;
        let len = u16::from_be_bytes(array(&mut rest)?);
        let answers = take(&mut rest, usize::from(len))?;
        let len = u32::from_be_bytes(array(&mut rest)?);
        let records = take(&mut rest, len as usize)?;
        Some(Entry {
            key,
            answers,
            records,
        })
    }

    /// The name's records, in the order they were added.
    pub fn records(&self) -> Records<'a> {
        Records(self.records)
    }
}

/// The key that starts at `at`: its labels up to the root's.
pub(super) fn key_at(arena: &[u8], at: usize) -> Option<&[u8]> {
    let mut end = at;
    loop {
        let len = usize::from(*arena.get(end)?);
        if len > 63 {
            return None;
        }
        end += 1 + len;
        if len == 0 || end - at > MAX_KEY {
            break;
        }
    }
    arena.get(at..end).filter(|key| key.len() <= MAX_KEY)
}

/// The answer of `qtype` among an entry's pre-encoded `answers`.
pub(super) fn answer(mut answers: &[u8], qtype: u16) -> Option<&[u8]> {
    while let Some((t, bytes)) = next_answer(&mut answers) {
        if t == qtype {
            return Some(bytes);
        }
    }
    None
}

/// The first of `answers` (its type and bytes), the rest left in `answers`.
pub(super) fn next_answer<'a>(answers: &mut &'a [u8]) -> Option<(u16, &'a [u8])> {
    let t = u16::from_be_bytes(array(answers)?);
    let len = usize::from(u16::from_be_bytes(array(answers)?));
    Some((t, take(answers, len)?))
}

/// Appends one answer of `qtype` to `out` in the format above; false where it is too long
/// for its 2-byte length.
pub(super) fn push_answer(out: &mut Vec<u8>, qtype: u16, parts: &[&[u8]]) -> bool {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let Ok(len) = u16::try_from(len) else {
        return false;
    };
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
    true
}

/// An entry's records, decoded one by one.
#[derive(Clone, Debug)]
pub(super) struct Records<'a>(&'a [u8]);

impl Iterator for Records<'_> {
    type Item = Data;

    fn next(&mut self) -> Option<Data> {
        let rest = &mut self.0;
        let [tag] = array(rest)?;
        let target = |rest: &mut &[u8]| array(rest).map(u32::from_be_bytes);
        let data = match tag {
            A => Data::A(Ipv4Addr::from(array::<4>(rest)?)),
            AAAA => Data::Aaaa(Ipv6Addr::from(array::<16>(rest)?)),
            SRV => Data::Srv {
                weight: u16::from_be_bytes(array(rest)?),
                port: u16::from_be_bytes(array(rest)?),
                target: target(rest)?,
            },
            PTR => Data::Ptr(target(rest)?),
            CNAME => Data::Cname(target(rest)?),
            NS => Data::Ns(target(rest)?),
            TXT => Data::Txt,
            SOA => Data::Soa,
            _ => return None,
        };
        Some(data)
    }
}

// Each record's tag: its type's number, all of them under 256.
const A: u8 = 1;
const NS: u8 = 2;
const CNAME: u8 = 5;
const SOA: u8 = 6;
const PTR: u8 = 12;
const TXT: u8 = 16;
const AAAA: u8 = 28;
const SRV: u8 = 33;

/// How many bytes `data` takes in an entry.
pub(super) fn record_len(data: &Data) -> usize {
    1 + match data {
        Data::A(_) => 4,
        Data::Aaaa(_) => 16,
        Data::Srv { .. } => 2 + 2 + 4,
        Data::Ptr(_) | Data::Cname(_) | Data::Ns(_) => 4,
        Data::Txt | Data::Soa => 0,
    }
}

/// Appends `data` to `out`, its name (if any) as `offset` says where that name's entry is.
pub(super) fn push_record(out: &mut Vec<u8>, data: &Data, offset: impl Fn(Target) -> Target) {
    match data {
        Data::A(v4) => {
            out.push(A);
            out.extend_from_slice(&v4.octets());
        }
        Data::Aaaa(v6) => {
            out.push(AAAA);
            out.extend_from_slice(&v6.octets());
        }
        Data::Srv {
            weight,
            port,
            target,
        } => {
            out.push(SRV);
            out.extend_from_slice(&weight.to_be_bytes());
            out.extend_from_slice(&port.to_be_bytes());
            out.extend_from_slice(&offset(*target).to_be_bytes());
        }
        Data::Ptr(target) | Data::Cname(target) | Data::Ns(target) => {
            out.push(match data {
                Data::Ptr(_) => PTR,
                Data::Cname(_) => CNAME,
                _ => NS,
            });
            out.extend_from_slice(&offset(*target).to_be_bytes());
        }
        Data::Txt => out.push(TXT),
        Data::Soa => out.push(SOA),
    }
}

/// The first `N` bytes of `rest`, taken off it.
fn array<const N: usize>(rest: &mut &[u8]) -> Option<[u8; N]> {
    let (head, tail) = rest.split_first_chunk::<N>()?;
    *rest = tail;
    Some(*head)
}

/// The first `len` bytes of `rest`, taken off it.
fn take<'a>(rest: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    let (head, tail) = rest.split_at_checked(len)?;
    *rest = tail;
    Some(head)
}

#[cfg(test)]
mod tests;
