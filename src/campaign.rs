//! A campaign: every case of one target across its layouts. Per layout, the
//! reference runs first, its census gives the crash plans, and the cases run
//! on parallel workers, each in its own sandbox, each an independent unit of
//! work. Results come back in case order, so the same seed gives the same
//! report whatever the scheduling.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::events::{Event, Reporter};
use crate::inject::budget::{self, Estimate};
use crate::inject::CrashPoint;
use crate::inject::{self, Coverage, CrashPlan, PlanSpec, Selection};
use crate::layout::Layout;
use crate::oracle::{self, CaseOutcome, KillEach, Reference, ReferenceError, Runs, Target};
use crate::partition::Partition;
use crate::pool::{Cancel, Pool};
use crate::record::early::Recorder;
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
    /// Parallel workers; each runs its subjects on one CPU.
    pub jobs: usize,
    /// Stop starting cases once this much time would be spent (the
    /// layouts share it: each may use its part and what earlier ones left).
    pub budget: Option<Duration>,
    /// The share of every layout's cases to run (`--partition I/N`).
    pub partition: Partition,
}

/// The results of one layout.
#[derive(Debug, Clone)]
pub struct LayoutResult {
    /// The layout.
    pub layout: Layout,
    /// Its reference.
    pub reference: Reference,
    /// Every case, in plan order (with [`Campaign::run_into`], those its
    /// sink kept).
    pub outcomes: Vec<CaseOutcome>,
    /// What the record-once engine recorded (`None`: each case was killed).
    pub recorded: Option<RecordSummary>,
    /// What the cases covered of the census.
    pub coverage: Coverage,
    /// Each outcome's place in the layout's whole plan list (0-based).
    pub indexes: Vec<usize>,
    /// How many plans the layout has, before partitioning.
    pub planned: usize,
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
    /// Later crash points (`--crashes 2` or more) recorded in resume runs.
    pub later_points: usize,
    /// The later crash states each plan's case materialised.
    pub later_states: std::collections::BTreeMap<CrashPlan, Vec<record::later::LaterState>>,
    /// Were the first points recorded by the census run itself (no run of
    /// their own, see [`crate::record::early`])?
    pub by_census_run: bool,
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
    /// The campaign was cancelled: by this signal (SIGINT, SIGTERM,
    /// SIGHUP), or by its caller (`None`).
    #[error("interrupted")]
    Interrupted(Option<i32>),
}

pub use crate::workspace::default_base;

