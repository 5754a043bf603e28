//! `crashpoint certify` against real programs: the stdlib Python example
//! trainer (clean and with each of its bugs), the simulated trainer as an
//! external command, and subjects that cannot be certified.

use std::path::PathBuf;
use std::process::{Command, Output};

use crashpoint::census::Call;
use crashpoint::inject::{CrashPoint, Mode};
use crashpoint::layout::{Layout, Sandbox};
use crashpoint::observe::HarnessFiles;
use crashpoint::oracle::{self, ResumeMode, Target, Tracing};
use crashpoint::runner::{self, Exit, RunRequest, Subject};

mod common;
use common::{certify, kinds, root, text};

fn trainer() -> String {
    root()
        .join("examples/python/trainer.py")
        .display()
        .to_string()
}

/// A case directory under `case`: a sandbox of `layout` and the harness files.
fn case_in(case: &std::path::Path, layout: Layout) -> (Sandbox, HarnessFiles) {
    std::fs::create_dir_all(case.join("sandbox")).unwrap();
    std::fs::create_dir_all(case.join("harness")).unwrap();
    let sandbox = Sandbox::create(layout, &case.join("sandbox")).unwrap();
    (sandbox, HarnessFiles::in_dir(&case.join("harness")))
}

/// A first run (20 steps, seed 0, a minute at most) killed at `crash`.
fn request<'a>(
    sandbox: &'a Sandbox,
    place: &'a crashpoint::layout::Place,
    files: &'a HarnessFiles,
    crash: CrashPoint,
    traced: bool,
) -> RunRequest<'a> {
    RunRequest {
        place,
        sandbox: sandbox.root(),
        max_steps: 20,
        seed: 0,
        resume: None,
        state_out: &files.state,
        events: &files.events,
        crash: Some(crash),
        op_log: None,
        traced,
        power: false,
        timeout: std::time::Duration::from_secs(60),
    }
}

#[test]
fn the_kill_lands_at_the_exact_system_call() {
    if !crashpoint::trace::tracing_available() {
        panic!("system-call tracing is not available on this machine");
    }
    let target = Target {
        subject: Subject {
            program: "python3".into(),
            args: vec![trainer().into()],
            sim: false,
            preload: Vec::new(),
        },
        mode: Mode::Syscall,
        max_steps: 20,
        seed: 0,
        resume: ResumeMode::Path,
        timeout: None,
        tracing: Tracing::Needed,
        fault: crashpoint::fault::FaultModel::KILL,
    };
    let work = tempfile::tempdir().unwrap();
    let reference = oracle::reference(&target, Layout::Relative, work.path()).unwrap();
    // The rename that completes the second save (step 10).
    let rename = reference
        .census
        .iter()
        .find(|e| e.call == Call::Rename && e.path().ends_with("/step=10.ckpt"))
        .unwrap_or_else(|| panic!("no rename to step=10.ckpt in {:#?}", reference.census));
    let (sandbox, files) = case_in(&work.path().join("case"), Layout::Relative);
    let place = sandbox.place();
    let req = request(
        &sandbox,
        &place,
        &files,
        CrashPoint::Syscall(rename.index),
        true,
    );
    let res = runner::run(&target.subject, &req).unwrap();
    assert_eq!(res.exit, Exit::Crashed, "{res:?}");
    assert_eq!(
        res.census.len() as u64,
        rename.index,
        "the census stops at the killed call"
    );
    let names: Vec<String> = std::fs::read_dir(sandbox.ckpt_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with(".step=10.ckpt.tmp")),
        "temporary file of the second save missing: {names:?}"
    );
    assert!(
        !names.contains(&"step=10.ckpt".to_string()),
        "the rename must not have happened: {names:?}"
    );
    assert!(names.contains(&"step=5.ckpt".to_string()), "{names:?}");
    assert_eq!(
        std::fs::read_link(sandbox.ckpt_dir().join("last.ckpt")).unwrap(),
        PathBuf::from("step=5.ckpt")
    );
}

