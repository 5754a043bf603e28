//! The system-call tracer: runs one subject under a seccomp filter that hands
//! only file-mutating system calls to a ptrace supervisor, numbers the calls
//! that touch the sandbox (the *census*), and can kill the subject at the entry
//! of the n-th such call, so that call never happens.
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
//! `copy_file_range` and `sendfile`. Every other system call runs at full
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::{kill, Signal};
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

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
    mut cmd: Command,
    cfg: &TraceConfig,
    on_spawn: F,
) -> Result<TraceOutcome, TraceError>
where
    F: FnOnce(&mut Child),
{
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
                    let r = trace_subject(&program, report_r, go_w, spawn_rx, policy, shared);
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
            let left = timeout.saturating_sub(start.elapsed());
            if done_rx.recv_timeout(left) == Err(RecvTimeoutError::Timeout) {
                let mut st = lock(&shared);
                if !st.finished {
                    st.timed_out = true;
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
    })
}

fn io_err(what: &'static str, e: impl Into<io::Error>) -> TraceError {
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

const FILTER_MARK: &[u8] = b"F";

// ---------------------------------------------------------------------------
// The system-call table
// ---------------------------------------------------------------------------

/// How a trapped call names what it mutates (argument indexes).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Kind {
    /// `open`/`openat`/`creat`: path relative to `dir` (the cwd if `None`);
    /// `flags` is filtered in BPF (`None`: always mutating).
    Open {
        dir: Option<usize>,
        path: usize,
        flags: Option<usize>,
    },
    /// `openat2`: flags are in the `struct open_how` at argument `how`.
    OpenHow { dir: usize, path: usize, how: usize },
    /// The call mutates the file behind this descriptor.
    Fd(usize),
    /// One path; `follow` tells whether a final symlink is followed.
    Path {
        dir: Option<usize>,
        path: usize,
        follow: bool,
    },
    /// rename and link: both paths count; a final symlink is not followed,
    /// except for `linkat` with `AT_SYMLINK_FOLLOW` in argument `flags`.
    Two {
        old_dir: Option<usize>,
        old: usize,
        new_dir: Option<usize>,
        new: usize,
        flags: Option<usize>,
    },
}

#[derive(Debug, Clone, Copy)]
struct SysDesc {
    nr: i64,
    name: &'static str,
    kind: Kind,
}

#[cfg(target_arch = "x86_64")]
mod arch {
    use super::{Kind, SysDesc};
    use nix::unistd::Pid;

    pub(super) const TARGET: Option<seccompiler::TargetArch> =
        Some(seccompiler::TargetArch::x86_64);

    const fn d(nr: libc::c_long, name: &'static str, kind: Kind) -> SysDesc {
        SysDesc { nr, name, kind }
    }
    const fn open(dir: Option<usize>, path: usize, flags: Option<usize>) -> Kind {
        Kind::Open { dir, path, flags }
    }
    const fn path(dir: Option<usize>, path: usize, follow: bool) -> Kind {
        Kind::Path { dir, path, follow }
    }
    const fn two(
        old_dir: Option<usize>,
        old: usize,
        new_dir: Option<usize>,
        new: usize,
        flags: Option<usize>,
    ) -> Kind {
        Kind::Two {
            old_dir,
            old,
            new_dir,
            new,
            flags,
        }
    }

