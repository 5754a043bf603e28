//! The command line: `run`, `certify`, `sim` and `zoo`. Each command parses
//! its flags, calls the library, prints, and returns an exit status; errors
//! the user can fix come back as [`CliError`] with status 2.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::campaign::{Campaign, CampaignError, LayoutResult};
use crate::fault::{Fault, FaultModel};
use crate::inject::{CrashPlan, Mode, Selection};
use crate::layout::Layout;
use crate::oracle::{ResumeMode, Target, Tracing};
use crate::report::{self, Report, ScenarioRow};
use crate::runner::Subject;
use crate::scenario::Scenario;
use crate::shrink;
use crate::sim::Mutant;
use crate::sim::SimSettings;
use crate::verdict::Expect;
use crate::workspace::Workspace;
use crate::zoo::hunt;

/// Exit status: everything as expected / certified.
pub const EXIT_OK: i32 = 0;
/// Exit status: failures found (or a verdict other than expected).
pub const EXIT_FAIL: i32 = 1;
/// Exit status: unusable input.
pub const EXIT_USAGE: i32 = 2;
/// Exit status: the harness was disturbed (a sandbox changed from outside):
/// the report cannot be trusted, whatever it says.
pub const EXIT_UNTRUSTED: i32 = 3;

/// Certifies that a training program survives being killed at any moment
/// while it saves, relinks or resumes a checkpoint.
#[derive(Debug, Parser)]
#[command(name = "crashpoint", version, about)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run scenario files (default: every scenarios/*.toml) and print the verdict table.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Certify any training program through the subject protocol.
    Certify(CertifyArgs),
    /// Print the numbered census of crash points of a subject, with their sites.
    #[command(after_help = CENSUS_EXAMPLES)]
    Census(crate::tools::CensusArgs),
    /// Read a JSON report back: its text, its HTML page, JUnit.
    #[command(after_help = REPORT_EXAMPLES)]
    Report(crate::tools::ReportArgs),
    /// Join the JSON reports of the partitions of one run (--partition I/N) into one.
    #[command(after_help = MERGE_EXAMPLES)]
    Merge(crate::tools::MergeArgs),
    /// The simulated trainer, as a subject speaking the protocol (started by the harness).
    #[command(after_help = SIM_EXAMPLES)]
    Sim(SimSettings),
    /// The bug zoo.
    #[command(after_help = ZOO_EXAMPLES)]
    Zoo(ZooArgs),
}

const RUN_EXAMPLES: &str = "Examples:
  crashpoint run                                   every scenario in ./scenarios
  crashpoint run scenarios/relative.toml --mutant no-rng-state --html windows.html
  crashpoint run --partition 2/4 --json part2.json  this machine's quarter of the sweep";
const CENSUS_EXAMPLES: &str = "Examples:
  crashpoint census -- python3 train.py             the traced system calls, numbered
  crashpoint census --layouts relative,nested -- python3 train.py
  crashpoint census --scenario scenarios/relative.toml   the simulated trainer's op census";
const REPORT_EXAMPLES: &str = "Examples:
  crashpoint report out.json                       the table and failures again
  crashpoint report out.json --html windows.html   the page of the crash windows";
const MERGE_EXAMPLES: &str = "Examples:
  crashpoint merge p1.json p2.json p3.json --json all.json --html all.html
  crashpoint merge part*.json --junit all.xml      exit status: that of the joined verdict";
const SIM_EXAMPLES: &str = "Examples (the harness starts it; by hand, with the protocol's variables):
  CRASHPOINT_CKPT_DIR=ckpt CRASHPOINT_MAX_STEPS=10 CRASHPOINT_SEED=0 CRASHPOINT_STATE_OUT=$PWD/state.json crashpoint sim
  crashpoint sim --help";
const ZOO_EXAMPLES: &str = "Examples:
  crashpoint zoo --list                            the mutants, one line each
  crashpoint zoo --json zoo.json                   every mutant on its scenario, shrunk";

