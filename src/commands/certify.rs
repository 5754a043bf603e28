//! `crashpoint certify`: any training program, through the subject
//! protocol. Checks the flags and the program, builds the campaign (mode,
//! selection, tracing), runs it in a locked workspace, scrubs the
//! workspace's path out of what is reported, builds the replay command,
//! prints the table, failures, warnings and coverage, writes the report
//! files, and returns the exit status.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::outputs::{self, OutputArgs};
use super::{jobs, parse_plan, self_name, CommandError, EXIT_FAIL, EXIT_OK, EXIT_UNTRUSTED};
use crate::campaign::{Campaign, CampaignError, LayoutResult};
use crate::fault::{Fault, FaultModel};
use crate::inject::{CrashPlan, Mode, Selection};
use crate::layout::Layout;
use crate::oracle::{ResumeMode, Target, Tracing};
use crate::pool::Cancel;
use crate::report::{self, Report, SpooledCases};
use crate::runner::Subject;
use crate::verdict::{FailureKind, Finding};
use crate::workspace::Workspace;

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
    /// the checkpoint directory. A file the uninterrupted run never makes, while it
    /// announces its saves under other names (last.pt, checkpoint-N/), is refused (exit 2).
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
    /// Warm starts: import these Python modules (comma-separated, e.g.
    /// torch,lightning.pytorch) once per worker in the subject's own
    /// interpreter, and fork every untraced run from it. For a command
    /// `PYTHON SCRIPT ...` or `PYTHON -m MODULE ...`; resume runs are then
    /// untraced. The second reference run is warm-started and must agree
    /// with the cold one.
    #[arg(long, value_delimiter = ',', value_name = "MODULES")]
    pub preload: Vec<String>,
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
mkdir) and writes into a file rewritten in place (opened again over its old
data, as torch.save(path) does) before other data writes; then the other
occurrences round-robin over sites, drawn from the seed and the layout.

Budgets: --budget 10m runs cases in that order until the estimated time is
spent; layouts share it. --cases N takes the first N.

Verdict: CERTIFIED (exit 0) only when no case failed and every crash point of
every layout ran; otherwise \"no failure in N of M points (S of T sites): NOT
certified\" (exit 1) and the report lists what was not covered. Time mode draws
kill times as fractions of the save window (the stretch of the reference run
during which the checkpoint directory changed), counted from when the killed
run's own checkpoint directory first changes; kill times are a sample, so time
mode never certifies (exit 1), and if no kill landed after a completed save
the result is inconclusive.

Examples:
  crashpoint certify -- python3 train.py
  crashpoint certify --budget 10m --jobs 2 --json out.json --html out.html -- python3 train.py
  crashpoint certify --partition 1/3 --json p1.json --keep-failed failed/ -- ./train.sh
  crashpoint certify --preload torch,lightning.pytorch -- python train.py
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

