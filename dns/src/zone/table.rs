//! The zone's name index: an open-addressing hash table of 8-byte slots, each 32 bits of a
//! name's hash and a 32-bit value (where the name's entry starts in the zone's arena). A lookup
//! reads one slot, usually, and compares a key only where the whole 32 bits match, so a probe
//! past other names stays in the table's cache line and the arena is read once: the entry
//! that holds the key, and right after it, the name's answers.
//!
//! Linear probing over a power-of-two number of slots, at most three quarters full, so a
//! probe always ends at an empty slot. Sized once for the names it will hold (the zone's); the
//! compiler's own table grows by doubling, rehashing from the stored bits.

/// A slot's value when the slot is empty: no entry starts there (an entry is at least a few
/// bytes long, and the arena holds at most `u32::MAX` bytes).
const EMPTY: u32 = u32::MAX;

/// The fewest slots a table has: an empty zone still probes something.
const MIN_SLOTS: usize = 8;

/// The hash bits a slot keeps and a probe starts from: the whole 64-bit hash folded, so both
/// halves count.
pub(super) fn fold(hash: u64) -> u32 {
    (hash ^ (hash >> 32)) as u32
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    hash: u32,
    value: u32,
}

const VACANT: Slot = Slot {
    hash: 0,
    value: EMPTY,
};

#[derive(Debug)]
pub(super) struct Table {
    slots: Box<[Slot]>,
    len: usize,
}

impl Table {
    /// A table for `names` values that will never grow past them.
    pub(super) fn with_capacity(names: usize) -> Table {
        Table {
            slots: vec![VACANT; slots_for(names)].into_boxed_slice(),
            len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// How many bytes its slots take.
    pub(super) fn size(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }

    /// How many slots it has (for tests of its bounds).
    #[cfg(test)]
    pub(super) fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The value under `hash` for which `is` holds (the caller compares keys), if any.
    pub(super) fn find(&self, hash: u32, mut is: impl FnMut(u32) -> bool) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut at = hash as usize & mask;
        loop {
            let slot = self.slots[at];
            if slot.value == EMPTY {
                return None;
            }
            if slot.hash == hash && is(slot.value) {
                return Some(slot.value);
            }
            at = (at + 1) & mask;
        }
    }

    /// Adds `value` under `hash`; the caller knows it is not there yet. Doubles the slots
    /// when they would be more than three quarters full.
    pub(super) fn insert(&mut self, hash: u32, value: u32) {
        debug_assert_ne!(value, EMPTY);
        if slots_for(self.len + 1) > self.slots.len() {
            let grown = vec![VACANT; self.slots.len() * 2].into_boxed_slice();
            let old = std::mem::replace(&mut self.slots, grown);
            for slot in old.iter().filter(|s| s.value != EMPTY) {
                self.place(*slot);
            }
        }
        self.place(Slot { hash, value });
        self.len += 1;
    }

    /// Removes the value under `hash` for which `is` holds; false when there is none. The
    /// values probed past it move back (backward-shift deletion), so no probe ever stops short
    /// of a value, and the table needs no tombstones.
    pub(super) fn remove(&mut self, hash: u32, mut is: impl FnMut(u32) -> bool) -> bool {
        let mask = self.slots.len() - 1;
        let mut hole = hash as usize & mask;
        loop {
            let slot = self.slots[hole];
            if slot.value == EMPTY {
                return false;
            }
            if slot.hash == hash && is(slot.value) {
                break;
            }
            hole = (hole + 1) & mask;
        }
        let mut next = (hole + 1) & mask;
        loop {
            let slot = self.slots[next];
            if slot.value == EMPTY {
                break;
            }
            // It may fill the hole if the hole is on its probe, between its home and here.
            let home = slot.hash as usize & mask;
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(hole) & mask {
                self.slots[hole] = slot;
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.slots[hole] = VACANT;
        self.len -= 1;
        true
    }

    fn place(&mut self, slot: Slot) {
        let mask = self.slots.len() - 1;
        let mut at = slot.hash as usize & mask;
        while self.slots[at].value != EMPTY {
            at = (at + 1) & mask;
        }
        self.slots[at] = slot;
    }

    /// Each value replaced by what `to` makes of it, in place: values that move together,
    /// as every entry of an arena written again does. A value `to` has nothing for stays.
    pub(super) fn remap(&mut self, mut to: impl FnMut(u32) -> Option<u32>) {
        for slot in self.slots.iter_mut().filter(|s| s.value != EMPTY) {
            if let Some(value) = to(slot.value).filter(|v| *v != EMPTY) {
                slot.value = value;
            }
        }
    }

    /// Every value, in slot order.
    #[cfg(test)]
    pub(super) fn values(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots
            .iter()
            .filter(|s| s.value != EMPTY)
            .map(|s| s.value)
    }
}

/// The slots for `names` values: a power of two, at most three quarters full.
fn slots_for(names: usize) -> usize {
    names
        .saturating_add(names.div_ceil(3))
        .max(MIN_SLOTS)
        .checked_next_power_of_two()
        .unwrap_or(usize::MAX / 2 + 1)
}

#[cfg(test)]
mod tests;
