//! Shrinking: a failing case becomes a minimal one that still fails the same
//! way (the same failure kind): the fewest crashes, the simplest layout, the
//! fewest steps (a multiple of the save interval, so the fewest saves) and
//! the earliest crash points. Every candidate is run for real through a
//! [`Judge`]; a candidate is kept only if it fails with the same kind, so
//! each kept step is strictly smaller, and the number of attempts is bounded.
//!
//! ```
//! use crashpoint::inject::CrashPlan;
//! use crashpoint::layout::Layout;
//! use crashpoint::shrink::Case;
//! let case = Case { layout: Layout::Nested, max_steps: 20, plan: "op:9:mid".parse().unwrap() };
//! assert_eq!(case.to_string(), "nested, 20 steps, op:9:mid");
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::campaign::LayoutResult;
use crate::census::{Call, CensusEntry, PhaseKind};
use crate::inject::{CrashPlan, CrashPoint};
use crate::layout::Layout;
use crate::oracle::{self, Reference, ReferenceError, Target};
use crate::protocol::{OpCrash, When};
use crate::runner::RunnerError;
use crate::sim::SimSettings;
use crate::verdict::FailureKind;

/// One case as the shrinker sees it: what a replay command names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Case {
    /// The layout.
    pub layout: Layout,
    /// `CRASHPOINT_MAX_STEPS`.
    pub max_steps: u64,
    /// The crash plan (a probe, or no point at all for the uninterrupted run).
    pub plan: CrashPlan,
}

impl Case {
    /// The plan as `--crash` takes it: `none` when there is no point.
    pub fn crash_arg(&self) -> String {
        if self.plan.points.is_empty() {
            "none".into()
        } else {
            self.plan.to_string()
        }
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let crash = if self.plan.points.is_empty() {
            "no crash".to_string()
        } else {
            self.plan.to_string()
        };
        write!(f, "{}, {} steps, {crash}", self.layout, self.max_steps)
    }
}

/// A failing case with what it took and what it showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failing {
    /// The case.
    pub case: Case,
    /// Subject runs the case took (the reference's two runs not counted).
    pub runs: usize,
    /// The finding's detail.
    pub detail: String,
}

/// The outcome of shrinking one failing case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shrunk {
    /// The failure kind every kept candidate showed.
    pub kind: FailureKind,
    /// The case shrinking started from.
    pub before: Failing,
    /// The minimal case found.
    pub after: Failing,
    /// Candidates run.
    pub attempts: usize,
}

/// Why shrinking stopped short.
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    /// A candidate could not be started at all.
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// A work directory could not be made.
    #[error("cannot prepare a shrinking directory: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs candidates for the shrinker.
pub trait Judge {
    /// The census of an uninterrupted run of `layout` to `max_steps`
    /// (empty when there is none).
    fn census(&mut self, layout: Layout, max_steps: u64) -> Result<Vec<CensusEntry>, ShrinkError>;
    /// Runs `case`; `Some((runs, detail))` when it fails with `kind`.
    fn fails(
        &mut self,
        case: &Case,
        kind: FailureKind,
    ) -> Result<Option<(usize, String)>, ShrinkError>;
}

/// Bounds and hints of a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// At most this many candidates are run.
    pub attempts: usize,
    /// Steps between saves: candidate step counts are its multiples
    /// (0: unknown, halve instead).
    pub step_unit: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            attempts: 40,
            step_unit: 0,
        }
    }
}

/// The steps between two saves of the simulated trainer with `settings`:
/// `every_n_steps`, else the length of `every_n_epochs` epochs.
///
/// ```
/// let s = crashpoint::sim::SimSettings { every_n_steps: 0, every_n_epochs: 2, ..Default::default() };
/// assert_eq!(crashpoint::shrink::save_interval(&s), 32); // 64 samples, 4 per step
/// ```
pub fn save_interval(settings: &SimSettings) -> u64 {
    if settings.every_n_steps > 0 {
        return settings.every_n_steps;
    }
    let batch = settings.batch.max(1) as u64;
    let per_epoch = (settings.dataset as u64).div_ceil(batch);
    per_epoch * settings.every_n_epochs
}

