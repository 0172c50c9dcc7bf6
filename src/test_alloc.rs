//! The lib tests' allocator: the system's, counting the bytes each thread
//! holds, so a test can say what reading a body costs in memory (a bound
//! the docs promise, which no output shows).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Bytes this thread allocated and has not freed (what another thread
    /// frees for it can take it below zero).
    static HELD: Cell<isize> = const { Cell::new(0) };
    /// The most `HELD` has been since `peak_during` reset it.
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

pub struct Counting;

fn count(bytes: isize) {
    // `try_with`: an allocation while the thread's locals are torn down
    // goes uncounted rather than aborting.
    let _ = HELD.try_with(|held| {
        let now = held.get() + bytes;
        held.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call goes to `System` unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// `f`'s result and the most bytes this thread held at once while it ran,
/// above what it held before.
pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = HELD.with(Cell::get);
    PEAK.with(|peak| peak.set(before));
    let out = f();
    let peak = PEAK.with(Cell::get);
    (out, usize::try_from(peak - before).unwrap_or(0))
}

/// `f`'s result and the bytes this thread holds once it returned, above
/// what it held before: what the result keeps alive.
pub fn held_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = HELD.with(Cell::get);
    let out = f();
    let after = HELD.with(Cell::get);
    (out, usize::try_from(after - before).unwrap_or(0))
}
