//! The NIF's global allocator: mimalloc, except for blocks of 4 MiB and
//! more, which go to the C library's malloc.
//!
//! mimalloc frees records allocated on a scheduler on the producer thread
//! without glibc's arena lock (futex waits on the hook path in perf). But
//! it keeps what it frees for reuse: after one 200 MB payload (its JSON,
//! the buffer it grew in, the record) the VM's RSS stayed 400 MB higher
//! until the bridge stopped. glibc maps a block this large on its own
//! (`fast::libc_malloc` sets the threshold at 4 MiB) and unmaps it when
//! it is freed, so the memory goes back at once; no event of an ordinary
//! size comes near it.

use std::alloc::{GlobalAlloc, Layout, System};

use mimalloc::MiMalloc;

/// Blocks of this size and more are the C library's.
const LARGE_BYTES: usize = 4 << 20;

pub struct SplitAllocator;

fn is_large(size: usize) -> bool {
    size >= LARGE_BYTES
}

// SAFETY: each block is freed by the allocator that made it: the choice
// depends only on the block's size, which `dealloc` and `realloc` are
// given as it was allocated; a block that changes side is moved.
unsafe impl GlobalAlloc for SplitAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size()) {
            System.alloc(layout)
        } else {
            MiMalloc.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size()) {
            System.alloc_zeroed(layout)
        } else {
            MiMalloc.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_large(layout.size()) {
            System.dealloc(ptr, layout)
        } else {
            MiMalloc.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match (is_large(layout.size()), is_large(new_size)) {
            (false, false) => MiMalloc.realloc(ptr, layout, new_size),
            (true, true) => System.realloc(ptr, layout, new_size),
            _ => {
                // SAFETY: the caller guarantees `new_size`, with the old
                // alignment, is a valid layout.
                let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                let new_ptr = self.alloc(new_layout);
                if !new_ptr.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                new_ptr
            }
        }
    }
}
