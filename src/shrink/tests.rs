use super::*;
use crate::census::{Call, PhaseKind};
use crate::inject::CrashPoint;
use crate::protocol::{OpCrash, When};

/// A judge that fails exactly the cases `pred` accepts, with a census of
/// `ops_per_save` operations per save every `unit` steps.
struct Fake<F: Fn(&Case) -> bool> {
    pred: F,
    unit: u64,
    calls: usize,
}

fn census(max_steps: u64, unit: u64) -> Vec<CensusEntry> {
    let mut out = Vec::new();
    for step in (unit..=max_steps).step_by(unit as usize) {
        for call in [Call::Create, Call::Write, Call::Rename] {
            out.push(CensusEntry {
                index: out.len() as u64 + 1,
                call,
                name: call.name().into(),
                paths: Vec::new(),
                phase: crate::census::Phase::at(PhaseKind::Save, step),
                fd: None,
                offset: None,
                len: None,
            });
        }
    }
    out
}

impl<F: Fn(&Case) -> bool> Judge for Fake<F> {
    fn census(&mut self, _: Layout, max_steps: u64) -> Result<Vec<CensusEntry>, ShrinkError> {
        Ok(census(max_steps, self.unit))
    }
    fn fails(
        &mut self,
        case: &Case,
        _: FailureKind,
    ) -> Result<Option<(usize, String)>, ShrinkError> {
        self.calls += 1;
        Ok((self.pred)(case).then(|| (case.plan.points.len() + 1, String::new())))
    }
}

fn op(index: u64, when: When) -> CrashPoint {
    CrashPoint::Op(OpCrash { index, when })
}

#[test]
fn shrinks_to_the_first_save_with_one_crash_in_relative() {
    // Fails whenever some crash is a mid-write (op 2 of each save), in any layout.
    let mut judge = Fake {
        pred: |c: &Case| {
            let max_op = c.max_steps / 5 * 3;
            matches!(c.plan.points.first(), Some(CrashPoint::Op(o)) if o.when == When::Mid && o.index % 3 == 2 && o.index <= max_op)
        },
        unit: 5,
        calls: 0,
    };
    let start = Failing {
        case: Case {
            layout: Layout::SymlinkedDir,
            max_steps: 20,
            plan: CrashPlan {
                points: vec![op(11, When::Mid), op(3, When::After)],
            },
        },
        runs: 3,
        detail: String::new(),
    };
    let out = shrink(
        &mut judge,
        start,
        FailureKind::ResumeFailed,
        Limits {
            attempts: 60,
            step_unit: 5,
        },
    )
    .unwrap();
    assert_eq!(out.after.case.layout, Layout::Relative);
    assert_eq!(out.after.case.max_steps, 5);
    assert_eq!(out.after.case.plan.points, vec![op(2, When::Mid)]);
    assert!(out.attempts <= 60 && out.attempts == judge.calls);
}

#[test]
fn the_budget_bounds_the_attempts() {
    let mut judge = Fake {
        pred: |_: &Case| false,
        unit: 2,
        calls: 0,
    };
    let start = Failing {
        case: Case {
            layout: Layout::OtherCwd,
            max_steps: 40,
            plan: CrashPlan {
                points: vec![op(30, When::After), op(9, When::Before), op(7, When::Mid)],
            },
        },
        runs: 4,
        detail: String::new(),
    };
    let out = shrink(
        &mut judge,
        start.clone(),
        FailureKind::DigestMismatch,
        Limits {
            attempts: 10,
            step_unit: 2,
        },
    )
    .unwrap();
    assert_eq!(out.attempts, 10);
    assert_eq!(out.after, start, "nothing failed, so nothing changed");
}

#[test]
fn a_probe_keeps_its_plan_and_loses_steps() {
    let mut judge = Fake {
        pred: |c: &Case| c.plan.probe().is_some(),
        unit: 4,
        calls: 0,
    };
    let start = Failing {
        case: Case {
            layout: Layout::Nested,
            max_steps: 24,
            plan: crate::inject::Probe::Directory.plan(),
        },
        runs: 2,
        detail: String::new(),
    };
    let limits = Limits {
        step_unit: 4,
        ..Limits::default()
    };
    let out = shrink(&mut judge, start, FailureKind::BadResumeAccepted, limits).unwrap();
    assert_eq!(
        out.after.case.to_string(),
        "relative, 4 steps, probe:directory"
    );
}
