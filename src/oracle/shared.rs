//! Cases judged from an earlier case's observations. Two cases whose runs
//! are known to be the same runs from the same states (the engine says so,
//! see [`Runs::same_case`]) see the same things but for the name of their
//! crash point: the first of them is run, the others are judged from what
//! it saw, each under its own point. A case judged so that fails is run
//! after all, so that its directory holds the evidence as any failing
//! case's does (`--keep-failed`), and its outcome is the one it reports.

use std::time::Instant;

use super::seen::{Seen, SeenSlot, Took};
use super::{judge_observed, see_case, CaseJob, CaseOutcome, Reference, Target};
use crate::inject::{CrashPlan, CrashPoint};
use crate::runner::RunnerError;

/// Runs the case `job`, unless a case sharing `slot` ran first: then it is
/// judged from what that one saw.
pub(super) fn run_case(job: CaseJob<'_>, slot: &SeenSlot) -> Result<CaseOutcome, RunnerError> {
    let CaseJob {
        target,
        reference,
        plan,
        points,
        ..
    } = job;
    let start = Instant::now();
    let point = points.first().copied();
    let seen = match slot.get_or_make(|| see_case(job)) {
        Took::Kept { seen, made_here } => {
            let out = judge_seen(target, reference, plan, point, seen, start);
            if made_here || out.passed() {
                return Ok(out);
            }
            see_case(job)?
        }
        Took::Made(made) => *made?,
        Took::Nothing => see_case(job)?,
    };
    Ok(judge_seen(target, reference, plan, point, &seen, start))
}

