use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Cancel, Pool};

/// Work whose cost varies from item to item, so workers finish out of order.
fn uneven(item: u64) -> u64 {
    let mut x = item;
    for _ in 0..(item % 7) * 2_000 {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    std::hint::black_box(x);
    item * item
}

#[test]
fn results_come_in_item_order_and_each_item_runs_once_whatever_the_workers() {
    let items: Vec<u64> = (0..300).collect();
    let expected: Vec<Option<u64>> = items.iter().map(|i| Some(i * i)).collect();
    for jobs in [1, 2, 3, 8, 500] {
        let runs: Vec<AtomicUsize> = items.iter().map(|_| AtomicUsize::new(0)).collect();
        let ran = Pool::new(jobs).run(&items, &Cancel::new(), |k, &item| {
            assert_eq!(k as u64, item, "the index is the item's place");
            runs[k].fetch_add(1, Ordering::SeqCst);
            uneven(item)
        });
        assert_eq!(ran.results, expected, "--jobs {jobs}");
        assert!(!ran.gated);
        assert!(
            runs.iter().all(|n| n.load(Ordering::SeqCst) == 1),
            "--jobs {jobs}: every item once"
        );
    }
}

#[test]
fn no_item_runs_once_the_token_is_cancelled() {
    let cancel = Cancel::new();
    cancel.cancel();
    let ran = Pool::new(4).run(&[1, 2, 3], &cancel, |_, &i: &i32| i);
    assert_eq!(ran.results, [None, None, None]);
    assert!(Pool::new(4)
        .run(&[] as &[i32], &Cancel::new(), |_, &i| i)
        .results
        .is_empty());
}

/// Item 5 cancels; the items after it hold their worker until it has, so
/// each other worker can take at most one more item once it is cancelled.
fn cancel_at_five(jobs: usize) -> Vec<Option<usize>> {
    let items: Vec<usize> = (0..1_000).collect();
    let cancel = Cancel::new();
    let ran = Pool::new(jobs).run(&items, &cancel, |k, &item| {
        if k == 5 {
            cancel.cancel_by(15);
        }
        while k > 5 && !cancel.is_cancelled() {
            std::thread::yield_now();
        }
        item
    });
    assert_eq!(cancel.signal(), Some(15));
    ran.results
}

#[test]
fn cancelling_stops_taking_new_items_and_what_ran_is_a_prefix() {
    let one = cancel_at_five(1);
    let want: Vec<Option<usize>> = (0..1_000).map(|i| (i <= 5).then_some(i)).collect();
    assert_eq!(
        one, want,
        "one worker stops right after the item that cancelled"
    );
    for jobs in [2, 4] {
        let results = cancel_at_five(jobs);
        let taken = results.iter().take_while(|r| r.is_some()).count();
        assert!(
            results[taken..].iter().all(Option::is_none),
            "--jobs {jobs}: the items that ran are a prefix"
        );
        assert!(
            (6..=6 + jobs - 1).contains(&taken),
            "--jobs {jobs}: {taken} items taken"
        );
        for (i, r) in results.iter().take(taken).enumerate() {
            assert_eq!(*r, Some(i));
        }
    }
}

#[test]
fn a_gate_that_refuses_stops_the_workers_after_a_prefix() {
    let items: Vec<usize> = (0..100).collect();
    for jobs in [1, 3] {
        let started = AtomicUsize::new(0);
        let may_start = || started.load(Ordering::SeqCst) < 10;
        let ran = Pool::new(jobs).run_while(&items, &Cancel::new(), &may_start, |_, &i| {
            started.fetch_add(1, Ordering::SeqCst);
            i
        });
        assert!(ran.gated);
        let taken = ran.results.iter().take_while(|r| r.is_some()).count();
        assert!(ran.results[taken..].iter().all(Option::is_none));
        if jobs == 1 {
            assert_eq!(taken, 10);
        } else {
            assert!((10..10 + jobs).contains(&taken), "{taken} taken");
        }
    }
}

#[test]
fn pinned_workers_each_run_on_one_cpu_and_unpinned_ones_where_the_caller_does() {
    let items: Vec<u8> = (0..8).collect();
    let mine = crate::sys::allowed_cpus();
    if mine.is_empty() {
        return; // the affinity cannot be read here: nothing is pinned
    }
    let ran = Pool::new(2)
        .pinned()
        .run(&items, &Cancel::new(), |_, _| crate::sys::allowed_cpus());
    for cpus in ran.results.iter().flatten() {
        assert_eq!(cpus.len(), 1, "{cpus:?}");
        assert!(mine.contains(&cpus[0]));
    }
    let ran = Pool::new(2).run(&items, &Cancel::new(), |_, _| crate::sys::allowed_cpus());
    assert!(ran.results.iter().flatten().all(|c| *c == mine));
    // One worker is never pinned: it runs where its caller does.
    let ran = Pool::new(1)
        .pinned()
        .run(&items, &Cancel::new(), |_, _| crate::sys::allowed_cpus());
    assert!(ran.results.iter().flatten().all(|c| *c == mine));
}

#[test]
fn each_worker_calls_its_end_once_before_the_run_returns() {
    static ENDS: AtomicUsize = AtomicUsize::new(0);
    fn end() {
        ENDS.fetch_add(1, Ordering::SeqCst);
    }
    let items: Vec<u32> = (0..20).collect();
    let ran = Pool::new(3)
        .at_worker_end(end)
        .run(&items, &Cancel::new(), |_, n| n + 1);
    assert_eq!(ENDS.load(Ordering::SeqCst), 3);
    assert_eq!(ran.results.iter().flatten().count(), 20);
    // Fewer items than workers: one worker an item.
    Pool::new(3)
        .at_worker_end(end)
        .run(&items[..2], &Cancel::new(), |_, n| *n);
    assert_eq!(ENDS.load(Ordering::SeqCst), 5);
}
