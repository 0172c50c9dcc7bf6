//! A shared, counted reference ([`Counted`]) like `Arc`, whose counts can
//! be taken ([`Credit`]) and given back ([`Releases`]) many at a time.
//!
//! A beacon's strings are one [`super::TextBlock`] and each of its ~35 string
//! slots holds a reference to it. As `Arc`s, each slot's clone and drop was
//! an atomic write to the block's count: ~70 a beacon, the drops on the
//! worker that frees the events, with the count's cache line still on the
//! one that made them. Under `perf` (`wrk`, `rum_beacon → blackhole`) the
//! instruction after `TextBlockBuilder::append`'s `lock inc` held 78 % of
//! that function's samples, and the slots' drops were most of
//! `drop_in_place<[(FieldId, FieldValue)]>`'s. With a credit taken when the
//! decoder starts and the slots given back together when their block or
//! context is dropped, a beacon makes about four such writes.
//!
//! No weak references: dropping the last one frees the value at once
//! (`Arc`'s `drop_slow` made one more atomic write, to the weak count).

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{self, AtomicUsize, Ordering};

/// Counts above this abort, as `Arc`'s do: a count that wrapped around
/// would free a value still referenced.
const MAX_COUNT: usize = isize::MAX as usize;

struct Inner<T> {
    count: AtomicUsize,
    value: T,
}

/// A counted reference to a `T` shared between threads.
pub struct Counted<T> {
    ptr: NonNull<Inner<T>>,
    /// Owns an `Inner<T>` for the drop check.
    _owns: PhantomData<Inner<T>>,
}

// SAFETY: as `Arc<T>`: the value is shared between threads (`Sync`) and
// dropped by whichever thread gives back the last count (`Send`).
unsafe impl<T: Send + Sync> Send for Counted<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Counted<T> {}

impl<T> Counted<T> {
    pub fn new(value: T) -> Self {
        let inner = Box::new(Inner {
            count: AtomicUsize::new(1),
            value,
        });
        Self::from_inner(NonNull::from(Box::leak(inner)))
    }

    fn from_inner(ptr: NonNull<Inner<T>>) -> Self {
        Self {
            ptr,
            _owns: PhantomData,
        }
    }

    fn inner(&self) -> &Inner<T> {
        // SAFETY: this reference holds a count, so the allocation lives.
        unsafe { self.ptr.as_ref() }
    }

    /// Adds `n` counts (each stands for a reference made later without
    /// touching the count).
    fn add(&self, n: usize) {
        // Relaxed, as `Arc::clone`: a new reference is made from one held,
        // which keeps the value alive; nothing is published through it.
        let old = self.inner().count.fetch_add(n, Ordering::Relaxed);
        if old > MAX_COUNT - n {
            std::process::abort();
        }
    }

    /// Whether both refer to the same value.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        a.ptr == b.ptr
    }

    /// How many references there are.
    pub fn strong_count(this: &Self) -> usize {
        this.inner().count.load(Ordering::Acquire)
    }

    /// The value, to edit in place, when this is its only reference.
    pub fn get_mut(this: &mut Self) -> Option<&mut T> {
        // Acquire, as `Arc::get_mut`: pairs with the release of every other
        // reference dropped, so what their holders wrote is seen here.
        if this.inner().count.load(Ordering::Acquire) == 1 {
            // SAFETY: the only reference, borrowed mutably: nothing else
            // can reach the value (there are no weak references).
            Some(unsafe { &mut this.ptr.as_mut().value })
        } else {
            None
        }
    }

    /// The value to edit, copied first when another reference shares it
    /// (copy on write, as `Arc::make_mut`).
    pub fn make_mut(this: &mut Self) -> &mut T
    where
        T: Clone,
    {
        if Counted::get_mut(this).is_none() {
            *this = Counted::new((**this).clone());
        }
        Counted::get_mut(this).expect("the only reference")
    }

    /// The value, taken out when this is its only reference, else a copy.
    pub fn unwrap_or_clone(this: Self) -> T
    where
        T: Clone,
    {
        if this.inner().count.load(Ordering::Acquire) != 1 {
            return (*this).clone();
        }
        let ptr = this.ptr;
        std::mem::forget(this);
        // SAFETY: the only reference, consumed (forgotten above): the
        // allocation is taken back whole, its value moved out.
        let inner = unsafe { Box::from_raw(ptr.as_ptr()) };
        inner.value
    }

    /// Where the value is. Taken from the allocation's own pointer, not
    /// through a `&T`: [`super::Event::edit_shared_context`] writes
    /// through it when it has shown that nothing else can reach the value.
    pub fn as_ptr(this: &Self) -> *const T {
        // SAFETY: the allocation lives (this holds a count); a field's
        // address is taken without making a reference.
        unsafe { std::ptr::addr_of_mut!((*this.ptr.as_ptr()).value) }
    }
}

