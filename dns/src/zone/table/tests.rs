use super::{Table, fold};

/// Values stand for keys here: `value` is key `value`, and `is` compares them.
fn find(t: &Table, hash: u32, key: u32) -> Option<u32> {
    t.find(hash, |v| v == key)
}

#[test]
fn an_empty_table_finds_nothing_and_ends_its_probe() {
    let t = Table::with_capacity(0);
    assert_eq!(t.len(), 0);
    assert!(t.slots() >= 8);
    for hash in [0, 1, 7, u32::MAX] {
        assert_eq!(find(&t, hash, 0), None);
    }
    assert_eq!(t.values().count(), 0);
}

#[test]
fn values_under_one_hash_are_told_apart_by_their_keys() {
    let mut t = Table::with_capacity(4);
    // Three keys whose 32 hash bits are all the same: each is found by its key alone.
    for key in [10, 20, 30] {
        t.insert(0xdead_beef, key);
    }
    for key in [10, 20, 30] {
        assert_eq!(find(&t, 0xdead_beef, key), Some(key));
    }
    // A name that is not there, with those very bits: probed past all three, not found.
    assert_eq!(find(&t, 0xdead_beef, 40), None);
    // The same key under other bits is another name's probe: not found either.
    assert_eq!(find(&t, 0x1234_5678, 10), None);
}

#[test]
fn probes_wrap_around_the_end_of_the_slots() {
    let mut t = Table::with_capacity(6);
    let last = u32::try_from(t.slots() - 1).unwrap();
    // All start at the last slot: the others sit at the front.
    for key in 0..6 {
        t.insert(last, key);
    }
    for key in 0..6 {
        assert_eq!(find(&t, last, key), Some(key));
    }
    assert_eq!(find(&t, last, 6), None);
    assert_eq!(find(&t, 0, 0), None, "slot 0 holds a value of another hash");
}

#[test]
fn sized_once_it_is_at_most_three_quarters_full_and_at_least_three_eighths() {
    for names in [1, 5, 6, 7, 100, 1000, 40_000] {
        let mut t = Table::with_capacity(names);
        let slots = t.slots();
        assert!(slots.is_power_of_two());
        for key in 0..u32::try_from(names).unwrap() {
            t.insert(
                fold(u64::from(key).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                key,
            );
        }
        assert_eq!(t.slots(), slots, "{names} names: the table grew");
        assert!(names * 4 <= slots * 3, "{names} names in {slots} slots");
        assert!(
            slots <= 8 || names * 8 >= slots * 3,
            "{names} names in {slots} slots"
        );
        assert_eq!(t.len(), names);
        assert_eq!(t.values().count(), names);
    }
}

#[test]
fn it_grows_by_doubling_and_keeps_every_value() {
    let mut t = Table::with_capacity(0);
    let mut grown = vec![t.slots()];
    for key in 0..10_000u32 {
        // Bad hashes on purpose: runs of 16 keys share one.
        t.insert(key / 16, key);
        if *grown.last().unwrap() != t.slots() {
            grown.push(t.slots());
        }
        assert!(t.len() * 4 <= t.slots() * 3);
    }
    assert!(grown.windows(2).all(|w| w[1] == 2 * w[0]), "{grown:?}");
    for key in 0..10_000u32 {
        assert_eq!(find(&t, key / 16, key), Some(key));
    }
    assert_eq!(find(&t, 3, 10_000), None);
}

#[test]
fn folding_keeps_both_halves_of_the_hash() {
    assert_ne!(fold(0), fold(1), "the low half");
    assert_ne!(fold(0), fold(1 << 32), "the high half");
    assert_eq!(fold(0x0000_0001_0000_0001), 0);
}

#[test]
fn remapped_values_are_found_where_they_were() {
    let mut t = Table::with_capacity(100);
    for key in 0..100u32 {
        t.insert(key % 7, key * 10);
    }
    // Every value moves (as offsets do when an arena is written again), one is left alone.
    t.remap(|v| (v != 500).then_some(v * 3 + 1));
    for key in 0..100u32 {
        let moved = if key == 50 { 500 } else { key * 30 + 1 };
        assert_eq!(t.find(key % 7, |v| v == moved), Some(moved), "{key}");
        if key != 50 {
            assert_eq!(
                t.find(key % 7, |v| v == key * 10),
                None,
                "{key}: the old value"
            );
        }
    }
    assert_eq!(t.len(), 100);
}

#[test]
fn removed_values_are_gone_and_the_others_still_found() {
    let mut t = Table::with_capacity(40);
    let last = u32::try_from(t.slots() - 1).unwrap();
    // Runs that collide and wrap around the end: hashes last, 0 and 1, interleaved.
    let hash = |key: u32| [last, 0, 1][(key % 3) as usize];
    for key in 0..40u32 {
        t.insert(hash(key), key);
    }
    let mut removed = Vec::new();
    for gone in [0, 3, 17, 39, 1, 2] {
        assert!(t.remove(hash(gone), |v| v == gone), "{gone}");
        assert!(!t.remove(hash(gone), |v| v == gone), "{gone} twice");
        removed.push(gone);
        for key in 0..40u32 {
            let there = t.find(hash(key), |v| v == key).is_some();
            assert_eq!(
                there,
                !removed.contains(&key),
                "{key} after removing {gone}"
            );
        }
    }
    assert_eq!(t.len(), 34);
    assert!(!t.remove(5, |_| true), "an empty probe");
}
