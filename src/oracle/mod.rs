//! The oracle: runs the reference (two uninterrupted runs that must agree),
//! then each case (kill at the crash plan's points, resume until a run exits
//! 0), and judges what it sees: invariants after every crash, the final digest
//! against the reference bit for bit, the final directory against the
//! reference's.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::inject::{CensusEntry, CrashPlan, CrashPoint, Mode};
use crate::layout::Layout;
use crate::observe::DirSnapshot;
use crate::protocol::StateFile;
use crate::runner::{Exit, RunnerError, Subject};
use crate::verdict::{FailureKind, Finding};

pub mod checks;
pub mod driver;
pub mod obs;
mod phases;
mod power;
mod power_case;
mod probe;
mod reference;
mod resume;
mod runs;
mod seen;
mod shared;
mod watch;

use checks::shape::{Announced, RefShape};
use driver::{plain_paths_at, Driver};
pub(crate) use driver::{prepare, request};
pub use power_case::{initial_tree, state_id, state_ids};
pub use probe::{run_probe, run_probe_with};
pub use reference::{reference, reference_with, FirstRun, ReferenceRuns};
pub use resume::ResumeMode;
pub use runs::{CaseRuns, KillEach, Runs};
pub use seen::{Room, Seen, SeenSlot, Took};

/// What is being certified, and how.
#[derive(Debug, Clone)]
pub struct Target {
    /// The program.
    pub subject: Subject,
    /// How crashes are placed.
    pub mode: Mode,
    /// `CRASHPOINT_MAX_STEPS`.
    pub max_steps: u64,
    /// `CRASHPOINT_SEED`.
    pub seed: u64,
    /// What resume runs are given.
    pub resume: ResumeMode,
    /// Per-run time limit; `None`: 10 times the slowest reference run, at least 10 s.
    pub timeout: Option<Duration>,
    /// Which runs go through the system-call tracer.
    pub tracing: Tracing,
    /// What a crash does: a process kill, or a power cut.
    pub fault: crate::fault::FaultModel,
}

/// Which runs go through the system-call tracer, which sees every write
/// outside the sandbox and every removal inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracing {
    /// Only the runs whose census or crash points need it (`syscall` mode's
    /// first reference run and killed runs).
    Needed,
    /// Every run: both references, killed runs, resume runs, probes.
    Every,
    /// Every run but the resume runs (the runs of a case after its first,
    /// and the probes' runs given a bad resume path): `--no-trace-resume`.
    /// With `--preload`, the uninterrupted runs that repeat the census run
    /// are not traced either ([`Target::traces_repeat`]).
    NotResumes,
}

impl Target {
    /// Is an uninterrupted run from a fresh sandbox traced, other than the
    /// census run (the second reference run, a probe's first run)? It
    /// repeats the census run, which was traced, so only when every run is
    /// traced and the run is not warm-started.
    pub fn traces_repeat(&self) -> bool {
        self.tracing.traced(false) && self.subject.preload.is_empty()
    }
}

impl Tracing {
    /// Is a run traced? `resume`: a run after a crash or given a resume path.
    fn traced(self, resume: bool) -> bool {
        match self {
            Tracing::Needed => false,
            Tracing::Every => true,
            Tracing::NotResumes => !resume,
        }
    }
}

/// The time limit for reference runs when none is given.
pub const REFERENCE_TIMEOUT: Duration = Duration::from_secs(600);

/// An uninterrupted run of one layout: what every case is compared with.
#[derive(Debug, Clone)]
pub struct Reference {
    /// The layout.
    pub layout: Layout,
    /// The final state.
    pub state: StateFile,
    /// The final checkpoint tree.
    pub dir: DirSnapshot,
    /// What checkpoints look like (names, directory contents), from both
    /// uninterrupted runs.
    pub shape: RefShape,
    /// The saves the first run announced.
    pub saves: Vec<Announced>,
    /// Their paths, in order (they place the first completed save in the
    /// census, for the windows-first order).
    pub saved: Vec<String>,
    /// Time mode: when the first run's checkpoint tree changed (the stretch
    /// time points are fractions of).
    pub window: Option<crate::inject::SaveWindow>,
    /// What could not be checked for this subject (no events, ...): every
    /// case of the layout carries these as warnings.
    pub notes: Vec<String>,
    /// What the first run left in the sandbox's `TMPDIR` and `HOME`
    /// (`tmp/NAME`, `home/NAME`, a directory with a trailing `/`): the
    /// subject's own habit (`tmp/torchinductor_root/` for torch), not
    /// repeated in the cases' leftover warnings.
    pub usual_leftovers: Vec<String>,
    /// The census of the first reference run.
    pub census: Vec<CensusEntry>,
    /// The slower of the two runs.
    pub duration: Duration,
    /// The time limit cases use.
    pub timeout: Duration,
    /// Did the subject announce saves through the events file?
    pub events: bool,
    /// Failures visible without any crash (a trainer that never saves).
    pub findings: Vec<Finding>,
    /// Files the subject wrote outside its sandbox.
    pub outside: Vec<String>,
    /// Per-part digests by step, from `state` events (when the subject writes them).
    pub trajectory: BTreeMap<u64, BTreeMap<String, String>>,
}

