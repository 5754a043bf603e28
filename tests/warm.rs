//! Warm starts (`certify --preload`): the same verdicts as cold starts, a
//! subject the warm start changes refused, bad uses refused before anything
//! runs. The subject is the stdlib example trainer behind a stand-in
//! framework (`tests/fixtures/slow_framework.py`), imported in no time here.

mod common;

use common::{bin, certify, text};

const TRAINER: &str = "tests/fixtures/framework_trainer.py";

fn certify_with(preload: bool, extra: &[&str]) -> (std::process::Output, serde_json::Value) {
    let mut args = vec!["--layouts", "relative", "--exhaustive", "--jobs", "2"];
    if preload {
        args.extend(["--preload", "slow_framework"]);
    } else {
        // The same tracing as with --preload: resumes untraced.
        args.push("--no-trace-resume");
    }
    args.extend(["--", "python3", TRAINER]);
    args.extend(extra);
    std::env::set_var("SLOW_FRAMEWORK_SECONDS", "0");
    certify(&args)
}

/// What a report says case by case, and its failures (kind and point).
fn verdicts(v: &serde_json::Value) -> (serde_json::Value, Vec<(String, String)>) {
    let failures = v["failures"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["kind"].as_str().unwrap_or("").to_string(),
                        f["point"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    // Case names hold the recording run's temporary file names (with its
    // process id): every other field is compared.
    let mut cases = v["case_results"].clone();
    for c in cases.as_array_mut().into_iter().flatten() {
        if let Some(o) = c.as_object_mut() {
            o.remove("name");
        }
    }
    (cases, failures)
}

#[test]
fn warm_starts_give_the_verdicts_of_cold_starts() {
    for extra in [&[][..], &["--bug", "unlink-then-link"]] {
        let (cold, vc) = certify_with(false, extra);
        let (warm, vw) = certify_with(true, extra);
        assert_eq!(cold.status.code(), warm.status.code(), "{}", text(&warm));
        assert!(vc["case_results"].as_array().is_some_and(|a| a.len() > 20));
        assert!(verdicts(&vc) == verdicts(&vw), "{extra:?}\n{}", text(&warm));
        let want = if extra.is_empty() { Some(0) } else { Some(1) };
        assert_eq!(warm.status.code(), want, "{}", text(&warm));
        if !extra.is_empty() {
            assert!(!vw["failures"].as_array().map_or(true, Vec::is_empty));
            // The replay says how the runs were made.
            let replay = vw["failures"][0]["replay"].as_str().unwrap_or("");
            assert!(replay.contains("--preload slow_framework"), "{replay}");
        }
    }
}

#[test]
fn a_subject_that_a_warm_start_changes_is_refused() {
    // The trainer takes its seed from what the framework saw at import: a
    // fork of a server that imported it with another environment differs.
    let (o, v) = certify_with(true, &["--seed-from-import"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains("the warm-started run in layout relative disagrees with the cold one"),
        "{out}"
    );
    assert!(out.contains("drop --preload"), "{out}");
    assert!(v.is_null() || v["certified"] == false);
    // Cold, the same subject is deterministic and certified.
    let (o, _) = certify_with(false, &["--seed-from-import"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn bad_uses_of_preload_are_refused_before_anything_runs() {
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "--preload",
                "torch",
                "--",
                "bash",
                "tests/fixtures/saves-only-at-the-end.sh",
            ],
            "--preload needs the command to be `PYTHON SCRIPT",
        ),
        (
            &["--preload", "not-a-module", "--", "python3", TRAINER],
            "`not-a-module` is not a Python module name",
        ),
        (
            &[
                "--preload",
                "torch",
                "--mode",
                "time",
                "--",
                "python3",
                TRAINER,
            ],
            "--preload goes with syscall mode",
        ),
        (
            &["--preload", "no_such_module_here", "--", "python3", TRAINER],
            "cannot import the --preload modules no_such_module_here: ModuleNotFoundError",
        ),
    ];
    for (args, want) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let o = bin()
            .arg("certify")
            .args(["--layouts", "relative", "--cases", "2", "--sandbox-dir"])
            .arg(dir.path())
            .args(args)
            .output()
            .expect("crashpoint starts");
        let out = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {out}");
        assert!(out.contains(want), "{args:?}: {out}");
        // Nothing is left in the sandbox directory.
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
        assert!(left.is_empty(), "{args:?}: {left:?}");
    }
}
