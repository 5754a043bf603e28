//! `crashpoint run`: scenario files on the simulated trainer. Every file
//! is parsed (and the flags applied) before anything runs; each scenario's
//! campaign runs in one workspace; failures are shrunk on request; the
//! verdict table, failures and warnings are printed and the report files
//! written.

use std::path::{Path, PathBuf};

use clap::Args;

use super::outputs::{self, OutputArgs};
use super::{
    interrupted_exit, jobs, parse_plan, self_name, CommandError, EXIT_FAIL, EXIT_OK, EXIT_UNTRUSTED,
};
use crate::campaign::{Campaign, LayoutResult};
use crate::fault::{Fault, FaultModel};
use crate::inject::Mode;
use crate::layout::Layout;
use crate::pool::Cancel;
use crate::report::{self, Report, ScenarioRow, SpooledCases};
use crate::scenario::Scenario;
use crate::shrink;
use crate::sim::Mutant;
use crate::verdict::Expect;
use crate::workspace::Workspace;

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

/// Every `*.toml` in `./scenarios`, sorted.
fn default_scenarios() -> Result<Vec<PathBuf>, CommandError> {
    let dir = Path::new("scenarios");
    let files = crate::scenario::files_in(dir).map_err(|e| {
        CommandError::NoScenarios(format!(
            "cannot read ./scenarios ({e}); run from the project directory or name files"
        ))
    })?;
    if files.is_empty() {
        return Err(CommandError::NoScenarios(
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
) -> Result<String, CommandError> {
    let mut out = String::new();
    for kind in report.kinds() {
        let Some((_, start)) = shrink::first_failing(results, kind, s.max_steps) else {
            continue;
        };
        let dir = work.join(format!("shrink-{kind}"));
        std::fs::create_dir_all(&dir).map_err(|e| CommandError::Campaign(e.into()))?;
        let mut judge = shrink::RunnerJudge::new(campaign.target.clone(), &dir);
        let limits = shrink::Limits {
            attempts: 40,
            step_unit: shrink::save_interval(&s.trainer),
        };
        let shrunk = shrink::shrink(&mut judge, start, kind, limits).map_err(|e| match e {
            shrink::ShrinkError::Runner(r) => CommandError::Campaign(r.into()),
            shrink::ShrinkError::Io(e) => CommandError::Campaign(e.into()),
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

/// Runs `crashpoint run`; returns the exit status.
///
/// `cancel` is the harness's token: once cancelled (a signal) the cases
/// that finished are reported and the exit status is `128 + signal`.
pub fn run(a: RunArgs, cancel: &Cancel) -> Result<i32, CommandError> {
    let files = if a.files.is_empty() {
        default_scenarios()?
    } else {
        a.files.clone()
    };
    let only = parse_plan(&a.crash)?;
    if a.states.is_some() && a.fault != Some(Fault::PowerLoss) {
        return Err(CommandError::Flag(
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
            return Err(CommandError::Flag(format!(
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
            return Err(CommandError::Flag(
                "--crash replays one case: give exactly one --layout".into(),
            ));
        }
        scenarios.push(s);
    }
    let mut live = outputs::live(&a.out)?;
    let ws = Workspace::create().map_err(|e| CommandError::Campaign(e.into()))?;
    let mut reports = Vec::new();
    let mut shrunk = String::new();
    'scenarios: for s in &scenarios {
        if s.layouts.is_empty() {
            continue;
        }
        let exe = std::env::current_exe()
            .map_err(|e| CommandError::Flag(format!("cannot find this program: {e}")))?;
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
            // The cases' records go to a file beside the campaign's
            // sandboxes as its layouts finish; the failing cases stay in
            // `results`, for shrinking.
            let scenario_dir = ws.path().join(&s.name);
            std::fs::create_dir_all(&scenario_dir).map_err(|e| CommandError::Campaign(e.into()))?;
            let spool = scenario_dir.join(format!("{}.cases.jsonl", fault.fault.name()));
            let mut cases = SpooledCases::create(&spool).map_err(report::ReportError::from)?;
            let results: Vec<LayoutResult> = campaign.run_into(&work, &live, cancel, &mut cases)?;
            let replay = run_replay(s, a.mutant, a.max_steps, named_fault(&a, s, fault));
            let mut r = cases
                .finish(&name, fault.fault, s.mode, &results, &replay)
                .map_err(report::ReportError::from)?;
            r.set_partition(a.out.partition);
            r.expect = Some(s.expect.text());
            if cancel.is_cancelled() {
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
    outputs::print_kept(&live);
    outputs::write_reports(&a.out, &refs)?;
    if cancel.is_cancelled() {
        return Ok(interrupted_exit(cancel.signal().unwrap_or(2), total));
    }
    if !trusted {
        return Ok(EXIT_UNTRUSTED);
    }
    Ok(if all_ok { EXIT_OK } else { EXIT_FAIL })
}