    /// The trapped system calls of x86_64 (argument indexes from 0).
    #[rustfmt::skip]
    pub(super) const SYSCALLS: &[SysDesc] = &[
        d(libc::SYS_open, "open", open(None, 0, Some(1))),
        d(libc::SYS_creat, "creat", open(None, 0, None)),
        d(libc::SYS_openat, "openat", open(Some(0), 1, Some(2))),
        d(libc::SYS_openat2, "openat2", Kind::OpenHow { dir: 0, path: 1, how: 2 }),
        d(libc::SYS_write, "write", Kind::Fd(0)),
        d(libc::SYS_pwrite64, "pwrite64", Kind::Fd(0)),
        d(libc::SYS_writev, "writev", Kind::Fd(0)),
        d(libc::SYS_pwritev, "pwritev", Kind::Fd(0)),
        d(libc::SYS_pwritev2, "pwritev2", Kind::Fd(0)),
        d(libc::SYS_rename, "rename", two(None, 0, None, 1, None)),
        d(libc::SYS_renameat, "renameat", two(Some(0), 1, Some(2), 3, None)),
        d(libc::SYS_renameat2, "renameat2", two(Some(0), 1, Some(2), 3, None)),
        d(libc::SYS_link, "link", two(None, 0, None, 1, None)),
        d(libc::SYS_linkat, "linkat", two(Some(0), 1, Some(2), 3, Some(4))),
        // symlink(target, linkpath): the link path decides, not the target.
        d(libc::SYS_symlink, "symlink", path(None, 1, false)),
        d(libc::SYS_symlinkat, "symlinkat", path(Some(1), 2, false)),
        d(libc::SYS_unlink, "unlink", path(None, 0, false)),
        d(libc::SYS_unlinkat, "unlinkat", path(Some(0), 1, false)),
        d(libc::SYS_rmdir, "rmdir", path(None, 0, false)),
        d(libc::SYS_mkdir, "mkdir", path(None, 0, false)),
        d(libc::SYS_mkdirat, "mkdirat", path(Some(0), 1, false)),
        d(libc::SYS_truncate, "truncate", path(None, 0, true)),
        d(libc::SYS_ftruncate, "ftruncate", Kind::Fd(0)),
        d(libc::SYS_fallocate, "fallocate", Kind::Fd(0)),
        d(libc::SYS_fsync, "fsync", Kind::Fd(0)),
        d(libc::SYS_fdatasync, "fdatasync", Kind::Fd(0)),
        d(libc::SYS_sync_file_range, "sync_file_range", Kind::Fd(0)),
        // copy_file_range(fd_in, off_in, fd_out, ...) and sendfile(out_fd,
        // in_fd, ...): the destination decides.
        d(libc::SYS_copy_file_range, "copy_file_range", Kind::Fd(2)),
        d(libc::SYS_sendfile, "sendfile", Kind::Fd(0)),
    ];

    /// The system-call number and the six arguments of a tracee stopped at
    /// a seccomp stop.
    pub(super) fn syscall_args(tid: Pid) -> nix::Result<(i64, [u64; 6])> {
        let r = nix::sys::ptrace::getregs(tid)?;
        Ok((r.orig_rax as i64, [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9]))
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod arch {
    //! No table yet: [`super::tracing_available`] is false and
    //! [`super::run_traced`] answers `Unsupported`. (An aarch64 table would
    //! list the `*at` calls only and read registers with `getregset`.)
    use super::SysDesc;
    use nix::unistd::Pid;

    pub(super) const TARGET: Option<seccompiler::TargetArch> = None;
    pub(super) const SYSCALLS: &[SysDesc] = &[];
    pub(super) fn syscall_args(_tid: Pid) -> nix::Result<(i64, [u64; 6])> {
        Err(nix::errno::Errno::ENOSYS)
    }
}

fn lookup(nr: i64) -> Option<&'static SysDesc> {
    arch::SYSCALLS.iter().find(|d| d.nr == nr)
}

/// `O_WRONLY`, `O_RDWR`, `O_CREAT` or `O_TRUNC`.
fn open_mutates(flags: u64) -> bool {
    let flags = flags as libc::c_int;
    let acc = flags & libc::O_ACCMODE;
    acc == libc::O_WRONLY || acc == libc::O_RDWR || flags & (libc::O_CREAT | libc::O_TRUNC) != 0
}

/// Compiles the filter: `SECCOMP_RET_TRACE` for the table's calls (open and
/// openat only with mutating flags), `SECCOMP_RET_ALLOW` for everything else.
fn build_filter() -> Result<BpfProgram, TraceError> {
    let target = arch::TARGET.ok_or(TraceError::Unsupported)?;
    let ferr = |e: seccompiler::BackendError| TraceError::Filter(e.to_string());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for desc in arch::SYSCALLS {
        let chain = match desc.kind {
            Kind::Open {
                flags: Some(arg), ..
            } => {
                let arg = u8::try_from(arg).map_err(|e| TraceError::Filter(e.to_string()))?;
                let masked = |mask: libc::c_int, value: libc::c_int| {
                    SeccompCondition::new(
                        arg,
                        SeccompCmpArgLen::Dword,
                        SeccompCmpOp::MaskedEq(mask as u64),
                        value as u64,
                    )
                    .and_then(|c| SeccompRule::new(vec![c]))
                };
                // Rules of a chain are alternatives: any one matching traps.
                vec![
                    masked(libc::O_ACCMODE, libc::O_WRONLY).map_err(ferr)?,
                    masked(libc::O_ACCMODE, libc::O_RDWR).map_err(ferr)?,
                    masked(libc::O_CREAT, libc::O_CREAT).map_err(ferr)?,
                    masked(libc::O_TRUNC, libc::O_TRUNC).map_err(ferr)?,
                ]
            }
            _ => Vec::new(),
        };
        rules.insert(desc.nr, chain);
    }
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Trace(0), target)
        .map_err(ferr)?;
    BpfProgram::try_from(filter).map_err(ferr)
}

