//! Later crashes (`--crashes 2` or more): the crash states of resume runs,
//! recorded once per start state. A case's second crash lands in the resume
//! run that starts from its first crash state; every plan whose first
//! crash has that state wants its second point from the same run. So that
//! run is made once, to its end, paused at every later point wanted from
//! there, and each case materialises its own point's state instead of
//! killing a run of its own. A point the run never reached (it ended
//! first) ends the case's run as the recorded run ended, as a killed run
//! whose point never comes does.
//!
//! The points wanted from a start state are exactly the next points of the
//! plans that reach that state. For the second crash: the second points of
//! the plans whose first crash has that state (known from the first
//! recording). For the third and later crashes: the plans that share the
//! case's history, every earlier crash state equal to the case's (each
//! known from the recorded resume run the case itself went through, which
//! holds every plan of that history). A resume run is thus recorded once
//! per history of crash states (its lineage), paused only where a plan
//! of that history crashes next.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use super::{op, syscall, PointRecord, RecordError, Recording};
use crate::inject::{CrashPlan, CrashPoint};
use crate::layout::Sandbox;
use crate::observe::HarnessFiles;
use crate::oracle::Target;
use crate::runner::{RunRequest, RunResult};
use crate::store::{Capturer, StateId, Store};

/// What a run that was made for real did.
#[derive(Debug, Clone)]
pub(super) struct Memo {
    /// How it ended.
    pub(super) result: RunResult,
    /// The state it left.
    pub(super) after: StateId,
    /// Its state file, if it wrote one.
    pub(super) state_file: Option<Vec<u8>>,
    /// The case directory it ran in.
    pub(super) case_dir: std::path::PathBuf,
}

/// One recorded resume run: how it ended, and the crash state at every
/// later point wanted from its start state that it reached.
#[derive(Debug, Clone)]
pub(super) struct Resumed {
    /// The run, made to its end (a point it never reached ends so).
    pub(super) end: Memo,
    /// The states at the points it reached.
    pub(super) points: BTreeMap<CrashPoint, PointRecord>,
}

/// Which later points are wanted from which start state.
#[derive(Debug, Default)]
pub(super) struct Wanted {
    /// Every plan of the layout.
    plans: Vec<CrashPlan>,
    /// The plans (by index) with a later crash, by their first crash state.
    family: HashMap<StateId, Vec<usize>>,
    /// Second crash points by the first crash's state.
    second: HashMap<StateId, BTreeSet<CrashPoint>>,
}

/// One later crash a case went through from a recorded resume run: that
/// run, and the point the case crashed at in it.
pub(super) type Step<'a> = (&'a Resumed, CrashPoint);

/// The crash states a case went through, first crash first: the start
/// states of its resume runs. A resume run is recorded once per lineage.
pub(super) type Lineage = Vec<StateId>;

impl Wanted {
    /// The later points of `plans`, placed by `recording` (their first
    /// crash states).
    pub(super) fn of(plans: &[CrashPlan], recording: &Recording) -> Wanted {
        let mut w = Wanted {
            plans: plans.to_vec(),
            ..Wanted::default()
        };
        for (i, plan) in plans.iter().enumerate() {
            let Some(first) = plan.points.first().and_then(|p| recording.points.get(p)) else {
                continue;
            };
            if let Some(second) = plan.points.get(1) {
                w.second.entry(first.state).or_default().insert(*second);
                w.family.entry(first.state).or_default().push(i);
            }
        }
        w
    }

