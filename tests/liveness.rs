//! Runs that share a machine never touch each other: a live campaign's
//! workspace survives another crashpoint started in another PID namespace
//! that shares its TMPDIR (where the owner's pid means nothing), and two
//! campaigns at once in one TMPDIR report exactly what each reports alone.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::{root, text};

const FIXTURE: &str = "tests/fixtures/hostile.py";

/// `crashpoint ARGS` with `TMPDIR=tmp`, from the project directory.
fn crashpoint(tmp: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_crashpoint"));
    c.current_dir(root()).args(args).env("TMPDIR", tmp);
    c
}

/// The workspaces in `tmp`.
fn workspaces(tmp: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(tmp)
        .expect("tmp")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("crashpoint-"))
        })
        .collect();
    v.sort();
    v
}

/// Can this process start a process in a new PID namespace? `Err` says why not.
fn unshare_works() -> Result<(), String> {
    match Command::new("unshare")
        .args(["-pf", "--mount-proc", "true"])
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "`unshare -pf --mount-proc true` failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run unshare: {e}")),
    }
}

#[test]
fn a_live_campaign_survives_a_crashpoint_in_another_pid_namespace() {
    let site = tempfile::tempdir().expect("tempdir");
    let tmp = site.path().join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    let gate = site.path().join("gate");
    nix::unistd::mkfifo(&gate, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    // A: a campaign whose every run waits for one byte on the gate.
    let a = crashpoint(
        &tmp,
        &[
            "certify",
            "--mode",
            "time",
            "--layouts",
            "relative",
            "--max-steps",
            "2",
            "--cases",
            "1",
            "--jobs",
            "1",
            "--",
            "python3",
            FIXTURE,
            "gate",
        ],
    )
    .env("CRASHPOINT_HOSTILE_GATE", &gate)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start A");
    // Opening the gate for writing waits until A's first run opens it:
    // from then on A is live, mid-run, and its workspace exists.
    let mut writer = File::options().write(true).open(&gate).expect("gate");
    let live = workspaces(&tmp);
    assert_eq!(live.len(), 1, "{live:?}");
    let ws = live[0].clone();
    let scenario = site.path().join("tiny.toml");
    std::fs::write(&scenario, "layouts = [\"relative\"]\nmax_steps = 5\n").expect("scenario");
    let b_args = ["run", scenario.to_str().expect("utf-8"), "--jobs", "1"];
    // B: another crashpoint sharing the TMPDIR, which removes stale workspaces at start.
    let b = match unshare_works() {
        Ok(()) => {
            let mut c = Command::new("unshare");
            c.current_dir(root())
                .args(["-pf", "--mount-proc", env!("CARGO_BIN_EXE_crashpoint")])
                .args(b_args)
                .env("TMPDIR", &tmp);
            // In the new namespace A's pid does not exist, as B sees /proc.
            c.output().expect("run B in a new PID namespace")
        }
        Err(why) => {
            eprintln!(
                "a_live_campaign_survives_a_crashpoint_in_another_pid_namespace: no new PID \
                 namespace here ({why}); checking only that a live workspace whose marker names \
                 another PID namespace is kept because its owner holds its lock (its marker is \
                 rewritten to say so), with B in this namespace"
            );
            let marker = ws.join(crashpoint::workspace::MARKER);
            let text = std::fs::read_to_string(&marker).expect("marker");
            let foreign: String = text
                .lines()
                .map(|l| {
                    if l.starts_with("pid-namespace ") {
                        "pid-namespace pid:[1]".to_string()
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            std::fs::write(&marker, foreign + "\n").expect("marker");
            crashpoint(&tmp, &b_args).output().expect("run B")
        }
    };
    assert_eq!(b.status.code(), Some(0), "B: {}", text(&b));
    assert!(
        ws.join(crashpoint::workspace::MARKER).is_file(),
        "B removed A's live workspace"
    );
    // Let every run of A through, and wait for it.
    writer.write_all(&[b'.'; 256]).expect("open the gate");
    let out = a.wait_with_output().expect("A");
    drop(writer);
    let t = text(&out);
    // A ran to its end, nothing failed. (Its one time-mode kill may land
    // before anything is saved: then the verdict is inconclusive, exit 1.)
    assert!(matches!(out.status.code(), Some(0 | 1)), "A: {t}");
    assert!(
        t.contains("4 cases, fault model: kill: no failure in 1 of 1 kill times"),
        "{t}"
    );
    assert!(workspaces(&tmp).is_empty(), "{:?}", workspaces(&tmp));
}

#[test]
fn two_campaigns_in_one_tmpdir_report_what_each_reports_alone() {
    let site = tempfile::tempdir().expect("tempdir");
    let tmp = site.path().join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    let json = |name: &str| site.path().join(format!("{name}.json"));
    let args = |out: &Path| -> Vec<String> {
        [
            "run",
            "scenarios/relative.toml",
            "--layout",
            "relative",
            "--jobs",
            "1",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.display().to_string()])
        .collect()
    };
    let alone = crashpoint(&tmp, &[])
        .args(args(&json("alone")))
        .output()
        .expect("alone");
    assert_eq!(alone.status.code(), Some(0), "{}", text(&alone));
    let start = |name: &str| {
        crashpoint(&tmp, &[])
            .args(args(&json(name)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start")
    };
    let (x, y) = (start("x"), start("y"));
    for (name, child) in [("x", x), ("y", y)] {
        let o = child.wait_with_output().expect("wait");
        assert_eq!(o.status.code(), Some(0), "{name}: {}", text(&o));
    }
    let read = |name: &str| std::fs::read_to_string(json(name)).expect("report");
    let want = read("alone");
    assert!(want.contains("\"certified\": true"), "{want}");
    assert_eq!(read("x"), want);
    assert_eq!(read("y"), want);
    assert!(workspaces(&tmp).is_empty(), "{:?}", workspaces(&tmp));
}
