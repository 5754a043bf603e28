//! The command line as a user meets it: exit statuses, verdict tables, replay
//! commands that reproduce, clear errors for bad input, same seed same report,
//! and the simulated trainer's refusals.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{bin, run, text};

fn scenario(name: &str) -> String {
    format!("scenarios/{name}.toml")
}

#[test]
fn run_passes_a_clean_scenario() {
    let o = run(&["run", &scenario("relative")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.lines().any(|l| l
            .split_whitespace()
            .take(3)
            .eq(["relative", "kill", "relative"])),
        "{t}"
    );
    assert!(t.contains("every verdict as expected"), "{t}");
}

#[test]
fn a_mutant_fails_with_its_kind_and_a_replay_that_reproduces_it() {
    // With --mutant the scenario is expected to fail: a caught mutant is "as
    // expected" (exit 0), and its failures are listed with replay commands.
    let o = run(&[
        "run",
        &scenario("relative"),
        "--mutant",
        "cwd-relative-link",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("dangling-last"), "{t}");
    // The failure list gives the command once, then one line per failure
    // naming its layout, kind and crash point: fill in the first one.
    let template = t
        .lines()
        .find_map(|l| l.strip_prefix("replay with: "))
        .expect("a replay line")
        .to_string();
    let fail = t
        .lines()
        .find(|l| l.starts_with("FAIL [") && l.contains("dangling-last"))
        .expect("a FAIL line");
    assert_eq!(t.matches("replay with: ").count(), 1, "{t}");
    let layout = &fail[6..fail.find(']').unwrap()];
    let point = fail
        .split(" at ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    // Named: the point, its operation and path.
    assert!(
        fail.contains(&format!("{point} ")) && fail.contains("checkpoints/"),
        "{fail}"
    );
    let replay = template
        .replacen("<layout>", layout, 1)
        .replacen("<point>", point, 1);
    // The replay is a shell command; run it as a user would paste it.
    let again = Command::new("sh")
        .arg("-c")
        .arg(&replay)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let t2 = text(&again);
    assert_eq!(again.status.code(), Some(0), "{replay}\n{t2}");
    assert!(t2.contains("dangling-last"), "{t2}");
    assert!(
        t2.contains("  1  "),
        "the replay runs exactly one case: {t2}"
    );
}

#[test]
fn a_digest_mismatch_names_the_part_that_diverged() {
    // op 12 is the write of the step-10 save: the resume starts from step 5.
    let o = run(&[
        "run",
        &scenario("relative"),
        "--mutant",
        "no-rng-state",
        "--crash",
        "op:12:after",
        "--layout",
        "relative",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("digest-mismatch"), "{t}");
    assert!(t.contains("first divergence at step 5: rng"), "{t}");
}

#[test]
fn a_scenario_whose_verdict_differs_from_its_expectation_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("wrong.toml");
    let src = "layouts = [\"relative\"]\nmax_steps = 6\nmutant = \"no-optimizer-state\"\n[trainer]\nevery_n_steps = 2\n";
    std::fs::write(&f, src).unwrap();
    let o = run(&["run", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("UNEXPECTED"), "{t}");
    assert!(
        t.contains("digest-mismatch") && t.contains("replay with: "),
        "{t}"
    );
}

#[test]
fn a_malformed_scenario_names_file_line_and_field_and_nothing_runs() {
    let o = run(&[
        "run",
        &scenario("relative"),
        "tests/fixtures/bad-field.toml",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let t = text(&o);
    assert!(
        t.contains("tests/fixtures/bad-field.toml:6:1: field `crash.crashs`"),
        "{t}"
    );
    assert!(t.contains("unknown field `crashs`"), "{t}");
    assert!(!t.contains("cases"), "nothing may run: {t}");
}

#[test]
fn bad_values_in_a_scenario_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "layouts = [\"relative\", \"diagonal\"]\n",
            "1:24: field `layouts`: unknown layout `diagonal`; valid layouts: relative, absolute",
        ),
        (
            "mutant = \"gremlin\"\n",
            "1:10: field `mutant`: unknown mutant `gremlin`; valid mutants: cwd-relative-link",
        ),
        (
            "[crash]\npoints = -3\n",
            "2:10: field `crash.points`: expected \"all\" or a positive number",
        ),
        (
            "max_steps = 0\n",
            "1:13: field `max_steps`: must be at least 1",
        ),
        (
            "[trainer]\nbatch = 0\n",
            "field `trainer.batch`: must be between 1 and dataset",
        ),
        (
            "[expect]\nverdict = \"maybe\"\n",
            "2:11: field `expect.verdict`: expected \"pass\" or \"fail\"",
        ),
        (
            "max_steps = \"ten\"\n",
            "1:13: field `max_steps`: invalid type: string \"ten\", expected u64",
        ),
    ];
    for (src, want) in cases {
        let f = dir.path().join("s.toml");
        std::fs::write(&f, src).unwrap();
        let o = run(&["run", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{src}");
        let t = text(&o);
        assert!(t.contains(want), "for {src:?}\nwant {want:?}\ngot {t}");
    }
}

#[test]
fn unknown_names_list_the_valid_ones() {
    let o = run(&["run", "--mutant", "gremlin"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("valid mutants: cwd-relative-link"),
        "{}",
        text(&o)
    );
    let o = run(&["run", "--layout", "diagonal"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("valid layouts: relative"), "{}", text(&o));
    let o = run(&["run", "no/such/file.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("no/such/file.toml: cannot read"),
        "{}",
        text(&o)
    );
}

#[test]
fn same_seed_same_report() {
    let dir = tempfile::tempdir().unwrap();
    let reports: Vec<PathBuf> = (0..2)
        .map(|i| dir.path().join(format!("r{i}.json")))
        .collect();
    for r in &reports {
        let o = run(&[
            "run",
            &scenario("mixed-two-crashes"),
            "--mutant",
            "torn-write",
            "--json",
            r.to_str().unwrap(),
        ]);
        assert!(
            o.status.code() == Some(0) || o.status.code() == Some(1),
            "{}",
            text(&o)
        );
    }
    let a = std::fs::read_to_string(&reports[0]).unwrap();
    let b = std::fs::read_to_string(&reports[1]).unwrap();
    assert_eq!(a, b);
    let v: serde_json::Value = serde_json::from_str(&a).unwrap();
    assert!(v["cases"].as_u64().unwrap() > 100, "{v}");
    assert!(v["failures"].is_array());
}

#[test]
fn junit_has_a_case_per_layout_and_crash_point() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("j.xml");
    let o = run(&[
        "run",
        &scenario("relative"),
        "--mutant",
        "no-rng-state",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let x = std::fs::read_to_string(&junit).unwrap();
    assert!(x.contains("<testsuite name=\"relative\""), "{x}");
    assert!(x.contains("relative op:12:after"), "{x}");
    assert!(
        x.contains("<failure") && x.contains("digest-mismatch") && x.contains("replay: "),
        "{x}"
    );
}

/// Runs the simulated trainer directly under the protocol in `dir`.
fn sim(dir: &Path, resume: Option<&str>) -> Output {
    let mut c = bin();
    c.arg("sim")
        .current_dir(dir)
        .env("CRASHPOINT_PROTOCOL", "1")
        .env("CRASHPOINT_CKPT_DIR", "ck")
        .env("CRASHPOINT_MAX_STEPS", "6")
        .env("CRASHPOINT_SEED", "1")
        .env("CRASHPOINT_STATE_OUT", dir.join("state.json"));
    if let Some(r) = resume {
        c.env("CRASHPOINT_RESUME", r);
    }
    c.output().unwrap()
}

#[test]
fn the_sim_refuses_bad_resume_paths_each_with_its_own_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(sim(d, None).status.code(), Some(0));
    let expect = |resume: &str, want: &str| {
        let o = sim(d, Some(resume));
        assert_eq!(o.status.code(), Some(1), "{resume}: {}", text(&o));
        assert!(
            text(&o).contains(want),
            "{resume}: want {want}, got {}",
            text(&o)
        );
    };
    expect(
        "ck",
        "resume path is a directory, not a checkpoint file: ck",
    );
    expect(
        "ck/nothing.ckpt",
        "checkpoint file not found: ck/nothing.ckpt",
    );
    std::os::unix::fs::symlink("gone.ckpt", d.join("ck/dangling.ckpt")).unwrap();
    expect(
        "ck/dangling.ckpt",
        "checkpoint link is dangling: ck/dangling.ckpt -> gone.ckpt",
    );
    let mut bytes = std::fs::read(d.join("ck/step=5.ckpt")).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(d.join("ck/bad.ckpt"), &bytes).unwrap();
    expect(
        "ck/bad.ckpt",
        "corrupt checkpoint ck/bad.ckpt: checksum mismatch",
    );
    std::fs::write(d.join("ck/short.ckpt"), &bytes[..mid]).unwrap();
    expect("ck/short.ckpt", "(torn write?)");
    // And the good ones resume: by path and by the keyword.
    assert_eq!(sim(d, Some("ck/last.ckpt")).status.code(), Some(0));
    assert_eq!(sim(d, Some("last")).status.code(), Some(0));
}

#[test]
fn a_sim_whose_harness_is_gone_dies_at_once_and_writes_nothing() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let with_parent = |pid: u32| {
        let mut c = bin();
        c.arg("sim")
            .current_dir(d)
            .env("CRASHPOINT_PROTOCOL", "1")
            .env("CRASHPOINT_CKPT_DIR", "ck")
            .env("CRASHPOINT_MAX_STEPS", "6")
            .env("CRASHPOINT_SEED", "1")
            .env("CRASHPOINT_STATE_OUT", d.join("state.json"))
            .env("CRASHPOINT_SIM_PARENT", pid.to_string());
        c.output().unwrap()
    };
    // Its parent is not the harness that named itself: it was re-parented.
    let o = with_parent(1);
    assert_eq!(o.status.signal(), Some(9), "{}", text(&o));
    assert!(!d.join("ck").exists());
    assert!(!d.join("state.json").exists());
    // Started by the process it names: it runs.
    let o = with_parent(std::process::id());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(d.join("state.json").exists());
}

#[test]
fn the_sim_outside_the_protocol_says_what_is_missing() {
    let o = bin()
        .arg("sim")
        .env_remove("CRASHPOINT_CKPT_DIR")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("CRASHPOINT_CKPT_DIR: not set"),
        "{}",
        text(&o)
    );
}

#[test]
fn zoo_list_names_every_mutant() {
    let o = run(&["zoo", "--list"]);
    assert_eq!(o.status.code(), Some(0));
    let t = text(&o);
    for m in crashpoint::sim::Mutant::ALL {
        assert!(t.contains(m.name()), "{m} missing from {t}");
    }
}
