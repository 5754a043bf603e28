//! Untraced runs: the subject in its own process group under a watchdog,
//! its stderr's tail kept; and the simulated trainer's paused recording runs.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::{spawn_error, Exit, RunRequest, RunResult, RunnerError, Subject, STDERR_TAIL};
use crate::inject::CrashPoint;
use crate::protocol;

/// The last [`STDERR_TAIL`] bytes of a pipe, read on a thread of its own.
pub(super) struct Tail {
    keep: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

/// How long the end of stderr is waited for once every process of a run
/// was killed: only a process that escaped the kill still holds the pipe.
const TAIL_GRACE: Duration = Duration::from_secs(2);

impl Tail {
    pub(super) fn start(mut pipe: impl Read + Send + 'static) -> Tail {
        let keep = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        let k = Arc::clone(&keep);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let mut keep = k.lock().unwrap_or_else(|e| e.into_inner());
                        keep.extend_from_slice(&buf[..n]);
                        if keep.len() > 2 * STDERR_TAIL {
                            let cut = keep.len() - STDERR_TAIL;
                            keep.drain(..cut);
                        }
                    }
                }
            }
            let _ = tx.send(());
        });
        Tail { keep, done }
    }

    /// What was kept, once the pipe is closed or [`TAIL_GRACE`] has passed
    /// (then the reader thread is left to finish on its own).
    pub(super) fn finish(self) -> String {
        let _ = self.done.recv_timeout(TAIL_GRACE);
        let keep = self.keep.lock().unwrap_or_else(|e| e.into_inner());
        let from = keep.len().saturating_sub(STDERR_TAIL);
        String::from_utf8_lossy(&keep[from..]).into_owned()
    }
}

/// Waits until the process `pid` (a child of this one) has exited, without
/// reaping it: while it is an unreaped zombie its pid, and so its process
/// group id, cannot be reused, and killing the group stays safe.
fn wait_exited(pid: u32) {
    use nix::sys::wait::{waitid, Id, WaitPidFlag};
    loop {
        match waitid(
            Id::Pid(Pid::from_raw(pid as i32)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return,
        }
    }
}

/// Runs the simulated trainer to its end with its I/O layer pausing at every
/// crash point ([`protocol::OP_PAUSE`]): `on_pause` gets each line it
/// prints (`INDEX WHEN PATHS`) while it waits, and the run goes on when
/// `on_pause` returns. `req.crash` is ignored.
pub fn run_op_paused(
    subject: &Subject,
    req: &RunRequest<'_>,
    on_pause: &mut dyn FnMut(&str),
) -> Result<RunResult, RunnerError> {
    let req = super::paused_request(subject, req)?;
    let mut cmd = subject.command(&req);
    cmd.env(protocol::OP_PAUSE, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let result = run_plain(cmd, subject, &req, Some(on_pause));
    if crate::sys::stopping() {
        return Err(RunnerError::Interrupted);
    }
    let mut result = result?;
    super::read_op_census(subject, &req, &mut result)?;
    Ok(result)
}

/// Answers the pauses of a run: each line read is handed over, then one
/// byte lets the subject go on; ends when the subject closes its stdout.
fn converse(child: &mut std::process::Child, on_pause: &mut dyn FnMut(&str)) {
    use std::io::{BufRead, Write};
    let (Some(out), Some(mut input)) = (child.stdout.take(), child.stdin.take()) else {
        return;
    };
    for line in std::io::BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        on_pause(&line);
        if input.write_all(b"g").and_then(|_| input.flush()).is_err() {
            break;
        }
    }
}

pub(super) fn run_plain(
    mut cmd: Command,
    subject: &Subject,
    req: &RunRequest<'_>,
    on_pause: Option<&mut dyn FnMut(&str)>,
) -> Result<RunResult, RunnerError> {
    if subject.sim {
        // The simulated trainer asks for the parent-death signal itself:
        // spawned without a fork of the whole harness.
        crate::sys::isolate_spawned(&mut cmd);
    } else {
        crate::sys::isolate(&mut cmd);
    }
    let start = Instant::now();
    let mut child = crate::sys::spawn_registered(&mut cmd).map_err(|e| spawn_error(subject, e))?;
    let pgid = child.id();
    let stderr = child.stderr.take().map(Tail::start);
    // The watchdog: kills the group at a time crash point or at the timeout.
    let crash_after = match req.crash {
        Some(CrashPoint::Time(ms)) => Some(Duration::from_millis(ms)),
        _ => None,
    };
    let timeout = req.timeout;
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || -> Option<Exit> {
        if let Some(after) = crash_after.filter(|a| *a < timeout) {
            if stop_rx.recv_timeout(after) != Err(mpsc::RecvTimeoutError::Timeout) {
                return None;
            }
            crate::sys::kill_group(pgid);
            return Some(Exit::Crashed);
        }
        if stop_rx.recv_timeout(timeout) != Err(mpsc::RecvTimeoutError::Timeout) {
            return None;
        }
        crate::sys::kill_group(pgid);
        Some(Exit::TimedOut)
    });
    if let Some(on_pause) = on_pause {
        converse(&mut child, on_pause);
    }
    wait_exited(pgid);
    let duration = start.elapsed();
    let _ = stop_tx.send(());
    let by_watchdog = watchdog.join().ok().flatten();
    // Whatever the subject left running dies with it: its group (while the
    // leader is still unreaped), then every process that carries its tag.
    crate::sys::kill_group(pgid);
    crate::sys::end_run(pgid, !subject.sim);
    let status = child.wait();
    let stderr_tail = stderr.map(Tail::finish).unwrap_or_default();
    use std::os::unix::process::ExitStatusExt;
    let exit = match (by_watchdog, status) {
        (Some(e), _) => e,
        (None, Ok(s)) => match (s.code(), s.signal()) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(9)) if matches!(req.crash, Some(CrashPoint::Op(_))) => Exit::Crashed,
            (None, Some(sig)) => Exit::Signal(sig),
            (None, None) => Exit::Signal(0),
        },
        (None, Err(e)) => return Err(spawn_error(subject, e)),
    };
    Ok(RunResult::untraced(exit, stderr_tail, duration))
}
