//! The tracer against real subjects (Python and shell scripts): the census,
//! kills at each call, processes and threads followed, paths resolved.

use super::*;
use nix::sys::signal::kill;
use std::fs::{self, File};
use std::io::Read;
use std::path::PathBuf;

mod processes;
use std::process::Stdio;
use tempfile::TempDir;

/// A fresh directory and its canonical path. Also makes the test process
/// a child subreaper, as the harness is, so that orphaned subject
/// processes are reaped by the tracer instead of by init, some time
/// later, and "no process is left" can be checked at once.
fn dir() -> (TempDir, PathBuf) {
    static SUBREAPER: OnceLock<()> = OnceLock::new();
    SUBREAPER.get_or_init(|| {
        nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    });
    let d = tempfile::tempdir().expect("tempdir");
    let p = fs::canonicalize(d.path()).expect("canonical tempdir");
    (d, p)
}

fn python(script: &str, args: &[&Path]) -> Command {
    let mut cmd = Command::new("python3");
    // -B: no .pyc writes; -I: no user site, no environment influence.
    cmd.args(["-B", "-I", "-c", script])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn sh(script: &str, args: &[&Path]) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script, "sh"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn config(sandbox: &Path) -> TraceConfig {
    TraceConfig {
        timeout: Some(Duration::from_secs(60)),
        ..TraceConfig::new(sandbox)
    }
}

/// Names and paths of a census, for comparisons.
fn shape(calls: &[CallRecord]) -> Vec<(&'static str, Vec<PathBuf>)> {
    calls.iter().map(|c| (c.name, c.paths.clone())).collect()
}

/// No task of the process group led by `pgid` is left.
fn assert_group_gone(pgid: i32) {
    assert_eq!(
        kill(Pid::from_raw(-pgid), None),
        Err(Errno::ESRCH),
        "process group {pgid} still has members"
    );
}

/// open-for-create, write, fsync, (stderr, exempt file), rename.
const SAVE: &str = r#"
import os, sys
d, exempt = sys.argv[1], sys.argv[2]
fd = os.open(os.path.join(d, "A.tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, b"hello")
os.fsync(fd)
os.close(fd)
sys.stderr.write("progress\n")
sys.stderr.flush()
with open(exempt, "a") as f:
    f.write("state\n")
os.rename(os.path.join(d, "A.tmp"), os.path.join(d, "B"))
"#;

fn is_open(name: &str) -> bool {
    matches!(name, "open" | "openat" | "openat2" | "creat")
}

fn is_rename(name: &str) -> bool {
    matches!(name, "rename" | "renameat" | "renameat2")
}

#[test]
fn tracing_is_available_here() {
    assert!(tracing_available());
}

#[test]
fn census_counts_exactly_the_sandbox_calls_in_order() {
    let (_s, sandbox) = dir();
    let (_e, elsewhere) = dir();
    let exempt = elsewhere.join("state.json");
    let mut cmd = python(SAVE, &[&sandbox, &exempt]);
    cmd.stderr(Stdio::piped());
    let mut cfg = config(&sandbox);
    cfg.exempt = vec![exempt.clone()];
    let mut reader = None;
    let out = run_traced_with(cmd, &cfg, |child| {
        let mut pipe = child.stderr.take().expect("piped stderr");
        reader = Some(std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        }));
    })
    .expect("traced run");
    let stderr = reader.expect("on_spawn ran").join().expect("reader");
    assert_eq!(out.exit, TraceExit::Exited(0), "stderr: {stderr}");
    assert_eq!(stderr, "progress\n");

    let a = sandbox.join("A.tmp");
    let b = sandbox.join("B");
    let calls = &out.calls;
    assert_eq!(calls.len(), 4, "{calls:#?}");
    assert!(is_open(calls[0].name), "{calls:#?}");
    assert_eq!(calls[1].name, "write");
    assert_eq!(calls[2].name, "fsync");
    assert!(is_rename(calls[3].name), "{calls:#?}");
    assert_eq!(
        calls.iter().map(|c| c.paths.clone()).collect::<Vec<_>>(),
        vec![
            vec![a.clone()],
            vec![a.clone()],
            vec![a],
            vec![sandbox.join("A.tmp"), b.clone()]
        ]
    );
    assert_eq!(
        calls.iter().map(|c| c.index).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    let pid = calls[0].pid;
    assert!(calls.iter().all(|c| c.pid == pid && c.tid == pid));
    // The exempt file was written, yet is neither counted nor outside.
    assert_eq!(fs::read_to_string(&exempt).unwrap(), "state\n");
    assert!(out.outside.is_empty(), "{:?}", out.outside);
    assert_eq!(fs::read(&b).unwrap(), b"hello");
    assert_group_gone(pid);
}

#[test]
fn stopping_at_each_call_kills_before_it_happens() {
    let (_s, sandbox) = dir();
    let (_e, elsewhere) = dir();
    let exempt = elsewhere.join("state.json");
    let mut cfg = config(&sandbox);
    cfg.exempt = vec![exempt.clone()];
    let full = run_traced(python(SAVE, &[&sandbox, &exempt]), &cfg).expect("census run");
    assert_eq!(full.exit, TraceExit::Exited(0));
    assert_eq!(full.calls.len(), 4);

    for k in 1..=4u64 {
        let (_s, sandbox) = dir();
        let exempt = elsewhere.join(format!("state-{k}.json"));
        let cfg = TraceConfig {
            stop_at: Some(k),
            exempt: vec![exempt.clone()],
            ..config(&sandbox)
        };
        let out = run_traced(python(SAVE, &[&sandbox, &exempt]), &cfg).expect("stopped run");
        assert_eq!(out.exit, TraceExit::KilledAtCall(k));
        assert_eq!(out.calls.len() as u64, k);
        let expected: Vec<_> = full.calls[..k as usize].iter().map(|c| c.name).collect();
        assert_eq!(
            out.calls.iter().map(|c| c.name).collect::<Vec<_>>(),
            expected
        );
        let tmp = sandbox.join("A.tmp");
        let fin = sandbox.join("B");
        match k {
            // Killed at the open-for-create: no file at all.
            1 => assert!(!tmp.exists() && !fin.exists()),
            // At the write: created, empty.
            2 => assert_eq!(fs::read(&tmp).unwrap(), b""),
            // At the fsync: written.
            3 => assert_eq!(fs::read(&tmp).unwrap(), b"hello"),
            // At the rename: the temporary file, no final name.
            _ => {
                assert_eq!(fs::read(&tmp).unwrap(), b"hello");
                assert!(!fin.exists());
            }
        }
        assert!(!fin.exists());
        // The exempt write comes after the fsync.
        assert_eq!(exempt.exists(), k == 4, "k={k}");
        assert_group_gone(out.calls[0].pid);
        assert!(!Path::new(&format!("/proc/{}", out.calls[0].pid)).exists());
    }
}

const FORK: &str = r#"
import os, sys
d = sys.argv[1]
pid = os.fork()
if pid == 0:
    with open(os.path.join(d, "child"), "w") as f:
        f.write("c")
    os._exit(0)
os.waitpid(pid, 0)
with open(os.path.join(d, "parent"), "w") as f:
    f.write("p")
"#;

#[test]
fn paths_are_resolved_like_the_kernel_does() {
    let (_s, sandbox) = dir();
    let (_o, other) = dir();
    let script = r#"
import os, sys
d, other = sys.argv[1], sys.argv[2]
# relative to the cwd, and to a directory descriptor
os.close(os.open("rel", os.O_WRONLY | os.O_CREAT))
os.mkdir("sub")
dfd = os.open("sub", os.O_RDONLY)
os.close(os.open("in_sub", os.O_WRONLY | os.O_CREAT, dir_fd=dfd))
os.fsync(dfd)
# read-only opens are not trapped at all
os.close(os.open("rel", os.O_RDONLY))
# a symlink is judged by where the link is, not where it points
os.symlink("/etc/hostname", "link")
os.unlink("link")
os.symlink(os.path.join(d, "rel"), os.path.join(other, "into"))
os.truncate(os.path.join(other, "into"), 0)
os.link("rel", "hard")
os.unlink(os.path.join(d, "sub", "in_sub"))
os.rmdir("sub")
"#;
    let mut cmd = python(script, &[&sandbox, &other]);
    cmd.current_dir(&sandbox);
    let out = run_traced(cmd, &config(&sandbox)).expect("run");
    assert_eq!(out.exit, TraceExit::Exited(0));
    let s = |p: &str| sandbox.join(p);
    let got: Vec<_> = shape(&out.calls)
        .into_iter()
        .map(|(n, p)| (if is_open(n) { "open" } else { n }, p))
        .collect();
    let expected: Vec<(&str, Vec<PathBuf>)> = vec![
        ("open", vec![s("rel")]),
        ("mkdir", vec![s("sub")]),
        ("open", vec![s("sub/in_sub")]),
        ("fsync", vec![s("sub")]),
        ("symlink", vec![s("link")]),
        ("unlink", vec![s("link")]),
        // truncate follows the outside link into the sandbox
        ("truncate", vec![s("rel")]),
        ("link", vec![s("rel"), s("hard")]),
        ("unlink", vec![s("sub/in_sub")]),
        ("rmdir", vec![s("sub")]),
    ];
    let got_loose: Vec<_> = got
        .iter()
        .map(|(n, p)| (n.trim_end_matches("at").to_string(), p.clone()))
        .collect();
    let expected_loose: Vec<_> = expected
        .iter()
        .map(|(n, p)| (n.to_string(), p.clone()))
        .collect();
    assert_eq!(got_loose, expected_loose, "{:#?}", out.calls);
    // The symlink made outside is a write outside.
    assert_eq!(out.outside, vec![other.join("into")]);
}

#[test]
fn every_mutating_call_kind_is_counted() {
    let (_s, sandbox) = dir();
    let (_o, other) = dir();
    let src = other.join("src.txt");
    fs::write(&src, "source data").unwrap();
    let script = r#"
import ctypes, os, sys
d, src = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open(os.path.join(d, "f"), os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd, b"a", 0)
os.writev(fd, [b"b", b"c"])
os.pwritev(fd, [b"d"], 3)
os.ftruncate(fd, 100)
os.posix_fallocate(fd, 0, 200)
os.fdatasync(fd)
assert libc.sync_file_range(fd, 0, 0, 2) == 0
s = os.open(src, os.O_RDONLY)  # read-only: not trapped at all
os.copy_file_range(s, fd, 3)
os.sendfile(fd, s, 0, 3)
os.close(s)
os.close(fd)
# openat2 (437 on x86_64), judged by the flags in its struct open_how
class How(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]
for flags, mode in ((os.O_RDONLY, 0), (os.O_WRONLY | os.O_CREAT, 0o644)):
    how = How(flags, mode, 0)
    fd = libc.syscall(437, -100, os.path.join(d, "f").encode(), ctypes.byref(how), ctypes.sizeof(how))
    assert fd >= 0, ctypes.get_errno()
    os.close(fd)
os.makedirs(os.path.join(d, "a", "b"))
os.replace(os.path.join(d, "f"), os.path.join(d, "a", "g"))
"#;
    let out = run_traced(python(script, &[&sandbox, &src]), &config(&sandbox)).expect("run");
    assert_eq!(out.exit, TraceExit::Exited(0));
    let f = sandbox.join("f");
    let expected: &[(&[&str], Vec<PathBuf>)] = &[
        (&["open", "openat"], vec![f.clone()]),
        (&["pwrite64"], vec![f.clone()]),
        (&["writev"], vec![f.clone()]),
        (&["pwritev", "pwritev2"], vec![f.clone()]),
        (&["ftruncate"], vec![f.clone()]),
        (&["fallocate"], vec![f.clone()]),
        (&["fdatasync"], vec![f.clone()]),
        (&["sync_file_range"], vec![f.clone()]),
        (&["copy_file_range"], vec![f.clone()]),
        (&["sendfile"], vec![f.clone()]),
        (&["openat2"], vec![f.clone()]),
        (&["mkdir", "mkdirat"], vec![sandbox.join("a")]),
        (&["mkdir", "mkdirat"], vec![sandbox.join("a/b")]),
        (
            &["rename", "renameat", "renameat2"],
            vec![f, sandbox.join("a/g")],
        ),
    ];
    assert_eq!(out.calls.len(), expected.len(), "{:#?}", out.calls);
    for (call, (names, paths)) in out.calls.iter().zip(expected) {
        assert!(
            names.contains(&call.name),
            "{call:?} is not one of {names:?}"
        );
        assert_eq!(&call.paths, paths);
    }
    assert!(out.outside.is_empty(), "{:?}", out.outside);
}

#[test]
fn exempt_files_inside_the_sandbox_are_not_counted() {
    let (_s, sandbox) = dir();
    let state = sandbox.join("state.json");
    let script = r#"
import os, sys
with open(sys.argv[1], "w") as f:
    f.write("{}")
with open(os.path.join(os.path.dirname(sys.argv[1]), "ckpt"), "w") as f:
    f.write("x")
"#;
    let cfg = TraceConfig {
        exempt: vec![state.clone()],
        ..config(&sandbox)
    };
    let out = run_traced(python(script, &[&state]), &cfg).expect("run");
    assert_eq!(out.exit, TraceExit::Exited(0));
    let ckpt = sandbox.join("ckpt");
    assert_eq!(shape(&out.calls).len(), 2, "{:#?}", out.calls);
    assert!(out.calls.iter().all(|c| c.paths == vec![ckpt.clone()]));
    assert!(out.outside.is_empty());
}

#[test]
fn writes_outside_the_sandbox_are_reported() {
    let (_s, sandbox) = dir();
    let (_o, other) = dir();
    let target = other.join("log.txt");
    let script = r#"
import sys
with open(sys.argv[1], "w") as f:
    for i in range(3):
        f.write("line\n")
        f.flush()
# devices, pipes and /proc are neither counted nor outside
with open("/dev/null", "w") as f:
    f.write("x")
with open("/proc/self/comm", "w") as f:
    f.write("renamed")
print("to a pipe", flush=True)
"#;
    let mut cmd = python(script, &[&target]);
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    cmd.stdout(Stdio::from(write_end));
    let out = run_traced(cmd, &config(&sandbox)).expect("run");
    let mut printed = String::new();
    File::from(read_end)
        .read_to_string(&mut printed)
        .expect("read");
    assert_eq!(printed, "to a pipe\n");
    assert_eq!(out.exit, TraceExit::Exited(0));
    assert!(out.calls.is_empty(), "{:#?}", out.calls);
    assert_eq!(out.outside, vec![target]);
}

#[test]
fn a_sandbox_under_dev_shm_is_counted() {
    if !Path::new("/dev/shm").is_dir() {
        return;
    }
    let d = tempfile::tempdir_in("/dev/shm").expect("tempdir in /dev/shm");
    let sandbox = fs::canonicalize(d.path()).expect("canonical");
    let script = "import sys; open(sys.argv[1] + '/f', 'w').write('x')";
    let out = run_traced(python(script, &[&sandbox]), &config(&sandbox)).expect("run");
    assert_eq!(out.exit, TraceExit::Exited(0));
    assert_eq!(shape(&out.calls).len(), 2, "{:#?}", out.calls);
    assert!(out.calls.iter().all(|c| c.paths == vec![sandbox.join("f")]));
}

#[test]
fn many_calls_are_all_counted() {
    let (_s, sandbox) = dir();
    let script = r#"
import os, sys
d = sys.argv[1]
for i in range(200):
    tmp = os.path.join(d, "ckpt.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, b"x" * 64)
    os.fsync(fd)
    os.close(fd)
    os.rename(tmp, os.path.join(d, "ckpt"))
"#;
    let out = run_traced(python(script, &[&sandbox]), &config(&sandbox)).expect("run");
    assert_eq!(out.exit, TraceExit::Exited(0));
    assert_eq!(out.calls.len(), 800);
    assert!(out
        .calls
        .iter()
        .enumerate()
        .all(|(i, c)| c.index == i as u64 + 1));
}

#[test]
fn a_missing_command_is_reported_as_not_found() {
    let (_s, sandbox) = dir();
    let cmd = Command::new("crashpoint-no-such-command-0f3a");
    let err = run_traced(cmd, &config(&sandbox)).expect_err("must fail");
    assert!(err.is_not_found(), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("crashpoint-no-such-command-0f3a") && msg.contains("not found"),
        "{msg}"
    );
    // A file that is not executable is another error.
    let (_d, d) = dir();
    let file = d.join("data.txt");
    fs::write(&file, "not a program").unwrap();
    let err = run_traced(Command::new(&file), &config(&sandbox)).expect_err("must fail");
    assert!(
        matches!(err, TraceError::Spawn { .. }) && !err.is_not_found(),
        "{err:?}"
    );
}

#[test]
fn writes_truncations_and_syncs_carry_their_descriptor_offset_and_length() {
    let (_s, sandbox) = dir();
    let script = r#"
import os, sys
p = os.path.join(sys.argv[1], "f")
fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b"x" * 100)
os.pwrite(fd, b"y" * 7, 1000)
os.writev(fd, [b"abc", b"defg"])
os.ftruncate(fd, 4096)
os.fsync(fd)
os.close(fd)
a = os.open(p, os.O_WRONLY | os.O_APPEND)
os.write(a, b"tail!")
os.close(a)
"#;
    let out = run_traced(python(script, &[&sandbox]), &config(&sandbox)).expect("run");
    assert_eq!(out.exit, TraceExit::Exited(0));
    let got: Vec<(&str, Option<u64>, Option<u64>)> = out
        .calls
        .iter()
        .map(|c| (c.name, c.offset, c.len))
        .collect();
    assert_eq!(
        got[1..],
        [
            ("write", Some(0), Some(100)),
            ("pwrite64", Some(1000), Some(7)),
            // The position after the first write: pwrite does not move it.
            ("writev", Some(100), Some(7)),
            ("ftruncate", None, Some(4096)),
            ("fsync", None, None),
            // Opened again, without O_TRUNC: the census counts the open.
            ("openat", None, None),
            // O_APPEND: at the end of the file, whatever the position.
            ("write", Some(4096), Some(5)),
        ],
        "{:#?}",
        out.calls
    );
    let fds: Vec<Option<i32>> = out.calls.iter().map(|c| c.fd).collect();
    let first = fds[1];
    assert!(first.is_some_and(|fd| fd > 2), "{fds:?}");
    assert_eq!(fds[0], None, "an open has no descriptor yet");
    assert!(fds[1..6].iter().all(|f| *f == first), "{fds:?}");
    assert!(fds[7].is_some(), "{fds:?}");
}
