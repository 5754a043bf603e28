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

use std::fmt;

use crate::campaign::LayoutResult;
use crate::census::CensusEntry;
use crate::inject::CrashPlan;
use crate::layout::Layout;
use crate::runner::RunnerError;
use crate::sim::SimSettings;
use crate::verdict::FailureKind;

mod candidates;
mod judge;
mod search;
#[cfg(test)]
mod tests;

pub use judge::RunnerJudge;
pub use search::shrink;

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
