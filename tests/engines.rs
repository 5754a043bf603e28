//! The record-once engine and the kill-each engine give identical reports:
//! on every scenario (the zoo's included), and on the Python example with
//! each of its bugs. Cases per layout are capped so that the suite stays
//! quick; the caps are the same for both engines.

use std::path::{Path, PathBuf};
use std::process::Command;

use crashpoint::inject::Selection;
use crashpoint::record::Engine;
use crashpoint::report::Report;
use crashpoint::scenario::Scenario;

mod common;
use common::{root, run_campaign};

/// The JSON of the report of `results` (a campaign named `name`, under
/// `fault`, at `mode` points), with no replay command, as [`json`] has it.
fn report_json(
    name: &str,
    fault: crashpoint::fault::Fault,
    mode: crashpoint::inject::Mode,
    results: &[crashpoint::campaign::LayoutResult],
) -> serde_json::Value {
    let replay = crashpoint::report::ReplayCommand::default();
    json(&Report::build(name, fault, mode, results, &replay))
}

/// The report as JSON, without what only one engine says (its states).
fn json(report: &Report) -> serde_json::Value {
    let mut v = serde_json::to_value(report).expect("serialises");
    strip_states(&mut v);
    v
}

fn strip_states(v: &mut serde_json::Value) {
    // Which recorded state a case shared is the record engine's own fact.
    if let Some(cases) = v.get_mut("case_results").and_then(|c| c.as_array_mut()) {
        for c in cases {
            if let Some(o) = c.as_object_mut() {
                o.remove("same_state_as");
                o.remove("later_states");
            }
        }
    }
    if let Some(layouts) = v.get_mut("layouts").and_then(|l| l.as_array_mut()) {
        for l in layouts {
            if let Some(o) = l.as_object_mut() {
                o.remove("states");
                o.remove("later_states");
            }
        }
    }
}

/// A scenario's campaign by `engine`, at most six cases per layout, with
/// `crashes` crashes per case when given: its results and report.
fn campaign(
    s: &Scenario,
    engine: Engine,
    crashes: Option<u32>,
) -> (Vec<crashpoint::campaign::LayoutResult>, serde_json::Value) {
    let exe = Path::new(env!("CARGO_BIN_EXE_crashpoint"));
    let mut c = s.campaign(exe, 2, None);
    c.engine = engine;
    c.selection = match c.selection {
        Selection::All => Selection::Sample(6),
        Selection::Sample(n) => Selection::Sample(n.min(6)),
    };
    if let Some(n) = crashes {
        c.crashes = n;
    }
    let results = run_campaign(&c).unwrap_or_else(|e| panic!("{}: {e}", s.name));
    let report = report_json(&s.name, crashpoint::fault::Fault::Kill, s.mode, &results);
    (results, report)
}

#[test]
fn both_engines_give_identical_reports_on_every_scenario() {
    let dir = root().join("scenarios");
    let files = crashpoint::scenario::files_in(&dir).expect("scenarios/ exists");
    assert!(files.len() >= 20, "found only {} scenarios", files.len());
    let (mut recorded, mut by_census_run) = (0, 0);
    for f in &files {
        let s = Scenario::load(f).unwrap_or_else(|e| panic!("{e}"));
        let (_, a) = campaign(&s, Engine::KillEach, None);
        let (results, b) = campaign(&s, Engine::Record, None);
        for r in &results {
            if let Some(rec) = &r.recorded {
                recorded += 1;
                by_census_run += usize::from(rec.by_census_run);
            }
        }
        assert_eq!(a, b, "{}: the engines disagree", s.name);
    }
    assert!(
        recorded > 20,
        "the record engine recorded only {recorded} layouts"
    );
    // The census run records the points itself: no layout of these small
    // runs needs a recording run of its own.
    assert_eq!(
        by_census_run, recorded,
        "only {by_census_run} of {recorded} layouts were recorded by their census run"
    );
}

/// Subject runs the cases (not the probes) of `results` started.
fn case_runs(results: &[crashpoint::campaign::LayoutResult]) -> usize {
    results
        .iter()
        .flat_map(|r| &r.outcomes)
        .filter(|o| o.plan.probe().is_none())
        .map(|o| o.runs)
        .sum()
}

