use super::*;

#[test]
fn draws_differ_and_stay_in_range() {
    let draws: std::collections::HashSet<u64> = (0..1000).map(|_| u64()).collect();
    assert_eq!(draws.len(), 1000, "no repeats in a thousand 64-bit draws");
    let mut seen = [0u32; 5];
    for _ in 0..5000 {
        seen[usize::try_from(below(5)).unwrap()] += 1;
    }
    assert!(seen.iter().all(|&n| n > 700), "roughly uniform: {seen:?}");
    assert_eq!(below(0), 0);
}

#[test]
fn threads_do_not_share_a_sequence() {
    let a = std::thread::spawn(u64).join().unwrap();
    let b = std::thread::spawn(u64).join().unwrap();
    assert_ne!(a, b);
}
