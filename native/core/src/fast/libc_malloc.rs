//! glibc malloc settings for librdkafka's threads, and giving memory back.
//!
//! librdkafka allocates with the C library's malloc: each message on
//! `produce`, and request buffers of up to `batch.size` on its broker
//! threads. The BEAM sets malloc's trim threshold and top pad at boot
//! (`+MYtt`, `+MYtp`), and that turns off glibc's sliding thresholds. So in
//! the VM every buffer over 128 KiB is a fresh mmap (page faults, zeroing)
//! and an munmap (a TLB shoot-down that interrupts the scheduler on the
//! other core), and the arenas shrink and grow back on every batch. A
//! standalone program, such as the benchmark's raw producer, slides its
//! thresholds up and pays none of this (figures: `fast/mod.rs`).

/// Buffers below this come from the arenas, not from mmap: above a
/// `batch.size` (1 MB) request with its compression bound.
const MMAP_THRESHOLD: i32 = 4 * 1024 * 1024;
/// Free memory an arena keeps at its top before giving it back: glibc's
/// sliding value for that threshold (twice it).
const TRIM_THRESHOLD: i32 = 2 * MMAP_THRESHOLD;

/// Applies the settings once per OS process (they are process-wide).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() {
    use std::ffi::c_int;
    extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }
    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_THRESHOLD: c_int = -3;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: mallopt takes malloc's own lock and only sets two thresholds.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    });
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}

/// Gives the OS back what malloc holds free, after a producer (and every
/// topic librdkafka kept for it) has been destroyed: glibc keeps freed
/// memory in its arenas, where a few live blocks pin whole pages.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: malloc_trim takes each arena's lock and releases free pages.
    unsafe { malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}
