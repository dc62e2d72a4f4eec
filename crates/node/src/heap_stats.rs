//! Live heap figures for memory investigations: the binary's global allocator wrapped in a
//! counter of the bytes and blocks it holds, by power-of-two size class.
//!
//! Off unless `PEERLANE_HEAP_STATS` is set (non-empty, not `0`) when the binary starts: then
//! every allocation and free also does a few relaxed atomic additions, and `peerlane demo`
//! appends the live heap to its progress lines (the classes every 30 s). Off, each call costs
//! one relaxed load of a flag. The figures tell whether a process's resident memory holds
//! live data or memory the allocator keeps after it was freed.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

/// Size classes: class `c` holds allocations of `2^(c-1)` up to `2^c - 1` bytes (class 0 the
/// empty ones); the last one everything from 1 GiB up.
const CLASSES: usize = 32;

/// The environment variable that turns the counting on.
pub(crate) const ENV: &str = "PEERLANE_HEAP_STATS";

/// Whether allocations are counted.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Live bytes and blocks per class. Signed: blocks allocated before the counting started
/// are freed while it runs (a few, from the process's start).
static LIVE_BYTES: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];
static LIVE_BLOCKS: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];
/// Allocations since the start, and the largest one since the last [`take_largest`].
static ALLOCATIONS: AtomicI64 = AtomicI64::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

/// A global allocator counting what `A` holds while [`ENABLED`].
pub(crate) struct Counting<A>(pub(crate) A);

fn class(size: usize) -> usize {
    (usize::BITS - size.leading_zeros()).min(CLASSES as u32 - 1) as usize
}

fn add(size: usize) {
    let c = class(size);
    let bytes = i64::try_from(size).unwrap_or(i64::MAX);
    LIVE_BYTES[c].fetch_add(bytes, Ordering::Relaxed);
    LIVE_BLOCKS[c].fetch_add(1, Ordering::Relaxed);
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    LARGEST.fetch_max(size, Ordering::Relaxed);
}

fn sub(size: usize) {
    let c = class(size);
    let bytes = i64::try_from(size).unwrap_or(i64::MAX);
    LIVE_BYTES[c].fetch_sub(bytes, Ordering::Relaxed);
    LIVE_BLOCKS[c].fetch_sub(1, Ordering::Relaxed);
}

// SAFETY: every call is passed on to `A` unchanged; the counters do not touch the memory.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let ptr = unsafe { self.0.alloc(layout) };
        if !ptr.is_null() && ENABLED.load(Ordering::Relaxed) {
            add(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let ptr = unsafe { self.0.alloc_zeroed(layout) };
        if !ptr.is_null() && ENABLED.load(Ordering::Relaxed) {
            add(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.0.dealloc(ptr, layout) };
        if ENABLED.load(Ordering::Relaxed) {
            sub(layout.size());
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let new = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !new.is_null() && ENABLED.load(Ordering::Relaxed) {
            sub(layout.size());
            add(new_size);
        }
        new
    }
}

/// Gives the calling thread's freed allocator pages back to the OS (mimalloc's `mi_collect`,
/// forced). mimalloc returns memory another thread freed to the owning thread's heap only when
/// the owner allocates again, so a thread that allocated much (the block archive's, serving a
/// catch-up) and then idles would keep it for minutes.
pub(crate) fn collect_thread_heap() {
    // SAFETY: `mi_collect` takes no pointer and only walks the calling thread's own heap.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Turns the counting on if [`ENV`] asks for it; call first thing in `main`. Returns whether
/// it is on.
pub(crate) fn init_from_env() -> bool {
    let on = std::env::var_os(ENV).is_some_and(|v| !v.is_empty() && v != "0");
    ENABLED.store(on, Ordering::Relaxed);
    on
}

/// Whether the counting is on.
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The heap at one moment.
#[derive(Clone, Debug, Default)]
pub(crate) struct HeapSnapshot {
    /// Live bytes and blocks per size class.
    pub(crate) bytes: [i64; CLASSES],
    pub(crate) blocks: [i64; CLASSES],
    /// Allocations since the start.
    pub(crate) allocations: i64,
    /// The largest allocation since the previous snapshot.
    pub(crate) largest: usize,
}

impl HeapSnapshot {
    /// Reads the counters (not atomically as a whole: each one at its own moment).
    pub(crate) fn take() -> Self {
        let mut snapshot = Self {
            allocations: ALLOCATIONS.load(Ordering::Relaxed),
            largest: LARGEST.swap(0, Ordering::Relaxed),
            ..Self::default()
        };
        for c in 0..CLASSES {
            snapshot.bytes[c] = LIVE_BYTES[c].load(Ordering::Relaxed);
            snapshot.blocks[c] = LIVE_BLOCKS[c].load(Ordering::Relaxed);
        }
        snapshot
    }

    /// All live bytes.
    pub(crate) fn live_bytes(&self) -> i64 {
        self.bytes.iter().sum()
    }

    /// All live blocks.
    pub(crate) fn live_blocks(&self) -> i64 {
        self.blocks.iter().sum()
    }

    /// One line: live MB, blocks, the process's resident MB, the largest allocation.
    pub(crate) fn summary(&self) -> String {
        format!(
            "heap {:.1} MB in {} blocks ({} allocations), RSS {} MB, largest {} KB",
            mb(self.live_bytes()),
            self.live_blocks(),
            self.allocations,
            crate::node_metrics::resident_bytes()
                .map_or_else(|| "?".to_owned(), |b| format!("{:.1}", mb(b))),
            self.largest / 1024,
        )
    }

    /// The classes holding at least 1 MB: `<upper bound> MB in blocks` each.
    pub(crate) fn classes(&self) -> String {
        let mut parts = Vec::new();
        for c in 0..CLASSES {
            if self.bytes[c] >= 1_000_000 {
                parts.push(format!(
                    "<{}: {:.1} MB/{}",
                    size_name(1usize << c),
                    mb(self.bytes[c]),
                    self.blocks[c]
                ));
            }
        }
        parts.join(", ")
    }
}

fn mb(bytes: i64) -> f64 {
    bytes as f64 / 1e6
}

fn size_name(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{}M", b >> 20),
        b if b >= 1 << 10 => format!("{}K", b >> 10),
        b => b.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_fall_in_power_of_two_classes() {
        assert_eq!(class(0), 0);
        assert_eq!(class(1), 1);
        assert_eq!(class(2), 2);
        assert_eq!(class(3), 2);
        assert_eq!(class(4096), 13);
        assert_eq!(class(usize::MAX), CLASSES - 1);
    }
}