#[test]
fn both_engines_agree_with_later_crashes_and_record_makes_fewer_runs() {
    // Layouts that move between runs, shapes, and mutants a second crash
    // in the resume run catches; three crashes on two of them.
    let cases: &[(&str, u32)] = &[
        ("relative", 2),
        ("relocated", 2),
        ("other-cwd", 2),
        ("shape-dir-latest", 2),
        ("zoo-torn-write", 2),
        ("zoo-cwd-relative-link", 2),
        ("relative", 3),
        ("zoo-last-lost-on-early-resume", 3),
    ];
    let (mut killed, mut made, mut later, mut unreached) = (0, 0, 0, 0);
    for (name, crashes) in cases {
        let f = root().join("scenarios").join(format!("{name}.toml"));
        let s = Scenario::load(&f).unwrap_or_else(|e| panic!("{e}"));
        let (kill_results, a) = campaign(&s, Engine::KillEach, Some(*crashes));
        let (results, b) = campaign(&s, Engine::Record, Some(*crashes));
        assert_eq!(a, b, "{name} --crashes {crashes}: the engines disagree");
        for r in &results {
            let rec = r
                .recorded
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: {} was not recorded", r.layout.name()));
            // The layout's recording run, if it needed one, and the runs
            // the cases made.
            made += usize::from(!rec.by_census_run) + rec.runs_made;
            later += rec.later_points;
            // Every later point recorded is one some case crashed at, and
            // the report says so for each of them.
            let named: std::collections::BTreeSet<_> = rec
                .later_states
                .values()
                .flatten()
                .map(|s| (s.crash, s.from.clone(), s.point))
                .collect();
            assert_eq!(
                rec.later_points,
                named.len(),
                "{name} --crashes {crashes} {}: later points recorded and materialised",
                r.layout.name()
            );
            // Each recorded later point is wanted by some plan from the
            // state its run started in: at most one point per distinct
            // prefix of the plans' points (a resume run that paused at
            // every plan's point would capture many more).
            let plans: Vec<_> = r.outcomes.iter().map(|o| &o.plan.points).collect();
            let prefixes: std::collections::BTreeSet<_> = plans
                .iter()
                .flat_map(|p| (2..=p.len()).map(|k| &p[..k]))
                .collect();
            assert!(
                rec.later_points <= prefixes.len(),
                "{name} --crashes {crashes} {}: {} later points recorded, {} wanted",
                r.layout.name(),
                rec.later_points,
                prefixes.len()
            );
        }
        killed += case_runs(&kill_results);
        unreached += results
            .iter()
            .flat_map(|r| &r.outcomes)
            .filter(|o| o.plan.probe().is_none() && o.crashes_hit < o.plan.points.len())
            .count();
    }
    assert!(later > 0, "no later crash point was recorded");
    // Some later point was never reached (the resume ended first): those
    // agree too, and the check above covered them.
    assert!(unreached > 0, "every later point was reached");
    assert!(
        made < killed,
        "record made {made} subject runs, kill-each {killed}"
    );
}

fn certify(engine: &str, bug: Option<&str>) -> serde_json::Value {
    let mut v = certify_raw(engine, bug, &["--layouts", "relative,relocated"]);
    strip_states(&mut v);
    v
}