/// Runs `crashpoint certify`; returns the exit status.
///
/// `cancel` is the harness's token: once cancelled (a signal) the cases
/// that finished are reported and the exit status is `128 + signal`.
pub fn certify(a: CertifyArgs, cancel: &Cancel) -> Result<i32, CommandError> {
    let model = fault_model(&a)?;
    let only = check(&a)?;
    let env = crate::replay::recorded_env(&a.env, |k| std::env::var(k).ok())
        .map_err(CommandError::Flag)?;
    let mode = mode(a.mode, &model)?;
    let campaign = campaign(&a, mode, model, only);
    let mut live = outputs::live(&a.out)?;
    let base = a
        .sandbox_dir
        .clone()
        .unwrap_or_else(crate::campaign::default_base);
    let ws = Workspace::create_in(&base).map_err(|e| CommandError::Campaign(e.into()))?;
    live.start_report(&report::shell_join(a.command_words()), "", a.out.quiet);
    let ws_path = ws.path().display().to_string();
    // The cases' records go to a file in the workspace as the layouts
    // finish (the workspace's path taken out of their warnings).
    let mut cases = SpooledCases::create(&ws.path().join("cases.jsonl"))
        .map_err(report::ReportError::from)?
        .hiding(&ws_path, "<workspace>");
    let mut results = campaign.run_into(ws.path(), &live, cancel, &mut cases)?;
    let stopped_by = cancel.is_cancelled().then(|| cancel.signal().unwrap_or(2));
    scrub(&mut results, &ws_path, a.strict);
    let replay = replay(&a, mode, &model).with_env(env);
    let mut r = cases
        .finish(
            &report::shell_join(a.command_words()),
            model.fault,
            mode,
            &results,
            &replay,
        )
        .map_err(report::ReportError::from)?;
    r.set_partition(a.out.partition);
    for w in &mut r.warnings {
        *w = w.replace(&ws_path, "<workspace>");
    }
    if stopped_by.is_some() {
        r.certified = false;
        r.interrupted = true;
    }
    print(&r, &model, &base);
    outputs::print_kept(&live);
    outputs::write_reports(&a.out, &[&r])?;
    if let Some(sig) = stopped_by {
        return Ok(super::interrupted_exit(sig, r.cases));
    }
    Ok(match (r.trustworthy(), r.certified) {
        (false, _) => EXIT_UNTRUSTED,
        (true, true) => EXIT_OK,
        (true, false) => EXIT_FAIL,
    })
}

/// The fault model of `--fault` and `--states`.
fn fault_model(a: &CertifyArgs) -> Result<FaultModel, CommandError> {
    let fault: Fault = a
        .fault
        .parse()
        .map_err(|e: crate::fault::UnknownFault| CommandError::Flag(format!("--fault: {e}")))?;
    Ok(match (fault, a.states) {
        (Fault::Kill, Some(_)) => {
            return Err(CommandError::Flag(
                "--states goes with --fault power-loss".into(),
            ))
        }
        (Fault::Kill, None) => FaultModel::KILL,
        (Fault::PowerLoss, n) => FaultModel::power_loss(n.unwrap_or(0) as usize),
    })
}

/// Refuses flags that do not fit together and a program that cannot run,
/// before anything runs; returns the crash plan of a replay.
fn check(a: &CertifyArgs) -> Result<Option<CrashPlan>, CommandError> {
    let only = parse_plan(&a.crash)?;
    if let Some(d) = &a.sandbox_dir {
        if !d.is_dir() {
            return Err(CommandError::Flag(format!(
                "--sandbox-dir {}: not a directory",
                d.display()
            )));
        }
    }
    let here = std::env::current_dir()
        .map_err(|e| CommandError::Flag(format!("cannot read the current directory: {e}")))?;
    let probe = Subject::external(vec![a.command[0].clone()]);
    crate::runner::check_program(&probe, &here)
        .map_err(|e| CommandError::Campaign(CampaignError::Runner(e)))?;
    if !a.preload.is_empty() {
        crate::runner::warm::check(&Subject::external(a.command.clone()), &a.preload)
            .map_err(|e| CommandError::Flag(e.to_string()))?;
        if a.mode == Some(Mode::Time) {
            return Err(CommandError::Flag(
                "--preload goes with syscall mode (time-mode kills are timed from a cold start)"
                    .into(),
            ));
        }
    }
    if only.is_some() && a.layouts.len() != 1 {
        return Err(CommandError::Flag(
            "--crash replays one case: give exactly one layout in --layouts".into(),
        ));
    }
    Ok(only)
}

/// The crash mode: as asked, else `syscall` where tracing works, else
/// `time` (with a warning on stderr); power loss needs `syscall`.
fn mode(asked: Option<Mode>, model: &FaultModel) -> Result<Mode, CommandError> {
    Ok(match asked {
        Some(Mode::Syscall) if !crate::trace::tracing_available() => {
            return Err(CommandError::Flag(
                "--mode syscall: system-call tracing (seccomp + ptrace) is refused on this machine; use --mode time".into(),
            ))
        }
        Some(Mode::Time) if model.is_power_loss() => {
            return Err(CommandError::Flag(
                "--fault power-loss needs --mode syscall: the power-loss state is built from the traced calls".into(),
            ))
        }
        Some(m) => m,
        None if crate::trace::tracing_available() => Mode::Syscall,
        None if model.is_power_loss() => {
            return Err(CommandError::Flag(
                "--fault power-loss needs system-call tracing (seccomp + ptrace), which is refused on this machine".into(),
            ))
        }
        None => {
            eprintln!("warning: system-call tracing (seccomp + ptrace) is refused here; falling back to --mode time");
            Mode::Time
        }
    })
}

