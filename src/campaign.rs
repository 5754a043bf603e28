//! A campaign: every case of one target across its layouts. Per layout, the
//! reference runs first, its census gives the crash plans, and the cases run
//! on parallel workers, each in its own sandbox, each an independent unit of
//! work. Results come back in case order, so the same seed gives the same
//! report whatever the scheduling.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::inject::CrashPoint;
use crate::inject::{self, CrashPlan, PlanSpec, Selection};
use crate::layout::Layout;
use crate::oracle::{self, CaseOutcome, KillEach, Reference, ReferenceError, Runs, Target};
use crate::record::{self, Engine, Recording, Replayer};
use crate::store::Store;
use crate::workspace::remove_tree;

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
    /// How the runs of a case are carried out.
    pub engine: Engine,
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
    /// What the record-once engine recorded (`None`: each case was killed).
    pub recorded: Option<RecordSummary>,
    /// Wall time, reference included.
    pub duration: Duration,
}

/// What the record-once engine did for one layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSummary {
    /// Crash points recorded.
    pub points: usize,
    /// Distinct crash states among them.
    pub distinct_states: usize,
    /// Each point whose state equals an earlier point's, with that point.
    pub same_as: Vec<(CrashPoint, CrashPoint)>,
    /// Subject runs the cases made (the rest were put in place).
    pub runs_made: usize,
}

/// The case directory the recording runs in: as long as a case's
/// (`case-000000`), so absolute paths are rewritten without changing a
/// file's length.
const RECORD_DIR: &str = "case-r00000";

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

/// Set when the harness is asked to stop; workers finish their case and quit.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// The signal that stopped the harness (0: none).
static STOPPED_BY: AtomicI32 = AtomicI32::new(0);

