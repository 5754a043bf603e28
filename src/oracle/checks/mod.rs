//! Pure checks: they take observations (snapshots of the checkpoint tree,
//! events, state files, exits) and return findings, and touch no file.
//!
//! * [`shape`]: which entries are checkpoints and pointers, and when an
//!   announced checkpoint is complete;
//! * [`loadable`]: pointer invariants at any depth and `no-checkpoint`;
//! * [`dirs`]: `dir-mismatch` against the reference's final tree;
//! * [`steps`]: `progress-lost`, `overshoot`, stopping early, the digest.
//!
//! [`judge`] applies them to a whole case, run by run.

pub mod dirs;
pub mod loadable;
pub mod shape;
pub mod steps;

use crate::runner::Exit;
use crate::verdict::{FailureKind, Finding};

use super::obs::Observations;
use super::Reference;
use shape::Announced;

/// What a case is judged against: the reference and the protocol settings.
#[derive(Debug, Clone, Copy)]
pub struct Against<'a> {
    /// The uninterrupted reference of the layout.
    pub reference: &'a Reference,
    /// `CRASHPOINT_MAX_STEPS`.
    pub max_steps: u64,
    /// The point the case names its first crash by, when the observations
    /// are another case's, killed at another point with the same crash
    /// state (`None`: the point the first killed run was given).
    pub first_crash: Option<crate::inject::CrashPoint>,
}