/// Judges `seen` as the case of `plan`, whose first crash point is
/// `point` (resolved), where its first run was killed at another point.
pub(super) fn judge_seen(
    target: &Target,
    reference: &Reference,
    plan: &CrashPlan,
    point: Option<CrashPoint>,
    seen: &Seen,
    start: Instant,
) -> CaseOutcome {
    let given = seen.obs.runs.first().and_then(|r| r.crash);
    let named = point.filter(|p| given.is_some_and(|g| g != *p));
    judge_observed(
        target,
        reference,
        plan,
        &seen.obs,
        named,
        seen.leftovers.clone(),
        (&seen.root, &seen.case_dir),
        start,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::Mode;
    use crate::layout::Sandbox;
    use crate::observe::HarnessFiles;
    use crate::oracle::checks::shape::tests::{saved, snap};
    use crate::oracle::checks::tests::{hf, reference, run};
    use crate::oracle::obs::Observations;
    use crate::oracle::runs::{CaseRuns, Runs};
    use crate::oracle::seen::Room;
    use crate::oracle::{ResumeMode, Tracing};
    use crate::protocol::{OpCrash, When};
    use crate::runner::{Exit, RunRequest, RunResult, Subject};
    use crate::verdict::FailureKind;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn target() -> Target {
        Target {
            subject: Subject {
                program: "/nonexistent/trainer".into(),
                args: Vec::new(),
                sim: false,
                preload: Vec::new(),
            },
            mode: Mode::Op,
            max_steps: 8,
            seed: 0,
            resume: ResumeMode::Path,
            timeout: None,
            tracing: Tracing::Needed,
            fault: crate::fault::FaultModel::KILL,
        }
    }

    fn op(index: u64) -> CrashPoint {
        CrashPoint::Op(OpCrash {
            index,
            when: When::Before,
        })
    }

    /// What a case killed at `at` saw: its kill left no complete
    /// checkpoint (a `no-checkpoint` failure) when `failing`.
    fn seen(at: CrashPoint, failing: bool) -> Seen {
        let mut first = run(1, Exit::Crashed);
        first.crash = Some(at);
        first.saves = vec![saved(2, "checkpoint-2", 1)];
        first.after = Some(if failing {
            snap(&["checkpoint-2/", "checkpoint-2/model.bin#100"])
        } else {
            hf(&["checkpoint-2"])
        });
        let mut second = run(2, Exit::Code(0));
        second.events = vec![crate::protocol::Event::Resumed { step: 2 }];
        second.state = Some(Ok(reference(hf(&[])).state));
        Seen {
            obs: Observations {
                runs: vec![first, second],
                end: hf(&["checkpoint-8"]),
                timeout: Duration::from_secs(10),
                notes: Vec::new(),
                harness_error: None,
            },
            leftovers: Vec::new(),
            root: "/w/case-000003/sandbox".into(),
            case_dir: "/w/case-000003".into(),
        }
    }

    /// Counts the cases it is asked to run; every run fails to start.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    struct NoStart;

    impl CaseRuns for NoStart {
        fn run(
            &mut self,
            _: &Target,
            _: usize,
            _: &Sandbox,
            _: &HarnessFiles,
            _: &RunRequest<'_>,
        ) -> Result<RunResult, RunnerError> {
            Err(RunnerError::Trace("not started".into()))
        }
    }

    impl Runs for Counting {
        fn case<'a>(&'a self, _: &'a CrashPlan, _: &'a Path) -> Box<dyn CaseRuns + 'a> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::new(NoStart)
        }
    }

    fn empty() -> SeenSlot {
        SeenSlot::new(&Room::new(1 << 20))
    }

    fn filled(s: Seen) -> SeenSlot {
        let slot = empty();
        assert!(matches!(
            slot.get_or_make(|| Ok(s)),
            Took::Kept {
                made_here: true,
                ..
            }
        ));
        slot
    }

    #[test]
    fn a_case_judged_from_another_is_judged_under_its_own_point() {
        let r = reference(hf(&["checkpoint-8"]));
        let plan = CrashPlan {
            points: vec![op(9)],
        };
        let out = judge_seen(
            &target(),
            &r,
            &plan,
            Some(op(9)),
            &seen(op(4), true),
            Instant::now(),
        );
        assert_eq!(out.plan, plan);
        assert_eq!(out.findings[0].kind, FailureKind::NoCheckpoint);
        assert!(
            out.findings[0]
                .detail
                .starts_with(&format!("after crash 1 at {}:", op(9))),
            "{}",
            out.findings[0].detail
        );
        assert!(out.after_save);
    }

    /// The case of `op:9` run with `slot`: how it went, and how many
    /// cases the runs were asked for.
    fn op9_with(slot: &SeenSlot, work: &Path) -> (Result<CaseOutcome, RunnerError>, usize) {
        let r = reference(hf(&["checkpoint-8"]));
        let runs = Counting::default();
        let plan = CrashPlan {
            points: vec![op(9)],
        };
        let dir = work.join("case-000009");
        let job = CaseJob {
            target: &target(),
            reference: &r,
            plan: &plan,
            points: &plan.points,
            case_dir: &dir,
            runs: &runs,
        };
        let got = run_case(job, slot);
        (got, runs.0.load(Ordering::SeqCst))
    }

    #[test]
    fn a_passing_case_that_sees_what_one_saw_is_not_run() {
        let work = tempfile::tempdir().expect("tempdir");
        let (got, asked) = op9_with(&filled(seen(op(4), false)), work.path());
        let out = got.expect("judged");
        assert!(out.passed(), "{:#?}", out.findings);
        assert_eq!(asked, 0, "no run was made");
        assert!(!work.path().join("case-000009").exists());
    }

    #[test]
    fn a_failing_case_that_sees_what_one_saw_is_run_for_its_evidence() {
        let work = tempfile::tempdir().expect("tempdir");
        let (got, asked) = op9_with(&filled(seen(op(4), true)), work.path());
        assert!(got.is_err(), "its own run was started (and failed to)");
        assert_eq!(asked, 1);
    }

    #[test]
    fn the_first_case_of_a_slot_runs_and_leaves_what_it_saw_unless_it_failed_to_start() {
        let slot = empty();
        let (one, two) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let (got, asked) = op9_with(&slot, one.path());
        assert!(got.is_err() && asked == 1);
        assert!(matches!(slot.get_or_make(|| unreachable!()), Took::Nothing));
        // The next case of the slot makes its own runs.
        let (got, asked) = op9_with(&slot, two.path());
        assert!(got.is_err() && asked == 1);
    }
}
