//! The system-call tracer: runs one subject under a seccomp filter that hands
//! only file-mutating system calls to a ptrace supervisor, numbers the calls
//! that touch the sandbox (the *census*), and can kill the subject at the entry
//! of the n-th such call, so that call never happens.
//!
//! # Modules
//!
//! * `filter`: the system-call table and the seccomp filter built from it;
//! * `resolve`: what a trapped call touches, resolved as the kernel would,
//!   and whether that is inside the sandbox;
//! * `account`: the census (numbering the calls inside the sandbox) and the
//!   writes outside it;
//! * `supervisor`: the tracer thread's wait loop, following every task and
//!   killing at the crash point;
//! * `capture`: pauses at chosen calls, where a sink captures the crash
//!   state while the calling task is held (see [`run_traced_paused`]).
//! * `power`: the operations the power-loss model replays (write bytes and
//!   offsets, open flags, syncs), when [`TraceConfig::power`] asks.
//!
//! # How a run goes
//!
//! * The calling thread spawns the subject. Between fork and exec the child
//!   makes itself a process-group leader, asks for SIGKILL on the death of its
//!   parent thread, sets `no_new_privs`, reports its pid on a pipe and blocks
//!   until the tracer has attached; then it installs the seccomp filter and
//!   execs. (A child cannot stop itself under `PTRACE_TRACEME` here: the
//!   standard library's `spawn` waits for the exec before it returns, so the
//!   stop would never be answered.)
//! * A dedicated tracer thread, started by [`run_traced`] and joined before it
//!   returns, attaches with `PTRACE_SEIZE` (following forks, vforks, clones and
//!   execs, and killing every tracee if the tracer goes away) and runs the
//!   whole wait loop. Every ptrace request is made by that one thread. It
//!   waits with `waitid(P_ALL, __WALL | __WNOTHREAD)`: `__WNOTHREAD` limits the
//!   wait to the tracer thread's own tracees (it never forks), so children of
//!   other threads of the harness are never reaped, and a tracee that leaves
//!   the process group (`setsid`) is still followed.
//! * Meanwhile the calling thread is the watchdog: at the timeout it SIGKILLs
//!   the process group and every task the tracer knows of.
//!
//! # What is trapped
//!
//! The filter returns `SECCOMP_RET_TRACE` for the open family (only when the
//! flags ask for writing, creating or truncating; `openat2` is checked by the
//! tracer from its `struct open_how`), the write family, rename, link,
//! symlink, unlink, rmdir, mkdir, truncate, fallocate, the sync calls,
//! `copy_file_range` and `sendfile`, and `sync`/`syncfs` (recorded for the
//! power-loss model, never counted). Every other system call runs at full
//! speed. A system call of a foreign ABI (32-bit `int 0x80`) kills the subject
//! with SIGSYS: it could not be audited, so it fails loudly.
//!
//! # Using it from the harness
//!
//! * Stdout and stderr pipes are never counted; files given to the subject as
//!   stdout or stderr are regular files outside the sandbox, so list them in
//!   [`TraceConfig::exempt`] (with the harness's state and events files).
//! * While [`run_traced`] runs, no other thread of the process may wait for
//!   "any child" (`waitpid(-1)`, `waitid(P_ALL)`) or for the subject's
//!   process group: the kernel reports a tracee's stops to every thread of
//!   the tracer's process, and such a wait could swallow one. Waiting for
//!   other specific pids or other groups is fine.
//! * If the process is a child subreaper, zombies of subject processes whose
//!   parent was killed first are handed to it; the tracer reaps those
//!   (and only those) before returning.
//!
//! # Limits
//!
//! * Writes through shared memory maps, `io_uring`, and x32-ABI system calls
//!   are not seen.
//! * Paths are resolved in the tracer's view of the file system: a subject
//!   that `chroot`s or enters another mount namespace is resolved wrongly,
//!   and a symlink that points into `/proc/self` resolves to the tracer.
//! * Calls are numbered in the order their stops are observed; calls made
//!   at the same moment by several threads or processes may be numbered
//!   differently from one run to the next.
//! * The subject cannot itself use ptrace (it is already traced).
//! * The run ends when its first process exits: every task it left behind
//!   (a daemon, a worker, in its process group or not) is then SIGKILLed,
//!   and [`run_traced`] returns once all of them are gone.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

mod account;
mod capture;
mod extent;
mod filter;
mod power;
mod resolve;
mod supervisor;
#[cfg(test)]
mod tests;

