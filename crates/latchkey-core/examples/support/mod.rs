//! What the rate examples share.

/// CPU time this thread has run, from Linux's /proc/thread-self/schedstat (nanoseconds).
pub fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