/// The JSON report of `certify` with `engine` and `extra` flags, with the
/// pids of temporary file names taken out (states kept).
fn certify_raw(engine: &str, bug: Option<&str>, extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("report.json");
    let script: PathBuf = root().join("examples/python/trainer.py");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crashpoint"));
    cmd.current_dir(root())
        .args(["certify", "--engine", engine, "--jobs", "2", "--cases", "6"])
        .args(extra)
        .arg("--json")
        .arg(&out)
        .arg("--")
        .arg("python3")
        .arg(&script);
    if let Some(b) = bug {
        cmd.args(["--bug", b]);
    }
    let o = cmd.output().expect("runs");
    assert!(
        o.status.code().is_some_and(|c| c < 2),
        "{engine} {bug:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The example names its temporary files after its pid: the census's
    // names of crash points carry it too, so it is taken out everywhere.
    let text = without_pid(&std::fs::read_to_string(&out).expect("report"));
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    // The example names its temporary files after its pid, which differs
    // from one run to the next whatever the engine: leftover-file warnings
    // are compared with the number taken out, as a set.
    if let Some(w) = v.get_mut("warnings").and_then(|w| w.as_array_mut()) {
        let mut texts: Vec<String> = w
            .iter()
            .filter_map(|x| x.as_str())
            .map(without_pid)
            .collect();
        texts.sort();
        texts.dedup();
        *w = texts.into_iter().map(serde_json::Value::String).collect();
    }
    v
}

/// `.step=5.ckpt.tmp-1234` -> `.step=5.ckpt.tmp-#`.
fn without_pid(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("tmp-") {
        out.push_str(&rest[..i + 4]);
        rest = rest[i + 4..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('#');
    }
    out.push_str(rest);
    out
}

#[test]
fn both_engines_give_identical_reports_on_the_python_example_and_its_bugs() {
    for bug in [
        None,
        Some("cwd-relative-link"),
        Some("absolute-link"),
        Some("torn-write"),
        Some("no-rng-state"),
    ] {
        let a = certify("kill-each", bug);
        let b = certify("record", bug);
        assert_eq!(a, b, "{bug:?}: the engines disagree");
        if bug.is_none() || bug == Some("cwd-relative-link") {
            // Six points are a sample (never certified): the clean trainer
            // fails none of them, the bug fails some.
            let failed = a["failures"].as_array().is_some_and(|f| !f.is_empty());
            assert_eq!(failed, bug.is_some(), "{bug:?}: the verdict");
            assert_eq!(a["certified"], serde_json::Value::Bool(false), "{bug:?}");
        }
    }
}

#[test]
fn both_engines_give_identical_reports_under_power_loss_on_the_python_example() {
    let extra = [
        "--layouts",
        "relative",
        "--fault",
        "power-loss",
        "--states",
        "2",
    ];
    for bug in [None, Some("no-fsync")] {
        let mut a = certify_raw("kill-each", bug, &extra);
        let mut b = certify_raw("record", bug, &extra);
        // The record engine recorded the layout and built its states from
        // the recording; the kill-each engine recorded nothing.
        let states = &b["layouts"][0]["states"];
        assert!(
            states["points"].as_u64().is_some_and(|n| n >= 6),
            "{bug:?}: {b}"
        );
        assert!(a["layouts"][0].get("states").is_none(), "{bug:?}");
        strip_states(&mut a);
        strip_states(&mut b);
        assert_eq!(a, b, "{bug:?}: the engines disagree under power loss");
        let failed = a["failures"].as_array().is_some_and(|f| !f.is_empty());
        assert_eq!(failed, bug.is_some(), "{bug:?}: the verdict: {a}");
    }
}

#[test]
fn both_engines_give_identical_reports_under_power_loss_on_a_zoo_scenario_traced() {
    let exe = Path::new(env!("CARGO_BIN_EXE_crashpoint"));
    let file = root().join("scenarios/zoo-no-fsync-rename.toml");
    let s = Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
    assert!(s.faults.iter().any(|f| f.is_power_loss()), "{}", s.name);
    let mut reports = Vec::new();
    for engine in [Engine::KillEach, Engine::Record] {
        let mut c = s.campaign(exe, 2, None);
        // Traced points, which the record engine records with their
        // operations (its `op` points are not traced).
        c.target.mode = crashpoint::inject::Mode::Syscall;
        c.engine = engine;
        c.selection = Selection::Sample(8);
        let results = run_campaign(&c).unwrap_or_else(|e| panic!("{engine:?}: {e}"));
        assert_eq!(
            results.iter().all(|r| r.recorded.is_some()),
            engine == Engine::Record,
            "{engine:?}: what was recorded"
        );
        reports.push(report_json(
            &s.name,
            crashpoint::fault::Fault::PowerLoss,
            c.target.mode,
            &results,
        ));
    }
    assert_eq!(
        reports[0], reports[1],
        "the engines disagree under power loss"
    );
    assert!(
        reports[0]["failures"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x["kind"] == "no-checkpoint")),
        "power loss catches no-fsync-rename: {}",
        reports[0]
    );
}

#[test]
fn both_engines_give_identical_reports_on_the_python_example_with_later_crashes() {
    for (bug, crashes) in [(None, 2), (Some("torn-write"), 2), (None, 3)] {
        let n = crashes.to_string();
        let flags = ["--layouts", "relative,relocated", "--crashes", &n];
        let mut a = certify_raw("kill-each", bug, &flags);
        let mut b = certify_raw("record", bug, &flags);
        strip_states(&mut a);
        strip_states(&mut b);
        assert_eq!(a, b, "{bug:?} --crashes {crashes}: the engines disagree");
        if bug.is_none() {
            // The clean trainer survives a second and third crash too.
            let failed = a["failures"].as_array().is_some_and(|f| !f.is_empty());
            assert!(
                !failed,
                "--crashes {crashes}: the clean trainer failed: {a}"
            );
        }
    }
}

/// The simulated trainer under `mode`, saving every step for 6 steps.
fn sim_target(mode: crashpoint::inject::Mode) -> crashpoint::oracle::Target {
    crashpoint::oracle::Target {
        subject: crashpoint::runner::Subject {
            program: env!("CARGO_BIN_EXE_crashpoint").into(),
            args: vec!["sim".into()],
            sim: true,
            preload: Vec::new(),
        },
        mode,
        max_steps: 6,
        seed: 0,
        resume: crashpoint::oracle::ResumeMode::Path,
        timeout: None,
        tracing: crashpoint::oracle::Tracing::Needed,
        fault: crashpoint::fault::FaultModel::KILL,
    }
}

/// The census run of `target` in one layout, recorded with captures capped
/// at `cap` bytes (`None`: the default cap).
fn census_run(
    target: &crashpoint::oracle::Target,
    cap: Option<u64>,
) -> (
    crashpoint::oracle::Reference,
    (
        crashpoint::store::Store,
        Option<crashpoint::record::early::Early>,
    ),
) {
    use crashpoint::record::early::Recorder;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut recorder = Recorder::new(target, &dir.path().join("store")).expect("recordable");
    if let Some(c) = cap {
        recorder = recorder.with_cap(c);
    }
    let mut first =
        |req: &crashpoint::runner::RunRequest<'_>,
         files: &crashpoint::observe::HarnessFiles,
         case: &Path| recorder.run(&target.subject, req, files, case);
    let runs = crashpoint::oracle::ReferenceRuns {
        first: Some(("case-r00000", &mut first)),
        side_by_side: true,
    };
    let reference = crashpoint::oracle::reference_with(
        target,
        crashpoint::layout::Layout::Relative,
        dir.path(),
        runs,
    )
    .expect("reference");
    (reference, recorder.finish())
}

#[test]
fn the_census_run_captures_every_point_until_its_cap() {
    use crashpoint::inject::{CrashPoint, Mode};
    // Every system call of the census, then every op point.
    let (reference, early) = census_run(&sim_target(Mode::Syscall), None);
    let early = early.1.expect("captured");
    let n = reference.census.len() as u64;
    assert!(n > 10, "a census of {n} calls");
    assert_eq!(early.len() as u64, n);
    assert_eq!(early.stopped_at(), None);
    let every: Vec<CrashPoint> = (1..=n).map(CrashPoint::Syscall).collect();
    let rec = early.recording(&every).expect("every call was captured");
    assert!(rec.distinct_states() > 1 && rec.distinct_states() < every.len());
    let (reference, early) = census_run(&sim_target(Mode::Op), None);
    let early = early.1.expect("captured");
    assert!(early.len() >= reference.census.len());
    // A cap of one byte: the first point is captured, and the captures stop
    // at the second; the later points are left to a run of their own.
    let (_, early) = census_run(&sim_target(Mode::Syscall), Some(1));
    let early = early.1.expect("captured");
    assert_eq!((early.len(), early.stopped_at()), (1, Some(2)));
    assert!(early.recording(&[CrashPoint::Syscall(1)]).is_some());
    assert!(early.recording(&[CrashPoint::Syscall(2)]).is_none());
}

#[test]
fn both_engines_give_identical_reports_under_power_loss_at_op_points() {
    let exe = Path::new(env!("CARGO_BIN_EXE_crashpoint"));
    let power = |states| crashpoint::fault::FaultModel {
        fault: crashpoint::fault::Fault::PowerLoss,
        states,
    };
    // A bug only power loss catches; layouts whose paths go through a
    // link or have odd characters, with more disk states and a second
    // crash after the cut.
    let cases: &[(&str, usize, u32)] = &[
        ("zoo-no-fsync-rename", 0, 1),
        ("nested", 2, 1),
        ("symlinked-dir", 1, 2),
    ];
    let mut first = None;
    for &(name, states, crashes) in cases {
        let file = root().join(format!("scenarios/{name}.toml"));
        let s = Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
        let mut reports = Vec::new();
        let mut runs = Vec::new();
        for engine in [Engine::KillEach, Engine::Record] {
            let mut c = s.campaign_for(power(states), exe, 2, None);
            assert_eq!(c.target.mode, crashpoint::inject::Mode::Op, "{name}");
            c.engine = engine;
            c.crashes = crashes;
            c.selection = Selection::Sample(8);
            let results = run_campaign(&c).unwrap_or_else(|e| panic!("{name} {engine:?}: {e}"));
            let mut made = 0;
            for r in &results {
                match (&r.recorded, engine) {
                    (None, Engine::KillEach) => made += case_runs(std::slice::from_ref(r)),
                    // Recorded by the census run, and the disk states of
                    // its points were built from the recording's
                    // operation log (the pauses' own).
                    (Some(rec), Engine::Record) => {
                        assert!(rec.points > 0 && rec.distinct_states > 0, "{name}: {rec:?}");
                        assert!(rec.by_census_run, "{name}: {rec:?}");
                        made += rec.runs_made;
                    }
                    (rec, _) => panic!("{name} {engine:?}: recorded {rec:?}"),
                }
            }
            runs.push(made);
            reports.push(report_json(
                &s.name,
                crashpoint::fault::Fault::PowerLoss,
                c.target.mode,
                &results,
            ));
        }
        assert_eq!(
            reports[0], reports[1],
            "{name}: the engines disagree under power loss at op points"
        );
        // No first run was killed: fewer runs than one per case and more.
        assert!(runs[1] < runs[0], "{name}: runs {runs:?}");
        first.get_or_insert(reports.swap_remove(0));
    }
    let zoo = first.unwrap_or_default();
    assert!(
        zoo["failures"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x["kind"] == "no-checkpoint")),
        "power loss at op points catches no-fsync-rename: {zoo}"
    );
}

