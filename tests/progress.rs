//! The plain progress reporter (what a CI log shows), driven by a fake clock:
//! no sleeps, exact lines.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crashpoint::events::{Event, Reporter};
use crashpoint::inject::CrashPlan;
use crashpoint::layout::Layout;
use crashpoint::oracle::{CaseOutcome, Reference};
use crashpoint::progress::plain::{Clock, Plain};
use crashpoint::protocol::StateFile;
use crashpoint::verdict::{FailureKind, Finding};

/// A clock the test moves by hand.
#[derive(Clone, Default)]
struct FakeClock(Arc<AtomicU64>);

impl FakeClock {
    fn advance(&self, secs: u64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
}

fn reference(census: usize) -> Reference {
    Reference {
        layout: Layout::Relative,
        state: StateFile {
            step: 20,
            digest: "d".into(),
            resumed_from_step: None,
            fields: Default::default(),
        },
        dir: Default::default(),
        shape: Default::default(),
        saves: Vec::new(),
        saved: Vec::new(),
        window: None,
        notes: Vec::new(),
        usual_leftovers: Vec::new(),
        census: (1..=census as u64)
            .map(|i| crashpoint::census::CensusEntry {
                index: i,
                call: crashpoint::census::Call::Write,
                name: "write".into(),
                paths: vec!["work/checkpoints/a".into()],
                phase: Default::default(),
                fd: None,
                offset: None,
                len: None,
            })
            .collect(),
        duration: Duration::from_secs(1),
        timeout: Duration::from_secs(10),
        events: true,
        findings: Vec::new(),
        outside: Vec::new(),
        trajectory: Default::default(),
    }
}

fn outcome(plan: &CrashPlan, fail: bool) -> CaseOutcome {
    CaseOutcome {
        layout: Layout::Relative,
        plan: plan.clone(),
        findings: if fail {
            vec![Finding {
                kind: FailureKind::ProgressLost,
                run: 2,
                detail: "x".into(),
            }]
        } else {
            Vec::new()
        },
        warnings: Vec::new(),
        runs: 2,
        crashes_hit: 1,
        duration: Duration::from_secs(1),
        harness_error: None,
        after_save: true,
        power_states: 0,
    }
}

/// Runs `total` cases, case `i` taking `secs(i)` seconds and failing when
/// `fails(i)`, and returns the lines written.
fn drive(total: usize, secs: impl Fn(usize) -> u64, fails: impl Fn(usize) -> bool) -> Vec<String> {
    let clock = FakeClock::default();
    let r = Plain::new(Vec::<u8>::new(), clock.clone());
    let reference = reference(38);
    r.event(&Event::ReferenceStarted {
        layout: Layout::Relative,
        position: 1,
        layouts: 7,
    });
    clock.advance(4);
    r.event(&Event::ReferenceFinished {
        layout: Layout::Relative,
        reference: &reference,
        cases: total,
    });
    let plan: CrashPlan = "syscall:3".parse().unwrap();
    for i in 0..total {
        clock.advance(secs(i));
        r.event(&Event::CaseFinished {
            layout: Layout::Relative,
            index: i,
            plan: &plan,
            outcome: &outcome(&plan, fails(i)),
            dir: Path::new("/nonexistent"),
            done: i + 1,
            total,
        });
    }
    r.event(&Event::LayoutFinished {
        layout: Layout::Relative,
        duration: Duration::from_secs(99),
    });
    String::from_utf8(r.into_inner())
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn plain_lines_every_tenth_of_the_cases_with_failures_and_eta() {
    // 100 quick cases: a line at each tenth, never more.
    let lines = drive(100, |_| 1, |i| i % 25 == 0);
    assert_eq!(lines[0], "relative: reference runs (layout 1 of 7)");
    assert_eq!(lines[1], "relative: census of 38 points, 100 cases");
    assert_eq!(lines[2], "relative: 10/100 cases, 1 failing, ETA 1m30s");
    assert_eq!(lines[6], "relative: 50/100 cases, 2 failing, ETA 50s");
    assert_eq!(
        lines.last().unwrap(),
        "relative: 100/100 cases, 4 failing, took 1m40s"
    );
    assert_eq!(lines.len(), 2 + 10, "{lines:#?}");
}

#[test]
fn plain_lines_every_ten_seconds_when_cases_are_slow() {
    // 1000 cases of 4 s: a tenth takes 400 s, so the 10 s rule decides,
    // once per 3 cases (12 s since the last line), never sooner.
    let lines = drive(1000, |_| 4, |_| false);
    assert_eq!(lines[2], "relative: 3/1000 cases, 0 failing, ETA 1h06m");
    assert_eq!(lines[3], "relative: 6/1000 cases, 0 failing, ETA 1h06m");
    // Every line is 10 s (3 cases) after the one before it, or at a tenth.
    let done: Vec<usize> = lines[2..]
        .iter()
        .map(|l| l.split(['/', ' ']).nth(1).unwrap().parse().unwrap())
        .collect();
    let mut prev = 0;
    for &d in &done {
        assert!(d - prev >= 3 || d % 100 == 0, "line at {d} after {prev}");
        prev = d;
    }
    assert!((334..=344).contains(&done.len()), "{}", done.len());
}

#[test]
fn plain_lines_carry_the_scenario_label() {
    let clock = FakeClock::default();
    let r = Plain::new(Vec::<u8>::new(), clock).label("topk-best");
    r.event(&Event::ReferenceStarted {
        layout: Layout::Nested,
        position: 2,
        layouts: 3,
    });
    let text = String::from_utf8(r.into_inner()).unwrap();
    assert_eq!(text, "topk-best nested: reference runs (layout 2 of 3)\n");
}
