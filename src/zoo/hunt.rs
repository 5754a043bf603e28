//! Hunting the zoo: every mutant runs on its own scenario
//! (`zoo-<mutant>.toml` in the scenarios directory) and must be caught with
//! the failure kinds that scenario expects; its first failure is shrunk to
//! a minimal case with a replay command. The clean simulated trainer runs
//! every scenario (the zoo's with their mutant taken out) and must pass.
//! Mutants and clean scenarios are independent jobs on parallel workers;
//! the report lists them in zoo order whatever the scheduling.

use std::path::{Path, PathBuf};

use crate::campaign::{CampaignError, LayoutResult};
use crate::pool::{Cancel, Pool};
use crate::report::{self, Report};
use crate::scenario::{Scenario, ScenarioError};
use crate::shrink::{self, Case, Failing, Limits, RunnerJudge, ShrinkError, Shrunk};
use crate::verdict::Expect;
use crate::verdict::FailureKind;

use crate::sim::Mutant;

/// Which scenarios the clean trainer must pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanSet {
    /// Every scenario in the directory.
    All,
    /// Only the zoo's scenarios, their mutant taken out.
    ZooOnly,
}

/// What to hunt with.
#[derive(Debug, Clone)]
pub struct Options {
    /// The scenarios directory.
    pub dir: PathBuf,
    /// The `crashpoint` binary whose `sim` command is the subject.
    pub exe: PathBuf,
    /// How replay commands name the program.
    pub program: String,
    /// Parallel workers.
    pub jobs: usize,
    /// Which scenarios the clean trainer runs.
    pub clean: CleanSet,
    /// Candidates each shrinking may run.
    pub shrink_attempts: usize,
}

/// Was a mutant caught?
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Failures with every kind its scenario expects.
    Caught,
    /// No failure, or not the kinds expected.
    Missed,
    /// There is no `zoo-<mutant>.toml`.
    NoScenario,
    /// Process kills cannot show it; it waits for the power-loss fault model.
    NeedsPowerLoss,
}

impl Verdict {
    /// The word in the table.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Caught => "caught",
            Verdict::Missed => "MISSED",
            Verdict::NoScenario => "NO SCENARIO",
            Verdict::NeedsPowerLoss => "waiting",
        }
    }
}

/// One case as reports show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CaseView {
    /// The layout.
    pub layout: String,
    /// `CRASHPOINT_MAX_STEPS`.
    pub steps: u64,
    /// Crash points in the plan.
    pub crashes: usize,
    /// The plan (`none` for the uninterrupted run).
    pub crash: String,
    /// Subject runs the case took.
    pub runs: usize,
}

impl CaseView {
    fn of(f: &Failing) -> CaseView {
        CaseView {
            layout: f.case.layout.name().into(),
            steps: f.case.max_steps,
            crashes: f
                .case
                .plan
                .points
                .iter()
                .filter(|p| !matches!(p, crate::inject::CrashPoint::Probe(_)))
                .count(),
            crash: f.case.crash_arg(),
            runs: f.runs,
        }
    }
}

/// A mutant's failure, shrunk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Minimal {
    /// The kind shrinking kept.
    pub kind: FailureKind,
    /// The first failing case found.
    pub before: CaseView,
    /// The minimal case.
    pub after: CaseView,
    /// Candidates shrinking ran.
    pub attempts: usize,
    /// What the minimal case showed.
    pub detail: String,
    /// The command that replays the minimal case.
    pub replay: String,
}

