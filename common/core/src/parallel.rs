//! Independent pieces of pure work spread over the machine's cores, with results in input order.
//!
//! The verifier evaluates each destination namespace apart, reading only two immutable
//! topologies, and the check judges the whole mesh that way: at 1,000 namespaces that is most of
//! its time. Scoped threads need no runtime or pool to keep (the core stays free of them; see
//! `tests/pure.rs`), and merging by input position gives exactly what a sequential loop gives,
//! whatever the scheduling, so reports stay deterministic.

use std::sync::atomic::{AtomicUsize, Ordering};

/// `work` on every item, on up to as many threads as the machine has cores (each takes the next
/// unclaimed item, so uneven items balance); the results in `items`' order. A panic in `work` is
/// raised again here.
pub fn map_in_order<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from).min(items.len());
    if threads <= 1 {
        return items.iter().map(work).collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(index) else { break done };
                        done.push((index, work(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    results.sort_unstable_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

/// `first` and `second` at once, on two threads.
pub fn join<A: Send, B: Send>(first: impl FnOnce() -> A + Send, second: impl FnOnce() -> B + Send) -> (A, B) {
    std::thread::scope(|scope| {
        let first = scope.spawn(first);
        let second = second();
        (first.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), second)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_input_order_whatever_the_scheduling() {
        let items: Vec<u64> = (0..500).collect();
        // Uneven work, so that threads finish items out of order.
        let squares = map_in_order(&items, |n| {
            std::thread::sleep(std::time::Duration::from_micros((n * 7919) % 200));
            n * n
        });
        assert_eq!(squares, items.iter().map(|n| n * n).collect::<Vec<_>>());
    }

    #[test]
    fn empty_input_and_join() {
        assert!(map_in_order(&[] as &[u8], |n| *n).is_empty());
        assert_eq!(join(|| 1 + 1, || "two"), (2, "two"));
    }

    #[test]
    #[should_panic(expected = "item 3")]
    fn a_panic_in_the_work_is_raised_again() {
        let items: Vec<u32> = (0..8).collect();
        map_in_order(&items, |n| assert!(*n != 3, "item {n}"));
    }
}