/// The signal (SIGINT, SIGTERM, SIGHUP) that interrupted this harness, if any.
pub fn interrupted() -> Option<i32> {
    match STOPPED_BY.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Makes this process the harness: a child subreaper (orphans of subjects
/// come back to it to be killed and reaped), and on SIGINT, SIGTERM or
/// SIGHUP it sets [`STOP`] and kills every live run, so that campaigns
/// return the cases that finished and the command line can print them,
/// remove its workspace and exit `128 + signal`. A second signal does not
/// wait for that: every subject and descendant is killed and the process
/// exits at once (the next run removes the workspace left behind).
///
/// Call it first thing in `main`, before any other thread starts.
pub fn install_interrupt_handler() {
    crate::sys::become_subreaper();
    let installed = crate::sys::on_termination_signals(|sig| {
        let first = STOPPED_BY
            .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        STOP.store(true, Ordering::SeqCst);
        crate::sys::stop_all();
        if first {
            eprintln!(
                "crashpoint: {}: stopping every run, removing the sandboxes (again to quit at once)",
                signal_name(sig)
            );
        } else {
            crate::sys::kill_descendants();
            std::process::exit(128 + sig);
        }
    });
    if let Err(e) = installed {
        eprintln!("warning: cannot handle SIGINT/SIGTERM ({e}); an interrupt leaves sandboxes behind until the next run");
    }
}

/// `SIGINT` for 2, and so on.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// Progress callback: (layout, cases done, cases in this layout).
pub type Progress<'a> = &'a (dyn Fn(Layout, usize, usize) + Sync);

impl Campaign {
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
    /// When the harness is stopped (see [`STOP`]) this is
    /// [`CampaignError::Interrupted`]; [`Campaign::run_partial`] returns
    /// what finished instead.
    pub fn run(
        &self,
        work: &Path,
        progress: Progress<'_>,
    ) -> Result<Vec<LayoutResult>, CampaignError> {
        let out = self.run_partial(work, progress)?;
        if stopped() {
            return Err(CampaignError::Interrupted);
        }
        Ok(out)
    }

    /// [`Campaign::run`], except that once the harness is stopped it returns
    /// the layouts whose reference finished, each with the cases that
    /// finished (the last one may have fewer than its plans, or none).
    pub fn run_partial(
        &self,
        work: &Path,
        progress: Progress<'_>,
    ) -> Result<Vec<LayoutResult>, CampaignError> {
        let mut out = Vec::new();
        for &layout in &self.layouts {
            if stopped() {
                break;
            }
            let start = Instant::now();
            let scratch = work.join(layout.name());
            std::fs::create_dir_all(&scratch)?;
            let reference = match oracle::reference(&self.target, layout, &scratch) {
                Err(_) if stopped() => break,
                r => r?,
            };
            let plans = if reference.findings.is_empty() {
                self.plans(&reference)
            } else {
                Vec::new()
            };
            let (outcomes, recorded) = self.run_layout(&reference, &plans, &scratch, progress)?;
            let _ = remove_tree(&scratch);
            out.push(LayoutResult {
                layout,
                reference,
                outcomes,
                recorded,
                duration: start.elapsed(),
            });
        }
        Ok(out)
    }

    /// The cases of one layout, by the campaign's engine.
    fn run_layout(
        &self,
        reference: &Reference,
        plans: &[CrashPlan],
        scratch: &Path,
        progress: Progress<'_>,
    ) -> Result<(Vec<CaseOutcome>, Option<RecordSummary>), CampaignError> {
        if self.engine == Engine::Record {
            if let Some((store, rec)) = self.record(reference, plans, scratch) {
                let replayer = Replayer::new(&store, &rec);
                let outcomes = self.run_cases(reference, plans, scratch, progress, &replayer)?;
                let summary = RecordSummary {
                    points: rec.points.len(),
                    distinct_states: rec.distinct_states(),
                    same_as: rec.same_as().into_iter().collect(),
                    runs_made: replayer.runs_made(),
                };
                return Ok((outcomes, Some(summary)));
            }
        }
        let outcomes = self.run_cases(reference, plans, scratch, progress, &KillEach)?;
        Ok((outcomes, None))
    }

    /// Records the crash states of the plans' first points, when they are
    /// points the engine can record; `None` otherwise (the cases are then
    /// killed one by one).
    fn record(
        &self,
        reference: &Reference,
        plans: &[CrashPlan],
        scratch: &Path,
    ) -> Option<(Store, Recording)> {
        let firsts = || plans.iter().filter_map(|p| p.points.first());
        let mut calls: Vec<u64> = firsts()
            .filter_map(|p| match p {
                CrashPoint::Syscall(n) => Some(*n),
                _ => None,
            })
            .collect();
        let mut ops: Vec<crate::protocol::OpCrash> = firsts()
            .filter_map(|p| match p {
                CrashPoint::Op(c) if self.target.subject.sim => Some(*c),
                _ => None,
            })
            .collect();
        calls.sort_unstable();
        calls.dedup();
        ops.sort_unstable();
        ops.dedup();
        if calls.is_empty() && ops.is_empty() {
            return None;
        }
        let store = Store::create(scratch.join("store")).ok()?;
        let dir = scratch.join(RECORD_DIR);
        let rec = if ops.is_empty() {
            record::syscall::record(&self.target, reference, &calls, &dir, &store)
        } else {
            record::op::record(&self.target, reference, &ops, &dir, &store)
        };
        let _ = remove_tree(&dir);
        Some((store, rec.ok()?))
    }

    fn run_cases(
        &self,
        reference: &Reference,
        plans: &[CrashPlan],
        scratch: &Path,
        progress: Progress<'_>,
        runs: &dyn Runs,
    ) -> Result<Vec<CaseOutcome>, CampaignError> {
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let slots: Mutex<Vec<Option<Result<CaseOutcome, crate::runner::RunnerError>>>> =
            Mutex::new((0..plans.len()).map(|_| None).collect());
        let workers = self.jobs.clamp(1, plans.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    if stopped() {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(plan) = plans.get(i) else { return };
                    let case_dir: PathBuf = scratch.join(format!("case-{i:06}"));
                    let r = match plan.probe() {
                        Some(p) => oracle::run_probe(&self.target, reference, p, &case_dir),
                        None => {
                            oracle::run_case_with(&self.target, reference, plan, &case_dir, runs)
                        }
                    };
                    let _ = remove_tree(&case_dir);
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
                Some(Ok(o)) => outcomes.push(o),
                // Cases cut short by a stop are left out of a partial report.
                Some(Err(_)) | None if stopped() => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err(CampaignError::Interrupted),
            }
        }
        Ok(outcomes)
    }
}

/// Has the harness been asked to stop?
fn stopped() -> bool {
    STOP.load(Ordering::SeqCst) || crate::sys::stopping()
}