impl Campaign {
    fn spec<'a>(&self, reference: &'a Reference, selection: Selection) -> PlanSpec<'a> {
        PlanSpec {
            mode: self.target.mode,
            selection,
            crashes: self.crashes,
            seed: self.crash_seed,
            layout: reference.layout.name(),
            saved: &reference.saved,
        }
    }

    /// The plans of one layout: from its reference's census, windows first,
    /// then the three misuse probes (a replay runs only its own plan).
    pub fn plans(&self, reference: &Reference) -> Vec<CrashPlan> {
        if let Some(only) = &self.only {
            return vec![only.clone()];
        }
        let spec = self.spec(reference, self.selection);
        let mut plans = inject::plans(&spec, &reference.census);
        plans.extend(inject::Probe::ALL.map(inject::Probe::plan));
        plans
    }

    /// What `outcomes` covered of every point the layout's census offers.
    fn coverage(
        &self,
        reference: &Reference,
        outcomes: &[CaseOutcome],
        planned: usize,
    ) -> Coverage {
        let universe = match self.target.mode {
            inject::Mode::Time if self.only.is_none() => self.selection,
            _ => Selection::All,
        };
        let all = inject::first_points(&self.spec(reference, universe), &reference.census);
        let firsts: Vec<inject::CrashPoint> = outcomes
            .iter()
            .filter(|o| o.plan.probe().is_none())
            .filter_map(|o| o.plan.points.first().copied())
            .collect();
        let mut c = Coverage::of(&all, &firsts);
        let probes_run = outcomes.iter().filter(|o| o.plan.probe().is_some()).count();
        c.probes = (inject::Probe::ALL.len(), probes_run);
        c.after_save = outcomes.iter().filter(|o| o.after_save).count();
        if outcomes.len() < planned {
            c.budget_cut = self.budget.map(|b| {
                format!(
                    "the budget of {} was spent after {} of {planned} planned cases",
                    budget::show_duration(b),
                    outcomes.len()
                )
            });
        }
        c
    }

    /// Runs every layout; `work` is an empty directory for the sandboxes.
    /// Every case is kept in its layout's [`LayoutResult::outcomes`].
    /// Once `cancel` is cancelled no case starts and this is
    /// [`CampaignError::Interrupted`]; [`Campaign::run_partial`] returns
    /// what finished instead.
    pub fn run(
        &self,
        work: &Path,
        reporter: &dyn Reporter,
        cancel: &Cancel,
    ) -> Result<Vec<LayoutResult>, CampaignError> {
        let out = self.run_partial(work, reporter, cancel)?;
        if cancel.is_cancelled() {
            return Err(CampaignError::Interrupted(cancel.signal()));
        }
        Ok(out)
    }

    /// [`Campaign::run`], except that once `cancel` is cancelled it returns
    /// the layouts whose reference finished, each with the cases that
    /// finished (the last one may have fewer than its plans, or none).
    pub fn run_partial(
        &self,
        work: &Path,
        reporter: &dyn Reporter,
        cancel: &Cancel,
    ) -> Result<Vec<LayoutResult>, CampaignError> {
        self.run_into(work, reporter, cancel, &mut KeepAll)
    }

    /// [`Campaign::run_partial`], each finished case handed to `sink`
    /// (layout by layout, each layout's in plan order) once its layout's
    /// cases are done: a layout's [`LayoutResult::outcomes`] keeps only
    /// those the sink gives back, so what a campaign holds need not grow
    /// with its cases.
    pub fn run_into(
        &self,
        work: &Path,
        reporter: &dyn Reporter,
        cancel: &Cancel,
        sink: &mut dyn CaseSink,
    ) -> Result<Vec<LayoutResult>, CampaignError> {
        let mut out = Vec::new();
        let begun = Instant::now();
        if !self.target.subject.preload.is_empty() {
            // Warm starts: the servers import while the cold runs run, one
            // per worker (the warm reference run's goes to a worker after it).
            crate::runner::warm::prestart(&self.target.subject, &work.join("warm"), self.jobs)
                .map_err(CampaignError::Runner)?;
        }
        for (k, &layout) in self.layouts.iter().enumerate() {
            if cancel.is_cancelled() {
                break;
            }
            let start = Instant::now();
            // Each layout may spend its part of the budget and what the
            // earlier ones left.
            let deadline = self
                .budget
                .map(|b| begun + b.mul_f64((k + 1) as f64 / self.layouts.len().max(1) as f64));
            let scratch = work.join(layout.name());
            std::fs::create_dir_all(&scratch)?;
            reporter.event(&Event::ReferenceStarted {
                layout,
                position: k + 1,
                layouts: self.layouts.len(),
            });
            // The record engine records every point as the census is taken
            // (in a case directory as long as the cases', see RECORD_DIR).
            let mut recorder = (self.engine == Engine::Record)
                .then(|| record::early::Recorder::new(&self.target, &scratch.join("store")))
                .flatten();
            // With two workers or more, the two reference runs run side by side.
            let side_by_side = self.jobs >= 2;
            let reference = match recorder.as_mut() {
                Some(r) => {
                    let subject = &self.target.subject;
                    let mut first =
                        |req: &crate::runner::RunRequest<'_>,
                         files: &crate::observe::HarnessFiles,
                         dir: &Path| r.run(subject, req, files, dir);
                    let runs = oracle::ReferenceRuns {
                        first: Some((RECORD_DIR, &mut first)),
                        side_by_side,
                    };
                    oracle::reference_with(&self.target, layout, &scratch, runs)
                }
                None => oracle::reference_with(
                    &self.target,
                    layout,
                    &scratch,
                    oracle::ReferenceRuns {
                        first: None,
                        side_by_side,
                    },
                ),
            };
            // The warm reference run's server goes to a worker.
            crate::runner::warm::release();
            let reference = match reference {
                Err(_) if cancel.is_cancelled() => break,
                r => r?,
            };
            let plans = if reference.findings.is_empty() {
                self.plans(&reference)
            } else {
                Vec::new()
            };
            let mine: Vec<usize> = (0..plans.len())
                .filter(|&i| self.partition.includes(i))
                .collect();
            reporter.event(&Event::ReferenceFinished {
                layout,
                reference: &reference,
                cases: mine.len(),
            });
            let estimate = deadline
                .map(|d| Estimate::new(d, budget::initial_cost(reference.duration, self.crashes)));
            let cases = Cases {
                reference: &reference,
                plans: &plans,
                mine: &mine,
                scratch: &scratch,
                estimate: estimate.as_ref(),
                reporter,
                cancel,
            };
            let (indexes, outcomes, recorded) = self.run_layout(&cases, recorder)?;
            let _ = remove_tree(&scratch);
            let coverage = if reference.findings.is_empty() {
                self.coverage(&reference, &outcomes, mine.len())
            } else {
                Coverage::default()
            };
            let duration = start.elapsed();
            reporter.event(&Event::LayoutFinished { layout, duration });
            let done = LayoutDone {
                reference: &reference,
                recorded: recorded.as_ref(),
            };
            let (indexes, outcomes): (Vec<usize>, Vec<CaseOutcome>) = indexes
                .into_iter()
                .zip(outcomes)
                .filter_map(|(i, o)| sink.case(&done, i, o).map(|o| (i, o)))
                .unzip();
            out.push(LayoutResult {
                layout,
                reference,
                outcomes,
                recorded,
                coverage,
                indexes,
                planned: plans.len(),
                duration,
            });
        }
        Ok(out)
    }

    /// The cases of one layout, by the campaign's engine.
    fn run_layout(
        &self,
        cases: &Cases<'_>,
        recorder: Option<Recorder>,
    ) -> Result<LayoutCases, CampaignError> {
        let (reference, plans, scratch) = (cases.reference, cases.plans, cases.scratch);
        if self.engine == Engine::Record {
            // Every plan's state is recorded, not just this partition's
            // share: which points share a state is then the same on every
            // machine, and merged partitions report it as one machine does.
            if let Some((store, rec, by_census_run)) =
                self.record(reference, plans, scratch, recorder)
            {
                // Under power loss a point's states are the disk states
                // built from the operations before it (`record::power`).
                let (distinct_states, same_as) = if self.target.fault.is_power_loss() {
                    record::power::shared_states(
                        &self.target,
                        reference.layout,
                        &store,
                        &rec,
                        scratch,
                    )
                    .unwrap_or_default()
                } else {
                    (rec.distinct_states(), rec.same_as())
                };
                let replayer = Replayer::new(&store, &rec, plans);
                let (indexes, outcomes) = self.run_cases(cases, &replayer)?;
                let summary = RecordSummary {
                    points: rec.points.len(),
                    distinct_states,
                    same_as: same_as.into_iter().collect(),
                    runs_made: replayer.runs_made(),
                    later_points: replayer.later_points(),
                    later_states: replayer.later_states(),
                    by_census_run,
                };
                return Ok((indexes, outcomes, Some(summary)));
            }
        }
        let (indexes, outcomes) = self.run_cases(cases, &KillEach)?;
        Ok((indexes, outcomes, None))
    }

    /// Records the crash states of the plans' first points, when they are
    /// points the engine can record; `None` otherwise (the cases are then
    /// killed one by one). What the first reference run captured
    /// (`recorder`) is used when it has every point; otherwise they are
    /// recorded by a run of their own.
    fn record(
        &self,
        reference: &Reference,
        plans: &[CrashPlan],
        scratch: &Path,
        recorder: Option<Recorder>,
    ) -> Option<(Store, Recording, bool)> {
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
        let store = match recorder.map(Recorder::finish) {
            Some((store, Some(early))) => {
                let wanted: Vec<CrashPoint> = calls
                    .iter()
                    .map(|n| CrashPoint::Syscall(*n))
                    .chain(ops.iter().map(|c| CrashPoint::Op(*c)))
                    .collect();
                match early.recording(&wanted) {
                    Some(rec) => return Some((store, rec, true)),
                    None => store,
                }
            }
            Some((store, None)) => store,
            None => Store::create(scratch.join("store")).ok()?,
        };
        let dir = scratch.join(RECORD_DIR);
        let rec = if ops.is_empty() {
            record::syscall::record(&self.target, reference, &calls, &dir, &store)
        } else {
            record::op::record(&self.target, reference, &ops, &dir, &store)
        };
        let _ = remove_tree(&dir);
        Some((store, rec.ok()?, false))
    }

    /// Runs the plans numbered `mine` on the workers; returns the numbers
    /// and outcomes of those that finished, in plan order.
    fn run_cases(
        &self,
        cases: &Cases<'_>,
        runs: &dyn Runs,
    ) -> Result<(Vec<usize>, Vec<CaseOutcome>), CampaignError> {
        let Cases {
            reference,
            plans,
            mine,
            scratch,
            estimate,
            reporter,
            cancel,
        } = *cases;
        let done = AtomicUsize::new(0);
        // Cases are taken in order and every case taken runs, so the cases
        // that ran are always a prefix of the share's plans, the budget's
        // cut included.
        let may_start = || estimate.map_or(true, Estimate::may_start);
        let ran = Pool::new(self.jobs)
            .pinned()
            .at_worker_end(crate::runner::warm::release)
            .run_while(mine, cancel, &may_start, |_, &i| {
                let plan = &plans[i];
                let case_dir: PathBuf = scratch.join(format!("case-{i:06}"));
                let r = match plan.probe() {
                    Some(p) => oracle::run_probe_with(&self.target, reference, p, &case_dir, runs),
                    None => oracle::run_case_with(&self.target, reference, plan, &case_dir, runs),
                };
                if let Ok(outcome) = &r {
                    reporter.event(&Event::CaseFinished {
                        layout: reference.layout,
                        index: i,
                        plan,
                        outcome,
                        dir: &case_dir,
                        done: done.fetch_add(1, Ordering::SeqCst) + 1,
                        total: mine.len(),
                    });
                }
                let _ = remove_tree(&case_dir);
                if let (Some(e), Ok(o)) = (estimate, &r) {
                    e.finished(o.duration);
                }
                r
            });
        let mut indexes = Vec::new();
        let mut outcomes = Vec::new();
        for (slot, &i) in ran.results.into_iter().zip(mine) {
            match slot {
                Some(Ok(o)) => {
                    indexes.push(i);
                    outcomes.push(o);
                }
                // Cases cut short by a stop are left out of a partial report.
                Some(Err(_)) | None if cancel.is_cancelled() => {}
                // Cases the budget did not start.
                None if ran.gated => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err(CampaignError::Interrupted(cancel.signal())),
            }
        }
        Ok((indexes, outcomes))
    }
}