/// Flags of `crashpoint run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario files; default: every *.toml in ./scenarios.
    pub files: Vec<PathBuf>,
    /// Switch this zoo mutant on in every scenario (expect failures then).
    #[arg(long)]
    pub mutant: Option<Mutant>,
    /// Only these layouts (repeatable).
    #[arg(long = "layout")]
    pub layouts: Vec<Layout>,
    /// Run only this crash plan (a replay), e.g. op:17:mid,op:3:before; `none` for no crash.
    #[arg(long)]
    pub crash: Option<String>,
    /// Override every scenario's max_steps (replays of shrunk cases use it).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_steps: Option<u64>,
    /// Shrink the first failure of each kind to a minimal case, with its replay command.
    #[arg(long)]
    pub shrink: bool,
    /// Run every scenario under this fault model only (kill or power-loss),
    /// whatever its `fault` says.
    #[arg(long)]
    pub fault: Option<Fault>,
    /// With `--fault power-loss`: judge N more legal disk states per crash
    /// point besides the most pessimistic one, whatever the scenario's
    /// `states` says.
    #[arg(long)]
    pub states: Option<u32>,
    /// Workers and report files.
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Flags `run` and `certify` share: parallel workers and report files.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// How the runs of a case are carried out: `kill-each` kills one run per
    /// case at its crash point; `record` records the crash states once, in
    /// one run paused at each point, then materialises each and resumes
    /// (system-call points; other points are killed one by one). For `run`,
    /// overrides the scenarios' `engine`.
    #[arg(long, value_enum)]
    pub engine: Option<crate::record::Engine>,
    /// Parallel workers (default: the number of cores).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub jobs: Option<usize>,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a JUnit XML report here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write the HTML page of the crash windows here (one self-contained file).
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Run only share I of N of every layout's cases (N machines split a sweep; see `merge`).
    #[arg(long, value_name = "I/N", default_value = "1/1")]
    pub partition: crate::partition::Partition,
    /// Keep the directory of each failing case in DIR/<layout>/<point> (created if missing).
    #[arg(long, value_name = "DIR")]
    pub keep_failed: Option<PathBuf>,
    /// No progress on stderr (by default a bar on a terminal, else a line every 10 s or 10 %).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Flags of `crashpoint certify` (PROTOCOL.md).
#[derive(Debug, Args)]
#[command(after_help = CERTIFY_HELP)]
pub struct CertifyArgs {
    /// Comma-separated layouts (default: all seven).
    #[arg(long, value_delimiter = ',')]
    pub layouts: Vec<Layout>,
    /// How crashes are placed (default: syscall where tracing works, else time).
    #[arg(long, value_parser = parse_external_mode)]
    pub mode: Option<Mode>,
    /// Try every crash point of the census (the only way, with a budget
    /// large enough, to be CERTIFIED).
    #[arg(long, conflicts_with = "cases")]
    pub exhaustive: bool,
    /// Try the first N crash points of the windows-first order: every site
    /// once (after the first completed save), namespace operations first,
    /// then the other occurrences round-robin. Fewer than the census is a
    /// sample: never CERTIFIED, exit 1 when nothing failed.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub cases: Option<u64>,
    /// Spend at most this long (30s, 10m, 1h, 1h30m): cases run in the
    /// windows-first order, each started only when the estimate (from the
    /// reference runs, then the cases so far) says it ends in time.
    #[arg(long, value_parser = crate::inject::budget::parse_duration)]
    pub budget: Option<Duration>,
    /// Where the sandboxes go (default: TMPDIR when set, else /dev/shm when
    /// it is a tmpfs, else the system temporary directory).
    #[arg(long, value_name = "DIR")]
    pub sandbox_dir: Option<PathBuf>,
    /// CRASHPOINT_MAX_STEPS.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_steps: u64,
    /// CRASHPOINT_SEED, also the seed that draws crash points.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// What resume runs get: path (<dir>/last.ckpt), last, best, newest (the newest
    /// complete checkpoint the subject announced, file or directory), or a file name in
    /// the checkpoint directory.
    #[arg(long, default_value = "path")]
    pub resume_arg: String,
    /// Record this environment variable in the report and print it in every replay
    /// (repeatable; PYTHONPATH, VIRTUAL_ENV and LD_LIBRARY_PATH are recorded when set).
    #[arg(long = "env", value_name = "NAME")]
    pub env: Vec<String>,
    /// Per-run time limit in seconds (default: 10 times the slowest reference run, at least 10).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// Crashes per case; later ones land in resume runs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub crashes: u32,
    /// Fault model: kill or power-loss.
    #[arg(long, default_value = "kill")]
    pub fault: String,
    /// With power-loss: further legal disk states to draw per crash.
    #[arg(long)]
    pub states: Option<u32>,
    /// Run only this crash plan (a replay), e.g. syscall:17.
    #[arg(long)]
    pub crash: Option<String>,
    /// A write outside the sandbox is a failure (`wrote-outside`), not a warning.
    #[arg(long)]
    pub strict: bool,
    /// Do not trace resume runs (faster; their writes outside the sandbox,
    /// and removals in it, go unseen).
    #[arg(long)]
    pub no_trace_resume: bool,
    /// Workers and report files.
    #[command(flatten)]
    pub out: OutputArgs,
    /// The subject's command.
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<OsString>,
}

