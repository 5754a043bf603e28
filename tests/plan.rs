//! The plan: windows first, budgets, honest time mode, workers. What a
//! sampled, budgeted or inconclusive run may claim, and that `--cases 6`
//! catches every window bug of the Python example whatever the seed.

use std::process::{Command, Output};

mod common;
use common::{certify_raw as certify, kinds, text};

/// The first `cases` points of the Python example with `bug`, layout
/// `relative`, 10 steps, crash seed `seed`.
fn first_cases(cases: &str, seed: &str, bug: &[&str]) -> (Output, serde_json::Value) {
    let mut args = vec![
        "--layouts",
        "relative",
        "--cases",
        cases,
        "--max-steps",
        "10",
        "--seed",
        seed,
        "--",
        "python3",
        "examples/python/trainer.py",
    ];
    args.extend(bug);
    let (o, v, _) = certify(&args);
    (o, v)
}

/// `--cases 6` on one window bug of the Python example, for seeds 0..5:
/// each must fail with one of `want`.
fn six_cases_catch(bug: &[&str], want: &[&str]) {
    for seed in 0..5 {
        let seed = seed.to_string();
        let (o, v) = first_cases("6", &seed, bug);
        assert_eq!(o.status.code(), Some(1), "seed {seed}: {}", text(&o));
        let k = kinds(&v);
        assert!(
            want.iter().any(|w| k.iter().any(|x| x == w)),
            "{bug:?} seed {seed}: want one of {want:?}, got {k:?}\n{}",
            text(&o)
        );
        assert_eq!(v["layouts"][0]["points_run"], 6, "{v}");
    }
}

#[test]
fn six_cases_catch_unlink_then_link_for_any_seed() {
    six_cases_catch(
        &["--bug", "unlink-then-link"],
        &["no-checkpoint", "resume-failed", "progress-lost"],
    );
}

#[test]
fn a_failing_system_call_is_named_with_its_phase() {
    // The traced census has no phases of its own; they come from the saves.
    let (o, v, _) = certify(&[
        "--layouts",
        "relative",
        "--cases",
        "6",
        "--max-steps",
        "10",
        "--",
        "python3",
        "examples/python/trainer.py",
        "--bug",
        "unlink-then-link",
    ]);
    let names: Vec<&str> = v["failures"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        names.iter().any(|n| n
            .contains(" work/checkpoints/last.ckpt (relink last after the save of step ")),
        "{names:?}\n{}",
        text(&o)
    );
}

#[test]
fn six_cases_catch_delete_before_save_for_any_seed() {
    six_cases_catch(
        &["--bug", "delete-before-save", "--keep", "1"],
        &["dangling-last", "no-checkpoint", "resume-failed"],
    );
}

#[test]
fn six_cases_catch_torn_write_for_any_seed() {
    six_cases_catch(
        &["--bug", "torn-write"],
        &["resume-failed", "digest-mismatch"],
    );
}