use capture::Pauses;
pub use capture::{Pause, PauseAt, PauseSink};
use filter::{arch, build_filter};
pub use power::TracedOp;
pub use resolve::canonicalize_loose;
use resolve::Policy;
use supervisor::{kill_tasks, lock, trace_subject, Shared};

/// What to trace and where to stop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceConfig {
    /// Canonical sandbox root: calls touching anything below it are counted.
    pub sandbox: PathBuf,
    /// Absolute files whose writes are neither counted nor "outside" (an entry
    /// naming a directory exempts everything below it).
    pub exempt: Vec<PathBuf>,
    /// 1-based index of the counted call at whose entry the subject is killed.
    pub stop_at: Option<u64>,
    /// Watchdog: SIGKILL the subject after this long.
    pub timeout: Option<Duration>,
    /// A time crash point: SIGKILL the subject this long after a file in
    /// this checkpoint directory (as the layout names it) first changed
    /// ([`TraceExit::KilledOnTime`]), if that comes before the timeout.
    pub kill_after_change: Option<(PathBuf, Duration)>,
    /// Record the operations the power-loss model needs
    /// ([`TraceOutcome::power`]): costs a copy of every byte written.
    pub power: bool,
}

impl TraceConfig {
    /// A census-only configuration: no exemptions, no stop, no timeout.
    pub fn new(sandbox: impl Into<PathBuf>) -> Self {
        TraceConfig {
            sandbox: sandbox.into(),
            ..TraceConfig::default()
        }
    }
}

/// One counted system call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// 1-based position in the census.
    pub index: u64,
    /// The system call's name (`"openat"`, `"write"`, `"renameat2"`, ...).
    pub name: &'static str,
    /// The paths it touches, canonical (two for rename and link: old, new).
    pub paths: Vec<PathBuf>,
    /// Process id of the caller.
    pub pid: i32,
    /// Thread id of the caller (equal to `pid` for a single-threaded process).
    pub tid: i32,
    /// The descriptor the call is made on (`write`, `ftruncate`, `fsync`,
    /// ...), as the caller numbers it.
    pub fd: Option<i32>,
    /// The file offset a write or range call starts at, read at its entry
    /// (the end of the file for an `O_APPEND` write).
    pub offset: Option<u64>,
    /// The bytes a write or range call covers; for a truncation, the new
    /// length.
    pub len: Option<u64>,
}

/// How a traced run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceExit {
    /// The subject's first process exited with this status.
    Exited(i32),
    /// The subject's first process died of this signal, not by our hand.
    Signaled(i32),
    /// Killed at the entry of this counted call, which did not happen.
    KilledAtCall(u64),
    /// Killed by the watchdog.
    TimedOut,
    /// Killed at [`TraceConfig::kill_after_change`].
    KilledOnTime,
}

/// What a traced run did.
#[derive(Debug, Clone)]
pub struct TraceOutcome {
    /// How it ended.
    pub exit: TraceExit,
    /// The census: every counted call, in the order its stop was observed.
    pub calls: Vec<CallRecord>,
    /// Regular paths outside the sandbox (and not exempt) that the subject
    /// tried to mutate, each once, in first-seen order.
    pub outside: Vec<PathBuf>,
    /// Wall time from spawn to the last task reaped.
    pub wall: Duration,
    /// With [`TraceConfig::power`]: every operation inside the sandbox,
    /// and every `sync`, for the power-loss model, in the order seen.
    pub power: Vec<TracedOp>,
}

