//! The one worker pool: campaigns run their cases on it, the zoo hunt its
//! mutants and clean scenarios. `N` workers take items in order, each item
//! is taken once and every item taken runs to its end; results come back
//! in item order, so what a caller builds from them does not depend on
//! `--jobs` or on scheduling. A [`Cancel`] token, and optionally a gate
//! asked before each item, stop the workers taking new items; the items
//! taken are then always a prefix of the list.
//!
//! ```
//! use crashpoint::pool::{Cancel, Pool};
//! let items: Vec<u64> = (1..=10).collect();
//! let ran = Pool::new(3).run(&items, &Cancel::new(), |_, n| n * n);
//! let squares: Vec<u64> = ran.results.into_iter().flatten().collect();
//! assert_eq!(squares, [1, 4, 9, 16, 25, 36, 49, 64, 81, 100]);
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

mod cancel;
#[cfg(test)]
mod tests;

pub use cancel::{install_interrupt_handler, signal_name, Cancel};

/// How many workers, whether each pins itself to one CPU, and what each
/// does when it stops taking items.
#[derive(Debug, Clone, Copy)]
pub struct Pool {
    workers: usize,
    pin: bool,
    at_end: Option<fn()>,
}

/// What a pool run did.
#[derive(Debug)]
pub struct Ran<R> {
    /// One slot per item, in item order: the result of every item a worker
    /// took (a prefix of the items), `None` for those never taken.
    pub results: Vec<Option<R>>,
    /// Did the gate refuse to start an item (the workers then stopped
    /// taking them)?
    pub gated: bool,
}

impl Pool {
    /// A pool of `jobs` workers (at least one), unpinned.
    pub fn new(jobs: usize) -> Pool {
        Pool {
            workers: jobs.max(1),
            pin: false,
            at_end: None,
        }
    }

    /// The same pool, each worker pinned to one of the CPUs this process
    /// may use (round-robin) when there is more than one worker: the
    /// processes a worker starts inherit its CPU, so subjects of parallel
    /// workers do not steal each other's caches.
    pub fn pinned(self) -> Pool {
        Pool { pin: true, ..self }
    }

    /// The same pool, each worker calling `end` on its own thread once it
    /// takes no more items, before the run returns (a campaign's workers
    /// give back their warm-start servers there, so that none outlives
    /// the run).
    pub fn at_worker_end(self, end: fn()) -> Pool {
        Pool {
            at_end: Some(end),
            ..self
        }
    }

    /// Runs `work(index, item)` for every item until `cancel` is cancelled.
    pub fn run<T, R, F>(&self, items: &[T], cancel: &Cancel, work: F) -> Ran<R>
    where
        T: Sync,
        R: Send,
        F: Fn(usize, &T) -> R + Sync,
    {
        self.run_while(items, cancel, &|| true, work)
    }

    /// [`Pool::run`], and before taking each item a worker asks `may_start`:
    /// the first `false` stops every worker taking items (a spent budget).
    pub fn run_while<T, R, F>(
        &self,
        items: &[T],
        cancel: &Cancel,
        may_start: &(dyn Fn() -> bool + Sync),
        work: F,
    ) -> Ran<R>
    where
        T: Sync,
        R: Send,
        F: Fn(usize, &T) -> R + Sync,
    {
        let workers = self.workers.clamp(1, items.len().max(1));
        let cpus = if self.pin && workers > 1 {
            crate::sys::allowed_cpus()
        } else {
            Vec::new()
        };
        let next = AtomicUsize::new(0);
        let gated = AtomicBool::new(false);
        let slots: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
        let at_end = self.at_end;
        std::thread::scope(|s| {
            for w in 0..workers {
                let cpu = (!cpus.is_empty()).then(|| cpus[w % cpus.len()]);
                let (next, gated, slots, work) = (&next, &gated, &slots, &work);
                s.spawn(move || {
                    if let Some(cpu) = cpu {
                        // Subjects inherit the worker thread's CPU.
                        crate::sys::pin_to_cpu(cpu);
                    }
                    // Also when `work` panics.
                    let _end = AtEnd(at_end);
                    loop {
                        if cancel.is_cancelled() || gated.load(Ordering::SeqCst) {
                            return;
                        }
                        // Items are taken in order and every item taken
                        // runs, so those that ran are a prefix.
                        if !may_start() {
                            gated.store(true, Ordering::SeqCst);
                            return;
                        }
                        let k = next.fetch_add(1, Ordering::SeqCst);
                        let Some(item) = items.get(k) else { return };
                        let r = work(k, item);
                        slots.lock().unwrap_or_else(|e| e.into_inner())[k] = Some(r);
                    }
                });
            }
        });
        Ran {
            results: slots.into_inner().unwrap_or_else(|e| e.into_inner()),
            gated: gated.load(Ordering::SeqCst),
        }
    }
}

/// Calls its function when dropped.
struct AtEnd(Option<fn()>);

impl Drop for AtEnd {
    fn drop(&mut self) {
        if let Some(f) = self.0 {
            f();
        }
    }
}
