//! The allocator's settings for a long-running server: large buffers go back to the system when freed.
//!
//! glibc's malloc serves a large request with its own mapping, but after the first such mapping is freed it
//! raises that threshold to the freed size (its "dynamic mmap threshold"), so every later buffer of that size
//! comes from the calling thread's arena and stays there after `free`. Argon2's 19 MiB working memory is such
//! a buffer and runs on whichever blocking thread is free: measured, one sign-up left the server at 48 MiB and
//! twenty at 425 MiB, none of it in use. Fixing the threshold at 1 MiB turns the dynamic behaviour off, so
//! password hashes and decoded images return their memory the moment they are done; smaller allocations are
//! unaffected. Other C libraries (musl) have no such heuristic and need nothing.

/// Large allocations from this size up are mapped on their own and unmapped when freed.
pub const OWN_MAPPING_FROM: usize = 1024 * 1024;
/// Free memory at the top of a heap is given back once it exceeds this. Fixing the mmap threshold also
/// fixes this one at glibc's 128 KiB default, which would give back and fault in again small allocations'
/// memory all the time; 8 MiB keeps that churn away and still bounds what stays resident per arena.
pub const KEEP_FREE_UP_TO: usize = 8 * 1024 * 1024;

/// Applies the settings; call once at start. False when the allocator refused them.
pub fn tune() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let value = |bytes: usize| libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only changes malloc's tuning parameters (under malloc's own lock); nothing else
        // is touched, and a value glibc does not accept is refused with 0 rather than applied.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, value(OWN_MAPPING_FROM)) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, value(KEEP_FREE_UP_TO)) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn glibc_accepts_the_threshold() {
        assert!(super::tune());
    }
}