/// Why a traced run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The command could not be started (see [`TraceError::is_not_found`]).
    #[error("cannot start `{program}`: {}", spawn_reason(.source))]
    Spawn {
        /// The program as given.
        program: String,
        /// The error from fork or exec.
        #[source]
        source: io::Error,
    },
    /// The kernel refused a ptrace request.
    #[error("ptrace {op} refused: {source}")]
    Ptrace {
        /// The request (`"seize"`).
        op: &'static str,
        /// The error.
        #[source]
        source: Errno,
    },
    /// The kernel refused to install the seccomp filter.
    #[error("the seccomp filter was refused: {0}")]
    Seccomp(#[source] io::Error),
    /// The seccomp filter could not be compiled.
    #[error("cannot build the seccomp filter: {0}")]
    Filter(String),
    /// Setting up the run failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Waiting for the subject failed.
    #[error("waiting for the traced subject failed: {0}")]
    Wait(#[source] Errno),
    /// No system-call table for this architecture.
    #[error("system-call tracing is not supported on this architecture")]
    Unsupported,
    /// The tracer thread panicked (a bug); the subject was killed.
    #[error("the tracer thread panicked")]
    TracerPanicked,
}

impl TraceError {
    /// True when the command was not found (no such program, or no such
    /// working directory).
    pub fn is_not_found(&self) -> bool {
        matches!(self, TraceError::Spawn { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

fn spawn_reason(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::NotFound {
        "command not found".to_string()
    } else {
        e.to_string()
    }
}

/// True when seccomp and ptrace work on this machine (probed once by tracing
/// a trivial command, then cached).
pub fn tracing_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(probe)
}

fn probe() -> bool {
    if arch::TARGET.is_none() {
        return false;
    }
    let candidates: [(&str, &[&str]); 3] = [
        ("/bin/true", &[]),
        ("/usr/bin/true", &[]),
        ("/bin/sh", &["-c", ":"]),
    ];
    let Some((program, args)) = candidates.iter().find(|(p, _)| Path::new(p).exists()) else {
        return false;
    };
    let mut cmd = Command::new(program);
    cmd.args(*args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let cfg = TraceConfig {
        sandbox: std::env::temp_dir(),
        timeout: Some(Duration::from_secs(20)),
        ..TraceConfig::default()
    };
    matches!(run_traced(cmd, &cfg), Ok(o) if o.exit == TraceExit::Exited(0))
}

/// Spawns `cmd` traced and blocks until every task of the subject has exited
/// and been reaped.
///
/// The caller has set program, arguments, environment, working directory and
/// stdio. Pipes made with `Stdio::piped()` live in the [`Child`], which this
/// function drops: use [`run_traced_with`] to take them, or pass pipe ends of
/// your own with `Stdio::from`. Files the subject inherits as stdout or stderr
/// are outside the sandbox: list them in [`TraceConfig::exempt`].
pub fn run_traced(cmd: Command, cfg: &TraceConfig) -> Result<TraceOutcome, TraceError> {
    run_traced_with(cmd, cfg, |_| {})
}

/// [`run_traced`], calling `on_spawn` on the calling thread as soon as the
/// subject has been exec'd (for instance to take `child.stderr` and hand it to
/// a reader thread). `on_spawn` must not block: the watchdog runs after it.
pub fn run_traced_with<F>(
    cmd: Command,
    cfg: &TraceConfig,
    on_spawn: F,
) -> Result<TraceOutcome, TraceError>
where
    F: FnOnce(&mut Child),
{
    run_with_pauses(cmd, cfg, on_spawn, Pauses::none())
}

/// [`run_traced_with`], pausing at the entry of each counted call `at`
/// names: while the calling task is held there (every earlier call done,
/// this one not), `sink` is called on the tracer thread with the call's
/// number and the census so far; the run goes on when it returns. The
/// watchdog keeps running meanwhile, so a slow sink counts against the
/// timeout.
pub fn run_traced_paused<F>(
    cmd: Command,
    cfg: &TraceConfig,
    on_spawn: F,
    at: PauseAt,
    sink: &mut PauseSink<'_>,
) -> Result<TraceOutcome, TraceError>
where
    F: FnOnce(&mut Child),
{
    run_with_pauses(cmd, cfg, on_spawn, Pauses::new(at, Some(sink)))
}

fn run_with_pauses<F>(
    mut cmd: Command,
    cfg: &TraceConfig,
    on_spawn: F,
    pauses: Pauses<'_>,
) -> Result<TraceOutcome, TraceError>
where
    F: FnOnce(&mut Child),
{
    // Watched from before the start, so that no change is missed.
    let after = cfg.kill_after_change.as_ref().and_then(|(dir, delay)| {
        crate::inject::window::AfterChange::start(&cfg.sandbox, dir, *delay)
    });
    let start = Instant::now();
    let program = cmd.get_program().to_string_lossy().into_owned();
    let filter = build_filter()?;
    let policy = Policy::new(cfg);
    let pipe = |what| nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| io_err(what, e));
    // `report`: child -> tracer (its pid, then a marker once the filter is in).
    // `go`: tracer -> child (attached; go on and exec).
    let (report_r, report_w) = pipe("cannot make the report pipe")?;
    let (go_r, go_w) = pipe("cannot make the go pipe")?;
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the child between fork and exec, where the
    // parent may have had other threads: `child_setup` makes only raw system
    // calls (setpgid, prctl, getppid, getpid, read, write, seccomp) on data
    // prepared before the fork, allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || child_setup(parent, &report_w, &go_r, &filter));
    }

    let shared = Mutex::new(Shared::default());
    let (spawn_tx, spawn_rx) = mpsc::channel::<io::Result<u32>>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut first = None;
    let joined = std::thread::scope(|s| {
        let tracer = std::thread::Builder::new()
            .name("crashpoint-tracer".into())
            .spawn_scoped(s, {
                let shared = &shared;
                let policy = &policy;
                let program = program.clone();
                move || {
                    let r =
                        trace_subject(&program, report_r, go_w, spawn_rx, policy, shared, pauses);
                    drop(done_tx);
                    r
                }
            })
            .map_err(|e| io_err("cannot start the tracer thread", e))?;
        // Blocks until the subject has exec'd (or failed to). Registered as
        // a live run, so that other runs' sweeps leave it alone.
        let spawned = crate::sys::spawn_registered(&mut cmd);
        // Closes our copies of the child's pipe ends and stdio.
        drop(cmd);
        let pgid = match spawned {
            Ok(mut child) => {
                let pid = child.id();
                first = Some(pid);
                let _ = spawn_tx.send(Ok(pid));
                on_spawn(&mut child);
                // Dropping a `Child` neither waits nor kills.
                drop(child);
                Some(pid)
            }
            Err(e) => {
                let _ = spawn_tx.send(Err(e));
                None
            }
        };
        if let (Some(pgid), Some(timeout)) = (pgid, cfg.timeout) {
            use crate::inject::window::{watchdog, Fired};
            let fired = watchdog(None, after.as_ref(), start + timeout, |d| {
                done_rx.recv_timeout(d) != Err(RecvTimeoutError::Timeout)
            });
            if let Some(fired) = fired {
                let mut st = lock(&shared);
                if !st.finished {
                    st.timed_out = true;
                    st.on_time = fired == Fired::Crash;
                    kill_tasks(pgid as i32, &st.tids);
                }
            }
        }
        match tracer.join() {
            Ok(r) => Ok(r),
            Err(_) => {
                // The tracer thread is gone, so every tracee was SIGKILLed
                // (PTRACE_O_EXITKILL); the first process is our child: reap it.
                if let Some(pgid) = pgid {
                    kill_tasks(pgid as i32, &lock(&shared).tids);
                    let _ = nix::sys::wait::waitpid(Pid::from_raw(pgid as i32), None);
                }
                Err(TraceError::TracerPanicked)
            }
        }
    });
    // Every task is gone (the tracer followed each fork): the run is over.
    if let Some(pgid) = first {
        crate::sys::end_run(pgid, false);
    }
    let traced = joined??;
    Ok(TraceOutcome {
        exit: traced.exit,
        calls: traced.calls,
        outside: traced.outside,
        wall: start.elapsed(),
        power: traced.power,
    })
}

pub(super) fn io_err(what: &'static str, e: impl Into<io::Error>) -> TraceError {
    TraceError::Io {
        what,
        source: e.into(),
    }
}

/// Runs in the child between fork and exec: only async-signal-safe calls.
fn child_setup(
    parent: Pid,
    report: &OwnedFd,
    go: &OwnedFd,
    filter: &[seccompiler::sock_filter],
) -> io::Result<()> {
    use nix::unistd;
    unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    // The spawning thread may have died before the prctl took effect.
    if unistd::getppid() != parent {
        return Err(Errno::ESRCH.into());
    }
    nix::sys::prctl::set_no_new_privs()?;
    let me = unistd::getpid().as_raw().to_ne_bytes();
    if unistd::write(report, &me)? != me.len() {
        return Err(Errno::EPIPE.into());
    }
    let mut byte = [0u8; 1];
    loop {
        match unistd::read(go.as_raw_fd(), &mut byte) {
            Ok(1) => break,
            // The tracer gave up without attaching.
            Ok(_) => return Err(Errno::ECANCELED.into()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    seccompiler::apply_filter(filter).map_err(|e| match e {
        seccompiler::Error::Prctl(e) | seccompiler::Error::Seccomp(e) => e,
        _ => Errno::EINVAL.into(),
    })?;
    // Tells the tracer the filter is in, so a failure after this is exec's.
    // (This write is itself trapped: the tracer sees a pipe and lets it go.)
    let _ = unistd::write(report, FILTER_MARK);
    Ok(())
}

pub(super) const FILTER_MARK: &[u8] = b"F";
