//! The record-once engine. A process kill at a crash point leaves the
//! sandbox exactly as it was there, so the killed runs need not be run one
//! per point: one run, traced to its end, pauses at each point and captures
//! the crash state there (incrementally, into the content-addressed
//! [`crate::store`]). That run is the layout's census run itself
//! ([`early`]); only past a cap on its captures does a run of its own
//! record the points the plans use. Each case then materialises its
//! state in a fresh sandbox of the layout and resumes from it through the
//! oracle's run loop ([`crate::oracle::run_case_with`]), which judges it
//! exactly as if the run had been killed.
//!
//! A run that starts from a known state (a materialised crash state, or
//! the state a remembered run left) gives the same result for a
//! deterministic subject, so it is run once: later cases starting from the
//! same state get its effect put in place ([`replay`]). Two crash points
//! whose states are equal thus cost one resume; and the cases of such
//! points (one crash each) see the same things but for their crash
//! point's name, so all but the first are judged from what the first saw,
//! each under its own point ([`same`]; a failing one is run after all,
//! for the evidence in its directory).
//!
//! Later crashes (`--crashes 2` or more) land in resume runs: each resume
//! run wanted with a crash from a known start state is recorded once, to
//! its end, paused at every later point wanted from that state, and each
//! case materialises its own later crash state ([`later`]).
//!
//! * [`early`]: recording every point as the census is taken, by the
//!   first reference run, so that a layout needs no second traced run;
//! * [`syscall`]: recording `syscall` points through the tracer's pauses;
//! * [`op`]: recording the simulated trainer's `op` points through its I/O
//!   layer's pauses;
//! * [`later`]: which later points are wanted from which start state, and
//!   the recording of a resume run;
//! * [`replay`]: the engine's runs: materialise, remember, replay;
//! * [`same`]: which cases are judged from another's observations, and
//!   the bounded room those observations are kept in;
//! * [`power`]: under the power-loss fault model, the operation log of a
//!   recorded point (its calls before the point), which the power-loss
//!   states are built from instead of a killed run's log;
//! * [`op_power`]: that log for `op` points, built from what the simulated
//!   trainer's I/O layer says at its pauses.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::inject::CrashPoint;
use crate::runner::RunnerError;
use crate::store::{Hash, StateId, StoreError};
use crate::trace::TracedOp;

pub mod early;
pub mod later;
pub mod op;
pub mod op_power;
pub mod power;
pub mod replay;
pub mod same;
pub mod syscall;

pub use replay::Replayer;

/// How the runs of a case are carried out.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Deserialize,
    serde::Serialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// Kill one run per case at its crash point, then resume.
    KillEach,
    /// Record the crash states once, then materialise each and resume (the
    /// default; `time` points, which cannot be recorded, are killed).
    #[default]
    Record,
}

impl Engine {
    /// The name used in flags and scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Engine::KillEach => "kill-each",
            Engine::Record => "record",
        }
    }
}

/// What one captured point holds, and how it came to be: the calls since
/// the previous captured point and what they left (the record a power-loss
/// model replays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointRecord {
    /// The crash point.
    pub point: CrashPoint,
    /// Its crash state.
    pub state: StateId,
    /// The census numbers of the calls made since the previous captured
    /// point (empty for the first: its state is a full scan).
    pub calls: std::ops::Range<u64>,
    /// Each path those calls touched (relative to the sandbox), with its
    /// content hash at this point (`None`: not a regular file, or gone).
    pub changed: Vec<(PathBuf, Option<Hash>)>,
    /// Paths outside the sandbox mutated up to this point.
    pub outside: Vec<PathBuf>,
}

/// The crash states of one layout's first crash points.
#[derive(Debug, Clone)]
pub struct Recording {
    /// The case directory the recording ran in (the root that absolute
    /// paths in the states name).
    pub case_dir: PathBuf,
    /// Every captured point.
    pub points: BTreeMap<CrashPoint, PointRecord>,
    /// Under the power-loss fault model, every operation the recording run
    /// made inside its sandbox, in order (see [`crate::trace::TracedOp`]);
    /// a point at call `k` is preceded by those with `call < k`
    /// ([`Recording::power_ops`]). For `op` points, `call` is the number
    /// of the trainer's operation ([`op_power`]). Empty under process
    /// kills.
    pub power: Vec<TracedOp>,
    /// For `op` points under the power-loss fault model, the first half of
    /// each write, by the number of the trainer's operation (what a kill
    /// half-way through it leaves).
    pub power_mid: BTreeMap<u64, TracedOp>,
}

impl Recording {
    /// The operations made before `point` (a recorded `syscall` or `op`
    /// point; `None` for any other point, or when the recording kept no
    /// operations).
    pub fn power_ops(&self, point: CrashPoint) -> Option<Cow<'_, [TracedOp]>> {
        if self.power.is_empty() || !self.points.contains_key(&point) {
            return None;
        }
        let k = match point {
            CrashPoint::Syscall(k) => k,
            CrashPoint::Op(at) => return Some(op_power::before(&self.power, &self.power_mid, at)),
            _ => return None,
        };
        // As a killed run's log is cut (see `oracle::power`): at the first
        // operation of call `k` or later.
        let end = self
            .power
            .iter()
            .position(|t| t.call >= k)
            .unwrap_or(self.power.len());
        Some(Cow::Borrowed(&self.power[..end]))
    }

    /// How many distinct states the points have.
    pub fn distinct_states(&self) -> usize {
        let mut ids: Vec<StateId> = self.points.values().map(|p| p.state).collect();
        ids.sort();
        ids.dedup();
        ids.len()
    }

    /// For each point whose state equals an earlier point's, that point.
    pub fn same_as(&self) -> BTreeMap<CrashPoint, CrashPoint> {
        let mut first: BTreeMap<StateId, CrashPoint> = BTreeMap::new();
        let mut out = BTreeMap::new();
        for (p, r) in &self.points {
            match first.get(&r.state) {
                Some(f) => {
                    out.insert(*p, *f);
                }
                None => {
                    first.insert(r.state, *p);
                }
            }
        }
        out
    }
}

/// The recording of `recorded`, once every one of `wanted` was captured; a
/// point the run never reached means it did not do what the reference did.
fn finish(
    case_dir: &std::path::Path,
    recorded: BTreeMap<CrashPoint, PointRecord>,
    mut wanted: impl Iterator<Item = CrashPoint>,
) -> Result<Recording, RecordError> {
    if let Some(missing) = wanted.find(|p| !recorded.contains_key(p)) {
        return Err(RecordError::Diverged(format!(
            "{missing} was never reached"
        )));
    }
    Ok(Recording {
        case_dir: case_dir.to_path_buf(),
        points: recorded,
        power: Vec::new(),
        power_mid: BTreeMap::new(),
    })
}

/// Why a layout could not be recorded (the campaign then kills each case).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The recording run could not be made.
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The sandbox could not be built.
    #[error("cannot build the sandbox: {0}")]
    Io(#[from] std::io::Error),
    /// The recording run did not do what the reference did.
    #[error("the recording run differs from the reference: {0}")]
    Diverged(String),
    /// Under the power-loss fault model, the operation log of an `op`
    /// recording could not be built.
    #[error("no operation log for the power-loss model: {0}")]
    PowerLog(String),
}