/// One mutant's line of the zoo.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MutantRow {
    /// The mutant.
    pub mutant: Mutant,
    /// Caught or not.
    pub verdict: Verdict,
    /// Its scenario file, if any.
    pub scenario: Option<String>,
    /// The kinds its scenario expects.
    pub expected: Vec<FailureKind>,
    /// The kinds seen.
    pub kinds: Vec<FailureKind>,
    /// Layouts where a failure showed.
    pub layouts: Vec<String>,
    /// Cases run (probes included).
    pub cases: usize,
    /// Cases run up to and including the first failing one (for a failure
    /// of the uninterrupted reference run: the cases run before it).
    pub found_at: Option<usize>,
    /// Did the uninterrupted reference run already fail?
    pub found_in_reference: bool,
    /// The first failure, shrunk.
    pub minimal: Option<Minimal>,
}

/// One scenario run by the clean trainer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CleanRow {
    /// The scenario.
    pub scenario: String,
    /// Cases run.
    pub cases: usize,
    /// Did it reach the verdict it expects (pass, for the zoo's)?
    pub as_expected: bool,
    /// The kinds seen.
    pub kinds: Vec<FailureKind>,
    /// The first failure's replay command, if any.
    pub replay: Option<String>,
}

/// Everything the zoo hunt found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ZooReport {
    /// Every mutant, in zoo order.
    pub mutants: Vec<MutantRow>,
    /// Every scenario the clean trainer ran, in file order.
    pub clean: Vec<CleanRow>,
    /// True when every mutant that process kills can show was caught and
    /// the clean trainer met every expectation.
    pub ok: bool,
}

