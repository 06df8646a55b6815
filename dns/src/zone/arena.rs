//! The zone's arena: every name's entry, one after another, in one allocation, so that what a
//! Service costs is its bytes and not an allocation (header, rounding, a pointer to it) per
//! key, per record list and per shared target, and so that a lookup reads one place: the
//! key it compares, and right after it the answers it sends.
//!
//! An entry, where the index points:
//! - the name's key ([`key_of`](super::key_of): its uncompressed wire form, lowercase, which
//!   ends at its root label, so it needs no length);
//! - its pre-encoded answers: a length (2 bytes) and then, one after another, each as its
//!   type (1 byte: every type the zone holds is under 256), its header's answer and additional
//!   counts (1 byte each), a length (2 bytes) and that many bytes of answer after the question
//!   ([`Encoded`](super::Encoded)); the rest of its header is the same in every answer;
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

/// One pre-encoded answer, read.
#[derive(Clone, Copy, Debug)]
pub(super) struct Answer<'a> {
    pub qtype: u16,
    /// The counts of its header's answer and additional sections.
    pub counts: [u8; 2],
    /// What follows the question.
    pub rest: &'a [u8],
}

impl Answer<'_> {
    /// Its header, as the general path encodes it for id 0: an authoritative answer to one
    /// question, with no authority section.
    pub fn header(&self) -> [u8; 12] {
        let [answers, additionals] = self.counts;
        [0, 0, 0x84, 0, 0, 1, 0, answers, 0, 0, 0, additionals]
    }
}

/// The answer of `qtype` among an entry's pre-encoded `answers`.
pub(super) fn answer(mut answers: &[u8], qtype: u16) -> Option<Answer<'_>> {
    while let Some(answer) = next_answer(&mut answers) {
        if answer.qtype == qtype {
            return Some(answer);
        }
    }
    None
}

/// The first of `answers`, the rest left in `answers`.
pub(super) fn next_answer<'a>(answers: &mut &'a [u8]) -> Option<Answer<'a>> {
    let [qtype, an, ar, l0, l1] = array(answers)?;
    let rest = take(answers, usize::from(u16::from_be_bytes([l0, l1])))?;
    Some(Answer {
        qtype: u16::from(qtype),
        counts: [an, ar],
        rest,
    })
}

/// Appends the answer to `qtype` whose header is `header` and whose sections after the question
/// are `rest` to `out`, in the format above; false (and nothing appended) where it does not
/// fit the format: a header other than [`Answer::header`]'s, a type or count past 255, a
/// `rest` past 64 KiB.
pub(super) fn push_answer(out: &mut Vec<u8>, qtype: u16, header: &[u8], rest: &[u8]) -> bool {
    let (Ok(qtype), Ok(len)) = (u8::try_from(qtype), u16::try_from(rest.len())) else {
        return false;
    };
    let &[0, 0, 0x84, 0, 0, 1, 0, an, 0, 0, 0, ar] = header else {
        return false;
    };
    out.extend_from_slice(&[qtype, an, ar]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(rest);
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