/// The findings and warnings of a whole case, in the order they happened
/// (the first finding of a kind is the one that explains the rest).
pub fn judge(against: Against<'_>, obs: &Observations) -> (Vec<Finding>, Vec<String>) {
    let r = against.reference;
    let mut findings: Vec<Finding> = Vec::new();
    let mut warnings: Vec<String> = obs.notes.clone();
    let mut saves_before: Vec<Announced> = Vec::new();
    let mut crashes = 0;
    for o in &obs.runs {
        let run = o.run;
        for p in &o.outside {
            let w = format!("wrote-outside: run {run} wrote {}", p.display());
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
        let saved_before = saves_before.iter().map(|a| a.step).max();
        let started = o.resumed_event();
        if let Some(from) = started {
            findings.extend(steps::progress_lost(run, from, saved_before));
        }
        match o.exit {
            Exit::Crashed => {
                crashes += 1;
                let at = match against.first_crash {
                    Some(p) if crashes == 1 => Some(p),
                    _ => o.crash,
                };
                let when = format!(
                    "after crash {crashes} at {}",
                    at.map(|c| c.to_string()).unwrap_or_default()
                );
                if let Some(snap) = &o.after {
                    findings.extend(loadable::pointer_findings(snap, run, &when));
                    let saves: Vec<Announced> =
                        saves_before.iter().chain(&o.saves).cloned().collect();
                    findings.extend(loadable::no_checkpoint(&r.shape, snap, &saves, run, &when));
                    if snap.truncated {
                        warnings.push(truncated_note(&when));
                    }
                }
            }
            Exit::TimedOut => findings.push(Finding {
                kind: FailureKind::Hang,
                run,
                detail: format!(
                    "run {run} exceeded its time limit of {:.1}s",
                    obs.timeout.as_secs_f64()
                ),
            }),
            Exit::Code(0) => match &o.state {
                Some(Ok(state)) => {
                    if started.is_none() && o.resume.is_some() {
                        let from = state.resumed_from_step.unwrap_or(0);
                        findings.extend(steps::progress_lost(run, from, saved_before));
                    }
                    let want = steps::Expected {
                        max_steps: against.max_steps,
                        state: &r.state,
                        trajectory: &r.trajectory,
                    };
                    findings.extend(steps::final_state(want, state, || obs.events(), run));
                }
                Some(Err(e)) => findings.push(Finding {
                    kind: FailureKind::ResumeFailed,
                    run,
                    detail: format!("run {run} {e}"),
                }),
                None => {}
            },
            // A fresh start after a crash resumed nothing: its failure
            // is the restart's.
            _ => findings.push(Finding {
                kind: if o.resume.is_none() && crashes > 0 {
                    FailureKind::RestartFailed
                } else {
                    FailureKind::ResumeFailed
                },
                run,
                detail: format!(
                    "run {run} ({}) {}",
                    if o.resume.is_some() {
                        "resume"
                    } else {
                        "fresh"
                    },
                    o.how
                ),
            }),
        }
        saves_before.extend(o.saves.iter().cloned());
    }
    let last = obs.runs.len();
    findings.extend(loadable::pointer_findings(&obs.end, last, "at the end"));
    let (f, w) = dirs::compare(&r.dir, &r.shape, &obs.end, &saves_before, last);
    findings.extend(f);
    warnings.extend(w);
    if obs.end.truncated {
        warnings.push(truncated_note("at the end"));
    }
    (findings, warnings)
}

fn truncated_note(when: &str) -> String {
    format!(
        "{when}: the checkpoint tree is larger than {} entries or deeper than {} levels; only part of it was checked",
        crate::observe::SCAN_ENTRIES,
        crate::observe::SCAN_DEPTH
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::shape::tests::{saved, snap};
    use super::shape::RefShape;
    use super::*;
    use crate::inject::CrashPoint;
    use crate::layout::Layout;
    use crate::oracle::obs::RunObs;
    use crate::protocol::{Event, StateFile};
    use std::time::Duration;

    pub(crate) fn reference(dir: crate::observe::DirSnapshot) -> Reference {
        Reference {
            layout: Layout::Relative,
            state: StateFile {
                step: 8,
                digest: "good".into(),
                resumed_from_step: Some(0),
                fields: Default::default(),
            },
            shape: RefShape::learn(&dir, &dir, &[]),
            dir,
            saves: Vec::new(),
            saved: Vec::new(),
            window: None,
            notes: Vec::new(),
            usual_leftovers: Vec::new(),
            census: Vec::new(),
            duration: Duration::ZERO,
            timeout: Duration::from_secs(10),
            events: true,
            findings: Vec::new(),
            outside: Vec::new(),
            trajectory: Default::default(),
        }
    }

    pub(crate) fn run(n: usize, exit: Exit) -> RunObs {
        RunObs {
            run: n,
            resume: (n > 1).then(|| "last".into()),
            crash: (exit == Exit::Crashed).then_some(CrashPoint::Syscall(30)),
            exit,
            how: String::new(),
            events: Vec::new(),
            saves: Vec::new(),
            after: None,
            state: None,
            outside: Vec::new(),
        }
    }

    pub(crate) fn hf(dirs: &[&str]) -> crate::observe::DirSnapshot {
        let mut items = Vec::new();
        for d in dirs {
            items.push(format!("{d}/"));
            items.push(format!("{d}/model.bin#100"));
            items.push(format!("{d}/trainer_state.json#20"));
        }
        snap(&items.iter().map(String::as_str).collect::<Vec<_>>())
    }

    #[test]
    fn a_case_is_judged_run_by_run_from_observations_alone() {
        let r = reference(hf(&["checkpoint-6", "checkpoint-8"]));
        // Run 1 saves step 2 and 4 and is killed; run 2 resumes from step 2
        // and ends one step past MAX_STEPS.
        let mut first = run(1, Exit::Crashed);
        first.saves = vec![saved(2, "checkpoint-2", 1), saved(4, "checkpoint-4", 1)];
        first.after = Some(hf(&["checkpoint-2", "checkpoint-4"]));
        let mut second = run(2, Exit::Code(0));
        second.events = vec![Event::Resumed { step: 2 }];
        second.state = Some(Ok(StateFile {
            step: 9,
            digest: "other".into(),
            resumed_from_step: Some(2),
            fields: Default::default(),
        }));
        let obs = Observations {
            runs: vec![first, second],
            end: hf(&["checkpoint-6", "checkpoint-8"]),
            timeout: Duration::from_secs(10),
            notes: Vec::new(),
            harness_error: None,
        };
        let (f, w) = judge(
            Against {
                reference: &r,
                max_steps: 8,
                first_crash: None,
            },
            &obs,
        );
        let kinds: Vec<FailureKind> = f.iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            [FailureKind::ProgressLost, FailureKind::Overshoot],
            "{f:#?}"
        );
        assert_eq!(
            f[0].detail,
            "run 2 resumed from step 2, but the save of step 4 had completed"
        );
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn no_complete_checkpoint_left_after_a_crash_is_no_checkpoint() {
        let r = reference(hf(&["checkpoint-8"]));
        let mut first = run(1, Exit::Crashed);
        first.saves = vec![saved(2, "checkpoint-2", 1)];
        // The kill landed in a rotation that deleted the only complete one.
        first.after = Some(snap(&["checkpoint-2/", "checkpoint-2/model.bin#100"]));
        let obs = Observations {
            runs: vec![first, run(2, Exit::Code(1))],
            end: hf(&["checkpoint-8"]),
            timeout: Duration::from_secs(10),
            notes: Vec::new(),
            harness_error: None,
        };
        let against = Against {
            reference: &r,
            max_steps: 8,
            first_crash: None,
        };
        let (f, _) = judge(against, &obs);
        assert_eq!(f[0].kind, FailureKind::NoCheckpoint, "{f:#?}");
        assert!(
            f[0].detail.starts_with("after crash 1 at syscall:30: the saves of step 2 had completed, but nothing loadable is left: checkpoint-2/ (step 2) is incomplete (trainer_state.json missing)"),
            "{}",
            f[0].detail
        );
        assert_eq!(f[1].kind, FailureKind::ResumeFailed);
    }
}