/// The campaign the flags describe.
fn campaign(a: &CertifyArgs, mode: Mode, fault: FaultModel, only: Option<CrashPlan>) -> Campaign {
    let layouts = if a.layouts.is_empty() {
        Layout::ALL.to_vec()
    } else {
        a.layouts.clone()
    };
    // Every point unless --cases asks for fewer (or a budget cuts them).
    let selection = match a.cases {
        Some(c) if !a.exhaustive => Selection::Sample(c as usize),
        _ => Selection::All,
    };
    Campaign {
        target: Target {
            subject: Subject {
                preload: a.preload.clone(),
                ..super::tools::external_subject(&a.command)
            },
            mode,
            max_steps: a.max_steps,
            seed: a.seed,
            resume: ResumeMode::parse(&a.resume_arg),
            timeout: a.timeout.map(Duration::from_secs),
            // `time` mode is the mode without the tracer (for machines
            // that refuse it): its runs are not traced.
            tracing: match (mode, a.no_trace_resume || !a.preload.is_empty()) {
                (Mode::Syscall, false) => Tracing::Every,
                (Mode::Syscall, true) => Tracing::NotResumes,
                _ => Tracing::Needed,
            },
            fault,
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
    }
}

/// Takes the workspace's path out of what is reported (reports must not
/// depend on where it happened to be); with `strict`, writes outside the
/// sandbox become `wrote-outside` failures.
fn scrub(results: &mut [LayoutResult], ws_path: &str, strict: bool) {
    for r in results {
        for p in &mut r.reference.outside {
            *p = p.replace(ws_path, "<workspace>");
        }
        if strict {
            for p in std::mem::take(&mut r.reference.outside) {
                r.reference.findings.push(Finding {
                    kind: FailureKind::WroteOutside,
                    run: 0,
                    detail: format!("the uninterrupted run wrote outside its sandbox: {p}"),
                });
            }
        }
        for o in &mut r.outcomes {
            for w in &mut o.warnings {
                *w = w.replace(ws_path, "<workspace>");
            }
        }
    }
}

/// How a case's replay is written: `certify --layouts L --crash P` first,
/// then the run's flags, then the command.
fn replay(a: &CertifyArgs, mode: Mode, model: &FaultModel) -> report::ReplayCommand {
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
    if !a.preload.is_empty() {
        tail.extend(["--preload".into(), a.preload.join(",")]);
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
    tail.extend(a.command_words());
    report::ReplayCommand::new(&head, "--layouts", &tail)
}

/// Prints the table, recorded and power-loss states, failures, warnings,
/// coverage and the verdict line.
fn print(r: &Report, model: &FaultModel, base: &std::path::Path) {
    print!("{}", report::certify_table(r));
    for l in &r.layouts {
        if let Some(s) = &l.states {
            println!("{}", s.line(l.layout.name()));
        }
    }
    for l in &r.layouts {
        if let Some(p) = &l.power_states {
            println!("{}", p.line(l.layout.name()));
        }
    }
    print!("{}", report::failure_list(r, 3));
    print!("{}", report::harness_error_list(r));
    print!("{}", report::warning_lines(r, 10, ""));
    if let Some(h) = r
        .failures
        .iter()
        .find_map(|f| super::enospc_hint(&f.detail, base))
    {
        println!("hint: {h}");
    }
    for line in &r.not_covered {
        println!("not covered: {line}");
    }
    println!(
        "{} cases, fault model: {}: {}",
        r.cases,
        model.fault.name(),
        r.verdict()
    );
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Op => "op",
        Mode::Syscall => "syscall",
        Mode::Time => "time",
    }
}
