//! The tracer follows every process and thread of a subject, kills them all,
//! lets signals and job control through, and enforces its watchdog.

use super::*;

#[test]
fn forked_children_are_counted_and_killed() {
    let (_s, sandbox) = dir();
    let out = run_traced(python(FORK, &[&sandbox]), &config(&sandbox)).expect("run");
    assert_eq!(out.exit, TraceExit::Exited(0));
    let child = sandbox.join("child");
    let parent = sandbox.join("parent");
    assert_eq!(out.calls.len(), 4, "{:#?}", out.calls);
    assert_eq!(
        out.calls
            .iter()
            .map(|c| c.paths.clone())
            .collect::<Vec<_>>(),
        vec![
            vec![child.clone()],
            vec![child.clone()],
            vec![parent.clone()],
            vec![parent.clone()]
        ]
    );
    let main = out.calls[3].pid;
    assert_ne!(out.calls[0].pid, main);
    assert_eq!(out.calls[2].pid, main);

    // Killed at the child's write: both processes die, the parent never
    // writes.
    let (_s, sandbox) = dir();
    let cfg = TraceConfig {
        stop_at: Some(2),
        ..config(&sandbox)
    };
    let out = run_traced(python(FORK, &[&sandbox]), &cfg).expect("run");
    assert_eq!(out.exit, TraceExit::KilledAtCall(2));
    assert_eq!(fs::read(sandbox.join("child")).unwrap(), b"");
    assert!(!sandbox.join("parent").exists());
    assert_group_gone(out.calls[1].pid);
    assert!(!Path::new(&format!("/proc/{}", out.calls[0].pid)).exists());

    // A shell background job.
    let (_s, sandbox) = dir();
    let script = r#"echo c > "$1/c" & wait; echo p > "$1/p""#;
    let out = run_traced(sh(script, &[&sandbox]), &config(&sandbox)).expect("run");
    assert_eq!(out.exit, TraceExit::Exited(0));
    let c = sandbox.join("c");
    let p = sandbox.join("p");
    let paths: Vec<_> = out.calls.iter().map(|c| c.paths.clone()).collect();
    assert_eq!(
        paths,
        vec![vec![c.clone()], vec![c], vec![p.clone()], vec![p]]
    );
    assert_ne!(out.calls[0].pid, out.calls[2].pid);
}

#[test]
fn threads_and_spawned_programs_are_followed() {
    let (_s, sandbox) = dir();
    let script = r#"
import os, sys, threading, subprocess
d = sys.argv[1]
def work():
    with open(os.path.join(d, "t"), "w") as f:
        f.write("t")
th = threading.Thread(target=work)
th.start()
th.join()
subprocess.run(["/bin/sh", "-c", 'echo s > "$0/s"', d], check=True)
os.execv("/bin/sh", ["sh", "-c", 'echo e > "$0/e"', d])
"#;
    let out = run_traced(python(script, &[&sandbox]), &config(&sandbox)).expect("run");
    assert_eq!(out.exit, TraceExit::Exited(0));
    let names: Vec<_> = out.calls.iter().map(|c| c.paths[0].clone()).collect();
    let (t, s, e) = (sandbox.join("t"), sandbox.join("s"), sandbox.join("e"));
    assert_eq!(
        names,
        vec![t.clone(), t, s.clone(), s, e.clone(), e],
        "{:#?}",
        out.calls
    );
    let main = out.calls[0].pid;
    // The thread: same process, another thread id.
    assert_ne!(out.calls[0].tid, main);
    // The subprocess: another process; the exec'd shell: the same one.
    assert_ne!(out.calls[2].pid, main);
    assert_eq!(out.calls[4].pid, main);
    assert_eq!(fs::read_to_string(sandbox.join("e")).unwrap(), "e\n");
}

