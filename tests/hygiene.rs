//! Whatever a subject does, and whatever a user types, crashpoint leaves the
//! machine as it found it and says exactly what went wrong: no process of a
//! subject outlives it (workers that ignore SIGTERM, daemons that `setsid`),
//! nothing outside a sandbox is touched (links to `/` or to a user's files
//! lose nothing), every sandbox is removed (after SIGINT or SIGTERM too, and
//! by the next run after a SIGKILL), and every mistake gets its own message
//! and exit status 2. The hostile subject is `tests/fixtures/hostile.py`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

mod common;
use common::{root, text};

const FIXTURE: &str = "tests/fixtures/hostile.py";

/// A test's own corner of the machine: the TMPDIR crashpoint gets, a
/// directory the subject links to (a stand-in for the user's home), one it
/// writes into from outside its sandbox, and the marker every process of
/// the subject carries in its environment.
struct Site {
    dir: tempfile::TempDir,
    marker: String,
}

impl Site {
    fn new(name: &str) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["tmp", "victim", "outside"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("victim/precious"), "keep me\n").unwrap();
        std::fs::create_dir(dir.path().join("victim/sub")).unwrap();
        std::fs::write(dir.path().join("victim/sub/more"), "and me\n").unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let marker = format!("{name}-{}-{nanos}", std::process::id());
        Site { dir, marker }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `crashpoint ARGS`, with TMPDIR, the marker and the fixture's
    /// directories in its environment.
    fn crashpoint(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_crashpoint"));
        c.current_dir(root())
            .args(args)
            .env("TMPDIR", self.path("tmp"))
            .env("CRASHPOINT_HOSTILE_MARKER", &self.marker)
            .env("CRASHPOINT_HOSTILE_VICTIM", self.path("victim"))
            .env("CRASHPOINT_HOSTILE_OUTSIDE", self.path("outside"));
        c
    }

    /// `crashpoint certify FLAGS -- python3 hostile.py MODE`.
    fn certify(&self, flags: &[&str], mode: &str) -> Command {
        let mut args = vec!["certify"];
        args.extend_from_slice(flags);
        args.extend(["--", "python3", FIXTURE, mode]);
        self.crashpoint(&args)
    }

