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
//! The points wanted from a start state: for the second crash, exactly the
//! second points of the plans whose first crash has that state (known from
//! the first recording); for the third and later crashes, which start
//! state a plan reaches is only known once the runs before it were made,
//! so every plan's point of that crash is wanted from every start state
//! (one pause more each: a capture, not a run).

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
    /// Second crash points by the first crash's state.
    second: HashMap<StateId, BTreeSet<CrashPoint>>,
    /// For crash `k` (index `k - 3`, `k >= 3`): every plan's `k`-th point.
    deeper: Vec<BTreeSet<CrashPoint>>,
}

impl Wanted {
    /// The later points of `plans`, placed by `recording` (their first
    /// crash states).
    pub(super) fn of(plans: &[CrashPlan], recording: &Recording) -> Wanted {
        let mut w = Wanted::default();
        for plan in plans {
            let Some(first) = plan.points.first().and_then(|p| recording.points.get(p)) else {
                continue;
            };
            if let Some(second) = plan.points.get(1) {
                w.second.entry(first.state).or_default().insert(*second);
            }
            for (k, p) in plan.points.iter().enumerate().skip(2) {
                if w.deeper.len() <= k - 2 {
                    w.deeper.resize_with(k - 1, BTreeSet::new);
                }
                w.deeper[k - 2].insert(*p);
            }
        }
        w
    }

    /// The points wanted from run `run` (2 or later) starting from `start`.
    pub(super) fn from(&self, run: usize, start: &StateId) -> Vec<CrashPoint> {
        let set = match run {
            0..=1 => None,
            2 => self.second.get(start),
            k => self.deeper.get(k - 3),
        };
        set.map(|s| s.iter().copied().collect()).unwrap_or_default()
    }
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
    use crate::store::Hash;

    fn rec(states: &[(u64, u8)]) -> Recording {
        let points = states
            .iter()
            .map(|(n, s)| {
                let p = CrashPoint::Syscall(*n);
                let r = PointRecord {
                    point: p,
                    state: Hash([*s; 32]),
                    calls: 0..0,
                    changed: Vec::new(),
                    outside: Vec::new(),
                };
                (p, r)
            })
            .collect();
        Recording {
            case_dir: "/r".into(),
            points,
            power: Vec::new(),
        }
    }

    fn plan(points: &[u64]) -> CrashPlan {
        CrashPlan {
            points: points.iter().map(|n| CrashPoint::Syscall(*n)).collect(),
        }
    }

    #[test]
    fn second_points_are_wanted_from_the_first_crash_state_they_follow() {
        // Points 11 and 12 have one state, 13 another.
        let r = rec(&[(11, 1), (12, 1), (13, 2)]);
        let plans = [plan(&[11, 4, 9]), plan(&[12, 2, 3]), plan(&[13, 5, 9])];
        let w = Wanted::of(&plans, &r);
        let p =
            |v: &[u64]| -> Vec<CrashPoint> { v.iter().map(|n| CrashPoint::Syscall(*n)).collect() };
        assert_eq!(w.from(2, &Hash([1; 32])), p(&[2, 4]));
        assert_eq!(w.from(2, &Hash([2; 32])), p(&[5]));
        assert_eq!(w.from(2, &Hash([3; 32])), p(&[]));
        // Third crashes: every plan's, from any state.
        assert_eq!(w.from(3, &Hash([7; 32])), p(&[3, 9]));
        assert_eq!(w.from(4, &Hash([7; 32])), p(&[]));
        assert_eq!(w.from(1, &Hash([1; 32])), p(&[]));
    }

    #[test]
    fn plans_whose_first_point_was_not_recorded_want_nothing() {
        let r = rec(&[(11, 1)]);
        let w = Wanted::of(&[plan(&[20, 4])], &r);
        assert!(w.from(2, &Hash([1; 32])).is_empty());
    }
}