/// Gives back `n` counts of `ptr`'s value, freeing it with the last one.
///
/// # Safety
/// The caller held `n` counts of `ptr` and holds none of them after.
unsafe fn release<T>(ptr: NonNull<Inner<T>>, n: usize) {
    // SAFETY: the caller still holds `n ≥ 1` counts: the allocation lives.
    let old = unsafe { ptr.as_ref() }
        .count
        .fetch_sub(n, Ordering::Release);
    if old != n {
        return;
    }
    // As `Arc`'s drop: every other holder's use of the value happens
    // before their release; this acquire makes them visible before the free.
    atomic::fence(Ordering::Acquire);
    // SAFETY: that was the last count: nothing else refers to the value.
    drop(unsafe { Box::from_raw(ptr.as_ptr()) });
}

impl<T> Clone for Counted<T> {
    fn clone(&self) -> Self {
        self.add(1);
        Self::from_inner(self.ptr)
    }
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        // SAFETY: this reference holds one count and is gone after.
        unsafe { release(self.ptr, 1) }
    }
}

impl<T> std::ops::Deref for Counted<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.inner().value
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Counted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: Default> Default for Counted<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

/// References to hand out, their counts taken in advance, `CHUNK` at a
/// time: handing one out writes nothing shared. What is left is given
/// back when this is dropped.
pub struct Credit<T> {
    held: Counted<T>,
    left: usize,
}

/// Counts taken at a time: a beacon keeps some 25–40 strings.
const CHUNK: usize = 64;

impl<T> Credit<T> {
    pub fn new(value: T) -> Self {
        Self {
            held: Counted::new(value),
            left: 0,
        }
    }

    /// A new reference to the value.
    #[inline]
    pub fn hand_out(&mut self) -> Counted<T> {
        if self.left == 0 {
            self.held.add(CHUNK);
            self.left = CHUNK;
        }
        self.left -= 1;
        // One of the counts taken above: this reference holds it.
        Counted::from_inner(self.held.ptr)
    }
}

impl<T> std::ops::Deref for Credit<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.held
    }
}

impl<T> Drop for Credit<T> {
    fn drop(&mut self) {
        if self.left > 0 {
            // SAFETY: the counts taken and not handed out are this credit's.
            unsafe { release(self.held.ptr, self.left) };
        }
        // `held` gives back its own count as it drops.
    }
}

/// References being dropped, given back together: each run of references
/// to the same value is one write to its count.
pub struct Releases<T> {
    run: Option<NonNull<Inner<T>>>,
    count: usize,
}

impl<T> Default for Releases<T> {
    fn default() -> Self {
        Self {
            run: None,
            count: 0,
        }
    }
}

impl<T> Releases<T> {
    /// Drops `reference`, now or with the others of its run.
    #[inline]
    pub fn add(&mut self, reference: Counted<T>) {
        let ptr = reference.ptr;
        // Its count is given back by `flush`.
        std::mem::forget(reference);
        if self.run == Some(ptr) {
            self.count += 1;
        } else {
            self.flush();
            self.run = Some(ptr);
            self.count = 1;
        }
    }

    fn flush(&mut self) {
        if let Some(ptr) = self.run.take() {
            // SAFETY: `add` took `count` references to `ptr`'s value and
            // forgot them; `run` is emptied, so they are given back once.
            unsafe { release(ptr, self.count) };
        }
    }
}

