//! The allocation each record's bytes are copied into.
//!
//! Record buffers are freed on the producer thread, so the memory the
//! allocator hands a scheduler next was last written on the other core. A
//! copy into it stalls the hook on fetching those cache lines. Each
//! scheduler thread therefore allocates the next record's buffer at the end
//! of a call, sized like the last record, and prefetches it for writing: the
//! lines move while the VM runs between calls.

use std::cell::Cell;

/// Records up to this size use the prepared buffer; for larger ones the
/// copy itself costs far more than the stall.
const PREPARED_MAX: usize = 4096;

thread_local! {
    static PREPARED: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// `bytes` in an allocation of its own, with no more spare capacity than
/// the allocator's own rounding would add (at most an eighth).
pub fn copy_of(bytes: &[u8]) -> Vec<u8> {
    let len = bytes.len();
    if len > PREPARED_MAX {
        return bytes.to_vec();
    }
    PREPARED.with(|prepared| {
        let mut buf = prepared.take();
        if buf.capacity() < len || buf.capacity() > len + len / 8 {
            buf = Vec::with_capacity(len);
        }
        buf.extend_from_slice(bytes);
        let next = Vec::with_capacity(len);
        prefetch_for_write(&next);
        prepared.set(next);
        buf
    })
}

/// Asks the core for `buf`'s cache lines in the exclusive state without
/// waiting for them (PREFETCHW; a no-op on x86 CPUs without it).
fn prefetch_for_write(buf: &Vec<u8>) {
    #[cfg(target_arch = "x86_64")]
    for offset in (0..buf.capacity()).step_by(64) {
        // SAFETY: the address is inside the allocation; a prefetch reads
        // and writes nothing and cannot fault.
        unsafe {
            core::arch::asm!("prefetchw [{0}]", in(reg) buf.as_ptr().add(offset), options(nostack, preserves_flags, readonly))
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = buf;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_hold_the_bytes_with_little_spare_capacity() {
        for len in [0, 1, 100, 330, 90, 4096, 4097, 5000, 100] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let copy = copy_of(&bytes);
            assert_eq!(copy, bytes);
            assert!(copy.capacity() <= len + len / 8, "len {len}: capacity {}", copy.capacity());
        }
    }
}