#[test]
fn a_task_that_left_the_group_is_killed_too() {
    let (_s, sandbox) = dir();
    let script = r#"
import os, sys
d = sys.argv[1]
pid = os.fork()
if pid == 0:
    os.setsid()
    open(os.path.join(d, "escaped"), "w").close()
    os._exit(0)
os.waitpid(pid, 0)
"#;
    let cfg = TraceConfig {
        stop_at: Some(1),
        ..config(&sandbox)
    };
    let out = run_traced(python(script, &[&sandbox]), &cfg).expect("run");
    assert_eq!(out.exit, TraceExit::KilledAtCall(1));
    assert!(!sandbox.join("escaped").exists());
    let escaped = out.calls[0].pid;
    assert_eq!(kill(Pid::from_raw(escaped), None), Err(Errno::ESRCH));
}

#[test]
fn job_control_and_exec_from_a_thread_work_under_tracing() {
    let (_s, sandbox) = dir();
    // The child stops itself; its parent sees the stop, continues it.
    let script = r#"
import os, sys, signal
d = sys.argv[1]
pid = os.fork()
if pid == 0:
    os.kill(os.getpid(), signal.SIGSTOP)
    open(os.path.join(d, "after_cont"), "w").close()
    os._exit(5)
_, st = os.waitpid(pid, os.WUNTRACED)
assert os.WIFSTOPPED(st)
os.kill(pid, signal.SIGCONT)
_, st = os.waitpid(pid, 0)
sys.exit(os.WEXITSTATUS(st))
"#;
    let out = run_traced(python(script, &[&sandbox]), &config(&sandbox)).expect("run");
    assert_eq!(out.exit, TraceExit::Exited(5));
    assert_eq!(shape(&out.calls).len(), 1);
    // A thread other than the main one execs: its id becomes the
    // process id, and the new program is followed.
    let script = r#"
import os, sys, threading
d = sys.argv[1]
def go():
    os.execv("/bin/sh", ["sh", "-c", 'echo hi > "$0/x"', d])
t = threading.Thread(target=go)
t.start()
t.join()
"#;
    let out = run_traced(python(script, &[&sandbox]), &config(&sandbox)).expect("run");
    assert_eq!(out.exit, TraceExit::Exited(0));
    assert_eq!(out.calls.len(), 2, "{:#?}", out.calls);
    assert!(out.calls.iter().all(|c| c.pid == c.tid));
    assert_eq!(fs::read_to_string(sandbox.join("x")).unwrap(), "hi\n");
}

#[test]
fn signals_reach_the_subject() {
    let (_s, sandbox) = dir();
    let out = run_traced(
        sh(r#"trap "exit 7" USR1; kill -USR1 $$; exit 3"#, &[]),
        &config(&sandbox),
    )
    .expect("run");
    assert_eq!(out.exit, TraceExit::Exited(7));
    let out = run_traced(sh("kill -TERM $$", &[]), &config(&sandbox)).expect("run");
    assert_eq!(out.exit, TraceExit::Signaled(libc::SIGTERM));
    // A real-time signal, which nix's `Signal` cannot name.
    let script = r#"
import os, signal
sig = signal.SIGRTMIN + 3
signal.signal(sig, lambda *a: os._exit(9))
os.kill(os.getpid(), sig)
os._exit(4)
"#;
    let out = run_traced(python(script, &[]), &config(&sandbox)).expect("run");
    assert_eq!(out.exit, TraceExit::Exited(9));
}

#[test]
fn the_watchdog_kills_a_hung_subject() {
    let (_s, sandbox) = dir();
    let cfg = TraceConfig {
        timeout: Some(Duration::from_millis(300)),
        ..TraceConfig::new(&sandbox)
    };
    let mut cmd = Command::new("sleep");
    cmd.arg("30");
    let out = run_traced(cmd, &cfg).expect("run");
    assert_eq!(out.exit, TraceExit::TimedOut);
    assert!(out.wall < Duration::from_secs(10), "{:?}", out.wall);
    // Including a hung task that left the process group.
    let script = r#"
import os, time
if os.fork() == 0:
    os.setsid()
    time.sleep(30)
os.wait()
"#;
    let out = run_traced(python(script, &[]), &cfg).expect("run");
    assert_eq!(out.exit, TraceExit::TimedOut);
    assert!(out.wall < Duration::from_secs(10), "{:?}", out.wall);
}