// ---------------------------------------------------------------------------
// Classifying a trapped call
// ---------------------------------------------------------------------------

/// The resolved configuration.
struct Policy {
    sandbox: PathBuf,
    exempt: Vec<PathBuf>,
    stop_at: Option<u64>,
}

impl Policy {
    fn new(cfg: &TraceConfig) -> Self {
        let sandbox = fs::canonicalize(&cfg.sandbox).unwrap_or_else(|_| cfg.sandbox.clone());
        let exempt = cfg
            .exempt
            .iter()
            .map(|e| {
                let abs = if e.is_absolute() {
                    e.clone()
                } else {
                    std::env::current_dir().unwrap_or_default().join(e)
                };
                canonicalize_loose(&abs, true)
            })
            .collect();
        Policy {
            sandbox,
            exempt,
            stop_at: cfg.stop_at,
        }
    }

    /// Exempt first, then the sandbox (which may itself live under `/dev`,
    /// as in `/dev/shm`), then the pseudo-file systems.
    fn class_of(&self, path: &Path) -> Class {
        if self.exempt.iter().any(|e| path.starts_with(e)) {
            Class::Exempt
        } else if path.starts_with(&self.sandbox) {
            Class::Inside
        } else if is_special(path) {
            Class::Ignored
        } else {
            Class::Outside
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Touches the sandbox: counted.
    Inside,
    /// One of the exempt files: neither counted nor reported.
    Exempt,
    /// A regular path outside the sandbox: reported.
    Outside,
    /// Pipes, sockets, anonymous inodes, `/dev`, `/proc`, `/sys`, unreadable.
    Ignored,
}

/// Pseudo-file systems and devices (and what is not a path at all, such as
/// `pipe:[..]`): never "outside", and counted only if the sandbox is there.
fn is_special(path: &Path) -> bool {
    !path.is_absolute()
        || path.starts_with("/dev")
        || path.starts_with("/proc")
        || path.starts_with("/sys")
        || path.as_os_str().as_bytes().starts_with(b"/memfd:")
}

/// Canonicalizes `full` (absolute). When it does not exist yet, or `follow`
/// is false (the call acts on a final symlink itself), the parent is
/// canonicalized and the last component joined; failing that, the path is
/// normalized lexically.
fn canonicalize_loose(full: &Path, follow: bool) -> PathBuf {
    if follow {
        if let Ok(c) = fs::canonicalize(full) {
            return c;
        }
    }
    match (full.parent(), full.file_name()) {
        (Some(parent), Some(name)) => {
            if let Ok(c) = fs::canonicalize(parent) {
                return c.join(name);
            }
        }
        _ => {
            if let Ok(c) = fs::canonicalize(full) {
                return c;
            }
        }
    }
    normalize_lexically(full)
}

fn normalize_lexically(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A `/proc` link target, without the ` (deleted)` the kernel appends for an
/// unlinked file or directory.
fn read_proc_link(link: &str) -> Option<PathBuf> {
    let target = fs::read_link(link).ok()?;
    let bytes = target.as_os_str().as_bytes();
    const DELETED: &[u8] = b" (deleted)";
    Some(match bytes.strip_suffix(DELETED) {
        Some(b) if b.starts_with(b"/") => PathBuf::from(OsString::from_vec(b.to_vec())),
        _ => target,
    })
}

/// Reads `buf.len()` bytes at `addr` in the tracee, with `process_vm_readv`,
/// or `/proc/<tid>/mem` if that is refused. Returns how many were read.
fn read_tracee(tid: i32, addr: u64, buf: &mut [u8]) -> Option<usize> {
    let remote = [RemoteIoVec {
        base: usize::try_from(addr).ok()?,
        len: buf.len(),
    }];
    match process_vm_readv(Pid::from_raw(tid), &mut [io::IoSliceMut::new(buf)], &remote) {
        Ok(n) => Some(n),
        Err(_) => File::open(format!("/proc/{tid}/mem"))
            .and_then(|f| f.read_at(buf, addr))
            .ok(),
    }
}

/// Reads a NUL-terminated string (a path: at most `PATH_MAX` bytes) from the
/// tracee, never reading across a 4 KiB boundary in one go so that a string
/// ending just before an unmapped page is still read.
fn read_cstring(tid: i32, addr: u64) -> Option<Vec<u8>> {
    const CHUNK: u64 = 4096;
    const MAX: usize = libc::PATH_MAX as usize;
    if addr == 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut cur = addr;
    let mut buf = [0u8; CHUNK as usize];
    while out.len() < MAX {
        let want = ((CHUNK - cur % CHUNK) as usize).min(MAX - out.len());
        let n = read_tracee(tid, cur, &mut buf[..want])?;
        if n == 0 {
            return None;
        }
        if let Some(end) = buf[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..end]);
            return Some(out);
        }
        out.extend_from_slice(&buf[..n]);
        cur += n as u64;
    }
    None
}

/// What one argument of a trapped call refers to.
enum Target {
    Path(PathBuf, Class),
    Ignored,
}

impl Policy {
    /// The file behind descriptor `fd` of the tracee.
    fn fd_target(&self, tid: i32, fd: u64) -> Target {
        let fd = fd as libc::c_int;
        if fd < 0 {
            return Target::Ignored;
        }
        // `pipe:[..]`, `socket:[..]` and `anon_inode:..` are not absolute.
        match read_proc_link(&format!("/proc/{tid}/fd/{fd}")) {
            Some(p) => match self.class_of(&p) {
                Class::Ignored => Target::Ignored,
                class => Target::Path(p, class),
            },
            None => Target::Ignored,
        }
    }

