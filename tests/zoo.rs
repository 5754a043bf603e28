//! The bug zoo: every mutant is caught on its scenario with the kinds it
//! expects, its minimal case replays the same failure from the command line,
//! the clean trainer passes the zoo's scenarios, every policy combination and
//! every misuse probe, and the zoo table is snapshotted.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crashpoint::inject::{CrashPlan, CrashPoint, Mode, Probe};
use crashpoint::layout::Layout;
use crashpoint::oracle::{self, Reference, ResumeMode, Target, Tracing};
use crashpoint::protocol::{OpCrash, When};
use crashpoint::runner::Subject;
use crashpoint::sim::ckpt::policy::{Mode as Monitor, SaveLast};
use crashpoint::sim::Mutant;
use crashpoint::sim::SimSettings;
use crashpoint::verdict::FailureKind;
use crashpoint::zoo::hunt::{self, CleanSet, MutantRow, Verdict, ZooReport};
use crashpoint::zoo::table;
use proptest::prelude::*;

const EXE: &str = env!("CARGO_BIN_EXE_crashpoint");

/// The zoo, hunted once for every test of this file: each mutant on its
/// scenario, shrunk, and the clean trainer on the zoo's scenarios (the other
/// scenarios are `tests/scenarios.rs`'s).
fn zoo() -> &'static ZooReport {
    static ZOO: OnceLock<ZooReport> = OnceLock::new();
    ZOO.get_or_init(|| {
        let opts = hunt::Options {
            dir: "scenarios".into(),
            exe: EXE.into(),
            program: "crashpoint".into(),
            jobs: 2,
            clean: CleanSet::ZooOnly,
            shrink_attempts: 40,
        };
        let work = tempfile::tempdir().expect("tempdir");
        hunt::hunt(
            &opts,
            work.path(),
            &|_| {},
            &crashpoint::pool::Cancel::new(),
        )
        .unwrap_or_else(|e| panic!("zoo: {e}"))
    })
}

fn row(m: Mutant) -> &'static MutantRow {
    zoo()
        .mutants
        .iter()
        .find(|r| r.mutant == m)
        .unwrap_or_else(|| panic!("no zoo row for {m}"))
}

/// `m` is caught, with every kind its scenario expects, and its minimal
/// case fails with one of them.
fn assert_caught(m: Mutant, kinds: &[FailureKind]) {
    let r = row(m);
    assert_eq!(r.verdict, Verdict::Caught, "{r:#?}");
    assert_eq!(r.expected, kinds, "the scenario expects other kinds");
    for k in kinds {
        assert!(r.kinds.contains(k), "{m}: {k} not seen in {:?}", r.kinds);
    }
    let minimal = r.minimal.as_ref().expect("a minimal case");
    assert!(kinds.contains(&minimal.kind), "{minimal:#?}");
    assert!(
        minimal.after.steps <= minimal.before.steps
            && minimal.after.crashes <= minimal.before.crashes,
        "shrinking grew the case: {minimal:#?}"
    );
}

macro_rules! caught {
    ($($test:ident: $mutant:ident => [$($kind:ident),+];)+) => {$(
        #[test]
        fn $test() {
            assert_caught(Mutant::$mutant, &[$(FailureKind::$kind),+]);
        }
    )+};
}

caught! {
    cwd_relative_link_is_caught: CwdRelativeLink => [DanglingLast, ResumeFailed];
    absolute_link_is_caught: AbsoluteLink => [DanglingLast, ResumeFailed];
    load_not_applied_is_caught: LoadNotApplied => [DigestMismatch];
    no_optimizer_state_is_caught: NoOptimizerState => [DigestMismatch];
    no_rng_state_is_caught: NoRngState => [DigestMismatch];
    no_data_position_is_caught: NoDataPosition => [DigestMismatch];
    no_scheduler_state_is_caught: NoSchedulerState => [DigestMismatch];
    step_off_by_one_is_caught: StepOffByOne => [DigestMismatch];
    torn_write_is_caught: TornWrite => [ResumeFailed];
    unlink_then_link_is_caught: UnlinkThenLink => [NoCheckpoint, ResumeFailed];
    delete_before_save_is_caught: DeleteBeforeSave => [DanglingLast, ResumeFailed, NoCheckpoint];
    stale_top_k_is_caught: StaleTopK => [DirMismatch];
    manual_step_no_count_is_caught: ManualStepNoCount => [NoCheckpoint];
    dir_as_resume_path_is_caught: DirAsResumePath => [BadResumeAccepted];
    partial_dir_picked_is_caught: PartialDirPicked => [ResumeFailed];
    latest_in_place_is_caught: LatestInPlace => [ResumeFailed];
    overshoot_at_end_is_caught: OvershootAtEnd => [Overshoot];
    last_lost_on_early_resume_is_caught: LastLostOnEarlyResume => [DirMismatch, ProgressLost];
    rotate_by_mtime_is_caught: RotateByMtime => [DirMismatch];
    no_fsync_rename_is_caught_by_power_loss: NoFsyncRename => [NoCheckpoint];
}