/// Where a campaign's finished cases go ([`Campaign::run_into`]).
pub trait CaseSink {
    /// Case `index` (its place in the layout's whole plan list) of the
    /// layout `done` finished with `outcome`; returns the outcome when the
    /// layout's [`LayoutResult`] is to keep it.
    fn case(
        &mut self,
        done: &LayoutDone<'_>,
        index: usize,
        outcome: CaseOutcome,
    ) -> Option<CaseOutcome>;
}

/// A layout whose cases are done, as a [`CaseSink`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct LayoutDone<'a> {
    /// Its reference (the census names the cases' points).
    pub reference: &'a Reference,
    /// What the record-once engine recorded, when it did.
    pub recorded: Option<&'a RecordSummary>,
}

/// Keeps every case.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeepAll;

impl CaseSink for KeepAll {
    fn case(&mut self, _: &LayoutDone<'_>, _: usize, outcome: CaseOutcome) -> Option<CaseOutcome> {
        Some(outcome)
    }
}

/// A layout's cases: their plan numbers, outcomes, and what was recorded.
type LayoutCases = (Vec<usize>, Vec<CaseOutcome>, Option<RecordSummary>);

/// What the workers of one layout share.
#[derive(Clone, Copy)]
struct Cases<'a> {
    reference: &'a Reference,
    plans: &'a [CrashPlan],
    /// The numbers of the plans this partition runs.
    mine: &'a [usize],
    scratch: &'a Path,
    estimate: Option<&'a Estimate>,
    reporter: &'a dyn Reporter,
    cancel: &'a Cancel,
}
