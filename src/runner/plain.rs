//! Untraced runs: the subject in its own process group under a watchdog,
//! its stderr's tail kept (watched from the waiting thread through a pidfd
//! and `poll`, or, for paused runs and without pidfds, by a watchdog thread
//! and a stderr thread); and the simulated trainer's paused recording runs.

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
    // A kill after the checkpoint tree first changes: watched from before
    // the start.
    let after = super::after_change(req);
    let start = Instant::now();
    let mut child = crate::sys::spawn_registered(&mut cmd).map_err(|e| spawn_error(subject, e))?;
    let pgid = child.id();
    if on_pause.is_none() && after.is_none() {
        // Watched from this thread alone, where the kernel gives pidfds.
        if let Ok(pidfd) = crate::sys::pidfd_open(pgid) {
            return run_polled(child, pidfd, subject, req, start);
        }
    }
    let stderr = child.stderr.take().map(Tail::start);
    // The watchdog: kills the group at a time crash point or at the timeout.
    let crash_at = match req.crash {
        Some(CrashPoint::Time(ms)) => Some(start + Duration::from_millis(ms)),
        _ => None,
    };
    let timeout_at = start + req.timeout;
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || -> Option<Exit> {
        use crate::inject::window::{watchdog, Fired};
        let fired = watchdog(crash_at, after.as_ref(), timeout_at, |d| {
            stop_rx.recv_timeout(d) != Err(mpsc::RecvTimeoutError::Timeout)
        })?;
        crate::sys::kill_group(pgid);
        Some(match fired {
            Fired::Crash => Exit::Crashed,
            Fired::Timeout => Exit::TimedOut,
        })
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
    let exit = exit_of(by_watchdog, status, subject, req)?;
    Ok(RunResult::untraced(exit, stderr_tail, duration))
}

/// How a run ended: as the watchdog ended it, else as its first process's
/// status says.
fn exit_of(
    by_watchdog: Option<Exit>,
    status: std::io::Result<std::process::ExitStatus>,
    subject: &Subject,
    req: &RunRequest<'_>,
) -> Result<Exit, RunnerError> {
    use std::os::unix::process::ExitStatusExt;
    Ok(match (by_watchdog, status) {
        (Some(e), _) => e,
        (None, Ok(s)) => match (s.code(), s.signal()) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(9)) if matches!(req.crash, Some(CrashPoint::Op(_))) => Exit::Crashed,
            (None, Some(sig)) => Exit::Signal(sig),
            (None, None) => Exit::Signal(0),
        },
        (None, Err(e)) => return Err(spawn_error(subject, e)),
    })
}

/// [`run_plain`] for a run without pauses, watched through the pidfd of
/// its first process: no thread is started for the watchdog or for stderr.
fn run_polled(
    mut child: std::process::Child,
    pidfd: std::os::fd::OwnedFd,
    subject: &Subject,
    req: &RunRequest<'_>,
    start: Instant,
) -> Result<RunResult, RunnerError> {
    let pgid = child.id();
    let mut polled = Polled {
        pidfd,
        stderr: child.stderr.take(),
        keep: Vec::new(),
    };
    let by_watchdog = polled.watch(pgid, watchdog_of(req, Instant::now()));
    let duration = start.elapsed();
    // As in `run_plain`: the group while the leader is unreaped, then
    // every process that carries the run's tag.
    crate::sys::kill_group(pgid);
    crate::sys::end_run(pgid, !subject.sim);
    let status = child.wait();
    let stderr_tail = polled.finish();
    let exit = exit_of(by_watchdog, status, subject, req)?;
    Ok(RunResult::untraced(exit, stderr_tail, duration))
}

