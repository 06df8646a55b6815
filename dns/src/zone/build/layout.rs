//! Where each name's entry goes in the arena, and writing it there: from the compiler's names,
//! keys and records, and the answers encoded from the arena written before (none, the first
//! time).

use super::super::arena::{self, ENTRY_OVERHEAD};
use super::super::{Data, Target};
use super::Seen;

/// The pre-encoded answers of every name, one after another, and where each name's answers end.
#[derive(Debug)]
pub(super) struct Answers {
    pub bytes: Vec<u8>,
    pub ends: Vec<usize>,
}

impl Answers {
    /// Name `id`'s answers (none before they are encoded).
    fn of(&self, id: usize) -> &[u8] {
        let start = id.checked_sub(1).and_then(|i| self.ends.get(i)).copied();
        match (start, self.ends.get(id)) {
            (Some(start), Some(end)) => self.bytes.get(start..*end),
            (None, Some(end)) => self.bytes.get(..*end),
            _ => None,
        }
        .unwrap_or_default()
    }
}

/// What the arena is written from: the compiler's names and records, in the order of their
/// numbers.
pub(super) struct Layout<'a> {
    pub names: &'a [Seen],
    pub keys: &'a [u8],
    /// Sorted by owner.
    pub records: &'a [(Target, Data)],
    /// Each name's records' bytes.
    pub records_len: &'a [u32],
}

impl Layout<'_> {
    /// Where each name's entry starts, if all of them fit `max_arena` bytes.
    pub fn offsets(&self, answers: &Answers, max_arena: usize) -> Option<Vec<u32>> {
        let mut offsets = Vec::with_capacity(self.names.len());
        let mut at = 0usize;
        for (id, seen) in self.names.iter().enumerate() {
            offsets.push(u32::try_from(at).ok()?);
            let answers = u16::try_from(answers.of(id).len()).ok()?;
            let records = self.records_len.get(id).copied().unwrap_or_default();
            at = at
                .checked_add(usize::from(seen.len) + ENTRY_OVERHEAD)?
                .checked_add(usize::from(answers))?
                .checked_add(records as usize)?;
        }
        (at <= max_arena).then_some(offsets)
    }

    /// The arena, each name's entry at its offset.
    pub fn write(&self, offsets: &[u32], answers: &Answers) -> Box<[u8]> {
        let total = match (offsets.last(), self.names.last()) {
            (Some(last), Some(seen)) => {
                let id = self.names.len() - 1;
                *last as usize
                    + usize::from(seen.len)
                    + ENTRY_OVERHEAD
                    + answers.of(id).len()
                    + self.records_len.get(id).copied().unwrap_or_default() as usize
            }
            _ => 0,
        };
        // Sized exactly, so the boxed arena is the allocation written (never a copy).
        let mut out = Vec::with_capacity(total);
        let offset = |target: Target| offsets.get(target as usize).copied().unwrap_or_default();
        let mut records = self.records.iter().peekable();
        for (id, seen) in self.names.iter().enumerate() {
            let start = seen.key as usize;
            out.extend_from_slice(
                self.keys
                    .get(start..start + usize::from(seen.len))
                    .unwrap_or_default(),
            );
            let answers = answers.of(id);
            out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
            out.extend_from_slice(answers);
            let records_len = self.records_len.get(id).copied().unwrap_or_default();
            out.extend_from_slice(&records_len.to_be_bytes());
            while let Some((_, data)) = records.next_if(|(owner, _)| *owner as usize == id) {
                arena::push_record(&mut out, data, offset);
            }
        }
        debug_assert_eq!(out.len(), total);
        out.into_boxed_slice()
    }
}