/// The first failure of `kind` in a campaign's results: how many cases ran
/// up to and including the first one in run order (for a failure of the
/// uninterrupted reference run, which is then the case: the cases before
/// it), and, to start shrinking from, the failing case of that layout with
/// the earliest crash plan (windows-first order runs late points early).
pub fn first_failing(
    results: &[LayoutResult],
    kind: FailureKind,
    max_steps: u64,
) -> Option<(usize, Failing)> {
    let mut ran = 0;
    for r in results {
        if let Some(f) = r.reference.findings.iter().find(|f| f.kind == kind) {
            let case = Case {
                layout: r.layout,
                max_steps,
                plan: CrashPlan { points: Vec::new() },
            };
            let failing = Failing {
                case,
                runs: 1,
                detail: f.detail.clone(),
            };
            return Some((ran, failing));
        }
        for o in &r.outcomes {
            ran += 1;
            if o.findings.iter().any(|f| f.kind == kind) {
                let earliest = r
                    .outcomes
                    .iter()
                    .filter(|e| e.findings.iter().any(|f| f.kind == kind))
                    .min_by(|a, b| a.plan.cmp(&b.plan))
                    .unwrap_or(o);
                let (o, f) = match earliest.findings.iter().find(|f| f.kind == kind) {
                    Some(f) => (earliest, f),
                    None => continue,
                };
                let case = Case {
                    layout: r.layout,
                    max_steps,
                    plan: o.plan.clone(),
                };
                let failing = Failing {
                    case,
                    runs: o.runs,
                    detail: f.detail.clone(),
                };
                return Some((ran, failing));
            }
        }
    }
    None
}

/// Shrinks `start`, which fails with `kind`, to a minimal case failing the
/// same way.
pub fn shrink(
    judge: &mut dyn Judge,
    start: Failing,
    kind: FailureKind,
    limits: Limits,
) -> Result<Shrunk, ShrinkError> {
    let mut s = Search {
        judge,
        kind,
        limits,
        best: start.clone(),
        attempts: 0,
        tried: HashSet::from([start.case.clone()]),
    };
    loop {
        let round = s.best.case.clone();
        s.fewer_crashes()?;
        s.simpler_layout()?;
        // Earlier points first: a point moved to the first save's same
        // operation still exists in a shorter run, so fewer steps can fail.
        s.earlier_points()?;
        s.fewer_steps()?;
        if s.best.case == round || s.attempts >= limits.attempts {
            break;
        }
    }
    Ok(Shrunk {
        kind,
        before: start,
        after: s.best,
        attempts: s.attempts,
    })
}

struct Search<'j> {
    judge: &'j mut dyn Judge,
    kind: FailureKind,
    limits: Limits,
    best: Failing,
    attempts: usize,
    tried: HashSet<Case>,
}

/// How many candidates one scan over earlier points may spend.
const SCAN: usize = 8;

