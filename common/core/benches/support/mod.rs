//! What the benchmark programs share.

/// VmHWM of this process (Linux), e.g. `41236 kB`.
pub fn peak_memory() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| line.strip_prefix("VmHWM:")).map(|value| value.trim().to_string())
}

/// VmRSS of this process (Linux), e.g. `41236 kB`.
#[allow(dead_code)] // Not every benchmark measures phases apart.
pub fn resident_memory() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| line.strip_prefix("VmRSS:")).map(|value| value.trim().to_string())
}

/// Resets VmHWM to the current resident size (Linux 4.0 and later), so that the next
/// [`peak_memory`] is the peak of what runs in between, on top of what is already held. False
/// where the kernel does not allow it.
#[allow(dead_code)] // Not every benchmark measures phases apart.
pub fn reset_peak_memory() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// CPU time of the calling thread in seconds (Linux `schedstat`): on a shared machine, what a
/// single-threaded phase costs whatever the load.
#[allow(dead_code)]
pub fn thread_cpu_seconds() -> Option<f64> {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanoseconds: f64 = schedstat.split_whitespace().next()?.parse().ok()?;
    Some(nanoseconds / 1e9)
}

/// Counts heap bytes in use, so that a benchmark can tell what one phase allocates on top of what
/// is already held, which VmHWM cannot: the allocator keeps pages freed by earlier phases.
#[allow(dead_code)] // Only the benchmarks that install it as their allocator use it.
pub mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering};

    static IN_USE: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);

    /// The system allocator, counting. Install with `#[global_allocator]`.
    pub struct Counting;

    fn grow(bytes: usize) {
        let now = IN_USE.fetch_add(bytes, Ordering::Relaxed) + bytes;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }

    // A global allocator cannot be written without `unsafe`; this one only forwards to the
    // system allocator and counts.
    #[allow(unsafe_code)]
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded unchanged to the system allocator.
            let pointer = unsafe { System.alloc(layout) };
            if !pointer.is_null() {
                grow(layout.size());
            }
            pointer
        }

        unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
            // SAFETY: `pointer` was allocated by `alloc` above with this layout.
            unsafe { System.dealloc(pointer, layout) };
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        }

        unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: forwarded unchanged; `pointer` came from this allocator with `layout`.
            let moved = unsafe { System.realloc(pointer, layout, new_size) };
            if !moved.is_null() {
                IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
                grow(new_size);
            }
            moved
        }
    }

    /// Starts a phase: the peak becomes what is in use now, which is returned.
    pub fn start_phase() -> usize {
        let now = IN_USE.load(Ordering::Relaxed);
        PEAK.store(now, Ordering::Relaxed);
        now
    }

    /// Bytes in use now.
    pub fn in_use() -> usize {
        IN_USE.load(Ordering::Relaxed)
    }

    /// The most bytes in use since [`start_phase`].
    pub fn peak() -> usize {
        PEAK.load(Ordering::Relaxed)
    }
}