/// Why the hunt could not run.
#[derive(Debug, thiserror::Error)]
pub enum HuntError {
    /// A scenario file is malformed.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The scenarios directory cannot be read.
    #[error("cannot read the scenarios directory {dir}: {source}")]
    Dir {
        /// The directory.
        dir: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// A zoo scenario does not switch on exactly the mutant its name says.
    #[error("{path}: a zoo scenario must set `mutant = \"{mutant}\"` and no other")]
    WrongMutant {
        /// The file.
        path: String,
        /// The mutant its name says.
        mutant: String,
    },
    /// A campaign could not run.
    #[error(transparent)]
    Campaign(#[from] CampaignError),
    /// Shrinking could not run a candidate.
    #[error(transparent)]
    Shrink(#[from] ShrinkError),
    /// The hunt was cancelled before every job ran: by this signal, or by
    /// its caller (`None`).
    #[error("interrupted")]
    Interrupted(Option<i32>),
}

/// Progress callback: one line per finished job.
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

enum Job {
    Mutant(Mutant, Option<Scenario>),
    Clean(Scenario),
}

enum Done {
    Mutant(Box<MutantRow>),
    Clean(CleanRow),
}

/// Runs the zoo: every mutant on its scenario, then shrinking, and the
/// clean trainer on the scenarios `opts.clean` names. `work` is an empty
/// directory for the sandboxes; once `cancel` is cancelled no job starts
/// and the hunt is [`HuntError::Interrupted`].
pub fn hunt(
    opts: &Options,
    work: &Path,
    progress: Progress<'_>,
    cancel: &Cancel,
) -> Result<ZooReport, HuntError> {
    let files = scenario_files(&opts.dir)?;
    let mut jobs = Vec::new();
    for m in Mutant::ALL.iter().copied() {
        let file = opts.dir.join(m.scenario_file());
        let scenario = if files.contains(&file) {
            let s = Scenario::load(&file)?;
            if s.trainer.mutants != vec![m] {
                return Err(HuntError::WrongMutant {
                    path: file.display().to_string(),
                    mutant: m.name().into(),
                });
            }
            Some(s)
        } else {
            None
        };
        jobs.push(Job::Mutant(m, scenario));
    }
    for f in &files {
        let zoo = is_zoo_file(f);
        if opts.clean == CleanSet::ZooOnly && !zoo {
            continue;
        }
        let mut s = Scenario::load(f)?;
        if zoo {
            s.trainer.mutants.clear();
            s.expect = Expect::Pass;
        }
        jobs.push(Job::Clean(s));
    }
    let done = run_jobs(opts, work, &jobs, progress, cancel)?;
    let mut mutants = Vec::new();
    let mut clean = Vec::new();
    for d in done {
        match d {
            Done::Mutant(r) => mutants.push(*r),
            Done::Clean(r) => clean.push(r),
        }
    }
    let ok = mutants
        .iter()
        .all(|r| matches!(r.verdict, Verdict::Caught | Verdict::NeedsPowerLoss))
        && clean.iter().all(|r| r.as_expected);
    Ok(ZooReport { mutants, clean, ok })
}

fn is_zoo_file(f: &Path) -> bool {
    f.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("zoo-"))
}

/// Every `*.toml` in `dir`, sorted.
fn scenario_files(dir: &Path) -> Result<Vec<PathBuf>, HuntError> {
    crate::scenario::files_in(dir).map_err(|source| HuntError::Dir {
        dir: dir.display().to_string(),
        source,
    })
}

/// Runs the jobs on `opts.jobs` workers; results in job order.
fn run_jobs(
    opts: &Options,
    work: &Path,
    jobs: &[Job],
    progress: Progress<'_>,
    cancel: &Cancel,
) -> Result<Vec<Done>, HuntError> {
    let ran = Pool::new(opts.jobs).run(jobs, cancel, |i, job| {
        let dir = work.join(format!("job-{i}"));
        let r = match job {
            Job::Mutant(m, s) => {
                hunt_one(opts, &dir, *m, s.as_ref(), cancel).map(|r| Done::Mutant(Box::new(r)))
            }
            Job::Clean(s) => clean_one(opts, &dir, s, cancel).map(Done::Clean),
        };
        let _ = std::fs::remove_dir_all(&dir);
        if let Ok(d) = &r {
            progress(&match d {
                Done::Mutant(row) => format!("{}: {}", row.mutant, row.verdict.word()),
                Done::Clean(row) => format!(
                    "clean {}: {}",
                    row.scenario,
                    if row.as_expected { "ok" } else { "UNEXPECTED" }
                ),
            });
        }
        r
    });
    ran.results
        .into_iter()
        .map(|s| s.unwrap_or(Err(HuntError::Interrupted(cancel.signal()))))
        .collect()
}

/// The replay command of `case` of scenario `s`.
pub fn replay_command(program: &str, s: &Scenario, case: &Case) -> String {
    let mut w = vec![
        program.to_string(),
        "run".into(),
        s.path.display().to_string(),
        "--layout".into(),
        case.layout.name().into(),
        "--crash".into(),
        case.crash_arg(),
    ];
    if case.max_steps != s.max_steps {
        w.extend(["--max-steps".into(), case.max_steps.to_string()]);
    }
    crate::replay::Replay::new(w).to_shell()
}

/// The campaign of `s` under its first fault model (see [`run_campaign_for`]).
fn run_campaign(
    opts: &Options,
    s: &Scenario,
    work: &Path,
    cancel: &Cancel,
) -> Result<(Vec<LayoutResult>, Report), HuntError> {
    let fault = s.faults.first().copied().unwrap_or_default();
    run_campaign_for(opts, s, fault, work, cancel)
}

/// The campaign of `s` under `fault`, with its report.
fn run_campaign_for(
    opts: &Options,
    s: &Scenario,
    fault: crate::fault::FaultModel,
    work: &Path,
    cancel: &Cancel,
) -> Result<(Vec<LayoutResult>, Report), HuntError> {
    // Cases run on `jobs` workers too: the workers of the hunt then never
    // sit idle while one long scenario finishes.
    let campaign = s.campaign_for(fault, &opts.exe, opts.jobs, None);
    std::fs::create_dir_all(work).map_err(CampaignError::Io)?;
    let results = campaign.run(work, &crate::events::Silent, cancel)?;
    let path = s.path.display().to_string();
    // A scenario under several fault models names the one replayed.
    let tail: Vec<String> = if s.faults.len() > 1 {
        vec!["--fault".into(), fault.fault.name().into()]
    } else {
        Vec::new()
    };
    let head = [opts.program.clone(), "run".into(), path];
    let replay = report::ReplayCommand::new(&head, "--layout", &tail);
    let report = Report::build(&s.name, fault.fault, s.mode, &results, &replay);
    Ok((results, report))
}

/// The clean trainer on `s`, under every fault model the scenario names.
fn clean_one(
    opts: &Options,
    work: &Path,
    s: &Scenario,
    cancel: &Cancel,
) -> Result<CleanRow, HuntError> {
    let mut row = CleanRow {
        scenario: s.name.clone(),
        cases: 0,
        as_expected: true,
        kinds: Vec::new(),
        replay: None,
    };
    for fault in &s.faults {
        let (_, report) =
            run_campaign_for(opts, s, *fault, &work.join(fault.fault.name()), cancel)?;
        row.cases += report.cases;
        row.as_expected &= report.meets(&s.expect);
        for k in report.kinds() {
            if !row.kinds.contains(&k) {
                row.kinds.push(k);
            }
        }
        if row.replay.is_none() {
            row.replay = report.failures.first().map(|f| f.replay.clone());
        }
    }
    Ok(row)
}

fn hunt_one(
    opts: &Options,
    work: &Path,
    m: Mutant,
    s: Option<&Scenario>,
    cancel: &Cancel,
) -> Result<MutantRow, HuntError> {
    let mut row = MutantRow {
        mutant: m,
        verdict: Verdict::NoScenario,
        scenario: s.map(|s| s.path.display().to_string()),
        expected: match s.map(|s| &s.expect) {
            Some(Expect::Fail(k)) => k.clone(),
            _ => Vec::new(),
        },
        kinds: Vec::new(),
        layouts: Vec::new(),
        cases: 0,
        found_at: None,
        found_in_reference: false,
        minimal: None,
    };
    let power = s.is_some_and(|s| s.faults.iter().any(|f| f.is_power_loss()));
    if m.needs_power_loss() && !power {
        row.verdict = Verdict::NeedsPowerLoss;
        return Ok(row);
    }
    let Some(s) = s else { return Ok(row) };
    let (results, report) = run_campaign(opts, s, &work.join("campaign"), cancel)?;
    row.verdict = if report.meets(&s.expect) && !row.expected.is_empty() {
        Verdict::Caught
    } else {
        Verdict::Missed
    };
    row.kinds = report.kinds();
    row.cases = report.cases;
    row.layouts = report
        .layouts
        .iter()
        .filter(|l| !l.failures.is_empty())
        .map(|l| l.layout.name().to_string())
        .collect();
    let kind = row
        .expected
        .iter()
        .copied()
        .find(|k| row.kinds.contains(k))
        .or_else(|| row.kinds.first().copied());
    let Some(kind) = kind else { return Ok(row) };
    let Some((found_at, start)) = shrink::first_failing(&results, kind, s.max_steps) else {
        return Ok(row);
    };
    row.found_at = Some(found_at);
    row.found_in_reference = start.case.plan.points.is_empty();
    let campaign = s.campaign(&opts.exe, 1, None);
    let shrink_dir = work.join("shrink");
    std::fs::create_dir_all(&shrink_dir).map_err(ShrinkError::Io)?;
    let mut judge = RunnerJudge::new(campaign.target, &shrink_dir);
    let limits = Limits {
        attempts: opts.shrink_attempts,
        step_unit: shrink::save_interval(&s.trainer),
    };
    let shrunk: Shrunk = shrink::shrink(&mut judge, start, kind, limits)?;
    row.minimal = Some(Minimal {
        kind,
        before: CaseView::of(&shrunk.before),
        after: CaseView::of(&shrunk.after),
        attempts: shrunk.attempts,
        detail: shrunk.after.detail.clone(),
        replay: replay_command(&opts.program, s, &shrunk.after.case),
    });
    Ok(row)
}