    /// The points wanted from run `run` (2 or later) of a case whose first
    /// crash state was `first` and whose later crashes so far were `steps`
    /// (one per run between the first and this one; otherwise nothing is
    /// wanted: the case's history is not known).
    pub(super) fn from(&self, run: usize, first: &StateId, steps: &[Step<'_>]) -> Vec<CrashPoint> {
        if run < 2 || steps.len() != run - 2 {
            return Vec::new();
        }
        if run == 2 {
            return self
                .second
                .get(first)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
        }
        let state = |r: &Resumed, p: &CrashPoint| r.points.get(p).map(|x| x.state);
        let mine: Vec<Option<StateId>> = steps.iter().map(|(r, p)| state(r, p)).collect();
        let mut out: Vec<CrashPoint> = self
            .family
            .get(first)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.plans.get(i))
            .filter(|plan| {
                steps.iter().zip(&mine).enumerate().all(|(j, ((r, _), s))| {
                    s.is_some() && plan.points.get(j + 1).and_then(|p| state(r, p)) == *s
                })
            })
            .filter_map(|plan| plan.points.get(run - 1).copied())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// The earliest point of `resumed` whose state equals `point`'s (`None`:
/// `point` has no earlier twin there, or was not captured).
pub(super) fn same_in(resumed: &Resumed, point: CrashPoint) -> Option<CrashPoint> {
    let state = resumed.points.get(&point)?.state;
    resumed
        .points
        .iter()
        .find(|(_, r)| r.state == state)
        .map(|(p, _)| *p)
        .filter(|p| *p != point)
}

/// One later crash of a case whose state was materialised from a recorded
/// resume run (what the JSON report's `later_states` of a case say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaterState {
    /// Which crash of the plan (2 or later).
    pub crash: usize,
    /// Its point, in the resume run's own numbering.
    pub point: CrashPoint,
    /// The start state of that resume run, named by the case's earlier
    /// crash points, each replaced by the earliest point of its own run
    /// with the same state.
    pub from: Vec<CrashPoint>,
    /// The earliest point of the same resume run with the same state.
    pub same_as: Option<CrashPoint>,
}

/// Can `point` be recorded for `target`?
pub(super) fn recordable(target: &Target, point: CrashPoint) -> bool {
    match point {
        CrashPoint::Syscall(_) => true,
        CrashPoint::Op(_) => target.subject.sim,
        _ => false,
    }
}

/// One run of a case, as the oracle's run loop asks for it.
#[derive(Clone, Copy)]
pub(super) struct RunAt<'a, 'b> {
    /// The subject.
    pub(super) target: &'a Target,
    /// Which run of the case (1-based).
    pub(super) run: usize,
    /// The case's sandbox.
    pub(super) sandbox: &'a Sandbox,
    /// The case's harness files.
    pub(super) files: &'a HarnessFiles,
    /// The run's request.
    pub(super) req: &'a RunRequest<'b>,
}

/// Makes the run `at` (its sandbox holds its start state) to its end,
/// paused at the points of `wanted` of the same kind as `point`, and
/// captures each state and the state it ends in.
pub(super) fn record_resume(
    store: &Store,
    at: RunAt<'_, '_>,
    point: CrashPoint,
    wanted: &[CrashPoint],
    case_dir: &Path,
) -> Result<Resumed, RecordError> {
    let RunAt {
        target,
        sandbox,
        files,
        req,
        ..
    } = at;
    let (result, points) = match point {
        CrashPoint::Op(_) => {
            let ops: Vec<_> = wanted
                .iter()
                .filter_map(|p| match p {
                    CrashPoint::Op(c) => Some(*c),
                    _ => None,
                })
                .collect();
            op::record_run(&target.subject, req, &files.events, &ops, store)?
        }
        _ => {
            let calls: Vec<u64> = wanted
                .iter()
                .filter_map(|p| match p {
                    CrashPoint::Syscall(n) => Some(*n),
                    _ => None,
                })
                .collect();
            syscall::record_run(&target.subject, req, &files.events, &calls, store)?
        }
    };
    let mut cap = Capturer::new(store, sandbox.root(), Some(&files.events));
    cap.scan_all()?;
    let after = cap.capture()?;
    Ok(Resumed {
        end: Memo {
            result,
            after,
            state_file: std::fs::read(&files.state).ok(),
            case_dir: case_dir.to_path_buf(),
        },
        points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::Exit;
    use crate::store::Hash;

    fn record(n: u64, s: u8) -> (CrashPoint, PointRecord) {
        let p = CrashPoint::Syscall(n);
        let r = PointRecord {
            point: p,
            state: Hash([s; 32]),
            calls: 0..0,
            changed: Vec::new(),
            outside: Vec::new(),
        };
        (p, r)
    }

    fn rec(states: &[(u64, u8)]) -> Recording {
        Recording {
            case_dir: "/r".into(),
            points: states.iter().map(|(n, s)| record(*n, *s)).collect(),
            power: Vec::new(),
            power_mid: BTreeMap::new(),
        }
    }

    /// A recorded resume run that captured `states`.
    fn resumed(states: &[(u64, u8)]) -> Resumed {
        Resumed {
            end: Memo {
                result: RunResult::untraced(Exit::Code(0), String::new(), Default::default()),
                after: Hash([0; 32]),
                state_file: None,
                case_dir: "/c".into(),
            },
            points: states.iter().map(|(n, s)| record(*n, *s)).collect(),
        }
    }

    fn plan(points: &[u64]) -> CrashPlan {
        CrashPlan {
            points: points.iter().map(|n| CrashPoint::Syscall(*n)).collect(),
        }
    }

    fn p(v: &[u64]) -> Vec<CrashPoint> {
        v.iter().map(|n| CrashPoint::Syscall(*n)).collect()
    }

    #[test]
    fn second_points_are_wanted_from_the_first_crash_state_they_follow() {
        // Points 11 and 12 have one state, 13 another.
        let r = rec(&[(11, 1), (12, 1), (13, 2)]);
        let plans = [plan(&[11, 4, 9]), plan(&[12, 2, 3]), plan(&[13, 5, 9])];
        let w = Wanted::of(&plans, &r);
        assert_eq!(w.from(2, &Hash([1; 32]), &[]), p(&[2, 4]));
        assert_eq!(w.from(2, &Hash([2; 32]), &[]), p(&[5]));
        assert_eq!(w.from(2, &Hash([3; 32]), &[]), p(&[]));
        assert_eq!(w.from(1, &Hash([1; 32]), &[]), p(&[]));
    }

    #[test]
    fn third_points_are_wanted_only_by_the_plans_that_reach_that_state() {
        // First crashes 11 and 12 share a state; in the resume run from
        // it, second points 2 and 4 share a state, 6 has another.
        let r = rec(&[(11, 1), (12, 1), (13, 2)]);
        let plans = [
            plan(&[11, 4, 9]),
            plan(&[12, 2, 3]),
            plan(&[11, 6, 7]),
            plan(&[13, 4, 8]),
            plan(&[12, 2]),
        ];
        let w = Wanted::of(&plans, &r);
        let second = resumed(&[(2, 5), (4, 5), (6, 6)]);
        let s1 = Hash([1; 32]);
        // From the state at 4 (= at 2): the third points of the plans that
        // crashed at 2 or 4 there, not 7 (another state) nor 8 (another
        // first crash state).
        assert_eq!(
            w.from(3, &s1, &[(&second, CrashPoint::Syscall(4))]),
            p(&[3, 9])
        );
        assert_eq!(
            w.from(3, &s1, &[(&second, CrashPoint::Syscall(6))]),
            p(&[7])
        );
        // Fourth crashes: no plan has one.
        let third = resumed(&[(3, 7), (9, 8)]);
        let steps = [
            (&second, CrashPoint::Syscall(2)),
            (&third, CrashPoint::Syscall(3)),
        ];
        assert_eq!(w.from(4, &s1, &steps), p(&[]));
        // A history of the wrong length wants nothing.
        assert_eq!(w.from(3, &s1, &[]), p(&[]));
        assert_eq!(w.from(2, &s1, &steps[..1]), p(&[]));
    }

    #[test]
    fn a_point_is_named_by_the_earliest_point_of_its_run_with_its_state() {
        let r = resumed(&[(2, 5), (4, 5), (6, 6)]);
        assert_eq!(
            same_in(&r, CrashPoint::Syscall(4)),
            Some(CrashPoint::Syscall(2))
        );
        assert_eq!(same_in(&r, CrashPoint::Syscall(2)), None);
        assert_eq!(same_in(&r, CrashPoint::Syscall(6)), None);
        assert_eq!(same_in(&r, CrashPoint::Syscall(9)), None);
    }

    #[test]
    fn plans_whose_first_point_was_not_recorded_want_nothing() {
        let r = rec(&[(11, 1)]);
        let w = Wanted::of(&[plan(&[20, 4])], &r);
        assert!(w.from(2, &Hash([1; 32]), &[]).is_empty());
    }
}