/// What `certify --help` says after the flags: sites, budgets, the verdict.
const CERTIFY_HELP: &str = "\
Sites: the census (every file-mutating call of an uninterrupted run) is grouped
into sites, a call and its path with numbers and random temporary names as `#`
(`symlink checkpoints/last.ckpt`, `write checkpoints/.step=#.ckpt.tmp-#`).
Cases run windows first: every site once, at its first occurrence after the
first completed save, namespace operations (symlink, link, unlink, rename,
mkdir) before data writes; then the other occurrences round-robin over sites,
drawn from the seed and the layout.

Budgets: --budget 10m runs cases in that order until the estimated time is
spent; layouts share it. --cases N takes the first N.

Verdict: CERTIFIED (exit 0) only when no case failed and every crash point of
every layout ran; otherwise \"no failure in N of M points (S of T sites): NOT
certified\" (exit 1) and the report lists what was not covered. Time mode draws
kill times as fractions of the save window (the stretch of the reference run
during which the checkpoint directory changed); if no kill landed after a
completed save the result is inconclusive, exit 1.

Examples:
  crashpoint certify -- python3 train.py
  crashpoint certify --budget 10m --jobs 2 --json out.json --html out.html -- python3 train.py
  crashpoint certify --partition 1/3 --json p1.json --keep-failed failed/ -- ./train.sh
  crashpoint certify --layouts relative --crash syscall:17 -- python3 train.py";
impl CertifyArgs {
    /// The subject's command, as text.
    pub fn command_words(&self) -> Vec<String> {
        self.command
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect()
    }
}

fn parse_external_mode(s: &str) -> Result<Mode, String> {
    match s {
        "syscall" => Ok(Mode::Syscall),
        "time" => Ok(Mode::Time),
        other => Err(format!(
            "`{other}` is not a mode for certify (syscall or time)"
        )),
    }
}

/// Flags of `crashpoint zoo`.
#[derive(Debug, Args)]
pub struct ZooArgs {
    /// List the mutants with a one-line description, and run nothing.
    #[arg(long)]
    pub list: bool,
    /// The scenarios directory: the zoo's are its zoo-<mutant>.toml files.
    #[arg(long, default_value = "scenarios")]
    pub scenarios: PathBuf,
    /// Candidates each shrinking may run.
    #[arg(long, default_value_t = 40)]
    pub attempts: usize,
    /// Parallel workers (default: the number of cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Write the zoo report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// A mistake the user can fix: printed as `error: ...`, exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A scenario file is malformed or unreadable.
    #[error(transparent)]
    Scenario(#[from] crate::scenario::ScenarioError),
    /// The scenarios directory is missing or empty.
    #[error("no scenario files: {0}")]
    NoScenarios(String),
    /// A flag value is wrong.
    #[error("{0}")]
    Flag(String),
    /// The subject cannot be certified (not found, nondeterministic, unusable).
    #[error(transparent)]
    Campaign(#[from] CampaignError),
    /// A report could not be serialised.
    #[error(transparent)]
    Report(#[from] report::ReportError),
    /// `census`, `report` or `merge` could not do its job.
    #[error(transparent)]
    Tool(#[from] crate::tools::ToolError),
    /// A report file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The system's error.
        source: std::io::Error,
    },
}

impl CliError {
    /// The exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Campaign(CampaignError::Interrupted) => {
                128 + crate::campaign::interrupted().unwrap_or(2)
            }
            CliError::Campaign(CampaignError::Reference(
                crate::oracle::ReferenceError::Disturbed { .. },
            )) => EXIT_UNTRUSTED,
            _ => EXIT_USAGE,
        }
    }

    /// A line of advice to print under the error, when there is one.
    pub fn hint(&self) -> Option<String> {
        enospc_hint(&self.to_string())
    }
}

/// When `text` says a disk is full: where the sandboxes live and how much
/// room is left there.
pub fn enospc_hint(text: &str) -> Option<String> {
    if !text.contains("No space left on device") && !text.contains("ENOSPC") {
        return None;
    }
    let tmp = std::env::temp_dir();
    let free = nix::sys::statvfs::statvfs(&tmp)
        .map(|s| {
            let bytes = s.blocks_available() as u128 * s.fragment_size() as u128;
            format!("{} MiB free", bytes / (1024 * 1024))
        })
        .unwrap_or_else(|_| "free space unknown".into());
    Some(format!(
        "a disk is full (ENOSPC). The sandboxes live under TMPDIR={} ({free}): free some space there, or set TMPDIR to a larger file system",
        tmp.display()
    ))
}

