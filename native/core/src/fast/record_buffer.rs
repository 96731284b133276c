//! The allocation each record is written into.
//!
//! Record buffers are freed on the producer thread, so the memory the
//! allocator hands a scheduler next was last written on the other core.
//! Writing into it stalls the hook on fetching those cache lines. Each
//! scheduler thread therefore allocates the next record's buffer at the end
//! of a call, sized like the last record, and prefetches it for writing: the
//! lines move while the VM runs between calls. The hook encodes straight
//! into that buffer, so a record costs one allocation and no copy.

use std::cell::Cell;

/// Records up to this size use the prepared buffer; a larger one is sized
/// from its payload instead.
const PREPARED_MAX: usize = 4096;

thread_local! {
    static PREPARED: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// An empty buffer to write the next record into: the prepared one, else
/// (a large payload, or none prepared) one with room for the payload
/// encoded (as base64, with the event's other fields), so that it seldom
/// grows.
pub fn take(payload_len: usize) -> Vec<u8> {
    let prepared = if payload_len > PREPARED_MAX { Vec::new() } else { PREPARED.with(Cell::take) };
    if prepared.capacity() == 0 {
        return Vec::with_capacity(payload_len + payload_len / 3 + 1024);
    }
    prepared
}

/// `buf`, the record just written, with no more spare capacity than the
/// allocator's own rounding would add (at most an eighth); prepares the
/// buffer for the next call on this thread.
pub fn finish(mut buf: Vec<u8>) -> Vec<u8> {
    let len = buf.len();
    if buf.capacity() > len + len / 8 {
        buf.shrink_to_fit();
    }
    if len <= PREPARED_MAX {
        let next = Vec::with_capacity(len);
        prefetch_for_write(&next);
        PREPARED.with(|prepared| prepared.set(next));
    }
    buf
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
    fn records_keep_their_bytes_with_little_spare_capacity() {
        for (len, payload_len) in [(0, 0), (1, 0), (100, 50), (330, 200), (90, 60), (4096, 4000), (4097, 4097), (5000, 4500), (20000, 9000), (100, 80)] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut buf = take(payload_len);
            assert!(buf.is_empty());
            buf.extend_from_slice(&bytes);
            let record = finish(buf);
            assert_eq!(record, bytes);
            assert!(record.capacity() <= len + len / 8, "len {len}: capacity {}", record.capacity());
        }
    }
}