/// Why a subject cannot be certified at all (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// Two reference runs disagree.
    #[error("nondeterministic: two uninterrupted runs in layout {layout} disagree: {detail}")]
    Nondeterministic {
        /// The layout.
        layout: Layout,
        /// What differed.
        detail: String,
    },
    /// The warm-started reference run (`--preload`) disagrees with the cold
    /// one: the preloaded modules change what the subject computes.
    #[error("the warm-started run in layout {layout} disagrees with the cold one: {detail}; the --preload modules change what the subject computes (drop --preload, or preload fewer modules)")]
    WarmDiffers {
        /// The layout.
        layout: Layout,
        /// What differed.
        detail: String,
    },
    /// The uninterrupted run itself failed.
    #[error("the uninterrupted reference run in layout {layout} failed: {detail}")]
    Unusable {
        /// The layout.
        layout: Layout,
        /// How.
        detail: String,
    },
    /// The resume argument names a file the uninterrupted run never made,
    /// while it announced its checkpoints under other names: every resume
    /// would fail, whatever the subject does right.
    #[error("resume mode `{mode}` passes <checkpoint directory>/{arg} to every resume, but the uninterrupted run in layout {layout} never made it (it announced {announced}): every resume would fail; pass what a restart resumes from: {advice}")]
    ResumeNeverMade {
        /// The layout.
        layout: Layout,
        /// The resume mode.
        mode: ResumeMode,
        /// The file it passes, relative to the checkpoint directory.
        arg: String,
        /// What the subject announced instead.
        announced: String,
        /// The `--resume-arg` values that would work.
        advice: String,
    },
    /// The run could not be started.
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// The sandbox could not be built.
    #[error("cannot build the sandbox: {0}")]
    Io(#[from] std::io::Error),
    /// Someone outside disturbed the reference's sandbox: a harness error,
    /// which says nothing about the subject.
    #[error("harness error in the reference run of layout {layout}: {detail}; this says nothing about the subject")]
    Disturbed {
        /// The layout.
        layout: Layout,
        /// What went missing.
        detail: String,
    },
}

impl ReferenceError {
    /// Is this the `nondeterministic` verdict?
    pub fn is_nondeterministic(&self) -> bool {
        matches!(self, ReferenceError::Nondeterministic { .. })
    }
}

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseOutcome {
    /// The layout.
    pub layout: Layout,
    /// The crash plan.
    pub plan: CrashPlan,
    /// What went wrong (empty: the case passed).
    pub findings: Vec<Finding>,
    /// Things worth a look that are not failures (leftover temporary files).
    pub warnings: Vec<String>,
    /// Runs started.
    pub runs: usize,
    /// Crash points that were reached.
    pub crashes_hit: usize,
    /// Did the first crash land after a completed save (a `saved` event
    /// before it, or something to resume from after it)? A kill before
    /// anything was saved proves nothing about saving.
    pub after_save: bool,
    /// Wall time of the case.
    pub duration: Duration,
    /// Set when the case's sandbox was disturbed from outside: the case says
    /// nothing about the subject (and has no findings).
    pub harness_error: Option<String>,
    /// Under the power-loss fault model, the disk states its first crash was
    /// judged in (0: a process kill, or the crash point was not reached).
    pub power_states: usize,
}

impl CaseOutcome {
    /// Did the case pass (no finding, and no harness error)?
    pub fn passed(&self) -> bool {
        self.findings.is_empty() && self.harness_error.is_none()
    }
}

/// Runs one case in a fresh sandbox under `case_dir` and judges it.
pub fn run_case(
    target: &Target,
    reference: &Reference,
    plan: &CrashPlan,
    case_dir: &Path,
) -> Result<CaseOutcome, RunnerError> {
    run_case_with(target, reference, plan, case_dir, &KillEach)
}

/// [`run_case`], with the runs carried out by `runs` (the subject started
/// each time, or a run's recorded effect put in place).
pub fn run_case_with(
    target: &Target,
    reference: &Reference,
    plan: &CrashPlan,
    case_dir: &Path,
    runs: &dyn Runs,
) -> Result<CaseOutcome, RunnerError> {
    // Time points that are fractions of the save window become delays.
    let duration = reference.duration.as_millis() as u64;
    let points: Vec<CrashPoint> = plan
        .points
        .iter()
        .map(|p| crate::inject::resolve(*p, reference.window, duration))
        .collect();
    let job = CaseJob {
        target,
        reference,
        plan,
        points: &points,
        case_dir,
        runs,
    };
    if target.fault.is_power_loss() && !points.is_empty() {
        // The first crash is a power cut (see `power_case`): its disk
        // states come from the killed run's operations, or the recording's.
        return power_case::run_case(job);
    }
    if let Some(slot) = runs.same_case(plan) {
        return shared::run_case(job, &slot);
    }
    let start = Instant::now();
    let seen = see_case(job)?;
    Ok(shared::judge_seen(
        target,
        reference,
        plan,
        points.first().copied(),
        &seen,
        start,
    ))
}

