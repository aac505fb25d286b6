//! Spreading independent, CPU-bound work over the machine's cores. An apply
//! builds one Maglev ring per distinct set of reals (milliseconds each, and
//! hundreds of them for a large configuration); the builds share nothing,
//! so the time of an apply divides by the cores there are.

use std::thread;

/// `f` applied to every item, in order, computed on up to as many threads
/// as the machine has cores (in contiguous chunks). A panic in `f` is
/// resumed on the caller's thread.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let f = &f;
    thread::scope(|s| {
        let chunks: Vec<_> = items
            .chunks(items.len().div_ceil(threads))
            .map(|chunk| s.spawn(move || chunk.iter().map(f).collect::<Vec<R>>()))
            .collect();
        chunks
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_order_of_the_items() {
        for n in [0, 1, 2, 3, 7, 64, 1000] {
            let items: Vec<u64> = (0..n).collect();
            let want: Vec<u64> = items.iter().map(|x| x * x + 1).collect();
            assert_eq!(map(&items, |x| x * x + 1), want, "{n} items");
        }
    }

    #[test]
    #[should_panic(expected = "item 5")]
    fn a_panic_reaches_the_caller() {
        let items: Vec<u32> = (0..64).collect();
        map(&items, |&x| {
            assert!(x != 5, "item {x}");
            x
        });
    }
}
