//! The global allocator of the binary and the benchmark drivers: mimalloc,
//! called the way a C program calls it.
//!
//! The `mimalloc` crate's `MiMalloc` passes every allocation to
//! `mi_malloc_aligned`, whose fast path takes only blocks of at most 1 KiB
//! whose free-list head already has the alignment; anything larger (a body,
//! a batch's vector) goes through the generic aligned path. That path was
//! ~160 instructions a call and twenty calls a beacon request under
//! callgrind. Plain `mi_malloc` already gives every block 16-byte alignment
//! (it is a C `malloc`, which owes `max_align_t`) and natural alignment to
//! smaller ones, so only larger alignments (tokio's cache-padded cells) need
//! the aligned calls.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

// The `mimalloc` crate builds and links the library these come from.
extern crate mimalloc;

extern "C" {
    fn mi_malloc(size: usize) -> *mut c_void;
    fn mi_zalloc(size: usize) -> *mut c_void;
    fn mi_realloc(p: *mut c_void, new_size: usize) -> *mut c_void;
    fn mi_free(p: *mut c_void);
    fn mi_malloc_aligned(size: usize, alignment: usize) -> *mut c_void;
    fn mi_zalloc_aligned(size: usize, alignment: usize) -> *mut c_void;
    fn mi_realloc_aligned(p: *mut c_void, new_size: usize, alignment: usize) -> *mut c_void;
}

/// What `mi_malloc` aligns every block of at least this size to (mimalloc's
/// `MI_MAX_ALIGN_SIZE` on 64-bit targets).
const MALLOC_ALIGN: usize = 16;

/// Whether a plain `mi_malloc` of `layout.size()` bytes is aligned enough:
/// blocks of 16 bytes and more are 16-aligned, smaller ones come in
/// multiples of 8 at multiples of 8, and a Rust type's size is a multiple of
/// its alignment.
#[inline(always)]
fn plain(align: usize, size: usize) -> bool {
    align <= MALLOC_ALIGN && align <= size
}

pub struct MiMalloc;

// SAFETY: each call hands mimalloc a size (and an alignment when it is
// not `plain`) as its API documents, and frees and reallocates only
// blocks it returned; `mi_free` takes blocks from either kind of call.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align(), layout.size()) {
            mi_malloc(layout.size()).cast()
        } else {
            mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align(), layout.size()) {
            mi_zalloc(layout.size()).cast()
        } else {
            mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi_free(ptr.cast());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain(layout.align(), new_size) {
            mi_realloc(ptr.cast(), new_size).cast()
        } else {
            mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
        }
    }
}

/// How long mimalloc keeps an emptied page committed before it returns it
/// to the system. Its default (v3) is 1 s; under overload, where every
/// request is answered 503 and its memory freed at once, that held ~4 MiB
/// more at the peak (docs/benchmarks.md, "Allocator"). 0, set until
/// 2026-12-05, returned each page the moment it emptied (`madvise`, a TLB
/// shootdown on the other core, a page fault when it was used again): 4–5 %
/// of the CPU a beacon under steady load. 100 ms costs neither.
pub const PURGE_DELAY_MS: libc::c_long = 100;

/// Sets mimalloc's purge delay to [`PURGE_DELAY_MS`], unless
/// `MIMALLOC_PURGE_DELAY` is set (which wins). Call it first thing in
/// `main`, before other threads.
pub fn tune() {
    // mimalloc.h: `mi_option_purge_delay` of `enum mi_option_e` (v2 and v3).
    const MI_OPTION_PURGE_DELAY: libc::c_int = 15;
    extern "C" {
        fn mi_option_set(option: libc::c_int, value: libc::c_long);
    }
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: a store into mimalloc's option table, before any other thread runs.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size and alignment a Rust type can have up to 4 KiB and 64
    /// bytes, allocated, grown, shrunk and zeroed through the allocator:
    /// each block has its alignment, keeps its bytes and comes back zeroed.
    #[test]
    fn blocks_have_the_alignment_asked_for_through_every_call() {
        let allocator = MiMalloc;
        let mut align = 1;
        while align <= 64 {
            for size in (align..=4096).step_by(align) {
                let layout = Layout::from_size_align(size, align).unwrap();
                unsafe {
                    let p = allocator.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(0xA5, size);
                    let grown = allocator.realloc(p, layout, size * 3);
                    assert_eq!(grown as usize % align, 0, "grown {size} align {align}");
                    assert!((0..size).all(|i| *grown.add(i) == 0xA5));
                    let shrunk_size = (size / 2 / align).max(1) * align;
                    let shrunk = allocator.realloc(
                        grown,
                        Layout::from_size_align(size * 3, align).unwrap(),
                        shrunk_size,
                    );
                    assert_eq!(shrunk as usize % align, 0, "shrunk {size} align {align}");
                    assert!((0..shrunk_size).all(|i| *shrunk.add(i) == 0xA5));
                    allocator.dealloc(shrunk, Layout::from_size_align(shrunk_size, align).unwrap());
                    let z = allocator.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0, "zeroed {size} align {align}");
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    allocator.dealloc(z, layout);
                }
            }
            align *= 2;
        }
    }
}
