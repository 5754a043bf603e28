//! The simulated trainer's warm starts (`crashpoint sim-server`): a run
//! forked from the server leaves exactly what a cold `crashpoint sim`
//! process leaves (files, events, state, exit status, stderr), a run past
//! its limit times out, and a server ends with the thread that started it,
//! leaving no process behind.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crashpoint::layout::{Layout, Sandbox};
use crashpoint::observe::HarnessFiles;
use crashpoint::protocol;
use crashpoint::runner::{self, Exit, RunRequest, Subject};

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_crashpoint"))
}

fn subject(args: &[&str]) -> Subject {
    Subject {
        program: exe().into(),
        args: std::iter::once("sim")
            .chain(args.iter().copied())
            .map(Into::into)
            .collect(),
        sim: true,
        preload: Vec::new(),
    }
}

/// A case directory: `sandbox/` of the layout and `harness/`.
struct Case {
    _dir: tempfile::TempDir,
    sandbox: Sandbox,
    files: HarnessFiles,
}

fn case(layout: Layout) -> Case {
    let dir = tempfile::tempdir().expect("tempdir");
    let sb = dir.path().join("sandbox");
    let h = dir.path().join("harness");
    std::fs::create_dir_all(&sb).expect("mkdir");
    std::fs::create_dir_all(&h).expect("mkdir");
    Case {
        sandbox: Sandbox::create(layout, &sb).expect("sandbox"),
        files: HarnessFiles::in_dir(&h),
        _dir: dir,
    }
}