/// How this program was invoked, for replay commands: the path as typed
/// when it has a `/` (pastes from the same directory), else `crashpoint`.
fn self_name() -> String {
    std::env::args()
        .next()
        .filter(|a| a.contains('/'))
        .unwrap_or_else(|| "crashpoint".to_string())
}

fn jobs(j: Option<usize>) -> usize {
    j.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
    .max(1)
}

fn parse_plan(s: &Option<String>) -> Result<Option<CrashPlan>, CliError> {
    match s.as_deref() {
        None => Ok(None),
        Some("none") => Ok(Some(CrashPlan { points: Vec::new() })),
        Some(p) => p
            .parse()
            .map(Some)
            .map_err(|e| CliError::Flag(format!("--crash: {e}"))),
    }
}

fn write_reports(out: &OutputArgs, reports: &[&Report]) -> Result<(), CliError> {
    write_files(&out.json, &out.junit, &out.html, reports)
}

fn write_files(
    json: &Option<PathBuf>,
    junit: &Option<PathBuf>,
    html: &Option<PathBuf>,
    reports: &[&Report],
) -> Result<(), CliError> {
    crate::tools::write_files(json.as_deref(), junit.as_deref(), html.as_deref(), reports)
        .map_err(CliError::from)
}

/// The reporters beside a campaign, for these flags.
fn live(out: &OutputArgs) -> Result<crate::live::Live, CliError> {
    for (flag, p) in [
        ("--json", &out.json),
        ("--junit", &out.junit),
        ("--html", &out.html),
    ] {
        check_report_path(flag, p)?;
    }
    crate::live::Live::new(out.quiet, out.json.as_deref(), out.keep_failed.as_deref()).map_err(
        |source| CliError::Write {
            path: out
                .keep_failed
                .as_ref()
                .or(out.json.as_ref())
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            source,
        },
    )
}

/// Says where `--keep-failed` put the failing cases.
fn print_kept(live: &crate::live::Live) {
    if let Some(k) = &live.keep {
        let kept = k.kept();
        if let Some(first) = kept.first() {
            println!(
                "kept {} failing cases, e.g. {}",
                kept.len(),
                first.display()
            );
        }
        for e in k.errors() {
            println!("warning: --keep-failed: {e}");
        }
    }
}

/// Runs the command line; returns the exit status.
///
/// Every command but `sim` (which is itself a subject) runs as the harness:
/// a child subreaper that stops cleanly on SIGINT, SIGTERM or SIGHUP, and
/// kills whatever its subjects left before it returns.
pub fn main(cli: Cli) -> Result<i32, CliError> {
    let harness = !matches!(cli.command, Command::Sim(_));
    if harness {
        crate::campaign::install_interrupt_handler();
    }
    let out = match cli.command {
        Command::Run(a) => run(a),
        Command::Certify(a) => certify(a),
        Command::Sim(s) => Ok(sim(&s)),
        Command::Census(a) => census(&a),
        Command::Report(a) => Ok(crate::tools::show(&a)?),
        Command::Merge(a) => Ok(crate::tools::merge(&a)?),
        Command::Zoo(a) => zoo(a),
    };
    if harness {
        crate::sys::kill_descendants();
    }
    out
}

/// Refuses a report path that cannot be written, before anything runs.
fn check_report_path(flag: &str, path: &Option<PathBuf>) -> Result<(), CliError> {
    let Some(p) = path else { return Ok(()) };
    let bad = |why: &str| Err(CliError::Flag(format!("{flag} {}: {why}", p.display())));
    if p.is_dir() {
        return bad("is a directory");
    }
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return bad("its directory does not exist");
    }
    Ok(())
}

/// The exit status of a harness stopped by `sig`, after a partial report.
fn interrupted_exit(sig: i32, cases: usize) -> i32 {
    eprintln!(
        "crashpoint: interrupted by {}: the report above covers the {cases} cases that finished; nothing is certified",
        crate::campaign::signal_name(sig)
    );
    128 + sig
}

fn census(a: &crate::tools::CensusArgs) -> Result<i32, CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::Flag(format!("cannot find this program: {e}")))?;
    let ws = Workspace::create().map_err(|e| CliError::Campaign(e.into()))?;
    Ok(crate::tools::census(a, &exe, ws.path())?)
}

