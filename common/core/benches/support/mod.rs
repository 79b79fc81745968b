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

/// CPU time of this process in seconds, every thread's, those that have ended included (Linux
/// `/proc/self/stat`, in USER_HZ ticks of 10 ms): on a shared machine, what a phase costs whatever
/// the load. The verifier spreads namespaces over threads (`parallel`), so the calling thread's
/// time alone would leave most of it out; on one core the phase takes about this long.
#[allow(dead_code)] // Not every benchmark measures CPU time.
pub fn cpu_seconds() -> Option<f64> {
    /// Linux's user-space clock tick, fixed at 100 Hz on every architecture it reports in.
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces: state is
    // the first, utime and stime the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / USER_HZ)
}

/// Counts heap bytes in use, so that a benchmark can tell what one phase allocates on top of what
/// is already held, which VmHWM cannot: the allocator keeps pages freed by earlier phases.
#[allow(dead_code)] // Only the benchmarks that install it as their allocator use it.
pub mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::sync::atomic::{AtomicIsize, Ordering};

    static IN_USE: AtomicIsize = AtomicIsize::new(0);
    static PEAK: AtomicIsize = AtomicIsize::new(0);

    /// Each thread adds up its allocations and frees and publishes them once they reach this many
    /// bytes either way: two threads updating one counter on every allocation (the verifier spreads
    /// namespaces over threads) made the measured run three times slower. The figures are exact to
    /// this much per thread.
    const PUBLISH_EVERY: isize = 64 * 1024;

    thread_local! {
        static UNPUBLISHED: Cell<isize> = const { Cell::new(0) };
    }

    /// The system allocator, counting. Install with `#[global_allocator]`.
    pub struct Counting;

    fn account(bytes: isize) {
        let publish = UNPUBLISHED
            .try_with(|unpublished| {
                let total = unpublished.get() + bytes;
                let publish = total.abs() >= PUBLISH_EVERY;
                unpublished.set(if publish { 0 } else { total });
                publish.then_some(total)
            })
            // A thread being torn down has no thread-locals left: publish at once.
            .unwrap_or(Some(bytes));
        if let Some(bytes) = publish {
            let now = IN_USE.fetch_add(bytes, Ordering::Relaxed) + bytes;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
    }

    fn signed(bytes: usize) -> isize {
        isize::try_from(bytes).unwrap_or(isize::MAX)
    }

    // A global allocator cannot be written without `unsafe`; this one only forwards to the
    // system allocator and counts.
    #[allow(unsafe_code)]
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded unchanged to the system allocator.
            let pointer = unsafe { System.alloc(layout) };
            if !pointer.is_null() {
                account(signed(layout.size()));
            }
            pointer
        }

        unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
            // SAFETY: `pointer` was allocated by `alloc` above with this layout.
            unsafe { System.dealloc(pointer, layout) };
            account(-signed(layout.size()));
        }

        unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: forwarded unchanged; `pointer` came from this allocator with `layout`.
            let moved = unsafe { System.realloc(pointer, layout, new_size) };
            if !moved.is_null() {
                account(signed(new_size) - signed(layout.size()));
            }
            moved
        }
    }

    /// Starts a phase: the peak becomes what is in use now, which is returned.
    pub fn start_phase() -> usize {
        let now = IN_USE.load(Ordering::Relaxed);
        PEAK.store(now, Ordering::Relaxed);
        usize::try_from(now).unwrap_or(0)
    }

    /// Bytes in use now.
    pub fn in_use() -> usize {
        usize::try_from(IN_USE.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// The most bytes in use since [`start_phase`].
    pub fn peak() -> usize {
        usize::try_from(PEAK.load(Ordering::Relaxed)).unwrap_or(0)
    }
}