    /// The path at `addr`, relative to descriptor `dir` (or the cwd).
    fn path_target(&self, tid: i32, dir: Option<u64>, addr: u64, follow: bool) -> Target {
        let Some(raw) = read_cstring(tid, addr) else {
            return Target::Ignored;
        };
        let raw = PathBuf::from(OsString::from_vec(raw));
        let full = if raw.is_absolute() {
            raw
        } else {
            let base = match dir.map(|d| d as libc::c_int) {
                None | Some(libc::AT_FDCWD) => read_proc_link(&format!("/proc/{tid}/cwd")),
                Some(fd) if fd >= 0 => read_proc_link(&format!("/proc/{tid}/fd/{fd}")),
                Some(_) => None,
            };
            match base {
                Some(b) if b.is_absolute() => b.join(raw),
                _ => return Target::Ignored,
            }
        };
        // Checked before canonicalizing: `/proc/self` would resolve to us.
        if is_special(&full) && !full.starts_with(&self.sandbox) {
            return Target::Ignored;
        }
        let canon = canonicalize_loose(&full, follow);
        let class = self.class_of(&canon);
        if class == Class::Ignored {
            Target::Ignored
        } else {
            Target::Path(canon, class)
        }
    }

    /// What the call `desc` with arguments `args` made by `tid` touches.
    fn targets(&self, tid: i32, desc: &SysDesc, args: &[u64; 6]) -> Vec<Target> {
        match desc.kind {
            Kind::Open { dir, path, flags } => {
                if flags.is_some_and(|f| !open_mutates(args[f])) {
                    return Vec::new();
                }
                vec![self.path_target(tid, dir.map(|d| args[d]), args[path], true)]
            }
            Kind::OpenHow { dir, path, how } => {
                let mut flags = [0u8; 8];
                match read_tracee(tid, args[how], &mut flags) {
                    Some(8) if open_mutates(u64::from_ne_bytes(flags)) => {
                        vec![self.path_target(tid, Some(args[dir]), args[path], true)]
                    }
                    _ => Vec::new(),
                }
            }
            Kind::Fd(fd) => vec![self.fd_target(tid, args[fd])],
            Kind::Path { dir, path, follow } => {
                vec![self.path_target(tid, dir.map(|d| args[d]), args[path], follow)]
            }
            Kind::Two {
                old_dir,
                old,
                new_dir,
                new,
                flags,
            } => {
                let flags = flags.map_or(0, |f| args[f] as libc::c_int);
                let old_dir = old_dir.map(|d| args[d]);
                let empty_old = flags & libc::AT_EMPTY_PATH != 0
                    && read_cstring(tid, args[old]).is_some_and(|s| s.is_empty());
                let old_target = match old_dir {
                    Some(fd) if empty_old => self.fd_target(tid, fd),
                    _ => self.path_target(
                        tid,
                        old_dir,
                        args[old],
                        flags & libc::AT_SYMLINK_FOLLOW != 0,
                    ),
                };
                let new_target = self.path_target(tid, new_dir.map(|d| args[d]), args[new], false);
                vec![old_target, new_target]
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The tracer
// ---------------------------------------------------------------------------

/// State shared by the tracer thread and the watchdog (the calling thread).
#[derive(Default)]
struct Shared {
    /// Every live task (thread id) the tracer knows of.
    tids: HashSet<i32>,
    /// The tracer has reaped everything: the watchdog must not kill.
    finished: bool,
    /// The watchdog fired.
    timed_out: bool,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// SIGKILLs the process group and every known task one by one (a task may
/// have left the group with `setsid`). Killing a thread id kills its process.
///
/// The group is signalled only while its leader, the first process, is not
/// yet reaped: until then no other group can have its id, whereas after it
/// the id could in principle be recycled for another group (say, another
/// run's subject). The known tasks are all unreaped, so their ids are safe.
fn kill_tasks(pgid: i32, tids: &HashSet<i32>) {
    if tids.contains(&pgid) {
        let _ = kill(Pid::from_raw(-pgid), Signal::SIGKILL);
    }
    for &tid in tids {
        let _ = kill(Pid::from_raw(tid), Signal::SIGKILL);
    }
}

/// What the tracer thread found.
struct Traced {
    exit: TraceExit,
    calls: Vec<CallRecord>,
    outside: Vec<PathBuf>,
}

/// One `waitid` report.
#[derive(Debug, Clone, Copy)]
struct WaitEvent {
    pid: i32,
    /// `CLD_EXITED`, `CLD_KILLED`, `CLD_DUMPED`, `CLD_TRAPPED`, ...
    code: i32,
    /// Exit status, signal, or for `CLD_TRAPPED` `sig | event << 8`.
    status: i32,
}

/// `waitid` that keeps real-time signal numbers (nix's `WaitStatus` cannot
/// represent them, and a stop consumed but not decoded would hang a task).
fn wait_event(
    idtype: libc::idtype_t,
    id: libc::id_t,
    flags: libc::c_int,
) -> Result<WaitEvent, Errno> {
    loop {
        // SAFETY: siginfo_t is plain old data, for which all-zero is valid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t that outlives the call.
        let r = unsafe { libc::waitid(idtype, id, &mut info, flags) };
        match Errno::result(r) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        // SAFETY: after a successful waitid the kernel filled in the SIGCHLD
        // fields of the union, which these accessors read.
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        return Ok(WaitEvent {
            pid,
            code: info.si_code,
            status,
        });
    }
}

/// Restarts a stopped tracee with `PTRACE_CONT` (injecting `sig`, which may
/// be a real-time signal) or `PTRACE_LISTEN`. A tracee that died meanwhile is
/// not an error.
fn restart(request: libc::c_uint, tid: i32, sig: i32) {
    // SAFETY: PTRACE_CONT and PTRACE_LISTEN pass no memory: `addr` is ignored
    // and `data` is a signal number.
    let _ = unsafe {
        libc::ptrace(
            request,
            tid,
            std::ptr::null_mut::<libc::c_void>(),
            sig as libc::c_long,
        )
    };
}

const WAIT_ALL: libc::c_int = libc::WEXITED | libc::WSTOPPED | libc::__WALL | libc::__WNOTHREAD;

/// The tracer thread: attach, let the child exec, and follow every task.
fn trace_subject(
    program: &str,
    report: OwnedFd,
    go: OwnedFd,
    spawn_rx: Receiver<io::Result<u32>>,
    policy: &Policy,
    shared: &Mutex<Shared>,
) -> Result<Traced, TraceError> {
    let mut report = File::from(report);
    let mut pid = [0u8; 4];
    if report.read_exact(&mut pid).is_err() {
        // The child died (or was never forked) before reporting.
        return Err(match spawn_rx.recv() {
            Ok(Err(source)) => TraceError::Spawn {
                program: program.to_string(),
                source,
            },
            _ => io_err(
                "the subject never reported its pid",
                io::Error::from(io::ErrorKind::UnexpectedEof),
            ),
        });
    }
    let main = i32::from_ne_bytes(pid);
    let options = ptrace::Options::PTRACE_O_TRACESECCOMP
        | ptrace::Options::PTRACE_O_TRACEFORK
        | ptrace::Options::PTRACE_O_TRACEVFORK
        | ptrace::Options::PTRACE_O_TRACECLONE
        | ptrace::Options::PTRACE_O_TRACEEXEC
        | ptrace::Options::PTRACE_O_EXITKILL;
    if let Err(source) = ptrace::seize(Pid::from_raw(main), options) {
        // Dropping `go` unblocks the child, which then fails its spawn.
        return Err(TraceError::Ptrace {
            op: "seize",
            source,
        });
    }
    lock(shared).tids.insert(main);
    // If this fails the child is gone; the wait below sees it.
    let _ = File::from(go).write_all(b"g");

    let mut t = Tracer {
        policy,
        shared,
        main,
        calls: Vec::new(),
        outside: Vec::new(),
        outside_seen: HashSet::new(),
        tgids: HashMap::new(),
        zombies: Vec::new(),
        killed_at: None,
        main_exit: None,
        ending: false,
    };

    // Until the first exec, peek before reaping: if the exec fails, the
    // spawning thread reaps the child itself (std's `spawn` does), and we
    // must not race it.
    let mut exec_seen = false;
    while !exec_seen {
        let peek = wait_event(libc::P_PID, main as libc::id_t, WAIT_ALL | libc::WNOWAIT);
        let died = match peek {
            Ok(ev) => ev.code != libc::CLD_TRAPPED,
            // Already reaped by the spawning thread.
            Err(Errno::ECHILD) => true,
            Err(e) => return Err(TraceError::Wait(e)),
        };
        if died {
            return match spawn_rx.recv() {
                Ok(Err(source)) => {
                    // `spawn` has reaped the child. Did the filter go in?
                    lock(shared).tids.remove(&main);
                    let mut rest = Vec::new();
                    let _ = report.read_to_end(&mut rest);
                    if rest == FILTER_MARK {
                        Err(TraceError::Spawn {
                            program: program.to_string(),
                            source,
                        })
                    } else {
                        Err(TraceError::Seccomp(source))
                    }
                }
                _ => {
                    // Killed before exec, and not reaped by `spawn`.
                    if let Ok(ev) = wait_event(libc::P_PID, main as libc::id_t, WAIT_ALL) {
                        t.handle(ev);
                    }
                    lock(shared).tids.remove(&main);
                    Ok(t.finish(false))
                }
            };
        }
        let ev = wait_event(libc::P_PID, main as libc::id_t, WAIT_ALL).map_err(TraceError::Wait)?;
        if ev.code == libc::CLD_TRAPPED && ev.status >> 8 == libc::PTRACE_EVENT_EXEC {
            exec_seen = true;
        }
        t.handle(ev);
    }
    drop(report);

    while !lock(shared).tids.is_empty() {
        match wait_event(libc::P_ALL, 0, WAIT_ALL) {
            Ok(ev) => t.handle(ev),
            // Nothing left to wait for: tasks we lost track of are gone.
            Err(Errno::ECHILD) => break,
            Err(e) => {
                t.kill_all();
                return Err(TraceError::Wait(e));
            }
        }
    }
    let timed_out = {
        let mut st = lock(shared);
        st.finished = true;
        st.timed_out
    };
    t.reap_orphans();
    Ok(t.finish(timed_out))
}

struct Tracer<'a> {
    policy: &'a Policy,
    shared: &'a Mutex<Shared>,
    /// The first process: its pid is the process group id.
    main: i32,
    calls: Vec<CallRecord>,
    outside: Vec<PathBuf>,
    outside_seen: HashSet<PathBuf>,
    /// Thread id -> process id, for the tasks that made counted calls.
    tgids: HashMap<i32, i32>,
    /// Processes seen to exit that were then left as zombies for their real
    /// parent (see [`Tracer::reap_orphans`]).
    zombies: Vec<i32>,
    killed_at: Option<u64>,
    main_exit: Option<TraceExit>,
    /// The first process has exited: every task left is being killed.
    ending: bool,
}

impl Tracer<'_> {
    fn finish(self, timed_out: bool) -> Traced {
        let exit = match (self.killed_at, timed_out, self.main_exit) {
            (Some(k), _, _) => TraceExit::KilledAtCall(k),
            (None, true, _) => TraceExit::TimedOut,
            (None, false, Some(e)) => e,
            (None, false, None) => TraceExit::Signaled(libc::SIGKILL),
        };
        Traced {
            exit,
            calls: self.calls,
            outside: self.outside,
        }
    }

    fn killing(&self) -> bool {
        self.killed_at.is_some() || self.ending
    }

    fn kill_all(&self) {
        kill_tasks(self.main, &lock(self.shared).tids);
    }

    /// A task we had not heard of (a new child may report before its
    /// parent's fork event does): follow it, or kill it if we are killing.
    fn learn(&self, tid: i32) {
        if lock(self.shared).tids.insert(tid) && self.killing() {
            let _ = kill(Pid::from_raw(tid), Signal::SIGKILL);
        }
    }

    /// A process of the subject whose exit the tracer has collected stays a
    /// zombie for its real parent. If that parent dies first (it was killed
    /// too, say), the zombie goes to the nearest child subreaper, which may
    /// be this very process (the harness is one), and nobody else would reap
    /// it: reap those, and only those (ids of this run, already exited, hence
    /// `WNOHANG`). Without a subreaper, init reaps them and this finds none.
    fn reap_orphans(&self) {
        for &pid in &self.zombies {
            let flags = libc::WEXITED | libc::WNOHANG | libc::__WALL;
            let _ = wait_event(libc::P_PID, pid as libc::id_t, flags);
        }
    }

    fn handle(&mut self, ev: WaitEvent) {
        let tid = ev.pid;
        match ev.code {
            libc::CLD_EXITED | libc::CLD_KILLED | libc::CLD_DUMPED => {
                lock(self.shared).tids.remove(&tid);
                self.tgids.remove(&tid);
                // A thread, or our own child, is gone once collected; a
                // process with another parent lingers as its zombie.
                if tid != self.main && Path::new(&format!("/proc/{tid}")).exists() {
                    self.zombies.push(tid);
                }
                if tid == self.main {
                    self.main_exit = Some(if ev.code == libc::CLD_EXITED {
                        TraceExit::Exited(ev.status)
                    } else {
                        TraceExit::Signaled(ev.status)
                    });
                    // The run ends with its first process, as an untraced
                    // run does: whatever it left running (a daemon, a
                    // worker) is killed, not waited for.
                    self.ending = true;
                    self.kill_all();
                }
            }
            libc::CLD_TRAPPED => {
                self.learn(tid);
                self.on_stop(tid, ev.status & 0xff, ev.status >> 8);
            }
            // Job-control reports concern only real children; the tracer
            // thread has none.
            _ => {}
        }
    }

    fn on_stop(&mut self, tid: i32, sig: i32, event: i32) {
        let new_task = matches!(
            event,
            libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE
        );
        if new_task {
            if let Ok(child) = ptrace::getevent(Pid::from_raw(tid)) {
                self.learn(child as i32);
            }
        }
        if self.killing() {
            // Everything is being SIGKILLed, which ends any stop.
            return;
        }
        match event {
            // Signal-delivery-stop: deliver the subject's signal.
            0 => restart(libc::PTRACE_CONT, tid, sig),
            libc::PTRACE_EVENT_SECCOMP => self.on_syscall(tid),
            libc::PTRACE_EVENT_EXEC => {
                // A non-leader thread that execs takes the leader's id; its
                // old id vanishes without an exit report.
                if let Ok(old) = ptrace::getevent(Pid::from_raw(tid)) {
                    let old = old as i32;
                    if old != tid {
                        lock(self.shared).tids.remove(&old);
                        self.tgids.remove(&old);
                    }
                }
                restart(libc::PTRACE_CONT, tid, 0);
            }
            libc::PTRACE_EVENT_STOP => {
                if matches!(
                    sig,
                    libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
                ) {
                    // Group-stop: stay stopped until SIGCONT, as untraced.
                    restart(libc::PTRACE_LISTEN, tid, 0);
                } else {
                    // A new task's first stop, or the end of a group-stop.
                    restart(libc::PTRACE_CONT, tid, 0);
                }
            }
            _ => restart(libc::PTRACE_CONT, tid, 0),
        }
    }

    fn on_syscall(&mut self, tid: i32) {
        let Ok((nr, args)) = arch::syscall_args(Pid::from_raw(tid)) else {
            restart(libc::PTRACE_CONT, tid, 0);
            return;
        };
        let Some(desc) = lookup(nr) else {
            restart(libc::PTRACE_CONT, tid, 0);
            return;
        };
        let targets = self.policy.targets(tid, desc, &args);
        let mut inside = false;
        let mut paths = Vec::new();
        for target in targets {
            if let Target::Path(p, class) = target {
                match class {
                    Class::Inside => inside = true,
                    Class::Outside => {
                        if self.outside_seen.insert(p.clone()) {
                            self.outside.push(p.clone());
                        }
                    }
                    Class::Exempt | Class::Ignored => {}
                }
                paths.push(p);
            }
        }
        if inside {
            let index = self.calls.len() as u64 + 1;
            let pid = self.tgid_of(tid);
            self.calls.push(CallRecord {
                index,
                name: desc.name,
                paths,
                pid,
                tid,
            });
            if self.policy.stop_at == Some(index) {
                // Leave the task stopped at the entry: SIGKILL ends the stop
                // and the kernel skips the call.
                self.killed_at = Some(index);
                self.kill_all();
                return;
            }
        }
        restart(libc::PTRACE_CONT, tid, 0);
    }

    fn tgid_of(&mut self, tid: i32) -> i32 {
        *self.tgids.entry(tid).or_insert_with(|| {
            fs::read_to_string(format!("/proc/{tid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Tgid:"))
                        .and_then(|v| v.trim().parse().ok())
                })
                .unwrap_or(tid)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