fn sim(settings: &SimSettings) -> i32 {
    if let Some((field, problem)) = settings.problem() {
        eprintln!("error: --{}: {problem}", field.replace('_', "-"));
        return EXIT_USAGE;
    }
    match crate::sim::trainer::run(settings, |k| std::env::var(k).ok()) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn zoo(a: ZooArgs) -> Result<i32, CliError> {
    if a.list {
        let width = Mutant::ALL
            .iter()
            .map(|m| m.name().len())
            .max()
            .unwrap_or(0);
        for m in Mutant::ALL {
            println!("{:width$}  {}", m.name(), m.description());
        }
        return Ok(EXIT_OK);
    }
    let exe = std::env::current_exe()
        .map_err(|e| CliError::Flag(format!("cannot find this program: {e}")))?;
    let opts = hunt::Options {
        dir: a.scenarios.clone(),
        exe,
        program: self_name(),
        jobs: jobs(a.jobs),
        clean: hunt::CleanSet::All,
        shrink_attempts: a.attempts,
    };
    let ws = Workspace::create().map_err(|e| CliError::Campaign(e.into()))?;
    let tell = |line: &str| {
        if std::io::stderr().is_terminal() {
            eprintln!("  {line}");
        }
    };
    let report = hunt::hunt(&opts, ws.path(), &tell).map_err(|e| match e {
        hunt::HuntError::Campaign(c) => CliError::Campaign(c),
        hunt::HuntError::Interrupted => CliError::Campaign(CampaignError::Interrupted),
        other => CliError::Flag(other.to_string()),
    })?;
    print!("{}", crate::zoo::table::render(&report));
    if let Some(p) = &a.json {
        let text = report::to_json(&report)?;
        std::fs::write(p, text).map_err(|source| CliError::Write {
            path: p.display().to_string(),
            source,
        })?;
    }
    Ok(if report.ok { EXIT_OK } else { EXIT_FAIL })
}

/// Every `*.toml` in `./scenarios`, sorted.
fn default_scenarios() -> Result<Vec<PathBuf>, CliError> {
    let dir = Path::new("scenarios");
    let files = crate::scenario::files_in(dir).map_err(|e| {
        CliError::NoScenarios(format!(
            "cannot read ./scenarios ({e}); run from the project directory or name files"
        ))
    })?;
    if files.is_empty() {
        return Err(CliError::NoScenarios(
            "./scenarios holds no *.toml file".into(),
        ));
    }
    Ok(files)
}

/// The fault model a replay of `s` must name: the one a campaign ran
/// under, when the scenario file alone does not say it (it lists several,
/// or `--fault`/`--states` overrode it).
fn named_fault<'f>(a: &RunArgs, s: &Scenario, fault: &'f FaultModel) -> Option<&'f FaultModel> {
    (a.fault.is_some() || a.states.is_some() || s.faults.len() > 1).then_some(fault)
}

/// How the replay commands of a scenario's cases are written.
fn run_replay(
    s: &Scenario,
    mutant: Option<Mutant>,
    max_steps: Option<u64>,
    fault: Option<&FaultModel>,
) -> report::ReplayCommand {
    let mut head = vec![self_name(), "run".into(), s.path.display().to_string()];
    if let Some(f) = fault {
        head.extend(["--fault".into(), f.fault.name().into()]);
        if f.is_power_loss() && f.states > 0 {
            head.extend(["--states".into(), f.states.to_string()]);
        }
    }
    if let Some(m) = mutant {
        head.extend(["--mutant".into(), m.name().into()]);
    }
    let tail: Vec<String> = match max_steps {
        Some(n) => vec!["--max-steps".into(), n.to_string()],
        None => Vec::new(),
    };
    report::ReplayCommand::new(&head, "--layout", &tail)
}

/// Shrinks the first failure of each kind of one scenario's campaign and
/// says, per kind, the case before and after with the minimal replay.
fn shrink_failures(
    a: &RunArgs,
    s: &Scenario,
    campaign: &Campaign,
    results: &[LayoutResult],
    report: &Report,
    work: &Path,
) -> Result<String, CliError> {
    let mut out = String::new();
    for kind in report.kinds() {
        let Some((_, start)) = shrink::first_failing(results, kind, s.max_steps) else {
            continue;
        };
        let dir = work.join(format!("shrink-{kind}"));
        std::fs::create_dir_all(&dir).map_err(|e| CliError::Campaign(e.into()))?;
        let mut judge = shrink::RunnerJudge::new(campaign.target.clone(), &dir);
        let limits = shrink::Limits {
            attempts: 40,
            step_unit: shrink::save_interval(&s.trainer),
        };
        let shrunk = shrink::shrink(&mut judge, start, kind, limits).map_err(|e| match e {
            shrink::ShrinkError::Runner(r) => CliError::Campaign(r.into()),
            shrink::ShrinkError::Io(e) => CliError::Campaign(e.into()),
        })?;
        let after = &shrunk.after.case;
        let steps =
            (after.max_steps != s.max_steps || a.max_steps.is_some()).then_some(after.max_steps);
        let replay = run_replay(
            s,
            a.mutant,
            steps,
            named_fault(a, s, &campaign.target.fault),
        )
        .command(after.layout.name(), &after.plan.to_string());
        out += &format!(
            "SHRUNK {} {kind}: {} (runs: {}) -> {} (runs: {}), attempts: {}\n     {}\n     replay: {replay}\n",
            s.name,
            shrunk.before.case,
            shrunk.before.runs,
            after,
            shrunk.after.runs,
            shrunk.attempts,
            shrunk.after.detail,
        );
    }
    Ok(out)
}

