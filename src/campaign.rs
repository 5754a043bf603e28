//! A campaign: every case of one target across its layouts. Per layout, the
//! reference runs first, its census gives the crash plans, and the cases run
//! on parallel workers, each in its own sandbox, each an independent unit of
//! work. Results come back in case order, so the same seed gives the same
//! report whatever the scheduling.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::inject::{self, CrashPlan, PlanSpec, Selection};
use crate::layout::Layout;
use crate::oracle::{self, CaseOutcome, Reference, ReferenceError, Target};
use crate::runner::Subject;
use crate::scenario::Scenario;
use std::ffi::OsString;

/// What to run.
#[derive(Debug, Clone)]
pub struct Campaign {
    /// The subject and its protocol settings.
    pub target: Target,
    /// The layouts, in report order.
    pub layouts: Vec<Layout>,
    /// Which first crash points.
    pub selection: Selection,
    /// Crashes per case.
    pub crashes: u32,
    /// The seed that draws crash points.
    pub crash_seed: u64,
    /// Run only this plan (a replay), instead of the census's.
    pub only: Option<CrashPlan>,
    /// Parallel workers.
    pub jobs: usize,
}

/// The results of one layout.
#[derive(Debug, Clone)]
pub struct LayoutResult {
    /// The layout.
    pub layout: Layout,
    /// Its reference.
    pub reference: Reference,
    /// Every case, in plan order.
    pub outcomes: Vec<CaseOutcome>,
    /// Wall time, reference included.
    pub duration: Duration,
}

/// Why a campaign could not run.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// The reference failed (nondeterministic or unusable subject).
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A case could not be started.
    #[error(transparent)]
    Runner(#[from] crate::runner::RunnerError),
    /// The work directory could not be made.
    #[error("cannot create a work directory: {0}")]
    Io(#[from] std::io::Error),
    /// The campaign was interrupted (SIGINT/SIGTERM).
    #[error("interrupted")]
    Interrupted,
}

/// The marker that says a directory is a crashpoint workspace (holds the pid).
pub const MARKER: &str = ".crashpoint-workspace";

/// A workspace: a directory under the system temporary directory that holds
/// every sandbox of one harness process, marked as its own and removed at the
/// end (without following links out of it).
#[derive(Debug)]
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// Creates a new marked workspace, after removing workspaces left behind
    /// by harness processes that no longer exist.
    pub fn create() -> std::io::Result<Workspace> {
        let base = std::env::temp_dir();
        remove_stale(&base);
        let dir = tempfile::Builder::new()
            .prefix("crashpoint-")
            .tempdir_in(&base)?;
        std::fs::write(dir.path().join(MARKER), std::process::id().to_string())?;
        Ok(Workspace { dir })
    }

    /// The workspace directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Removes `crashpoint-*` directories in `base` whose marker names a process
/// that is gone. Anything without a marker is left alone.
pub fn remove_stale(base: &Path) {
    let Ok(read) = std::fs::read_dir(base) else {
        return;
    };
    for e in read.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("crashpoint-") || !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let Ok(pid) = std::fs::read_to_string(e.path().join(MARKER)) else {
            continue;
        };
        let Ok(pid) = pid.trim().parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Set when the harness is asked to stop; workers finish their case and quit.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// Progress callback: (layout, cases done, cases in this layout).
pub type Progress<'a> = &'a (dyn Fn(Layout, usize, usize) + Sync);

impl Campaign {
    /// The campaign of a scenario: the simulated trainer `sim_exe sim ...`
    /// (the `crashpoint` binary) with the scenario's settings.
    pub fn for_scenario(
        s: &Scenario,
        sim_exe: &Path,
        jobs: usize,
        only: Option<CrashPlan>,
    ) -> Campaign {
        let mut args: Vec<OsString> = vec!["sim".into()];
        args.extend(s.trainer.to_args().into_iter().map(OsString::from));
        Campaign {
            target: Target {
                subject: Subject {
                    program: sim_exe.as_os_str().to_os_string(),
                    args,
                    sim: true,
                },
                mode: s.mode,
                max_steps: s.max_steps,
                seed: s.seed,
                resume: s.resume.clone(),
                timeout: s.timeout_secs.map(Duration::from_secs),
            },
            layouts: s.layouts.clone(),
            selection: s.selection,
            crashes: s.crashes,
            crash_seed: s.crash_seed,
            only,
            jobs,
        }
    }

    /// The plans of one layout: from its reference's census, then the
    /// three misuse probes (a replay runs only its own plan).
    pub fn plans(&self, reference: &Reference) -> Vec<CrashPlan> {
        if let Some(only) = &self.only {
            return vec![only.clone()];
        }
        let spec = PlanSpec {
            mode: self.target.mode,
            selection: self.selection,
            crashes: self.crashes,
            seed: self.crash_seed,
            duration_ms: reference.duration.as_millis() as u64,
        };
        let mut plans = inject::plans(&spec, &reference.census);
        plans.extend(inject::Probe::ALL.map(inject::Probe::plan));
        plans
    }

    /// Runs every layout; `work` is an empty directory for the sandboxes.
    pub fn run(
        &self,
        work: &Path,
        progress: Progress<'_>,
    ) -> Result<Vec<LayoutResult>, CampaignError> {
        let mut out = Vec::new();
        for &layout in &self.layouts {
            let start = Instant::now();
            let scratch = work.join(layout.name());
            std::fs::create_dir_all(&scratch)?;
            let reference = oracle::reference(&self.target, layout, &scratch)?;
            let plans = if reference.findings.is_empty() {
                self.plans(&reference)
            } else {
                Vec::new()
            };
            let outcomes = self.run_cases(&reference, &plans, &scratch, progress)?;
            let _ = std::fs::remove_dir_all(&scratch);
            out.push(LayoutResult {
                layout,
                reference,
                outcomes,
                duration: start.elapsed(),
            });
            if STOP.load(Ordering::SeqCst) {
                return Err(CampaignError::Interrupted);
            }
        }
        Ok(out)
    }

    fn run_cases(
        &self,
        reference: &Reference,
        plans: &[CrashPlan],
        scratch: &Path,
        progress: Progress<'_>,
    ) -> Result<Vec<CaseOutcome>, CampaignError> {
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let slots: Mutex<Vec<Option<Result<CaseOutcome, crate::runner::RunnerError>>>> =
            Mutex::new((0..plans.len()).map(|_| None).collect());
        let workers = self.jobs.clamp(1, plans.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    if STOP.load(Ordering::SeqCst) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(plan) = plans.get(i) else { return };
                    let case_dir: PathBuf = scratch.join(format!("case-{i}"));
                    let r = match plan.probe() {
                        Some(p) => oracle::run_probe(&self.target, reference, p, &case_dir),
                        None => oracle::run_case(&self.target, reference, plan, &case_dir),
                    };
                    let _ = std::fs::remove_dir_all(&case_dir);
                    if let Ok(mut slots) = slots.lock() {
                        slots[i] = Some(r);
                    }
                    progress(
                        reference.layout,
                        done.fetch_add(1, Ordering::SeqCst) + 1,
                        plans.len(),
                    );
                });
            }
        });
        let slots = slots.into_inner().unwrap_or_default();
        let mut outcomes = Vec::new();
        for slot in slots {
            match slot {
                Some(r) => outcomes.push(r?),
                None => return Err(CampaignError::Interrupted),
            }
        }
        Ok(outcomes)
    }
}
