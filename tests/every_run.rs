//! Every run is watched, and every failure is named for what it is: writes
//! outside the sandbox are seen in resume runs and probes too (unless
//! `--no-trace-resume`), files left in the sandbox's TMPDIR are listed, a
//! fresh start after a crash that fails is `restart-failed` (not
//! `resume-failed`), and a case whose sandbox someone else disturbed is a
//! harness error (exit status 3), never the subject's failure. The subject is
//! `tests/fixtures/hostile.py`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;
use common::{root, text};

const FIXTURE: &str = "tests/fixtures/hostile.py";

fn need_tracing() {
    if !crashpoint::trace::tracing_available() {
        panic!("system-call tracing is not available on this machine");
    }
}

/// A test's TMPDIR, a directory outside every sandbox, and report paths.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["tmp", "outside"] {
            std::fs::create_dir(dir.path().join(d)).expect("mkdir");
        }
        Site { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `crashpoint certify FLAGS --json <site>/r.json -- python3 hostile.py MODE`.
    fn certify(&self, flags: &[&str], mode: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_crashpoint"));
        c.current_dir(root())
            .arg("certify")
            .args(flags)
            .arg("--json")
            .arg(self.path("r.json"))
            .args(["--", "python3", FIXTURE, mode])
            .env("TMPDIR", self.path("tmp"))
            .env("CRASHPOINT_HOSTILE_OUTSIDE", self.path("outside"));
        c
    }

    fn report(&self) -> serde_json::Value {
        let t = std::fs::read_to_string(self.path("r.json")).expect("report");
        serde_json::from_str(&t).expect("json")
    }

    fn assert_tmp_empty(&self) {
        let left: Vec<_> = std::fs::read_dir(self.path("tmp"))
            .expect("tmp")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    }
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn kinds(report: &serde_json::Value) -> Vec<String> {
    report["failures"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["kind"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

const SMALL: [&str; 8] = [
    "--layouts",
    "relative",
    "--max-steps",
    "3",
    "--cases",
    "2",
    "--jobs",
    "1",
];

#[test]
fn writes_outside_are_seen_in_resume_runs_and_probes_and_tmp_leftovers_listed() {
    need_tracing();
    let site = Site::new();
    let o = site.certify(&SMALL, "sloppy").output().expect("certify");
    // Two points of a larger census: nothing fails, nothing is certified.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(kinds(&site.report()).is_empty(), "{}", text(&o));
    let warnings = strings(&site.report()["warnings"]);
    let outside = site.path("outside/resumed").display().to_string();
    let resumed = format!("relative: wrote-outside: run 2 wrote {outside}");
    assert!(warnings.contains(&resumed), "{warnings:#?}");
    for probe in ["directory", "missing", "corrupt"] {
        let w = format!("relative: wrote-outside: probe {probe} run 2 wrote {outside}");
        assert!(warnings.contains(&w), "{w} not in {warnings:#?}");
    }
    let leftover = warnings
        .iter()
        .find(|w| w.starts_with("relative: leftover in the sandbox's TMPDIR: tmp"))
        .unwrap_or_else(|| panic!("no TMPDIR leftover in {warnings:#?}"));
    assert!(leftover.ends_with(".ckpt"), "{leftover}");
    site.assert_tmp_empty();

    // --no-trace-resume: resume runs go unseen, the rest is as before.
    std::fs::remove_file(site.path("outside/resumed")).expect("rm");
    let mut flags = SMALL.to_vec();
    flags.push("--no-trace-resume");
    let o = site.certify(&flags, "sloppy").output().expect("certify");
    // Two points of a larger census: nothing fails, nothing is certified.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(kinds(&site.report()).is_empty(), "{}", text(&o));
    let warnings = strings(&site.report()["warnings"]);
    assert!(
        !warnings.iter().any(|w| w.contains("wrote-outside")),
        "{warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("leftover in the sandbox's TMPDIR")),
        "{warnings:#?}"
    );
    // The file was written all the same: only the tracing was saved.
    assert!(site.path("outside/resumed").exists());
}

#[test]
fn a_fresh_start_after_a_crash_that_fails_is_restart_failed() {
    need_tracing();
    let site = Site::new();
    // Crash at the first write of the first save: the checkpoint directory
    // exists, nothing was saved, so the next run starts fresh, and refuses.
    let mut flags = vec!["--layouts", "relative", "--max-steps", "3"];
    flags.extend(["--crash", "syscall:2"]);
    let o = site.certify(&flags, "picky").output().expect("certify");
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let report = site.report();
    // The run that failed is named first; the final directory differs too.
    let k = kinds(&report);
    assert_eq!(
        k.first().map(String::as_str),
        Some("restart-failed"),
        "{report:#}"
    );
    assert!(!k.iter().any(|k| k == "resume-failed"), "{report:#}");
    let detail = report["failures"][0]["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("run 2 (fresh) exited 1"), "{detail}");
    assert!(
        detail.contains("nothing to resume from was given"),
        "{detail}"
    );
    assert!(t.contains("restart-failed"), "{t}");
    site.assert_tmp_empty();
}

/// Runs `certify FLAGS -- hostile.py knock` (one case, crashed after the
/// first save), and while its resume run waits, calls `disturb` with the
/// run's working directory and resume path; returns the output and report.
fn disturbed_case(
    site: &Site,
    extra: &[&str],
    disturb: impl FnOnce(&Path, &str),
) -> (Output, serde_json::Value) {
    let knock = site.path("knock");
    let gate = site.path("gate");
    for f in [&knock, &gate] {
        nix::unistd::mkfifo(f, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    }
    let mut flags = vec!["--layouts", "relative", "--max-steps", "3", "--jobs", "1"];
    flags.extend_from_slice(extra);
    let child = site
        .certify(&flags, "knock")
        .env("CRASHPOINT_HOSTILE_KNOCK", &knock)
        .env("CRASHPOINT_HOSTILE_GATE", &gate)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("certify");
    // Blocks until the resume run knocks.
    let mut line = String::new();
    BufReader::new(std::fs::File::open(&knock).expect("knock"))
        .read_line(&mut line)
        .expect("read the knock");
    let (cwd, resume) = line.trim_end().split_once(' ').expect("cwd and resume");
    disturb(Path::new(cwd), resume);
    std::fs::File::options()
        .write(true)
        .open(&gate)
        .and_then(|mut g| g.write_all(b"."))
        .expect("open the gate");
    let o = child.wait_with_output().expect("certify");
    (o, site.report())
}

fn assert_harness_error(o: &Output, report: &serde_json::Value, want: &str) {
    let t = text(o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert_eq!(report["certified"], false, "{report:#}");
    assert!(
        kinds(report).is_empty(),
        "blamed on the subject: {report:#}"
    );
    let errors = report["harness_errors"].as_array().expect("harness_errors");
    assert_eq!(errors.len(), 1, "{report:#}");
    let detail = errors[0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(want), "{detail}");
    assert!(
        errors[0]["replay"]
            .as_str()
            .is_some_and(|r| r.contains("--crash syscall:")),
        "{report:#}"
    );
    assert!(t.contains("HARNESS ERROR"), "{t}");
    assert!(t.contains("NOT TRUSTWORTHY"), "{t}");
}

#[test]
fn a_checkpoint_removed_from_outside_during_a_traced_run_is_a_harness_error() {
    need_tracing();
    let site = Site::new();
    // Killed at the first call of the second save: the first is complete.
    let (o, report) = disturbed_case(&site, &["--crash", "syscall:8"], |cwd, resume| {
        // Someone else deletes the checkpoint the run is about to load.
        let target = cwd.join(resume).canonicalize().expect("resume target");
        std::fs::remove_file(target).expect("rm");
    });
    assert_harness_error(
        &o,
        &report,
        "went missing, which the subject did not remove",
    );
    let detail = report["harness_errors"][0]["detail"]
        .as_str()
        .unwrap_or_default();
    assert!(
        detail.contains("<sandbox>/work/checkpoints/step="),
        "{detail}"
    );
    site.assert_tmp_empty();
}

#[test]
fn a_sandbox_removed_from_outside_during_an_untraced_run_is_a_harness_error() {
    need_tracing();
    let site = Site::new();
    let (o, report) = disturbed_case(
        &site,
        &["--crash", "syscall:8", "--no-trace-resume"],
        |cwd, _| {
            // Someone else removes the whole sandbox (its root holds `work`).
            let sandbox = cwd.parent().expect("sandbox root");
            std::fs::remove_dir_all(sandbox).expect("rm");
        },
    );
    assert_harness_error(
        &o,
        &report,
        "is gone, which the subject has no business removing",
    );
    site.assert_tmp_empty();
}
