//! A campaign stops on its cancellation token, not on a global: cancelled
//! while it runs, it takes no new case and returns a prefix of its plans
//! (whatever `--jobs`), and `run` says it was interrupted; cancelled before
//! it starts, it runs nothing.

use std::path::Path;

use crashpoint::campaign::CampaignError;
use crashpoint::events::{Event, Reporter};
use crashpoint::pool::Cancel;
use crashpoint::scenario::Scenario;

const SCENARIO: &str = r#"
description = "cancellation"
layouts = ["relative"]
max_steps = 10
[trainer]
params = 16
every_n_steps = 5
[crash]
mode = "op"
points = "all"
engine = "kill-each"
"#;

/// Cancels its token once `after` cases have finished.
struct CancelAfter {
    cancel: Cancel,
    after: usize,
}

impl Reporter for CancelAfter {
    fn event(&self, e: &Event<'_>) {
        if let Event::CaseFinished { done, .. } = e {
            if *done >= self.after {
                self.cancel.cancel();
            }
        }
    }
}

fn scenario() -> Scenario {
    Scenario::parse("cancel.toml", SCENARIO).expect("a valid scenario")
}

#[test]
fn a_cancelled_campaign_takes_no_new_case_and_keeps_a_prefix_whatever_the_jobs() {
    let exe = Path::new(env!("CARGO_BIN_EXE_crashpoint"));
    for jobs in [1, 2] {
        let campaign = scenario().campaign(exe, jobs, None);
        let cancel = Cancel::new();
        let reporter = CancelAfter {
            cancel: cancel.clone(),
            after: 3,
        };
        let work = tempfile::tempdir().expect("tempdir");
        let results = campaign
            .run_partial(work.path(), &reporter, &cancel)
            .expect("a partial result");
        assert_eq!(results.len(), 1, "the one layout's reference finished");
        let l = &results[0];
        assert!(l.planned > 10, "{} plans", l.planned);
        let n = l.indexes.len();
        // Each worker may finish the case it holds, and no more.
        assert!((3..3 + jobs).contains(&n), "--jobs {jobs}: {n} cases ran");
        assert_eq!(l.indexes, (0..n).collect::<Vec<_>>(), "a prefix");
        assert_eq!(cancel.signal(), None);

        let work = tempfile::tempdir().expect("tempdir");
        let cancel = Cancel::new();
        let reporter = CancelAfter {
            cancel: cancel.clone(),
            after: 1,
        };
        match campaign.run(work.path(), &reporter, &cancel) {
            Err(CampaignError::Interrupted(None)) => {}
            other => panic!("--jobs {jobs}: {other:?}"),
        }
    }
}

#[test]
fn a_campaign_cancelled_before_it_starts_runs_nothing() {
    let exe = Path::new(env!("CARGO_BIN_EXE_crashpoint"));
    let campaign = scenario().campaign(exe, 2, None);
    let cancel = Cancel::new();
    cancel.cancel();
    let work = tempfile::tempdir().expect("tempdir");
    let results = campaign
        .run_partial(work.path(), &crashpoint::events::Silent, &cancel)
        .expect("nothing to fail");
    assert!(results.is_empty());
    assert!(std::fs::read_dir(work.path())
        .expect("readable")
        .next()
        .is_none());
}