#[test]
fn every_mutant_has_a_row_and_the_zoo_is_ok() {
    let z = zoo();
    let names: Vec<Mutant> = z.mutants.iter().map(|r| r.mutant).collect();
    assert_eq!(names, Mutant::ALL);
    assert!(z.ok, "{}", table::render(z));
}

#[test]
fn the_clean_sim_passes_every_zoo_scenario() {
    let z = zoo();
    // Every mutant has its scenario, no-fsync-rename's under power loss:
    // the clean sim runs each of them.
    assert_eq!(
        z.clean.len(),
        Mutant::ALL.len(),
        "one clean run per zoo scenario"
    );
    assert!(
        z.clean.iter().any(|c| c.scenario == "zoo-no-fsync-rename"),
        "{:#?}",
        z.clean
    );
    for c in &z.clean {
        assert!(c.as_expected && c.kinds.is_empty(), "{c:#?}");
    }
}

/// Only the layouts a mutant's bug lives in show it.
#[test]
fn links_fail_only_where_their_bug_lives() {
    assert_eq!(row(Mutant::CwdRelativeLink).layouts, ["relative"]);
    assert_eq!(row(Mutant::AbsoluteLink).layouts, ["relocated"]);
}

/// Every minimal case's replay command, run as a user would paste it,
/// fails with the kind shrinking kept.
#[test]
fn minimal_cases_replay_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    for r in &zoo().mutants {
        let Some(m) = &r.minimal else { continue };
        assert!(!m.replay.contains('\''), "needs no quoting: {}", m.replay);
        let mut words = m.replay.split_whitespace();
        assert_eq!(words.next(), Some("crashpoint"));
        let json = dir.path().join(format!("{}.json", r.mutant));
        let out = Command::new(EXE)
            .args(words)
            .arg("--json")
            .arg(&json)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}: {text}", m.replay);
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
        let kinds: Vec<&str> = report["failures"]
            .as_array()
            .expect("failures")
            .iter()
            .filter_map(|f| f["kind"].as_str())
            .collect();
        assert!(
            kinds.contains(&m.kind.name()),
            "{}: {kinds:?}\n{text}",
            m.replay
        );
        assert!(
            text.contains(&format!("] {} at", m.kind)),
            "the failure is printed: {text}"
        );
    }
}

/// The table, as `crashpoint zoo` prints it for these scenarios.
#[test]
fn zoo_table_snapshot() {
    let text = table::render(zoo()).replace(EXE, "crashpoint");
    insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!("zoo-table", text);
    });
}

fn sim_target(settings: &SimSettings, max_steps: u64, resume: ResumeMode) -> Target {
    let mut args: Vec<std::ffi::OsString> = vec!["sim".into()];
    args.extend(settings.to_args().into_iter().map(Into::into));
    Target {
        subject: Subject {
            program: EXE.into(),
            args,
            sim: true,
            preload: Vec::new(),
        },
        mode: Mode::Op,
        max_steps,
        seed: 5,
        resume,
        timeout: None,
        tracing: Tracing::Needed,
        fault: crashpoint::fault::FaultModel::KILL,
    }
}

