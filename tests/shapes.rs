//! Checkpoints as frameworks lay them out, certified through `crashpoint
//! certify` on `tests/fixtures/shapes_trainer.py` (stdlib Python): Lightning
//! with `default_root_dir` (files and a `last.ckpt` link below
//! `<root>/checkpoints/`) and Hugging Face Trainer (`checkpoint-<N>/`
//! directories), correct and with each weakness the real frameworks have.
//! Crash points that matter are found in the census, so each weakness is
//! shown by one exact case.

use std::process::{Command, Output};

use crashpoint::inject::Mode;
use crashpoint::layout::Layout;
use crashpoint::oracle::{self, ResumeMode, Target, Tracing};
use crashpoint::runner::Subject;

mod common;
use common::{kinds, root, text};

const FIXTURE: &str = "tests/fixtures/shapes_trainer.py";

fn certify(args: &[&str], fixture: &[&str]) -> (Output, serde_json::Value) {
    certify_env(args, fixture, &[])
}

fn certify_env(
    args: &[&str],
    fixture: &[&str],
    env: &[(&str, &str)],
) -> (Output, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let o = Command::new(env!("CARGO_BIN_EXE_crashpoint"))
        .current_dir(root())
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("VIRTUAL_ENV")
        .env_remove("PYTHONPATH")
        .envs(env.iter().copied())
        .args(["certify", "--jobs", "2", "--max-steps", "8", "--json"])
        .arg(&json)
        .args(args)
        .args(["--", "python3", FIXTURE])
        .args(fixture)
        .output()
        .unwrap();
    let v = std::fs::read_to_string(&json)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(serde_json::Value::Null);
    (o, v)
}

fn detail(v: &serde_json::Value, kind: &str) -> String {
    v["failures"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["kind"] == kind))
        .map(|f| f["detail"].as_str().unwrap_or("").to_string())
        .unwrap_or_else(|| panic!("no {kind} in {v}"))
}

fn warnings(v: &serde_json::Value) -> String {
    v["warnings"].to_string()
}

/// The crash point (`syscall:N`) of the `nth` (0-based) census call that
/// is a `kind` (`open`, `unlink`, ...) on a path ending in `path_end`, in the
/// relative layout of the fixture run with `fixture` flags.
fn point(fixture: &[&str], kind: &str, path_end: &str, nth: usize) -> String {
    let mut args = vec![root().join(FIXTURE).into_os_string()];
    args.extend(fixture.iter().map(Into::into));
    let target = Target {
        subject: Subject {
            program: "python3".into(),
            args,
            sim: false,
            preload: Vec::new(),
        },
        mode: Mode::Syscall,
        max_steps: 8,
        seed: 0,
        resume: ResumeMode::Last,
        timeout: None,
        tracing: Tracing::Needed,
        fault: crashpoint::fault::FaultModel::KILL,
    };
    let work = tempfile::tempdir().unwrap();
    let r = oracle::reference(&target, Layout::Relative, work.path()).unwrap();
    let hits: Vec<u64> = r
        .census
        .iter()
        .filter(|e| {
            let d = format!("{e:?}").to_lowercase();
            d.contains(kind) && e.paths.iter().any(|p| p.ends_with(path_end))
        })
        .map(|e| e.index)
        .collect();
    let i = hits
        .get(nth)
        .unwrap_or_else(|| panic!("no {kind} of *{path_end} in {:#?}", r.census));
    format!("syscall:{i}")
}