impl Search<'_> {
    /// Runs `case` unless it was tried or the budget is spent; keeps it
    /// when it fails the same way.
    fn attempt(&mut self, case: Case) -> Result<bool, ShrinkError> {
        if self.attempts >= self.limits.attempts || !self.tried.insert(case.clone()) {
            return Ok(false);
        }
        self.attempts += 1;
        match self.judge.fails(&case, self.kind)? {
            Some((runs, detail)) => {
                self.best = Failing { case, runs, detail };
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Drops crashes: the shortest prefix of the plan that still fails,
    /// down to no crash at all (a failure an uninterrupted run shows); else
    /// the plan without one of its earlier crashes (a first crash that only
    /// restarted the run from scratch).
    fn fewer_crashes(&mut self) -> Result<(), ShrinkError> {
        let points = self.best.case.plan.points.clone();
        if self.best.case.plan.probe().is_some() {
            return Ok(());
        }
        for n in 0..points.len() {
            let case = Case {
                plan: CrashPlan {
                    points: points[..n].to_vec(),
                },
                ..self.best.case.clone()
            };
            if self.attempt(case)? {
                return Ok(());
            }
        }
        for i in 0..points.len().saturating_sub(1) {
            let mut fewer = points.clone();
            fewer.remove(i);
            let case = Case {
                plan: CrashPlan { points: fewer },
                ..self.best.case.clone()
            };
            if self.attempt(case)? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The simplest layout that still fails (`relative` first).
    fn simpler_layout(&mut self) -> Result<(), ShrinkError> {
        let current = self.best.case.layout;
        for layout in Layout::ALL.into_iter().take_while(|l| *l != current) {
            let case = Case {
                layout,
                ..self.best.case.clone()
            };
            if self.attempt(case)? {
                break;
            }
        }
        Ok(())
    }

    /// The fewest steps that still fail: multiples of the save interval,
    /// smallest first.
    fn fewer_steps(&mut self) -> Result<(), ShrinkError> {
        let current = self.best.case.max_steps;
        let candidates: Vec<u64> = if self.limits.step_unit > 0 {
            let unit = self.limits.step_unit;
            (1..)
                .map(|k| k * unit)
                .take_while(|s| *s < current)
                .collect()
        } else {
            let mut v: Vec<u64> = [current / 8, current / 4, current / 2]
                .into_iter()
                .filter(|s| *s > 0 && *s < current)
                .collect();
            v.dedup();
            v
        };
        for max_steps in candidates {
            let case = Case {
                max_steps,
                ..self.best.case.clone()
            };
            if self.attempt(case)? {
                break;
            }
        }
        Ok(())
    }

    /// Moves each crash point earlier: first to the same operation of an
    /// earlier save (or load), then to earlier operations nearby.
    fn earlier_points(&mut self) -> Result<(), ShrinkError> {
        for i in 0..self.best.case.plan.points.len() {
            let current = self.best.case.plan.points[i];
            let candidates = match current {
                CrashPoint::Op(c) if i == 0 => {
                    let census = self
                        .judge
                        .census(self.best.case.layout, self.best.case.max_steps)?;
                    first_op_candidates(c, &census)
                }
                CrashPoint::Op(c) => later_op_candidates(c),
                CrashPoint::Syscall(n) => {
                    let census = if i == 0 {
                        self.judge
                            .census(self.best.case.layout, self.best.case.max_steps)?
                    } else {
                        Vec::new()
                    };
                    syscall_candidates(n, &census)
                }
                CrashPoint::Time(ms) => [ms / 4, ms / 2]
                    .into_iter()
                    .filter(|t| *t < ms)
                    .map(CrashPoint::Time)
                    .collect(),
                CrashPoint::Fraction(f) => [f / 4, f / 2]
                    .into_iter()
                    .filter(|t| *t < f)
                    .map(CrashPoint::Fraction)
                    .collect(),
                CrashPoint::Probe(_) => Vec::new(),
            };
            for point in candidates {
                let mut plan = self.best.case.plan.clone();
                plan.points[i] = point;
                let case = Case {
                    plan,
                    ..self.best.case.clone()
                };
                if self.attempt(case)? {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// What an operation does, whatever the step: its kind and its phase with
/// the step number taken out (`rename` in `relink last`).
fn op_class(e: &CensusEntry) -> (Call, PhaseKind) {
    (e.call, e.phase.kind)
}

/// Earlier candidates for a first crash point, in the order they are
/// tried: the same operation at earlier saves (earliest first), the same
/// operation at an earlier moment, then the operations just before it
/// (nearest first; a kill after one operation is the moment before the next).
fn first_op_candidates(c: OpCrash, census: &[CensusEntry]) -> Vec<CrashPoint> {
    let Some(here) = census.iter().find(|e| e.index == c.index) else {
        return Vec::new();
    };
    let class = op_class(here);
    let same_op = census
        .iter()
        .filter(|e| e.index < c.index && op_class(e) == class)
        .map(|e| OpCrash {
            index: e.index,
            when: c.when,
        });
    let nearby = census
        .iter()
        .rev()
        .filter(|e| e.index < c.index)
        .flat_map(|e| {
            let mut whens = vec![When::After, When::Before];
            if e.call == Call::Write {
                whens.insert(1, When::Mid);
            }
            whens.into_iter().map(move |when| OpCrash {
                index: e.index,
                when,
            })
        })
        .take(SCAN);
    let earlier_when = [When::Before, When::Mid]
        .into_iter()
        .filter(|w| *w < c.when && (here.call == Call::Write || *w != When::Mid))
        .map(|when| OpCrash {
            index: c.index,
            when,
        });
    let mut seen = HashSet::new();
    same_op
        .chain(earlier_when)
        .chain(nearby)
        .filter(|p| seen.insert(*p))
        .map(CrashPoint::Op)
        .collect()
}

/// Earlier candidates for a system-call crash point: the same call (kind
/// and phase, when the census says) earlier, then the calls just before it.
fn syscall_candidates(n: u64, census: &[CensusEntry]) -> Vec<CrashPoint> {
    let class = census.iter().find(|e| e.index == n).map(op_class);
    let same = census
        .iter()
        .filter(|e| e.index < n && Some(op_class(e)) == class)
        .map(|e| e.index);
    let nearby = (1..n).rev().take(SCAN);
    let mut seen = HashSet::new();
    same.chain(nearby)
        .filter(|i| seen.insert(*i))
        .map(CrashPoint::Syscall)
        .collect()
}

/// Earlier candidates for a crash in a resume run (no census there): the
/// first operations of the run, where it loads, then the ones just before.
fn later_op_candidates(c: OpCrash) -> Vec<CrashPoint> {
    let mut out: Vec<OpCrash> = (1..c.index.min(4))
        .map(|index| OpCrash {
            index,
            when: c.when,
        })
        .collect();
    out.extend((1..c.index).rev().take(SCAN).map(|index| OpCrash {
        index,
        when: c.when,
    }));
    let mut seen = HashSet::new();
    out.into_iter()
        .filter(|p| seen.insert(*p))
        .map(CrashPoint::Op)
        .collect()
}

/// The real judge: every candidate runs through the oracle and the runner
/// (references cached per layout and step count), in sandboxes under a
/// work directory.
#[derive(Debug)]
pub struct RunnerJudge {
    target: Target,
    work: PathBuf,
    references: HashMap<(Layout, u64), Option<Reference>>,
    runs: usize,
}

impl RunnerJudge {
    /// A judge for `target` (its `max_steps` is the case's), working in `work`.
    pub fn new(target: Target, work: &Path) -> RunnerJudge {
        RunnerJudge {
            target,
            work: work.to_path_buf(),
            references: HashMap::new(),
            runs: 0,
        }
    }

    fn target(&self, max_steps: u64) -> Target {
        Target {
            max_steps,
            ..self.target.clone()
        }
    }

    /// The reference of (layout, steps); `None` when the subject cannot be
    /// certified there (nondeterministic, unusable).
    fn reference(
        &mut self,
        layout: Layout,
        max_steps: u64,
    ) -> Result<Option<&Reference>, ShrinkError> {
        if !self.references.contains_key(&(layout, max_steps)) {
            let scratch = self
                .work
                .join(format!("reference-{}-{max_steps}", layout.name()));
            std::fs::create_dir_all(&scratch)?;
            let r = match oracle::reference(&self.target(max_steps), layout, &scratch) {
                Ok(r) => Some(r),
                Err(ReferenceError::Runner(e)) => return Err(e.into()),
                Err(_) => None,
            };
            let _ = std::fs::remove_dir_all(&scratch);
            self.references.insert((layout, max_steps), r);
        }
        Ok(self
            .references
            .get(&(layout, max_steps))
            .and_then(|r| r.as_ref()))
    }
}

impl Judge for RunnerJudge {
    fn census(&mut self, layout: Layout, max_steps: u64) -> Result<Vec<CensusEntry>, ShrinkError> {
        Ok(self
            .reference(layout, max_steps)?
            .map(|r| r.census.clone())
            .unwrap_or_default())
    }

    fn fails(
        &mut self,
        case: &Case,
        kind: FailureKind,
    ) -> Result<Option<(usize, String)>, ShrinkError> {
        self.runs += 1;
        let case_dir = self.work.join(format!("candidate-{}", self.runs));
        let target = self.target(case.max_steps);
        let Some(reference) = self.reference(case.layout, case.max_steps)?.cloned() else {
            return Ok(None);
        };
        if !reference.findings.is_empty() {
            // A failure visible without a crash: the case is the uninterrupted run.
            let hit = case.plan.points.is_empty();
            return Ok(reference
                .findings
                .iter()
                .find(|f| hit && f.kind == kind)
                .map(|f| (1, f.detail.clone())));
        }
        let outcome = match case.plan.probe() {
            Some(p) => oracle::run_probe(&target, &reference, p, &case_dir),
            None => oracle::run_case(&target, &reference, &case.plan, &case_dir),
        };
        let _ = std::fs::remove_dir_all(&case_dir);
        let outcome = outcome?;
        Ok(outcome
            .findings
            .iter()
            .find(|f| f.kind == kind)
            .map(|f| (outcome.runs, f.detail.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
