//! Keeping the resident size close to the live heap (glibc's allocator).
//!
//! glibc gives each thread that contends for the heap its own arena (up to 8 per core), and
//! memory freed in one arena is not reused by another; freed pages inside an arena also stay
//! resident until trimmed. The controller allocates in bursts (a full inventory refresh reads
//! every LINSTOR object, page by page) and then frees most of it, so without these two measures
//! its RSS settles well above what it holds. With another C library (the container image is
//! static musl, whose allocator has no per-thread arenas) both are no-ops.

/// Caps glibc at one arena. Call first thing in `main`, before other threads exist.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; no other thread allocates yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Objects kept in a watch cache for the process's lifetime: drop what the controller never
/// reads and the spare room deserialisation leaves in their lists (a list filled element by
/// element keeps room for four).
pub trait Compact {
    fn compact(&mut self) {}
}

/// Returns freed memory to the system (after a burst of allocations was released).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
