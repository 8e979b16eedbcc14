//! Keeping the resident size close to the live heap (glibc's allocator).
//!
//! glibc gives each thread that contends for the heap its own arena (up to 8 per core), and
//! memory freed in one arena is not reused by another; freed pages inside an arena also stay
//! resident until trimmed. The controller allocates in bursts (a full inventory refresh reads
//! every LINSTOR object, page by page) and then frees most of it, so without these two measures
//! its RSS settles well above what it holds. The container image ships this glibc build (Debian
//! 12 on distroless/cc); with another C library these are no-ops.

/// Blocks of at least this size get their own mapping, returned to the system when freed.
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Caps glibc at one arena, and fixes the size from which blocks are mapped on their own (and
/// the free space at the top of the heap that is returned at once) at glibc's initial 128 KiB.
/// Left to itself glibc raises both after the first large block is freed (a list page, a
/// cache's hash table: up to 32 MiB and twice that), after which such blocks land in the heap
/// between long-lived objects and their pages stay resident. Call first thing in `main`,
/// before other threads exist.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; no other thread allocates yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, MMAP_THRESHOLD);
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