#[test]
fn hf_checkpoint_directories_certify_without_false_alarms() {
    let (o, v) = certify(
        &[
            "--layouts",
            "nested",
            "--exhaustive",
            "--resume-arg",
            "last",
        ],
        &["--shape", "hf"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(v["certified"], true, "{v}");
    // The corrupt probe damages the checkpoint a resume reads, in two
    // variants, each named; given `last` the subject may pass over it.
    let w = warnings(&v);
    assert!(
        w.contains("probe corrupt (checkpoint checkpoint-8/ with its metadata file trainer_state.json truncated to half its size): given `last`, the subject passed over the damaged checkpoint and resumed from step 6"),
        "{w}"
    );
}

#[test]
fn hf_without_events_certifies_and_says_what_was_not_checked() {
    let (o, v) = certify(
        &[
            "--layouts",
            "relative",
            "--exhaustive",
            "--resume-arg",
            "last",
        ],
        &["--shape", "hf", "--no-events"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        warnings(&v).contains("announces no saves") && warnings(&v).contains("not checked"),
        "{v}"
    );
}

#[test]
fn a_half_written_checkpoint_picked_on_resume_is_resume_failed() {
    let bug = ["--shape", "hf", "--bug", "partial-dir-picked"];
    let crash = point(&bug, "open", "checkpoint-4/trainer_state.json", 0);
    let (o, v) = certify(
        &[
            "--layouts",
            "relative",
            "--resume-arg",
            "last",
            "--crash",
            &crash,
        ],
        &bug,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // The failed resume also leaves the tree unlike the reference's.
    assert_eq!(kinds(&v), ["dir-mismatch", "resume-failed"], "{v}");
    assert!(
        detail(&v, "resume-failed").contains("checkpoint-4: trainer_state.json missing"),
        "{v}"
    );
    // The same kill in the correct trainer passes: it takes checkpoint-2.
    let (o, v) = certify(
        &[
            "--layouts",
            "relative",
            "--resume-arg",
            "last",
            "--crash",
            &crash,
        ],
        &["--shape", "hf"],
    );
    // One point is not the whole census: no failure, but not certified.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(kinds(&v).is_empty(), "{v}");
    assert_eq!(v["certified"], false, "{v}");
}

#[test]
fn a_rotation_by_mtime_that_deletes_the_good_checkpoint_is_dir_mismatch() {
    let bug = ["--shape", "hf", "--bug", "rotate-by-mtime"];
    // Killed while the rotation after the save of step 6 deletes checkpoint-2.
    let crash = point(&bug, "unlink", "checkpoint-2/optimizer.json", 0);
    let (o, v) = certify(
        &[
            "--layouts",
            "relative",
            "--resume-arg",
            "last",
            "--crash",
            &crash,
        ],
        &bug,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(kinds(&v), ["dir-mismatch"], "{v}");
    let d = detail(&v, "dir-mismatch");
    assert!(
        d.contains("missing [checkpoint-6/]")
            && d.contains("incomplete kept [checkpoint-2/")
            && d.contains("a completed checkpoint was deleted (checkpoint-6/ (saved at step 6)) while a broken one was kept"),
        "{d}"
    );
    let replay = v["failures"][0]["replay"].as_str().unwrap();
    assert!(replay.contains(&format!("--crash {crash}")), "{replay}");
}

#[test]
fn a_resume_at_max_steps_that_trains_one_more_step_is_overshoot() {
    let bug = ["--shape", "hf", "--bug", "overshoot-at-end"];
    // Killed in the rotation after the last save (step 8): resume from it.
    let crash = point(&bug, "unlink", "checkpoint-4/model.json", 0);
    let (o, v) = certify(
        &[
            "--layouts",
            "relative",
            "--resume-arg",
            "newest",
            "--crash",
            &crash,
        ],
        &bug,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(kinds(&v), ["overshoot"], "{v}");
    assert_eq!(
        detail(&v, "overshoot"),
        "run 2 (resumed from step 8) exited 0 at step 9, past CRASHPOINT_MAX_STEPS=8: it trained 1 step too far"
    );
}

#[test]
fn newest_mode_hands_over_the_newest_complete_checkpoint_directory() {
    let (o, v) = certify(
        &[
            "--layouts",
            "relocated",
            "--exhaustive",
            "--resume-arg",
            "newest",
        ],
        &["--shape", "hf"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!warnings(&v).contains("probe corrupt"), "{v}");
}

#[test]
fn lightning_default_root_dir_with_a_correct_link_certifies() {
    let (o, v) = certify(
        &[
            "--layouts",
            "symlinked-cwd",
            "--exhaustive",
            "--resume-arg",
            "last",
        ],
        &["--shape", "lightning-root"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(v["certified"], true);
}

#[test]
fn lightning_2_1_3_link_below_default_root_dir_is_dangling_last_not_no_checkpoint() {
    let bug = ["--shape", "lightning-root", "--bug", "cwd-relative-link"];
    let crash = point(&bug, "rename", "checkpoints/last.ckpt", 1);
    let (o, v) = certify_env(
        &[
            "--layouts",
            "relative",
            "--resume-arg",
            "last",
            "--crash",
            &crash,
            "--env",
            "SHAPES_NOTE",
        ],
        &bug,
        &[
            ("PYTHONPATH", "/opt/lightning 2.1.3"),
            ("SHAPES_NOTE", "it's"),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(
        kinds(&v),
        ["dangling-last", "dir-mismatch", "resume-failed"],
        "{v}"
    );
    assert!(
        detail(&v, "dangling-last").contains("after crash 1 at syscall:")
            && detail(&v, "dangling-last").contains(
                "checkpoints/last.ckpt -> checkpoints/checkpoints/step=2.ckpt does not resolve"
            ),
        "{v}"
    );
    // Replays carry the environment that selected what ran.
    assert_eq!(v["env"]["PYTHONPATH"], "/opt/lightning 2.1.3", "{v}");
    assert_eq!(v["env"]["SHAPES_NOTE"], "it's", "{v}");
    let replay = v["failures"][0]["replay"].as_str().unwrap();
    assert!(
        replay.starts_with(r"env 'PYTHONPATH=/opt/lightning 2.1.3' 'SHAPES_NOTE=it'\''s' "),
        "{replay}"
    );
    assert!(replay.contains("--env SHAPES_NOTE"), "{replay}");
    let again = Command::new("sh")
        .arg("-c")
        .arg(replay)
        .current_dir(root())
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("PYTHONPATH")
        .env_remove("SHAPES_NOTE")
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1), "{replay}\n{}", text(&again));
    assert!(text(&again).contains("dangling-last"), "{}", text(&again));
}