fn run(a: RunArgs) -> Result<i32, CliError> {
    let files = if a.files.is_empty() {
        default_scenarios()?
    } else {
        a.files.clone()
    };
    let only = parse_plan(&a.crash)?;
    if a.states.is_some() && a.fault != Some(Fault::PowerLoss) {
        return Err(CliError::Flag(
            "--states goes with --fault power-loss".into(),
        ));
    }
    // Every file is parsed before anything runs: one bad file, nothing runs.
    let mut scenarios = Vec::new();
    for f in &files {
        let mut s = Scenario::load(f)?;
        if let Some(m) = a.mutant {
            s.trainer.mutants = vec![m];
            s.expect = Expect::Fail(Vec::new());
        }
        if let Some(n) = a.max_steps {
            s.max_steps = n;
        }
        if a.fault == Some(Fault::PowerLoss) && s.mode == Mode::Time {
            return Err(CliError::Flag(format!(
                "--fault power-loss: {} uses crash.mode = \"time\"; power-loss states are built from the traced calls",
                s.path.display()
            )));
        }
        if let Some(f) = a.fault {
            let states = a.states.map_or_else(
                || s.faults.iter().map(|m| m.states).max().unwrap_or(0),
                |n| n as usize,
            );
            s.faults = vec![match f {
                Fault::Kill => FaultModel::KILL,
                Fault::PowerLoss => FaultModel::power_loss(states),
            }];
        }
        // A replay runs one case, which cannot show every kind a scenario
        // expects across its cases: any failure is the failure expected.
        if only.is_some() && matches!(s.expect, Expect::Fail(_)) {
            s.expect = Expect::Fail(Vec::new());
        }
        if !a.layouts.is_empty() {
            s.layouts.retain(|l| a.layouts.contains(l));
        }
        if only.is_some() && s.layouts.len() != 1 {
            return Err(CliError::Flag(
                "--crash replays one case: give exactly one --layout".into(),
            ));
        }
        scenarios.push(s);
    }
    let mut live = live(&a.out)?;
    let ws = Workspace::create().map_err(|e| CliError::Campaign(e.into()))?;
    let mut reports = Vec::new();
    let mut shrunk = String::new();
    'scenarios: for s in &scenarios {
        if s.layouts.is_empty() {
            continue;
        }
        let exe = std::env::current_exe()
            .map_err(|e| CliError::Flag(format!("cannot find this program: {e}")))?;
        for fault in &s.faults {
            let mut campaign = s.campaign_for(*fault, &exe, jobs(a.out.jobs), only.clone());
            if let Some(e) = a.out.engine {
                campaign.engine = e;
            }
            campaign.partition = a.out.partition;
            let work = ws.path().join(&s.name).join(fault.fault.name());
            let name = if s.faults.len() > 1 {
                format!("{} ({})", s.name, fault)
            } else {
                s.name.clone()
            };
            live.start_report(&name, &name, a.out.quiet);
            let results: Vec<LayoutResult> = campaign.run_partial(&work, &live)?;
            let replay = run_replay(s, a.mutant, a.max_steps, named_fault(&a, s, fault));
            let mut r = Report::build(&name, fault.fault.name(), s.mode, &results, &replay);
            r.set_partition(a.out.partition);
            r.expect = Some(s.expect.text());
            if crate::campaign::interrupted().is_some() {
                r.certified = false;
                r.interrupted = true;
                reports.push((s, r));
                break 'scenarios;
            }
            if a.shrink && !r.certified {
                shrunk += &shrink_failures(&a, s, &campaign, &results, &r, &work)?;
            }
            reports.push((s, r));
        }
    }
    let rows: Vec<ScenarioRow<'_>> = reports
        .iter()
        .map(|(s, r)| ScenarioRow {
            report: r,
            expected: s.expect.text(),
            as_expected: r.meets(&s.expect),
        })
        .collect();
    print!("{}", report::run_table(&rows));
    let mut all_ok = true;
    for row in &rows {
        let replaying = only.is_some() || a.mutant.is_some();
        if !row.as_expected || (!row.report.certified && replaying) {
            print!("{}", report::failure_list(row.report, 3));
        }
        all_ok &= row.as_expected;
        print!("{}", report::harness_error_list(row.report));
        print!(
            "{}",
            report::warning_lines(row.report, 5, &format!("{}: ", row.report.name))
        );
    }
    print!("{shrunk}");
    let total: usize = rows.iter().map(|r| r.report.cases).sum();
    let trusted = rows.iter().all(|r| r.report.trustworthy());
    println!(
        "{} scenarios, {total} cases: {}",
        rows.len(),
        match (trusted, all_ok) {
            (false, _) => "NOT TRUSTWORTHY (a sandbox was disturbed from outside)",
            (true, true) => "every verdict as expected",
            (true, false) => "UNEXPECTED verdicts",
        }
    );
    let refs: Vec<&Report> = rows.iter().map(|r| r.report).collect();
    print_kept(&live);
    write_reports(&a.out, &refs)?;
    if let Some(sig) = crate::campaign::interrupted() {
        return Ok(interrupted_exit(sig, total));
    }
    if !trusted {
        return Ok(EXIT_UNTRUSTED);
    }
    Ok(if all_ok { EXIT_OK } else { EXIT_FAIL })
}