    /// Live processes that carry this site's marker.
    fn processes(&self) -> Vec<i32> {
        let needle = format!("CRASHPOINT_HOSTILE_MARKER={}", self.marker).into_bytes();
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if let Ok(env) = std::fs::read(e.path().join("environ")) {
                if env.split(|&b| b == 0).any(|v| v == needle.as_slice()) {
                    out.push(pid);
                }
            }
        }
        out
    }

    /// Are the subject's worker and daemon running?
    fn sleepers_running(&self) -> bool {
        let cmdlines: Vec<String> = self
            .processes()
            .iter()
            .filter_map(|p| std::fs::read(format!("/proc/{p}/cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .collect();
        ["hostile.py worker", "hostile.py daemon"]
            .iter()
            .all(|role| cmdlines.iter().any(|c| c.contains(role)))
    }

    /// Asserts that no process of the subject is left.
    fn assert_no_process_left(&self, what: &str) {
        let left = self.processes();
        assert!(
            left.is_empty(),
            "{what}: processes of the subject left behind: {}",
            describe(&left)
        );
    }

    /// Asserts that crashpoint removed every sandbox: its TMPDIR is empty.
    fn assert_tmp_empty(&self, what: &str) {
        let left: Vec<_> = std::fs::read_dir(self.path("tmp"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "{what}: left in TMPDIR: {left:?}");
    }

    /// Asserts that the directory the subject linked to is as it was.
    fn assert_victim_intact(&self, what: &str) {
        assert_eq!(
            tree(&self.path("victim")),
            BTreeMap::from([
                ("precious".to_string(), "keep me\n".to_string()),
                ("sub/".to_string(), String::new()),
                ("sub/more".to_string(), "and me\n".to_string()),
            ]),
            "{what}: the directory the subject linked to changed"
        );
    }
}

impl Drop for Site {
    /// A failed test leaves no process behind either.
    fn drop(&mut self) {
        for p in self.processes() {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
    }
}

/// Every file under `dir` with its content (directories end in `/`).
fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let rel = e.path().strip_prefix(base).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                out.insert(format!("{rel}/"), String::new());
                walk(base, &e.path(), out);
            } else {
                out.insert(rel, std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

fn describe(pids: &[i32]) -> String {
    pids.iter()
        .map(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default();
            format!("{p} ({})", cmd.trim())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `limit`.
fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tracing() -> bool {
    crashpoint::trace::tracing_available()
}

/// Paths matching `<TMPDIR>/crashpoint-*/<layout>/<entry>`.
fn sandboxes(site: &Site, layout: &str) -> Vec<String> {
    let mut out = Vec::new();
    for ws in std::fs::read_dir(site.path("tmp")).unwrap().flatten() {
        if let Ok(read) = std::fs::read_dir(ws.path().join(layout)) {
            out.extend(
                read.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
    }
    out
}

#[test]
fn a_hostile_subject_leaves_nothing_behind() {
    // Both runners: traced (system-call mode, which also sees the write
    // outside the sandbox) and plain (time mode).
    // And warm starts (`--preload`): its resume runs are forks of a
    // server that imported a module once.
    let mut modes = vec!["time"];
    if tracing() {
        modes.extend(["syscall", "warm"]);
    }
    for name in modes {
        let (mode, warm) = match name {
            "warm" => ("syscall", true),
            m => (m, false),
        };
        let site = Site::new("hostile");
        let json = site.path("report.json");
        let mut flags = vec![
            "--layouts",
            "relative,symlinked-dir",
            "--mode",
            mode,
            "--max-steps",
            "3",
            "--cases",
            "3",
            "--json",
            json.to_str().unwrap(),
        ];
        if warm {
            flags.extend(["--preload", "json"]);
        }
        let o = site.certify(&flags, "hostile").output().unwrap();
        let mode = name;
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{mode}: {t}");
        // The link to `/` is reported, and cost nothing.
        assert!(t.contains("escaped-dir"), "{mode}: {t}");
        assert!(t.contains("escape -> / resolves outside"), "{mode}: {t}");
        site.assert_no_process_left(mode);
        site.assert_tmp_empty(mode);
        site.assert_victim_intact(mode);
        // HOME and TMPDIR were inside the sandbox.
        let written = std::fs::read_to_string(site.path("outside/written")).unwrap();
        let tmp = site.path("tmp").display().to_string();
        for var in ["HOME", "TMPDIR"] {
            let line = written
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{var}=")))
                .unwrap_or_default();
            assert!(
                line.starts_with(&format!("{tmp}/crashpoint-")) && line.contains("/sandbox/"),
                "{mode}: {var}={line} is not inside a sandbox"
            );
        }
        // Only the deliberate write happened in the test's directory (and
        // the reports asked for: the JSON and its JSON Lines stream).
        let mut names: Vec<_> = std::fs::read_dir(site.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["outside", "report.json", "report.jsonl", "tmp", "victim"],
            "{mode}"
        );
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let warnings = report["warnings"].to_string();
        let outside = site.path("outside/written").display().to_string();
        if mode != "time" {
            // Reported as a warning, in the table's notes and the JSON.
            assert!(
                t.contains(&format!("wrote-outside: {outside}")),
                "{mode}: {t}"
            );
            assert!(
                warnings.contains(&format!("wrote-outside: {outside}")),
                "{warnings}"
            );
            assert!(
                !report["failures"].to_string().contains("wrote-outside"),
                "without --strict a write outside is a warning: {report}"
            );
        }
    }
}

#[test]
fn strict_makes_a_write_outside_a_failure() {
    if !tracing() {
        eprintln!("system-call tracing is refused here: wrote-outside cannot be seen");
        return;
    }
    let site = Site::new("strict");
    let json = site.path("report.json");
    let o = site
        .certify(
            &[
                "--layouts",
                "relative",
                "--max-steps",
                "2",
                "--cases",
                "1",
                "--strict",
                "--json",
                json.to_str().unwrap(),
            ],
            "hostile",
        )
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let outside = site.path("outside/written").display().to_string();
    let failure = report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "wrote-outside")
        .unwrap_or_else(|| panic!("no wrote-outside failure: {report}"));
    assert!(
        failure["detail"].as_str().unwrap().contains(&outside),
        "{failure}"
    );
    assert!(
        failure["replay"].as_str().unwrap().contains("--strict"),
        "{failure}"
    );
    assert!(t.contains("wrote-outside"), "{t}");
    site.assert_no_process_left("--strict");
    site.assert_tmp_empty("--strict");
}

/// Starts `crashpoint certify` on the slow hostile subject.
fn start_slow(site: &Site, cases: &str, mode: &str) -> Child {
    site.certify(
        &[
            "--mode",
            mode,
            "--layouts",
            "relative",
            "--max-steps",
            "3",
            "--cases",
            cases,
            "--jobs",
            "2",
        ],
        "slow",
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap()
}

#[test]
fn sigint_in_the_middle_of_a_run_stops_cleanly_with_a_partial_table() {
    let site = Site::new("sigint");
    let child = start_slow(&site, "12", if tracing() { "syscall" } else { "time" });
    cases_under_way(&site);
    let t = interrupt(&site, child, Signal::SIGINT, 130);
    assert!(
        t.contains("layout    fault  census  points  sites  cases"),
        "{t}"
    );
    let row = t
        .lines()
        .find(|l| l.starts_with("relative "))
        .unwrap_or_else(|| panic!("no row for the layout: {t}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols.get(1), Some(&"kill"), "{row}");
    let cases: usize = cols[5].parse().unwrap();
    assert!((1..15).contains(&cases), "{row}");
    assert!(t.contains("INTERRUPTED, NOT certified"), "{t}");
    assert!(t.contains("interrupted by SIGINT"), "{t}");
    site.assert_victim_intact("after SIGINT");
}

#[test]
fn sigint_during_warm_started_runs_leaves_nothing_behind() {
    if !tracing() {
        eprintln!("system-call tracing is refused here: --preload needs syscall mode");
        return;
    }
    let site = Site::new("sigint-warm");
    let child = site
        .certify(
            &[
                "--layouts",
                "relative",
                "--max-steps",
                "3",
                "--cases",
                "12",
                "--jobs",
                "2",
                "--preload",
                "json",
            ],
            "slow",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    cases_under_way(&site);
    let t = interrupt(&site, child, Signal::SIGINT, 130);
    assert!(t.contains("interrupted by SIGINT"), "{t}");
    site.assert_victim_intact("after SIGINT");
}

/// Waits until the reference is done and a case has finished (its
/// successors' sandboxes exist: two workers take case-000000 and
/// case-000001 first), and a case's subject is running right now, with its
/// worker and daemon.
fn cases_under_way(site: &Site) {
    wait_until(Duration::from_secs(60), "a third case to start", || {
        sandboxes(site, "relative")
            .iter()
            .any(|n| n == "case-000002" || n == "case-000003")
    });
    wait_until(
        Duration::from_secs(30),
        "the subject's worker and daemon",
        || site.sleepers_running(),
    );
}

/// Sends `sig` to a running crashpoint, waits for it, and checks its exit
/// status and that nothing of its subjects or sandboxes is left. Returns
/// everything it printed.
fn interrupt(site: &Site, child: std::process::Child, sig: Signal, code: i32) -> String {
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
    let o = child.wait_with_output().unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(code), "{t}");
    let when = format!("after {sig:?}");
    site.assert_no_process_left(&when);
    site.assert_tmp_empty(&when);
    t
}

#[test]
fn sigterm_during_the_reference_exits_143_and_cleans_up() {
    let site = Site::new("sigterm");
    let child = start_slow(&site, "4", "time");
    wait_until(
        Duration::from_secs(30),
        "the reference run's processes",
        || site.sleepers_running(),
    );
    let t = interrupt(&site, child, Signal::SIGTERM, 143);
    assert!(t.contains("interrupted by SIGTERM"), "{t}");
    assert!(t.contains("0 cases"), "{t}");
}

#[test]
fn after_a_sigkill_the_subject_dies_and_the_next_run_cleans_up() {
    let site = Site::new("sigkill");
    // Plain runs: a traced subject would die with its tracer entirely.
    let mut child = start_slow(&site, "4", "time");
    let harness = child.id() as i32;
    // The subject's first process is a child of the harness.
    // The subject's first process: a child of the harness that leads its
    // own process group (the daemon, re-parented to the harness, does not).
    let leaders = || -> Vec<i32> {
        site.processes()
            .into_iter()
            .filter(|&p| {
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                    return false;
                };
                let rest = &stat[stat.rfind(')').unwrap_or(0) + 1..];
                let f: Vec<&str> = rest.split_whitespace().collect();
                f.get(1) == Some(&harness.to_string().as_str())
                    && f.get(2) == Some(&p.to_string().as_str())
            })
            .collect()
    };
    let mut first = Vec::new();
    wait_until(
        Duration::from_secs(30),
        "the subject and its daemon",
        || {
            first = leaders();
            !first.is_empty() && site.sleepers_running()
        },
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The parent-death signal takes the subject's first process with it.
    wait_until(Duration::from_secs(10), "the subject to die", || {
        first
            .iter()
            .all(|p| std::fs::read(format!("/proc/{p}/environ")).map_or(true, |e| e.is_empty()))
    });
    // Its worker and daemon outlived the harness, and so did its workspace.
    assert!(!site.processes().is_empty());
    assert!(std::fs::read_dir(site.path("tmp"))
        .unwrap()
        .next()
        .is_some());
    // The next run removes the dead run's workspace and kills what is
    // tagged as its runs'.
    let scenario = site.path("tiny.toml");
    std::fs::write(&scenario, "layouts = [\"relative\"]\nmax_steps = 5\n").unwrap();
    let o = site
        .crashpoint(&["run", scenario.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !site.processes().is_empty() {
        // Say which processes were left, with their parent and state, so a
        // failure here can be told from a slow exit.
        assert!(
            Instant::now() < deadline,
            "the dead run's leftovers are still alive: {}",
            site.processes()
                .iter()
                .map(|&p| {
                    let stat =
                        std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
                    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
                    format!(
                        "{} [state, ppid, pgid: {}]",
                        describe(&[p]),
                        rest.split_whitespace()
                            .take(3)
                            .collect::<Vec<_>>()
                            .join(" ")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    site.assert_tmp_empty("after the next run");
}

#[test]
fn a_workspace_without_the_marker_or_with_a_live_owner_is_kept() {
    let site = Site::new("stale");
    let tmp = site.path("tmp");
    // Not crashpoint's: no marker.
    std::fs::create_dir(tmp.join("crashpoint-unmarked")).unwrap();
    std::fs::write(tmp.join("crashpoint-unmarked/data"), "x").unwrap();
    // Marked by a live process (this test).
    std::fs::create_dir(tmp.join("crashpoint-live")).unwrap();
    std::fs::write(
        tmp.join("crashpoint-live/.crashpoint-workspace"),
        std::process::id().to_string(),
    )
    .unwrap();
    // Marked by a dead process, with a link out that must not be followed.
    let dead = tmp.join("crashpoint-dead");
    std::fs::create_dir(&dead).unwrap();
    std::fs::write(dead.join(".crashpoint-workspace"), "2147483646 1").unwrap();
    std::fs::write(dead.join(".crashpoint-lock"), "").unwrap();
    std::os::unix::fs::symlink(site.path("victim"), dead.join("victim")).unwrap();
    std::os::unix::fs::symlink("/", dead.join("root")).unwrap();
    // A link named like a workspace, to a marked dead directory elsewhere.
    let elsewhere = site.path("outside/crashpoint-x");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join(".crashpoint-workspace"), "2147483646 1").unwrap();
    std::fs::write(elsewhere.join(".crashpoint-lock"), "").unwrap();
    std::os::unix::fs::symlink(&elsewhere, tmp.join("crashpoint-link")).unwrap();
    // Marked by a dead process but without a lock file (an earlier version's,
    // or an owner that could not lock): nothing proves its owner gone.
    std::fs::create_dir(tmp.join("crashpoint-unlocked")).unwrap();
    std::fs::write(
        tmp.join("crashpoint-unlocked/.crashpoint-workspace"),
        "2147483646 1",
    )
    .unwrap();
    // Its lock file is a link to a lock nobody holds: not followed.
    let lockless = tmp.join("crashpoint-linked-lock");
    std::fs::create_dir(&lockless).unwrap();
    std::fs::write(lockless.join(".crashpoint-workspace"), "2147483646 1").unwrap();
    std::os::unix::fs::symlink(
        elsewhere.join(".crashpoint-lock"),
        lockless.join(".crashpoint-lock"),
    )
    .unwrap();
    crashpoint::workspace::remove_stale(&tmp);
    let mut left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "crashpoint-link",
            "crashpoint-linked-lock",
            "crashpoint-live",
            "crashpoint-unlocked",
            "crashpoint-unmarked"
        ]
    );
    assert!(elsewhere.join(".crashpoint-workspace").exists());
    site.assert_victim_intact("remove_stale");
}

#[test]
fn removing_a_tree_never_follows_links_and_undoes_unwritable_directories() {
    let site = Site::new("tree");
    let t = site.path("tmp/tree");
    std::fs::create_dir_all(t.join("locked/inner")).unwrap();
    std::fs::write(t.join("locked/inner/f"), "x").unwrap();
    std::os::unix::fs::symlink(site.path("victim"), t.join("victim")).unwrap();
    std::os::unix::fs::symlink(site.path("victim"), t.join("locked/victim")).unwrap();
    std::os::unix::fs::symlink("/", t.join("root")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let locked = std::fs::Permissions::from_mode(0o500);
    std::fs::set_permissions(t.join("locked/inner"), locked.clone()).unwrap();
    std::fs::set_permissions(t.join("locked"), locked).unwrap();
    crashpoint::workspace::remove_tree(&t).unwrap();
    assert!(!t.exists());
    site.assert_victim_intact("remove_tree");
}

// ---------------------------------------------------------------------------
// Bad input: one message per mistake, exit status 2, nothing run.
// ---------------------------------------------------------------------------

/// Runs crashpoint and asserts exit status 2, the message, and that no case
/// ran (no table) and no sandbox was left.
fn refused(site: &Site, mut cmd: Command, want: &[&str]) -> String {
    let o = cmd.output().unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "want {want:?}, got:\n{t}");
    for w in want {
        assert!(t.contains(w), "want {w:?} in:\n{t}");
    }
    assert!(!t.contains("census  points"), "nothing may run:\n{t}");
    site.assert_tmp_empty(want[0]);
    site.assert_no_process_left(want[0]);
    t
}

#[test]
fn bad_scenarios_and_names_are_refused() {
    let site = Site::new("names");
    refused(
        &site,
        site.crashpoint(&["run", "tests/fixtures/bad-field.toml"]),
        &["error: tests/fixtures/bad-field.toml:6:1: field `crash.crashs`: unknown field `crashs`"],
    );
    refused(
        &site,
        site.crashpoint(&["certify", "--layouts", "diagonal", "--", "true"]),
        &["unknown layout `diagonal`; valid layouts: relative, absolute"],
    );
    refused(
        &site,
        site.crashpoint(&["run", "--mutant", "gremlin"]),
        &["unknown mutant `gremlin`; valid mutants:"],
    );
}

#[test]
fn commands_that_cannot_run_each_get_their_own_message() {
    let site = Site::new("commands");
    let dir = site.path("outside");
    let plain = dir.join("plain.py");
    std::fs::write(&plain, "print('hi')\n").unwrap();
    let interp = dir.join("interp.sh");
    std::fs::write(&interp, "#!/no/such/interpreter -x\necho hi\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&interp, std::fs::Permissions::from_mode(0o755)).unwrap();
    let certify =
        |program: &str| site.crashpoint(&["certify", "--layouts", "relative", "--", program]);
    refused(
        &site,
        certify("crashpoint-no-such-program"),
        &["error: command not found: crashpoint-no-such-program (not in any directory of PATH)"],
    );
    refused(
        &site,
        certify("./no/such/trainer.py"),
        &["error: command not found: ./no/such/trainer.py (no such file)"],
    );
    refused(
        &site,
        certify(dir.to_str().unwrap()),
        &[&format!(
            "error: command is a directory, not a program: {}",
            dir.display()
        )],
    );
    refused(
        &site,
        certify(plain.to_str().unwrap()),
        &[
            &format!(
                "error: command is not executable (no execute permission): {}",
                plain.display()
            ),
            "chmod +x",
        ],
    );
    refused(
        &site,
        certify(interp.to_str().unwrap()),
        &[&format!(
            "error: cannot start {}: its interpreter /no/such/interpreter (on its #! line) does not exist",
            interp.display()
        )],
    );
}

#[test]
fn flags_out_of_range_and_wrong_flags_are_refused() {
    let site = Site::new("flags");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--max-steps", "0"],
            "invalid value '0' for '--max-steps <MAX_STEPS>': 0 is not in 1..",
        ),
        (
            &["--jobs", "0"],
            "invalid value '0' for '--jobs <JOBS>': 0 is not in 1..=1024",
        ),
        (
            &["--crashes", "17"],
            "invalid value '17' for '--crashes <CRASHES>': 17 is not in 1..=16",
        ),
        (
            &["--timeout", "0"],
            "invalid value '0' for '--timeout <TIMEOUT>': 0 is not in 1..",
        ),
        (&["--cases", "-3"], "unexpected argument '-3' found"),
        (
            &["--mode", "op"],
            "`op` is not a mode for certify (syscall or time)",
        ),
        (
            &["--fault", "power"],
            "--fault: unknown fault model `power`: expected `kill` or `power-loss`",
        ),
        (
            &["--fault", "power-loss", "--mode", "time"],
            "--fault power-loss needs --mode syscall",
        ),
        (&["--states", "2"], "--states goes with --fault power-loss"),
        (&["--crash", "syscall:x"], "--crash: "),
        (
            &["--frobnicate"],
            "unexpected argument '--frobnicate' found",
        ),
    ];
    for (flags, want) in cases {
        let mut args = vec!["certify"];
        args.extend_from_slice(flags);
        args.extend(["--", "true"]);
        refused(&site, site.crashpoint(&args), &[want]);
    }
    refused(
        &site,
        site.crashpoint(&["certify", "--layouts", "relative"]),
        &["the following required arguments were not provided"],
    );
    let missing = site.path("no/such/dir/report.json");
    refused(
        &site,
        site.crashpoint(&["certify", "--json", missing.to_str().unwrap(), "--", "true"]),
        &[&format!(
            "error: --json {}: its directory does not exist",
            missing.display()
        )],
    );
}

#[test]
fn misbehaving_subjects_are_each_named_and_refused() {
    let site = Site::new("subjects");
    let flags = [
        "--layouts",
        "relative",
        "--max-steps",
        "3",
        "--timeout",
        "20",
    ];
    let mut cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "no-state",
            vec!["exited 0 but wrote no state file to CRASHPOINT_STATE_OUT"],
        ),
        (
            "bad-json",
            vec!["state file is not valid protocol JSON: key must be a string"],
        ),
        (
            "empty",
            vec!["state file is not valid protocol JSON: the file is empty"],
        ),
        (
            "fifo",
            vec!["CRASHPOINT_STATE_OUT is not a regular file but a FIFO"],
        ),
        (
            "early",
            vec!["exited 0 at step 2 before CRASHPOINT_MAX_STEPS=3"],
        ),
        (
            "enospc",
            vec![
                "failed: exited 1; stderr:",
                "No space left on device",
                "hint: a disk is full (ENOSPC). The sandboxes live under TMPDIR=",
            ],
        ),
        ("hang", vec!["failed: timed out after 1."]),
        (
            "nondet",
            vec!["nondeterministic: two uninterrupted runs in layout relative disagree: digest"],
        ),
    ];
    if tracing() {
        cases.push((
            "no-writes",
            vec!["made no file-mutating system call in the sandbox (is CRASHPOINT_CKPT_DIR used?)"],
        ));
    }
    for (mode, want) in cases {
        let mut flags = flags.to_vec();
        if mode == "hang" {
            flags[5] = "1";
        }
        let t = refused(&site, site.certify(&flags, mode), &want);
        assert!(
            t.contains("error: the uninterrupted reference run in layout relative failed")
                || t.contains("error: nondeterministic"),
            "{mode}: {t}"
        );
    }
}

#[test]
fn fifty_megabytes_of_stderr_are_kept_bounded_and_the_tail_shown() {
    let site = Site::new("noisy");
    let start = Instant::now();
    let t = refused(
        &site,
        site.certify(&["--layouts", "relative", "--max-steps", "2"], "noisy"),
        &[
            "exited 1; stderr:",
            "hostile.py: the last line of 50 MB of stderr",
        ],
    );
    // The message holds the tail, not the 50 MB.
    assert!(t.len() < 4 * 1024, "{} bytes of output", t.len());
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_subject_that_never_saves_fails_with_no_checkpoint_in_time_mode() {
    let site = Site::new("nosave");
    let o = site
        .certify(
            &[
                "--layouts",
                "relative",
                "--max-steps",
                "2",
                "--mode",
                "time",
                "--cases",
                "1",
            ],
            "no-writes",
        )
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("no-checkpoint") && t.contains("wrote no checkpoint: nothing survives a crash"),
        "{t}"
    );
    site.assert_no_process_left("no-writes");
    site.assert_tmp_empty("no-writes");
}
