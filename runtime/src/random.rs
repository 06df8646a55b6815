//! Cheap randomness for spreading load and naming things (balancer picks, canary draws, Pod
//! name suffixes, uids): a per-thread xorshift64* seeded from std's `RandomState` keys, which
//! come from the OS. No lock, no crate; not for secrets.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};

thread_local! {
    static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(0u64) | 1);
}

/// A uniformly distributed `u64`.
pub fn u64() -> u64 {
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// A number in `0..n`; 0 when `n` is 0.
pub fn below(n: u64) -> u64 {
    if n == 0 { 0 } else { u64() % n }
}

#[cfg(test)]
mod tests;