/// The leftovers in the sandbox of a case that saw `obs` (none looked
/// for when it was disturbed from outside: it is not judged).
fn leftovers(
    obs: &obs::Observations,
    sandbox: &crate::layout::Sandbox,
    reference: &Reference,
) -> Vec<String> {
    match obs.harness_error {
        None => watch::leftovers(sandbox, &reference.usual_leftovers),
        Some(_) => Vec::new(),
    }
}

/// A sandbox that could not be built, as a runner error.
fn sandbox_error(e: std::io::Error) -> RunnerError {
    RunnerError::Spawn {
        program: "sandbox".into(),
        source: e,
    }
}

/// One case to run: its plan (with its points resolved), its directory,
/// and what carries out its runs.
#[derive(Clone, Copy)]
struct CaseJob<'a> {
    target: &'a Target,
    reference: &'a Reference,
    plan: &'a CrashPlan,
    /// The plan's points, time points resolved.
    points: &'a [CrashPoint],
    case_dir: &'a Path,
    runs: &'a dyn Runs,
}

/// Drives the case `job` in a fresh sandbox under its directory and keeps
/// what it saw.
fn see_case(job: CaseJob<'_>) -> Result<Seen, RunnerError> {
    let CaseJob {
        target,
        reference,
        plan,
        points,
        case_dir,
        runs,
    } = job;
    let (sandbox, files) = prepare(reference.layout, case_dir).map_err(sandbox_error)?;
    let mut driver =
        Driver::new(target, reference, sandbox, files).with_runs(runs.case(plan, case_dir));
    driver.drive(points)?;
    let (obs, sandbox) = driver.finish();
    let leftovers = leftovers(&obs, &sandbox, reference);
    Ok(Seen {
        obs,
        leftovers,
        root: sandbox.root().to_path_buf(),
        case_dir: case_dir.to_path_buf(),
    })
}

/// Judges what the driver saw of a case (in `sandbox`, with harness files
/// under `case_dir`) and makes its outcome.
pub fn judge_case(
    target: &Target,
    reference: &Reference,
    plan: &CrashPlan,
    obs: &obs::Observations,
    sandbox: &crate::layout::Sandbox,
    case_dir: &Path,
    start: Instant,
) -> CaseOutcome {
    let leftovers = leftovers(obs, sandbox, reference);
    let seen_in = (sandbox.root(), case_dir);
    judge_observed(
        target, reference, plan, obs, None, leftovers, seen_in, start,
    )
}

/// [`judge_case`], given the sandbox's leftovers and where the sandbox and
/// the case directory were (`seen_in`), the first crash named
/// `first_crash` when that is not the point its run was given (see
/// [`checks::Against::first_crash`]).
#[allow(clippy::too_many_arguments)]
fn judge_observed(
    target: &Target,
    reference: &Reference,
    plan: &CrashPlan,
    obs: &obs::Observations,
    first_crash: Option<CrashPoint>,
    leftovers: Vec<String>,
    (root, case_dir): (&Path, &Path),
    start: Instant,
) -> CaseOutcome {
    let against = checks::Against {
        reference,
        max_steps: target.max_steps,
        first_crash,
    };
    let (mut findings, mut warnings) = match &obs.harness_error {
        // Nothing the subject did is judged in a disturbed sandbox.
        Some(_) => (Vec::new(), obs.notes.clone()),
        None => {
            let (f, mut w) = checks::judge(against, obs);
            w.extend(leftovers);
            (f, w)
        }
    };
    warnings.extend(reference.notes.iter().cloned());
    // Reports must not depend on where the workspace happened to be.
    for f in &mut findings {
        f.detail = plain_paths_at(&f.detail, root, case_dir);
    }
    for w in &mut warnings {
        *w = plain_paths_at(w, root, case_dir);
    }
    let harness_error = obs
        .harness_error
        .as_deref()
        .map(|e| plain_paths_at(e, root, case_dir));
    // One finding per kind: the first is the one that explains the rest.
    let mut seen = std::collections::HashSet::new();
    findings.retain(|f| seen.insert(f.kind));
    let first_crash = obs.runs.iter().position(|r| r.exit == Exit::Crashed);
    let after_save = first_crash.is_some_and(|k| {
        obs.runs[..=k].iter().any(|r| !r.saves.is_empty())
            || obs.runs.get(k + 1).is_some_and(|r| r.resume.is_some())
    });
    CaseOutcome {
        layout: reference.layout,
        plan: plan.clone(),
        findings,
        warnings,
        runs: obs.runs.len(),
        crashes_hit: obs.crashes_hit(),
        after_save,
        duration: start.elapsed(),
        harness_error,
        power_states: 0,
    }
}