fn certify(a: CertifyArgs) -> Result<i32, CliError> {
    let fault: Fault = a
        .fault
        .parse()
        .map_err(|e: crate::fault::UnknownFault| CliError::Flag(format!("--fault: {e}")))?;
    let model = match (fault, a.states) {
        (Fault::Kill, Some(_)) => {
            return Err(CliError::Flag(
                "--states goes with --fault power-loss".into(),
            ))
        }
        (Fault::Kill, None) => FaultModel::KILL,
        (Fault::PowerLoss, n) => FaultModel::power_loss(n.unwrap_or(0) as usize),
    };
    let only = parse_plan(&a.crash)?;
    let env =
        crate::replay::recorded_env(&a.env, |k| std::env::var(k).ok()).map_err(CliError::Flag)?;
    if let Some(d) = &a.sandbox_dir {
        if !d.is_dir() {
            return Err(CliError::Flag(format!(
                "--sandbox-dir {}: not a directory",
                d.display()
            )));
        }
    }
    let here = std::env::current_dir()
        .map_err(|e| CliError::Flag(format!("cannot read the current directory: {e}")))?;
    let probe = Subject {
        program: a.command[0].clone(),
        args: Vec::new(),
        sim: false,
    };
    crate::runner::check_program(&probe, &here)
        .map_err(|e| CliError::Campaign(CampaignError::Runner(e)))?;
    let layouts = if a.layouts.is_empty() {
        Layout::ALL.to_vec()
    } else {
        a.layouts.clone()
    };
    if only.is_some() && layouts.len() != 1 {
        return Err(CliError::Flag(
            "--crash replays one case: give exactly one layout in --layouts".into(),
        ));
    }
    let mode = match a.mode {
        Some(Mode::Syscall) if !crate::trace::tracing_available() => {
            return Err(CliError::Flag(
                "--mode syscall: system-call tracing (seccomp + ptrace) is refused on this machine; use --mode time".into(),
            ))
        }
        Some(Mode::Time) if model.is_power_loss() => {
            return Err(CliError::Flag(
                "--fault power-loss needs --mode syscall: the power-loss state is built from the traced calls".into(),
            ))
        }
        Some(m) => m,
        None if crate::trace::tracing_available() => Mode::Syscall,
        None if model.is_power_loss() => {
            return Err(CliError::Flag(
                "--fault power-loss needs system-call tracing (seccomp + ptrace), which is refused on this machine".into(),
            ))
        }
        None => {
            eprintln!("warning: system-call tracing (seccomp + ptrace) is refused here; falling back to --mode time");
            Mode::Time
        }
    };
    // Every point unless --cases asks for fewer (or a budget cuts them).
    let selection = match a.cases {
        Some(c) if !a.exhaustive => Selection::Sample(c as usize),
        _ => Selection::All,
    };
    let subject = crate::tools::external_subject(&a.command);
    let campaign = Campaign {
        target: Target {
            subject,
            mode,
            max_steps: a.max_steps,
            seed: a.seed,
            resume: ResumeMode::parse(&a.resume_arg),
            timeout: a.timeout.map(Duration::from_secs),
            // `time` mode is the mode without the tracer (for machines
            // that refuse it): its runs are not traced.
            tracing: match (mode, a.no_trace_resume) {
                (Mode::Syscall, false) => Tracing::Every,
                (Mode::Syscall, true) => Tracing::NotResumes,
                _ => Tracing::Needed,
            },
            fault: model,
        },
        layouts,
        selection,
        crashes: a.crashes,
        crash_seed: a.seed,
        engine: a.out.engine.unwrap_or_default(),
        only,
        jobs: jobs(a.out.jobs),
        budget: a.budget,
        partition: a.out.partition,
    };
    let mut live = live(&a.out)?;
    let base = a
        .sandbox_dir
        .clone()
        .unwrap_or_else(crate::campaign::default_base);
    let ws = Workspace::create_in(&base).map_err(|e| CliError::Campaign(e.into()))?;
    live.start_report(&report::shell_join(a.command_words()), "", a.out.quiet);
    let mut results = campaign.run_partial(ws.path(), &live)?;
    let stopped_by = crate::campaign::interrupted();
    let ws_path = ws.path().display().to_string();
    for r in &mut results {
        // Reports must not depend on where the workspace happened to be.
        for p in &mut r.reference.outside {
            *p = p.replace(&ws_path, "<workspace>");
        }
        if a.strict {
            for p in std::mem::take(&mut r.reference.outside) {
                r.reference.findings.push(crate::verdict::Finding {
                    kind: crate::verdict::FailureKind::WroteOutside,
                    run: 0,
                    detail: format!("the uninterrupted run wrote outside its sandbox: {p}"),
                });
            }
        }
    }
    let command = a.command_words();
    // `certify --layouts L --crash P` first, then the run's flags, then the command.
    let head = vec![self_name(), "certify".into()];
    let mut tail = vec!["--mode".to_string(), mode_name(mode).into()];
    tail.extend([
        "--max-steps".into(),
        a.max_steps.to_string(),
        "--seed".into(),
        a.seed.to_string(),
    ]);
    if a.resume_arg != "path" {
        tail.extend(["--resume-arg".into(), a.resume_arg.clone()]);
    }
    if let Some(t) = a.timeout {
        tail.extend(["--timeout".into(), t.to_string()]);
    }
    if a.strict {
        tail.push("--strict".into());
    }
    if a.no_trace_resume {
        tail.push("--no-trace-resume".into());
    }
    for name in &a.env {
        tail.extend(["--env".into(), name.clone()]);
    }
    if model.is_power_loss() {
        tail.extend(["--fault".into(), "power-loss".into()]);
        if model.states > 0 {
            tail.extend(["--states".into(), model.states.to_string()]);
        }
    }
    tail.push("--".into());
    tail.extend(command.iter().cloned());
    let replay = report::ReplayCommand::new(&head, "--layouts", &tail).with_env(env);
    // Nor may the cases' warnings.
    for r in &mut results {
        for o in &mut r.outcomes {
            for w in &mut o.warnings {
                *w = w.replace(&ws_path, "<workspace>");
            }
        }
    }
    let mut r = Report::build(
        &report::shell_join(&command),
        fault.name(),
        mode,
        &results,
        &replay,
    );
    r.set_partition(a.out.partition);
    for w in &mut r.warnings {
        *w = w.replace(&ws_path, "<workspace>");
    }
    if stopped_by.is_some() {
        r.certified = false;
        r.interrupted = true;
    }
    print!("{}", report::certify_table(&r));
    for l in &r.layouts {
        if let Some(s) = &l.states {
            println!("{}", s.line(&l.layout));
        }
    }
    for l in &results {
        if let Some(line) = l.power_states_line() {
            println!("{line}");
        }
    }
    print!("{}", report::failure_list(&r, 3));
    print!("{}", report::harness_error_list(&r));
    print!("{}", report::warning_lines(&r, 10, ""));
    if let Some(h) = r.failures.iter().find_map(|f| enospc_hint(&f.detail)) {
        println!("hint: {h}");
    }
    for line in &r.not_covered {
        println!("not covered: {line}");
    }
    println!(
        "{} cases, fault model: {}: {}",
        r.cases,
        fault.name(),
        r.verdict()
    );
    print_kept(&live);
    write_reports(&a.out, &[&r])?;
    if let Some(sig) = stopped_by {
        return Ok(interrupted_exit(sig, r.cases));
    }
    Ok(match (r.trustworthy(), r.certified) {
        (false, _) => EXIT_UNTRUSTED,
        (true, true) => EXIT_OK,
        (true, false) => EXIT_FAIL,
    })
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Op => "op",
        Mode::Syscall => "syscall",
        Mode::Time => "time",
    }
}