/// The three probes in every layout: the clean trainer refuses each, and
/// `dir-as-resume-path` accepts exactly the directory.
#[test]
fn probes_pass_on_the_clean_sim_in_every_layout() {
    let clean = SimSettings {
        params: 64,
        ..SimSettings::default()
    };
    let buggy = SimSettings {
        mutants: vec![Mutant::DirAsResumePath],
        ..clean.clone()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for layout in Layout::ALL {
        for (name, settings) in [("clean", &clean), ("buggy", &buggy)] {
            let target = sim_target(settings, 5, ResumeMode::Path);
            let scratch = dir.path().join(format!("{name}-{layout}"));
            let reference = oracle::reference(&target, layout, &scratch).expect("reference");
            for probe in Probe::ALL {
                let case = scratch.join(probe.name());
                let out = oracle::run_probe(&target, &reference, probe, &case).expect("runs");
                let accepted = out
                    .findings
                    .iter()
                    .any(|f| f.kind == FailureKind::BadResumeAccepted);
                let want = name == "buggy" && probe == Probe::Directory;
                assert_eq!(accepted, want, "{name} {layout} {probe:?}: {out:#?}");
                assert!(
                    out.warnings.is_empty(),
                    "{name} {layout} {probe:?}: {out:#?}"
                );
            }
        }
    }
}

/// A checkpoint policy of issue item 1 that a correct trainer can be
/// certified under, with a resume mode that fits it.
#[derive(Debug, Clone)]
struct Policy {
    settings: SimSettings,
    resume: ResumeMode,
}

fn any_policy() -> impl Strategy<Value = Policy> {
    let filename = prop_oneof![
        Just(("{step}", false)),
        Just(("{epoch}", false)),
        Just(("{epoch}-{step}-{loss:.4f}", false)),
        Just(("e{epoch}_s{step}", true)),
    ];
    (
        prop_oneof![Just(0u64), Just(2), Just(3), Just(5)],
        prop_oneof![Just(0u64), Just(1), Just(2)],
        -1i64..=2,
        prop_oneof![
            Just(None),
            Just(Some(Monitor::Min)),
            Just(Some(Monitor::Max))
        ],
        prop_oneof![
            Just(SaveLast::Link),
            Just(SaveLast::Copy),
            Just(SaveLast::Off)
        ],
        filename,
        prop_oneof![Just(ResumeMode::Path), Just(ResumeMode::Last)],
    )
        .prop_map(
            |(steps, epochs, top_k, monitor, last, (filename, plain), resume)| {
                let mut s = SimSettings {
                    params: 64,
                    dataset: 12,
                    batch: 3,
                    every_n_steps: steps,
                    every_n_epochs: epochs,
                    save_top_k: top_k,
                    monitor,
                    save_last: last,
                    filename: filename.into(),
                    no_auto_insert_metric_name: plain,
                    mutants: Vec::new(),
                    ..SimSettings::default()
                };
                if s.every_n_steps == 0 && s.every_n_epochs == 0 {
                    s.every_n_steps = 2;
                }
                // Without last.ckpt a user resumes from the best file: that is
                // the newest save only when the best is all that is kept.
                let resume = if s.save_last == SaveLast::Off {
                    s.save_top_k = 1;
                    s.monitor = Some(s.monitor.unwrap_or(Monitor::Min));
                    ResumeMode::Best
                } else {
                    resume
                };
                Policy {
                    settings: s,
                    resume,
                }
            },
        )
}

/// References by (policy, layout, steps), shared across proptest cases.
fn cached_reference(target: &Target, key: String, layout: Layout) -> Reference {
    static CACHE: OnceLock<Mutex<HashMap<String, Reference>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(r) = cache.lock().expect("cache").get(&key) {
        return r.clone();
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let r = oracle::reference(target, layout, dir.path()).expect("reference runs");
    cache.lock().expect("cache").insert(key, r.clone());
    r
}

fn point_at(census_len: usize, frac: f64, when: When) -> CrashPoint {
    let index = ((census_len as f64 * frac) as u64).clamp(1, census_len.max(1) as u64);
    CrashPoint::Op(OpCrash { index, when })
}

proptest! {
    // The default failure persistence stays on: failures are kept as seeds
    // in tests/zoo.proptest-regressions (committed) and replayed first.
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The clean trainer passes under any policy of issue item 1, in any
    /// layout, for any crash plan (one or two crashes, the second in the
    /// resume run), ending bit for bit equal to the reference with the
    /// reference's checkpoint directory.
    #[test]
    fn the_clean_sim_passes_every_policy(
        policy in any_policy(),
        layout in prop::sample::select(Layout::ALL.to_vec()),
        saves in 1u64..4,
        extra in 0.0f64..1.0,
        first in 0.0f64..1.0,
        first_when in prop_oneof![Just(When::Before), Just(When::Mid), Just(When::After)],
        second in proptest::option::of((1u64..12, prop_oneof![Just(When::Before), Just(When::After)])),
    ) {
        // At least one save, a few saves at most, not always on a save.
        let unit = crashpoint::shrink::save_interval(&policy.settings);
        let max_steps = unit * saves + (unit as f64 * extra) as u64;
        let target = sim_target(&policy.settings, max_steps, policy.resume.clone());
        let key = format!("{:?} {} {layout} {max_steps}", policy.settings.to_args(), policy.resume);
        let reference = cached_reference(&target, key, layout);
        prop_assert!(reference.findings.is_empty(), "{policy:?}: {:?}", reference.findings);
        let mut points = vec![point_at(reference.census.len(), first, first_when)];
        if let Some((index, when)) = second {
            points.push(CrashPoint::Op(OpCrash { index, when }));
        }
        let plan = CrashPlan { points };
        let dir = tempfile::tempdir().expect("tempdir");
        let out = oracle::run_case(&target, &reference, &plan, &dir.path().join("case")).expect("runs");
        prop_assert!(out.passed(), "{policy:?} {layout} {plan}: {:#?}", out.findings);
    }
}

/// `run --shrink` prints each failure kind's minimal case with its replay.
#[test]
fn run_shrink_prints_minimal_cases() {
    let out = Command::new(EXE)
        .args([
            "run",
            "scenarios/zoo-torn-write.toml",
            "--shrink",
            "--jobs",
            "2",
        ])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("SHRUNK zoo-torn-write resume-failed:"))
        .unwrap_or_else(|| panic!("no shrunk resume-failed: {text}"));
    assert!(line.contains("-> relative, 5 steps,"), "{line}");
    assert!(text.contains("replay: "), "{text}");
}