#[test]
fn the_first_case_is_inside_a_file_rewritten_in_place() {
    // The torn-write trainer truncates last.ckpt and writes it in pieces:
    // its first write into the reopened file ranks with the unlinks, ahead
    // of the rotation's unlink that comes later in the census.
    for seed in ["0", "3"] {
        let (o, v) = first_cases("1", seed, &["--bug", "torn-write"]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert_eq!(kinds(&v), ["resume-failed"], "{}", text(&o));
        let name = v["failures"][0]["name"].as_str().unwrap_or_default();
        assert!(
            name.contains("write work/checkpoints/last.ckpt"),
            "{name}\n{}",
            text(&o)
        );
    }
}

#[test]
fn a_sample_is_never_certified_and_says_what_it_covered() {
    let sim = env!("CARGO_BIN_EXE_crashpoint");
    let (o, v, _) = certify(&[
        "--layouts",
        "relative",
        "--cases",
        "3",
        "--max-steps",
        "10",
        "--",
        sim,
        "sim",
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert_eq!(v["certified"], false, "{v}");
    let l = &v["layouts"][0];
    let (points, sites) = (l["points"].as_u64().unwrap(), l["sites"].as_u64().unwrap());
    assert!(points > 3 && sites >= 3, "{l}");
    assert_eq!(l["points_run"], 3, "{l}");
    assert_eq!(l["sites_covered"], 3, "three points, three sites: {l}");
    assert_eq!(v["points_run"], 3);
    assert!(
        t.contains(&format!(
            "no failure in 3 of {points} points (3 of {sites} sites): NOT certified"
        )),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "not covered: relative: {} of {points} points not run",
            points - 3
        )),
        "{t}"
    );
    // Every point: certified, with the same accounting.
    let (o, v, _) = certify(&[
        "--layouts",
        "relative",
        "--exhaustive",
        "--max-steps",
        "10",
        "--",
        sim,
        "sim",
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert_eq!(v["certified"], true);
    assert_eq!(v["points_run"], points);
    assert_eq!(v["sites_covered"], sites);
    assert!(
        t.contains(&format!(
            "no failure in {points} of {points} points ({sites} of {sites} sites): CERTIFIED"
        )),
        "{t}"
    );
}

#[test]
fn a_spent_budget_starts_no_more_cases_and_certifies_nothing() {
    let (o, v, _) = certify(&[
        "--layouts",
        "relative",
        "--budget",
        "1s",
        "--max-steps",
        "10",
        "--",
        "python3",
        "examples/python/trainer.py",
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert_eq!(v["certified"], false);
    let l = &v["layouts"][0];
    assert!(l["points_run"].as_u64() < l["points"].as_u64(), "{l}");
    assert!(t.contains("the budget of 1s was spent"), "{t}");
    assert!(t.contains("NOT certified (not every point ran)"), "{t}");
    let (o, _, _) = certify(&["--budget", "soon", "--", "python3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("`soon` is not a duration"),
        "{}",
        text(&o)
    );
}

/// `certify` in time mode, three kills, layout `relative`, of `sh SCRIPT`.
fn three_time_kills(script: &str) -> (std::process::Output, serde_json::Value) {
    let (o, v, _) = certify(&[
        "--layouts",
        "relative",
        "--mode",
        "time",
        "--cases",
        "3",
        "--",
        "sh",
        script,
    ]);
    (o, v)
}

#[test]
fn time_mode_kills_before_the_first_save_are_inconclusive() {
    let (o, v) = three_time_kills("tests/fixtures/saves-only-at-the-end.sh");
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert_eq!(v["certified"], false);
    assert!(v["failures"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(v["layouts"][0]["after_save"], 0, "{v}");
    assert_eq!(v["layouts"][0]["points_run"], 3, "{v}");
    assert!(
        t.contains("inconclusive: none of the 3 kills landed after a completed save"),
        "{t}"
    );
    assert!(t.contains("(0 after a completed save)"), "{t}");
}

#[test]
fn time_mode_never_certifies_even_when_its_kills_land_after_a_save() {
    let (o, v) = three_time_kills("tests/fixtures/saves-first-then-works.sh");
    let t = text(&o);
    assert!(v["failures"].as_array().unwrap().is_empty(), "{t}");
    assert_eq!(v["layouts"][0]["points_run"], 3, "{v}");
    assert!(v["layouts"][0]["after_save"].as_u64() > Some(0), "{v}");
    // A sample of kill times: exit 1, not certified, and it says why.
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert_eq!(v["certified"], false);
    assert!(
        t.contains("NOT certified (time mode samples kill times)"),
        "{t}"
    );
    assert!(
        t.contains("time mode: 3 kill times are a sample of the save window"),
        "{t}"
    );
}

#[test]
fn time_points_are_fractions_of_the_save_window_drawn_from_the_seed() {
    use crashpoint::inject::{self, CrashPoint, Mode, PlanSpec, Selection};
    let spec = |seed, layout| PlanSpec {
        mode: Mode::Time,
        selection: Selection::Sample(8),
        crashes: 1,
        seed,
        layout,
        saved: &[],
    };
    let a = inject::plans(&spec(3, "relative"), &[]);
    assert_eq!(a, inject::plans(&spec(3, "relative"), &[]));
    assert_ne!(a, inject::plans(&spec(4, "relative"), &[]));
    assert_ne!(a, inject::plans(&spec(3, "absolute"), &[]));
    for p in &a {
        let CrashPoint::Fraction(f) = p.points[0] else {
            panic!("{p}")
        };
        let shown = p.to_string();
        assert_eq!(shown, format!("time:0.{f:04}"));
        assert_eq!(shown.parse::<inject::CrashPlan>().unwrap(), *p);
        let w = inject::SaveWindow {
            start_ms: 1000,
            end_ms: 2000,
        };
        // Measured from the run's own first checkpoint change.
        assert_eq!(
            inject::resolve(p.points[0], Some(w), 5000),
            CrashPoint::AfterChange(u64::from(f) / 10)
        );
        // No window: a fraction of the whole run, from its start.
        assert_eq!(
            inject::resolve(p.points[0], None, 5000),
            CrashPoint::Time(u64::from(f) / 2)
        );
        let after = CrashPoint::AfterChange(u64::from(f) / 10);
        assert_eq!(after.to_string().parse::<CrashPoint>().unwrap(), after);
    }
}

#[test]
fn the_same_seed_gives_the_same_report_whatever_the_number_of_workers() {
    let sim = env!("CARGO_BIN_EXE_crashpoint");
    let run = |jobs: &str| {
        certify(&[
            "--layouts",
            "relative,nested",
            "--cases",
            "20",
            "--crashes",
            "2",
            "--jobs",
            jobs,
            "--max-steps",
            "10",
            "--",
            sim,
            "sim",
            "--mutant",
            "unlink-then-link",
        ])
    };
    let (o1, v1, one) = run("1");
    let (o2, _, two) = run("2");
    assert_eq!(o1.status.code(), Some(1), "{}", text(&o1));
    assert_eq!(o2.status.code(), Some(1), "{}", text(&o2));
    assert!(!kinds(&v1).is_empty(), "the mutant is caught: {v1}");
    assert_eq!(one, two, "--jobs 1 and --jobs 2 reports differ");
}

#[test]
fn sandboxes_live_in_the_sandbox_dir() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    // The subject refuses to run anywhere else (exit 3: an unusable reference).
    let script = format!(
        "case \"$(pwd -P)\" in {}/*) ;; *) exit 3;; esac; \
         [ -z \"$CRASHPOINT_RESUME\" ] || grep -qx state-ok \"$CRASHPOINT_RESUME\" || exit 1; \
         mkdir -p \"$CRASHPOINT_CKPT_DIR\"; echo state-ok > \"$CRASHPOINT_CKPT_DIR/.tmp\"; \
         mv \"$CRASHPOINT_CKPT_DIR/.tmp\" \"$CRASHPOINT_CKPT_DIR/last.ckpt\"; \
         echo \"{{\\\"step\\\": $CRASHPOINT_MAX_STEPS, \\\"digest\\\": \\\"d\\\"}}\" > \"$CRASHPOINT_STATE_OUT\"",
        base.display()
    );
    let b = base.display().to_string();
    let (o, v, _) = certify(&[
        "--layouts",
        "relative",
        "--exhaustive",
        "--sandbox-dir",
        &b,
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(v["certified"], true, "{v}");
    let left: Vec<_> = std::fs::read_dir(&base).unwrap().flatten().collect();
    assert!(left.is_empty(), "the workspace is removed: {left:?}");
    let (o, _, _) = certify(&["--sandbox-dir", "/no/such/dir", "--", "python3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--sandbox-dir /no/such/dir: not a directory"));
}

#[test]
fn the_traced_census_shows_each_write_with_its_descriptor_offset_and_length() {
    // The torn-write bug writes each checkpoint in place in four pieces of
    // equal size (the last one shorter or equal), one after the other.
    let o = Command::new(env!("CARGO_BIN_EXE_crashpoint"))
        .current_dir(common::root())
        .args(["census", "--layouts", "relative", "--max-steps", "5", "--"])
        .args([
            "python3",
            "examples/python/trainer.py",
            "--bug",
            "torn-write",
        ])
        .output()
        .expect("census runs");
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains(" fd ") && t.contains(" offset ") && t.contains(" len "),
        "{t}"
    );
    let writes: Vec<(String, u64, u64)> = t
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.get(1) == Some(&"write") && f.get(2) == Some(&"work/checkpoints/step=5.ckpt"))
        .filter_map(|f| Some((f[3].to_string(), f[4].parse().ok()?, f[5].parse().ok()?)))
        .collect();
    assert_eq!(writes.len(), 4, "{t}");
    let size = writes[0].2;
    assert!(size > 0, "{t}");
    for (k, (fd, offset, len)) in writes.iter().enumerate() {
        assert_eq!(fd, &writes[0].0, "one descriptor: {t}");
        assert_eq!(*offset, k as u64 * size, "piece {k}: {t}");
        assert!(*len == size || (k == 3 && *len <= size), "piece {k}: {t}");
    }
}