#[test]
fn the_clean_python_trainer_passes_its_first_ten_points_in_all_seven_layouts() {
    let (o, v) = certify(&[
        "--cases",
        "10",
        "--",
        "python3",
        "examples/python/trainer.py",
    ]);
    // Ten points of a larger census is a sample: nothing failed, nothing certified.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(v["certified"], false, "{v}");
    assert_eq!(v["failures"].as_array().map(Vec::len), Some(0), "{v}");
    assert!(text(&o).contains("no failure in 70 of"), "{}", text(&o));
    let layouts: Vec<&str> = v["layouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["layout"].as_str().unwrap())
        .collect();
    assert_eq!(
        layouts,
        [
            "relative",
            "absolute",
            "nested",
            "symlinked-cwd",
            "symlinked-dir",
            "relocated",
            "other-cwd"
        ]
    );
    for l in v["layouts"].as_array().unwrap() {
        assert!(l["census"].as_u64().unwrap() >= 30, "census too small: {l}");
        assert!(l["cases"].as_u64().unwrap() >= 10, "{l}");
    }
}

#[test]
fn cwd_relative_link_dangles_in_relative_layouts_only() {
    let (o, v) = certify(&[
        "--layouts",
        "relative,absolute",
        "--cases",
        "12",
        "--",
        "python3",
        "examples/python/trainer.py",
        "--bug",
        "cwd-relative-link",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(kinds(&v).contains(&"dangling-last".to_string()), "{v}");
    let layouts: Vec<&str> = v["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["layout"].as_str().unwrap())
        .collect();
    assert!(
        layouts.iter().all(|l| *l == "relative"),
        "absolute must pass: {layouts:?}"
    );
    // Every failure carries a replay that pins its layout and system call.
    for f in v["failures"].as_array().unwrap() {
        let r = f["replay"].as_str().unwrap();
        assert!(
            r.contains("certify --layouts relative")
                && r.contains("--crash ")
                && r.ends_with("--bug cwd-relative-link"),
            "{r}"
        );
    }
}

#[test]
fn a_replay_reproduces_the_same_failure() {
    let (_, v) = certify(&[
        "--layouts",
        "relocated",
        "--cases",
        "8",
        "--",
        "python3",
        "examples/python/trainer.py",
        "--bug",
        "absolute-link",
    ]);
    let f = &v["failures"][0];
    let kind = f["kind"]
        .as_str()
        .expect("absolute-link fails in relocated");
    let replay = f["replay"].as_str().unwrap();
    let again = Command::new("sh")
        .arg("-c")
        .arg(replay)
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1), "{replay}\n{}", text(&again));
    assert!(text(&again).contains(kind), "{}", text(&again));
    assert!(
        text(&again).contains("1 cases") || text(&again).contains(" 1 "),
        "{}",
        text(&again)
    );
}

#[test]
fn torn_writes_are_caught_where_resume_reads_the_torn_file() {
    let (o, v) = certify(&[
        "--layouts",
        "relative",
        "--exhaustive",
        "--",
        "python3",
        "examples/python/trainer.py",
        "--bug",
        "torn-write",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let k = kinds(&v);
    assert!(
        k.contains(&"resume-failed".to_string()) || k.contains(&"digest-mismatch".to_string()),
        "{k:?}"
    );
}

#[test]
fn a_forgotten_rng_state_is_a_digest_mismatch() {
    let (o, v) = certify(&[
        "--layouts",
        "absolute",
        "--cases",
        "12",
        "--",
        "python3",
        "examples/python/trainer.py",
        "--bug",
        "no-rng-state",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(kinds(&v).contains(&"digest-mismatch".to_string()), "{v}");
}

#[test]
fn the_simulated_trainer_is_certifiable_as_an_external_command() {
    let sim = env!("CARGO_BIN_EXE_crashpoint");
    let (o, v) = certify(&[
        "--layouts",
        "relative,symlinked-dir",
        "--exhaustive",
        "--max-steps",
        "10",
        "--",
        sim,
        "sim",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(v["certified"], true);
    let (o, v) = certify(&[
        "--layouts",
        "relative",
        "--cases",
        "12",
        "--",
        sim,
        "sim",
        "--mutant",
        "cwd-relative-link",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(kinds(&v).contains(&"dangling-last".to_string()), "{v}");
}

#[test]
fn junit_lists_a_test_case_per_crash_point() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("j.xml");
    let o = Command::new(env!("CARGO_BIN_EXE_crashpoint"))
        .current_dir(root())
        .args([
            "certify",
            "--layouts",
            "relative",
            "--cases",
            "5",
            "--junit",
        ])
        .arg(&junit)
        .args([
            "--",
            "python3",
            "examples/python/trainer.py",
            "--bug",
            "no-rng-state",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let x = std::fs::read_to_string(junit).unwrap();
    assert!(x.matches("<testcase").count() >= 5, "{x}");
    assert!(
        x.contains("digest-mismatch") && x.contains("replay: "),
        "{x}"
    );
}

/// A shell subject: `script` runs with the protocol environment.
fn sh_subject(script: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crashpoint"))
        .current_dir(root())
        .args([
            "certify",
            "--layouts",
            "relative",
            "--cases",
            "2",
            "--",
            "sh",
            "-c",
            script,
        ])
        .output()
        .unwrap()
}

#[test]
fn subjects_that_cannot_be_certified_exit_2_with_their_own_message() {
    let cases: [(&[&str], &str); 3] = [
        (
            &["--", "no-such-trainer-command"],
            "command not found: no-such-trainer-command",
        ),
        (
            &["--crashes", "0", "--", "python3"],
            "invalid value '0' for '--crashes <CRASHES>'",
        ),
        (
            &["--mode", "op", "--", "python3"],
            "`op` is not a mode for certify",
        ),
    ];
    for (args, want) in cases {
        let (o, _) = certify(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(
            text(&o).contains(want),
            "{args:?}: want {want}\n{}",
            text(&o)
        );
    }
    let o = sh_subject("mkdir -p \"$CRASHPOINT_CKPT_DIR\"; exit 0");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("exited 0 but wrote no state file"),
        "{}",
        text(&o)
    );
    let o = sh_subject("echo '{\"step\": 20, \"digest\": \"x\"}' > \"$CRASHPOINT_STATE_OUT\"");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(
            "made no file-mutating system call in the sandbox (is CRASHPOINT_CKPT_DIR used?)"
        ),
        "{}",
        text(&o)
    );
    let o = sh_subject("mkdir -p \"$CRASHPOINT_CKPT_DIR\"; echo \"{\\\"step\\\": 20, \\\"digest\\\": \\\"$$\\\"}\" > \"$CRASHPOINT_STATE_OUT\"");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("nondeterministic"), "{}", text(&o));
    // A digest is text the subject chose: multi-byte characters where the
    // report cuts it are shown, never a panic (exit 101).
    let o = sh_subject("mkdir -p \"$CRASHPOINT_CKPT_DIR\"; echo \"{\\\"step\\\": 20, \\\"digest\\\": \\\"xéééééééééééééééé$$\\\"}\" > \"$CRASHPOINT_STATE_OUT\"");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("digest xééééééééééé vs xééééééééééé"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_subject_that_hangs_on_resume_is_a_hang_killed_by_the_watchdog() {
    let start = std::time::Instant::now();
    let (o, v) = certify(&[
        "--layouts",
        "relative",
        "--cases",
        "3",
        "--timeout",
        "1",
        "--",
        "sh",
        "tests/fixtures/hangs-on-resume.sh",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(kinds(&v).contains(&"hang".to_string()), "{v}");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(60),
        "the watchdog must cut each hung run"
    );
    let detail = v["failures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "hang")
        .unwrap()["detail"]
        .clone();
    assert!(
        detail
            .as_str()
            .unwrap()
            .contains("exceeded its time limit of 1.0s"),
        "{detail}"
    );
}

#[test]
fn an_unreadable_or_malformed_op_census_is_an_error_not_an_empty_campaign() {
    // A subject run as the simulated trainer (op crash points) whose op log is
    // garbage, empty or missing: the reference fails with its reason; it never
    // yields an empty census that would certify a campaign of probes alone.
    let state = "mkdir -p \"$CRASHPOINT_CKPT_DIR\"; echo x > \"$CRASHPOINT_CKPT_DIR/step=4.ckpt\"; echo '{\"step\": 4, \"digest\": \"d\"}' > \"$CRASHPOINT_STATE_OUT\"";
    let cases = [
        (
            format!("{state}; if [ -n \"$CRASHPOINT_OP_LOG\" ]; then echo garbage > \"$CRASHPOINT_OP_LOG\"; fi"),
            "malformed operation census: line 1",
        ),
        (
            format!("{state}; if [ -n \"$CRASHPOINT_OP_LOG\" ]; then : > \"$CRASHPOINT_OP_LOG\"; fi"),
            "wrote an empty operation census",
        ),
        (state.to_string(), "cannot read the op log"),
    ];
    for (script, want) in cases {
        let target = Target {
            subject: Subject {
                program: "sh".into(),
                args: vec!["-c".into(), script.clone().into()],
                sim: true,
                preload: Vec::new(),
            },
            mode: Mode::Op,
            max_steps: 4,
            seed: 0,
            resume: ResumeMode::Path,
            timeout: None,
            tracing: Tracing::Needed,
            fault: crashpoint::fault::FaultModel::KILL,
        };
        let work = tempfile::tempdir().unwrap();
        let err = oracle::reference(&target, Layout::Relative, work.path())
            .expect_err("a reference without a census must fail");
        assert!(
            err.to_string().contains(want),
            "{script}: want {want}, got {err}"
        );
    }
}

/// A time kill measured from the run's first checkpoint change lands in
/// its saves however slowly it starts: a subject that waits 600 ms, writes
/// `a`, then after 1.5 s `b`, killed 100 ms after its first change, keeps
/// `a` and never writes `b`, traced or not, wherever its checkpoint
/// directory is (through a link in `symlinked-dir`). Killed 100 ms after its
/// start instead, it writes neither.
#[test]
fn a_kill_after_the_first_checkpoint_change_lands_in_the_saves_of_a_slow_starter() {
    let subject = Subject {
        program: "sh".into(),
        args: vec![
            "-c".into(),
            "sleep 0.6; mkdir -p \"$CRASHPOINT_CKPT_DIR\"; echo a > \"$CRASHPOINT_CKPT_DIR/a\"; \
             sleep 1.5; echo b > \"$CRASHPOINT_CKPT_DIR/b\""
                .into(),
        ],
        sim: false,
        preload: Vec::new(),
    };
    for (layout, traced, crash, kept) in [
        (Layout::Relative, false, CrashPoint::AfterChange(100), true),
        (
            Layout::SymlinkedDir,
            false,
            CrashPoint::AfterChange(100),
            true,
        ),
        (Layout::Relative, true, CrashPoint::AfterChange(100), true),
        (Layout::Relative, false, CrashPoint::Time(100), false),
    ] {
        if traced && !crashpoint::trace::tracing_available() {
            panic!("system-call tracing is not available on this machine");
        }
        let case = tempfile::tempdir().unwrap();
        let (sandbox, files) = case_in(case.path(), layout);
        let place = sandbox.place();
        let req = request(&sandbox, &place, &files, crash, traced);
        let res = runner::run(&subject, &req).unwrap();
        let what = format!("{layout:?} traced={traced} {crash}");
        assert_eq!(res.exit, Exit::Crashed, "{what}: {res:?}");
        let dir = sandbox.ckpt_dir();
        assert_eq!(dir.join("a").exists(), kept, "{what}");
        assert!(!dir.join("b").exists(), "{what}: killed before b");
    }
}