/// Every file under `dir` with its bytes (links as their targets).
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).expect("inside").display().to_string();
            let ft = e.file_type().expect("type");
            if ft.is_symlink() {
                let t = std::fs::read_link(&p).expect("link");
                out.insert(rel, format!("-> {}", t.display()).into_bytes());
            } else if ft.is_dir() {
                out.insert(rel + "/", Vec::new());
                todo.push(p);
            } else {
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

/// A run of `subject` in `c` through the runner (the warm path).
fn warm(c: &Case, s: &Subject, resume: Option<String>, timeout: Duration) -> runner::RunResult {
    let place = c.sandbox.place();
    let req = RunRequest {
        place: &place,
        sandbox: c.sandbox.root(),
        max_steps: 12,
        seed: 3,
        resume,
        state_out: &c.files.state,
        events: &c.files.events,
        crash: None,
        op_log: None,
        traced: false,
        power: false,
        timeout,
    };
    runner::run(s, &req).expect("the run is made")
}

/// The same run as a cold `crashpoint sim` process: its exit code and stderr.
fn cold(c: &Case, args: &[&str], resume: Option<String>) -> (Option<i32>, String) {
    let place = c.sandbox.place();
    let mut cmd = Command::new(exe());
    cmd.arg("sim")
        .args(args)
        .current_dir(&place.cwd)
        .env_clear()
        .env("PWD", &place.pwd)
        .env("HOME", c.sandbox.root().join("home"))
        .env("TMPDIR", c.sandbox.root().join("tmp"))
        .env(protocol::PROTOCOL, "1")
        .env(protocol::CKPT_DIR, &place.ckpt_dir)
        .env(protocol::MAX_STEPS, "12")
        .env(protocol::SEED, "3")
        .env(protocol::STATE_OUT, &c.files.state)
        .env(protocol::EVENTS, &c.files.events)
        .stdin(Stdio::null());
    if let Some(r) = resume {
        cmd.env(protocol::RESUME, r);
    }
    let out = cmd.output().expect("crashpoint sim starts");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What a case directory holds after its runs: the sandbox's tree, the
/// state file, the events file (paths inside the case made relative).
fn left(c: &Case) -> (BTreeMap<String, Vec<u8>>, String, String) {
    let root = c.sandbox.root().display().to_string();
    let plain = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .replace(&root, "<sandbox>")
    };
    (
        tree(c.sandbox.root()),
        plain(&c.files.state),
        plain(&c.files.events),
    )
}

#[test]
fn a_run_forked_from_the_server_leaves_what_a_cold_process_leaves() {
    let resume_arg = |c: &Case| Path::new(&c.sandbox.place().ckpt_dir).join("last.ckpt");
    for (layout, args) in [
        (Layout::Relative, &[][..]),
        (Layout::Nested, &["--mutant", "no-rng-state"][..]),
        (Layout::SymlinkedDir, &["--save-last", "copy"][..]),
    ] {
        let (w, c) = (case(layout), case(layout));
        let s = subject(args);
        // A fresh run, then a resume from what it left.
        let first = warm(&w, &s, None, Duration::from_secs(60));
        assert_eq!(
            first.exit,
            Exit::Code(0),
            "{layout:?}: {}",
            first.stderr_tail
        );
        assert_eq!(cold(&c, args, None).0, Some(0));
        let (rw, rc) = (resume_arg(&w), resume_arg(&c));
        let again = warm(
            &w,
            &s,
            Some(rw.display().to_string()),
            Duration::from_secs(60),
        );
        assert_eq!(
            again.exit,
            Exit::Code(0),
            "{layout:?}: {}",
            again.stderr_tail
        );
        assert_eq!(cold(&c, args, Some(rc.display().to_string())).0, Some(0));
        let (tw, sw, ew) = left(&w);
        let (tc, sc, ec) = left(&c);
        assert!(tw.len() > 2, "{layout:?}: {:?}", tw.keys());
        assert_eq!(tw, tc, "{layout:?}: the trees differ");
        assert!(sw.contains("digest") || !sw.is_empty(), "{sw}");
        assert_eq!(sw, sc, "{layout:?}: the state files differ");
        assert_eq!(ew, ec, "{layout:?}: the events differ");
    }
}

#[test]
fn a_failing_run_exits_and_says_what_a_cold_one_says() {
    let (w, c) = (case(Layout::Relative), case(Layout::Relative));
    // A resume path that does not exist: the trainer's own error.
    let missing = Some("no/such/last.ckpt".to_string());
    let r = warm(&w, &subject(&[]), missing.clone(), Duration::from_secs(60));
    let (code, stderr) = cold(&c, &[], missing);
    assert_eq!(
        r.exit,
        Exit::Code(code.expect("exited")),
        "{}",
        r.stderr_tail
    );
    assert_ne!(r.exit, Exit::Code(0));
    assert_eq!(r.stderr_tail.trim(), stderr.trim());
    assert!(!stderr.trim().is_empty());
    // Settings the trainer refuses, and an unknown flag.
    for args in [
        &["--pointer", "latest", "--save-last", "copy"][..],
        &["--no-such-flag"],
    ] {
        let r = warm(&w, &subject(args), None, Duration::from_secs(60));
        let (code, stderr) = cold(&c, args, None);
        assert_eq!(r.exit, Exit::Code(code.expect("exited")), "{args:?}");
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        let first = |s: &str| s.lines().next().unwrap_or("").to_string();
        assert_eq!(first(&r.stderr_tail), first(&stderr), "{args:?}");
    }
}

/// The children of the calling thread (not of the process: the other
/// tests' threads have servers of their own).
fn my_children() -> Vec<i32> {
    let tid = nix::unistd::gettid();
    std::fs::read_to_string(format!("/proc/self/task/{tid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn a_run_past_its_limit_times_out_and_the_server_ends_with_its_thread() {
    let server = std::thread::spawn(|| {
        let w = case(Layout::Relative);
        let r = warm(&w, &subject(&[]), None, Duration::from_micros(1));
        assert_eq!(r.exit, Exit::TimedOut, "{}", r.stderr_tail);
        // The server is still good for the next run.
        let w = case(Layout::Relative);
        let r = warm(&w, &subject(&[]), None, Duration::from_secs(60));
        assert_eq!(r.exit, Exit::Code(0), "{}", r.stderr_tail);
        // Its runs were reaped: the one child left is the server.
        let kids = my_children();
        assert_eq!(kids.len(), 1, "{kids:?}");
        let cmd = std::fs::read(format!("/proc/{}/cmdline", kids[0])).unwrap_or_default();
        assert!(
            cmd.split(|&b| b == 0).any(|w| w == b"sim-server"),
            "{}",
            String::from_utf8_lossy(&cmd)
        );
        kids[0]
    })
    .join()
    .expect("the thread ends");
    // Killed and reaped when its thread ended: not even a zombie is left.
    let gone = !Path::new(&format!("/proc/{server}")).exists();
    assert!(gone, "the server {server} outlived its thread");
}

#[test]
fn the_server_speaks_its_line_protocol_and_refuses_what_is_not_a_request() {
    let mut child = Command::new(exe())
        .arg("sim-server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server starts");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("a line");
    assert_eq!(line, "ready\n");
    let mut input = child.stdin.take().expect("stdin");
    writeln!(input, "{{\"argv\": [\"sim\"]}}").expect("written");
    line.clear();
    out.read_line(&mut line).expect("a line");
    assert!(line.starts_with("error "), "{line}");
    assert!(line.contains("missing field"), "{line}");
    let status = child.wait().expect("it ends");
    assert_eq!(status.code(), Some(1));
}