/// How the watchdog of a run started at `from` ends it: at a time crash
/// point (crashed) or at the timeout (timed out), whichever comes first.
fn watchdog_of(req: &RunRequest<'_>, from: Instant) -> (Instant, Exit) {
    match req.crash {
        Some(CrashPoint::Time(ms)) if Duration::from_millis(ms) < req.timeout => {
            (from + Duration::from_millis(ms), Exit::Crashed)
        }
        _ => (from + req.timeout, Exit::TimedOut),
    }
}

/// What one [`Polled::wait`] saw.
#[derive(Debug, Default)]
struct Ready {
    /// The run's first process exited (it is not reaped).
    exited: bool,
    /// Its stderr can be read.
    stderr: bool,
    /// The deadline passed.
    timed_out: bool,
}

/// A run watched from the thread that waits for it, with no thread of its
/// own for the watchdog or for stderr: one `poll` on the pidfd of its first
/// process and on its stderr.
struct Polled {
    pidfd: std::os::fd::OwnedFd,
    stderr: Option<std::process::ChildStderr>,
    keep: Vec<u8>,
}

impl Polled {
    /// Waits until stderr has something, the first process has exited
    /// (with `exit`) or `until` (if any) has passed. `None`: poll failed.
    fn wait(&self, exit: bool, until: Option<Instant>) -> Option<Ready> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        loop {
            let timeout = match until {
                None => PollTimeout::NONE,
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    // Rounded up: never woken before the deadline.
                    let ms = left.as_micros().div_ceil(1000);
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
                }
            };
            let mut fds = Vec::with_capacity(2);
            if let Some(e) = &self.stderr {
                fds.push(PollFd::new(e.as_fd(), PollFlags::POLLIN));
            }
            if exit {
                fds.push(PollFd::new(self.pidfd.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return None,
                Ok(0) => match until {
                    Some(at) if Instant::now() >= at => {
                        return Some(Ready {
                            timed_out: true,
                            ..Ready::default()
                        })
                    }
                    _ => continue,
                },
                Ok(_) => {}
            }
            let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
            let stderr = self.stderr.is_some() && fds.first().is_some_and(ready);
            let exited = exit && fds.last().is_some_and(ready);
            return Some(Ready {
                exited,
                stderr,
                timed_out: false,
            });
        }
    }

    /// Reads what stderr has, keeping its tail; forgets it at its end.
    fn read(&mut self) {
        let Some(pipe) = &mut self.stderr else {
            return;
        };
        let mut buf = [0u8; 8192];
        match pipe.read(&mut buf) {
            Ok(0) => self.stderr = None,
            Ok(n) => {
                self.keep.extend_from_slice(&buf[..n]);
                if self.keep.len() > 2 * STDERR_TAIL {
                    let cut = self.keep.len() - STDERR_TAIL;
                    self.keep.drain(..cut);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => self.stderr = None,
        }
    }

    /// Watches the run whose first process is `pgid` until that process
    /// exits; returns how the watchdog ended it, if it did.
    fn watch(&mut self, pgid: u32, watchdog: (Instant, Exit)) -> Option<Exit> {
        let mut watchdog = Some(watchdog);
        let mut fired = None;
        loop {
            let Some(ready) = self.wait(true, watchdog.map(|w| w.0)) else {
                wait_exited(pgid);
                return fired;
            };
            if ready.stderr {
                self.read();
            }
            if ready.timed_out {
                crate::sys::kill_group(pgid);
                fired = watchdog.take().map(|w| w.1);
            }
            if ready.exited {
                return fired;
            }
        }
    }

    /// The tail of stderr, read to its end or until [`TAIL_GRACE`] has
    /// passed (only a process that escaped the kill still holds the pipe).
    fn finish(mut self) -> String {
        let until = Instant::now() + TAIL_GRACE;
        while self.stderr.is_some() {
            match self.wait(false, Some(until)) {
                Some(r) if r.stderr => self.read(),
                _ => break,
            }
        }
        let from = self.keep.len().saturating_sub(STDERR_TAIL);
        String::from_utf8_lossy(&self.keep[from..]).into_owned()
    }
}
