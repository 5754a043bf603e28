//! The harness's peak memory against the number of cases: `crashpoint run`
//! on one generated scenario (the simulated trainer saving every step, all
//! seven layouts) with 100, 1,000 and 10,000 cases, each in a process of
//! its own, its peak resident set size read from `wait4` (the harness and
//! the subjects it waited for; the subjects are far smaller). The figure to
//! watch is the ratio of the largest campaign's peak to the smallest's
//! (flat: close to 1) and the peak itself (goal: at most 50 MiB).
//!
//! Run with `cargo bench --bench memory` (several minutes: the 10,000-case
//! campaign is real); `-- --quick` stops at 1,000 cases.

mod common;
use common::exe;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Seven layouts of a 100-step run saving every step and keeping the best
/// three: over 1,500 op points each, so `points` per layout reaches 10,000
/// cases in all.
fn scenario(dir: &Path, per_layout: usize) -> PathBuf {
    let path = dir.join(format!("memory-{per_layout}.toml"));
    let text = format!(
        "description = \"memory: {per_layout} crash points per layout\"\n\
         max_steps = 100\n\n[trainer]\nevery_n_steps = 1\nsave_top_k = 3\nmonitor = \"min\"\n\n[crash]\npoints = {per_layout}\n"
    );
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// Runs the campaign; returns (cases, peak RSS in KiB, seconds).
fn measure(file: &Path, work: &Path) -> (u64, i64, f64) {
    use std::os::unix::process::CommandExt;
    let json = work.join("report.json");
    let start = Instant::now();
    let mut child = Command::new(exe())
        .args(["run", "-q", "--jobs", "2", "--json"])
        .arg(&json)
        .arg(file)
        .env("TMPDIR", work)
        .stdout(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .expect("crashpoint starts");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: wait4 writes the status and the rusage of the child, whose
    // pid is ours; both pointers are valid for writes.
    let rc = unsafe { libc::wait4(pid.as_raw(), &mut status, 0, usage.as_mut_ptr()) };
    assert_eq!(rc, pid.as_raw(), "wait4");
    // SAFETY: wait4 succeeded, so it filled the rusage in.
    let usage = unsafe { usage.assume_init() };
    let secs = start.elapsed().as_secs_f64();
    let _ = child.try_wait();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the campaign failed (status {status})"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("json");
    let cases = report["cases"].as_u64().unwrap_or(0);
    (cases, usage.ru_maxrss, secs)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // Sandboxes on a tmpfs, as `certify` puts them by default.
    let shm = Path::new("/dev/shm");
    let work = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("tempdir");
    let sizes: &[usize] = if quick {
        &[100, 1_000]
    } else {
        &[100, 1_000, 10_000]
    };
    let mut rows = Vec::new();
    for &total in sizes {
        let file = scenario(work.path(), total.div_ceil(7));
        let (cases, kib, secs) = measure(&file, work.path());
        eprintln!(
            "memory/{total}: {cases} cases, peak RSS {:.1} MiB, {secs:.0} s",
            kib as f64 / 1024.0
        );
        assert!(
            cases as usize >= total,
            "memory/{total}: only {cases} cases: the scenario offers too few points"
        );
        rows.push((total, cases, kib));
    }
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return;
    };
    eprintln!(
        "peak RSS, {} cases against {}: {:.2}x ({:.1} MiB against {:.1} MiB; goal: flat, at most 50 MiB)",
        last.1,
        first.1,
        last.2 as f64 / first.2.max(1) as f64,
        last.2 as f64 / 1024.0,
        first.2 as f64 / 1024.0
    );
}
