//! Allocations per request, counted by dhat's allocator: the test binary installs
//! `dhat::Alloc` as its global allocator and holds a `dhat::Profiler` while it runs (a binary
//! of its own without libtest's harness, whose thread allocates now and then).

/// Runs `exchange` (one request and its answer, returning the bytes read) once, 1,000 times
/// to warm up, then 10,000 times; prints the allocations of each stage and panics on any in
/// the last.
pub async fn none_per_request(mut exchange: impl AsyncFnMut() -> usize) {
    let cold = dhat::HeapStats::get();
    exchange().await;
    let first = dhat::HeapStats::get();
    // Buffers and metric handles settle over the first requests.
    for _ in 0..1_000 {
        exchange().await;
    }
    let warm = dhat::HeapStats::get();
    const N: u64 = 10_000;
    let mut read = 0;
    for _ in 0..N {
        read += exchange().await;
    }
    let after = dhat::HeapStats::get();
    let blocks = after.total_blocks - warm.total_blocks;
    println!(
        "first request: {} allocations ({} bytes); warm-up: {} allocations over 1,000; then {} \
         allocations ({} bytes) over {N} requests ({read} bytes read)",
        first.total_blocks - cold.total_blocks,
        first.total_bytes - cold.total_bytes,
        warm.total_blocks - first.total_blocks,
        blocks,
        after.total_bytes - warm.total_bytes,
    );
    assert_eq!(blocks, 0, "allocations per request, once warm");
}