#[test]
fn the_probes_share_one_uninterrupted_run_under_the_record_engine() {
    use crashpoint::inject::{Mode, Selection};
    // One case (its first run's state recorded, one resume made) and the
    // three probes: their uninterrupted first runs are one run, made once
    // and put in place for the other two; their bad-resume runs are each
    // made, and every verdict is kill-each's.
    let mut reports = Vec::new();
    for engine in [Engine::KillEach, Engine::Record] {
        let campaign = crashpoint::campaign::Campaign {
            target: sim_target(Mode::Op),
            layouts: vec![crashpoint::layout::Layout::Relative],
            selection: Selection::Sample(1),
            crashes: 1,
            crash_seed: 0,
            engine,
            only: None,
            jobs: 2,
            budget: None,
            partition: crashpoint::partition::Partition::WHOLE,
        };
        let results = run_campaign(&campaign).expect("campaign");
        let probes: Vec<_> = results[0]
            .outcomes
            .iter()
            .filter(|o| o.plan.probe().is_some())
            .collect();
        assert_eq!(probes.len(), 3);
        for p in &probes {
            assert_eq!(p.runs, 2, "{p:?}");
            assert!(p.findings.is_empty() && p.warnings.is_empty(), "{p:?}");
        }
        if engine == Engine::Record {
            let rec = results[0].recorded.as_ref().expect("recorded");
            assert_eq!(rec.runs_made, 2, "{rec:?}");
        }
        reports.push(report_json(
            "probes",
            crashpoint::fault::Fault::Kill,
            Mode::Op,
            &results,
        ));
    }
    assert_eq!(reports[0], reports[1]);
}