impl<T> Drop for Releases<T> {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// Counts its drops.
    struct Tracked(Arc<AtomicUsize>);

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn tracked() -> (Arc<AtomicUsize>, Tracked) {
        let drops = Arc::new(AtomicUsize::new(0));
        (drops.clone(), Tracked(drops))
    }

    #[test]
    fn the_value_is_dropped_with_the_last_reference_once() {
        let (drops, value) = tracked();
        let a = Counted::new(value);
        let b = a.clone();
        assert_eq!(Counted::strong_count(&a), 2);
        assert!(Counted::ptr_eq(&a, &b));
        drop(a);
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(b);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_credit_counts_what_it_handed_out_and_gives_back_the_rest() {
        let (drops, value) = tracked();
        let mut credit = Credit::new(value);
        let handed: Vec<Counted<Tracked>> = (0..CHUNK + 3).map(|_| credit.hand_out()).collect();
        // The credit's own, what it handed out, and what it still holds.
        assert_eq!(
            Counted::strong_count(&handed[0]),
            1 + handed.len() + (CHUNK - 3)
        );
        drop(credit);
        assert_eq!(Counted::strong_count(&handed[0]), handed.len());
        drop(handed);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn releases_give_back_each_run_and_the_last_frees() {
        let (drops_a, a) = tracked();
        let (drops_b, b) = tracked();
        let mut credit_a = Credit::new(a);
        let b = Counted::new(b);
        let a_refs: Vec<_> = (0..5).map(|_| credit_a.hand_out()).collect();
        drop(credit_a);
        let keep = a_refs[0].clone();
        let mut releases = Releases::default();
        // Interleaved runs: a a b a a a b.
        let mut a_refs = a_refs.into_iter();
        releases.add(a_refs.next().unwrap());
        releases.add(a_refs.next().unwrap());
        releases.add(b.clone());
        for r in a_refs {
            releases.add(r);
        }
        releases.add(b);
        assert_eq!(drops_b.load(Ordering::SeqCst), 0, "b's last run is pending");
        drop(releases);
        assert_eq!(drops_b.load(Ordering::SeqCst), 1);
        assert_eq!(Counted::strong_count(&keep), 1);
        assert_eq!(drops_a.load(Ordering::SeqCst), 0);
        drop(keep);
        assert_eq!(drops_a.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_shared_value_is_copied_on_write_and_a_lone_one_edited_in_place() {
        let mut a = Counted::new(vec![1]);
        let b = a.clone();
        assert!(Counted::get_mut(&mut a).is_none());
        Counted::make_mut(&mut a).push(2);
        assert_eq!(*a, vec![1, 2]);
        assert_eq!(*b, vec![1]);
        let before = Counted::as_ptr(&a);
        Counted::make_mut(&mut a).push(3);
        assert_eq!(Counted::as_ptr(&a), before, "edited in place");
        assert_eq!(Counted::unwrap_or_clone(b.clone()), vec![1]);
        assert_eq!(Counted::strong_count(&b), 1);
        assert_eq!(Counted::unwrap_or_clone(b), vec![1]);
        assert_eq!(Counted::unwrap_or_clone(a), vec![1, 2, 3]);
    }

    /// References dropped on other threads, singly and in runs, free the
    /// value once, after every use.
    #[test]
    fn references_given_back_from_many_threads_free_once() {
        for _ in 0..50 {
            let (drops, value) = tracked();
            let mut credit = Credit::new(value);
            let batches: Vec<Vec<Counted<Tracked>>> = (0..4)
                .map(|_| (0..100).map(|_| credit.hand_out()).collect())
                .collect();
            drop(credit);
            let threads: Vec<_> = batches
                .into_iter()
                .enumerate()
                .map(|(i, batch)| {
                    std::thread::spawn(move || {
                        if i % 2 == 0 {
                            let mut releases = Releases::default();
                            batch.into_iter().for_each(|r| releases.add(r));
                        } else {
                            drop(batch);
                        }
                    })
                })
                .collect();
            threads.into_iter().for_each(|t| t.join().unwrap());
            assert_eq!(drops.load(Ordering::SeqCst), 1);
        }
    }
}
