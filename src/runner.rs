//! Runs one subject process under the protocol: its own process group, a
//! parent-death signal, a watchdog, the crash point armed, stderr kept (the
//! tail of it), and everything of the group killed and reaped at the end.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::inject::{CensusEntry, CrashPoint};
use crate::layout::Place;
use crate::protocol;

/// How much of a run's stderr is kept (the tail).
pub const STDERR_TAIL: usize = 16 * 1024;

/// The program under test: a command line, and whether it is the built-in
/// simulated trainer (which also takes `op` crash points).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The program.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// True for `crashpoint sim`: takes `op` crash points and writes an op census.
    pub sim: bool,
}

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct RunRequest<'a> {
    /// Where the run starts and how it names its checkpoint directory.
    pub place: &'a Place,
    /// The sandbox root (for `HOME`, `TMPDIR` and the system-call filter).
    pub sandbox: &'a Path,
    /// `CRASHPOINT_MAX_STEPS`.
    pub max_steps: u64,
    /// `CRASHPOINT_SEED`.
    pub seed: u64,
    /// `CRASHPOINT_RESUME`, if this is a resume run.
    pub resume: Option<String>,
    /// `CRASHPOINT_STATE_OUT`.
    pub state_out: &'a Path,
    /// `CRASHPOINT_EVENTS`.
    pub events: &'a Path,
    /// Where to kill it, if anywhere.
    pub crash: Option<CrashPoint>,
    /// Where the simulated trainer writes its op census, if wanted.
    pub op_log: Option<&'a Path>,
    /// Trace file-mutating system calls (census, syscall crash points, writes outside).
    pub traced: bool,
    /// Kill the run after this long.
    pub timeout: Duration,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this status.
    Code(i32),
    /// Died of this signal, not by the harness's hand.
    Signal(i32),
    /// Killed at its crash point.
    Crashed,
    /// Killed by the watchdog.
    TimedOut,
}

/// What the runner saw of one run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// How it ended.
    pub exit: Exit,
    /// The last [`STDERR_TAIL`] bytes of stderr.
    pub stderr_tail: String,
    /// Wall time.
    pub duration: Duration,
    /// The census of the run (op log or traced system calls), if asked for.
    pub census: Vec<CensusEntry>,
    /// Files written outside the sandbox (traced runs only).
    pub outside: Vec<PathBuf>,
}

/// Why a run could not be carried out at all (not: why the subject failed).
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The command does not exist.
    #[error("command not found: {0}")]
    NotFound(String),
    /// The command is not executable (or is a directory).
    #[error("command is not executable: {0}")]
    NotExecutable(String),
    /// Spawning failed otherwise.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// System-call tracing failed.
    #[error("system-call tracing failed: {0}")]
    Trace(String),
}

impl Subject {
    /// The command for one run, with the protocol environment set.
    fn command(&self, req: &RunRequest<'_>) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .current_dir(&req.place.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for var in protocol::ALL_VARS {
            cmd.env_remove(var);
        }
        cmd.env("PWD", &req.place.pwd)
            .env("HOME", req.sandbox.join("home"))
            .env("TMPDIR", req.sandbox.join("tmp"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env(protocol::PROTOCOL, "1")
            .env(protocol::CKPT_DIR, &req.place.ckpt_dir)
            .env(protocol::MAX_STEPS, req.max_steps.to_string())
            .env(protocol::SEED, req.seed.to_string())
            .env(protocol::STATE_OUT, req.state_out)
            .env(protocol::EVENTS, req.events);
        if let Some(r) = &req.resume {
            cmd.env(protocol::RESUME, r);
        }
        if self.sim {
            if let Some(CrashPoint::Op(c)) = req.crash {
                cmd.env(protocol::OP_CRASH, c.to_string());
            }
            if let Some(log) = req.op_log {
                cmd.env(protocol::OP_LOG, log);
            }
        }
        cmd
    }

    /// The program's name as a user would read it.
    pub fn display_program(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }
}

/// Runs the subject once and waits for it (and its whole process group).
pub fn run(subject: &Subject, req: &RunRequest<'_>) -> Result<RunResult, RunnerError> {
    check_program(subject, &req.place.cwd)?;
    let cmd = subject.command(req);
    let mut result = if req.traced || matches!(req.crash, Some(CrashPoint::Syscall(_))) {
        run_traced(cmd, subject, req)?
    } else {
        run_plain(cmd, subject, req)?
    };
    if let (true, Some(log)) = (subject.sim, req.op_log) {
        if result.census.is_empty() {
            result.census = std::fs::read_to_string(log)
                .map(|s| s.lines().filter_map(CensusEntry::parse_op_line).collect())
                .unwrap_or_default();
        }
    }
    Ok(result)
}

/// Refuses a program that cannot be started, with a specific message.
fn check_program(subject: &Subject, cwd: &Path) -> Result<(), RunnerError> {
    let name = subject.display_program();
    let prog = Path::new(&subject.program);
    let candidates: Vec<PathBuf> = if prog.components().count() > 1 {
        vec![cwd.join(prog)]
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(prog)).collect())
            .unwrap_or_default()
    };
    use std::os::unix::fs::PermissionsExt;
    let mut found_non_exec = false;
    for c in candidates {
        if let Ok(m) = std::fs::metadata(&c) {
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Ok(());
            }
            found_non_exec = true;
        }
    }
    if found_non_exec {
        Err(RunnerError::NotExecutable(name))
    } else {
        Err(RunnerError::NotFound(name))
    }
}

fn spawn_error(subject: &Subject, e: std::io::Error) -> RunnerError {
    let program = subject.display_program();
    match e.kind() {
        std::io::ErrorKind::NotFound => RunnerError::NotFound(program),
        std::io::ErrorKind::PermissionDenied => RunnerError::NotExecutable(program),
        _ => RunnerError::Spawn { program, source: e },
    }
}

/// Keeps the last [`STDERR_TAIL`] bytes of a pipe, on its own thread.
fn tail_reader(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut keep: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    keep.extend_from_slice(&buf[..n]);
                    if keep.len() > 2 * STDERR_TAIL {
                        keep.drain(..keep.len() - STDERR_TAIL);
                    }
                }
            }
        }
        if keep.len() > STDERR_TAIL {
            keep.drain(..keep.len() - STDERR_TAIL);
        }
        String::from_utf8_lossy(&keep).into_owned()
    })
}

fn run_plain(
    mut cmd: Command,
    subject: &Subject,
    req: &RunRequest<'_>,
) -> Result<RunResult, RunnerError> {
    crate::sys::isolate(&mut cmd);
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| spawn_error(subject, e))?;
    let pgid = child.id();
    let stderr = child.stderr.take().map(tail_reader);
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
    let status = child.wait();
    let duration = start.elapsed();
    let _ = stop_tx.send(());
    let by_watchdog = watchdog.join().ok().flatten();
    // Whatever the subject left running in its group dies with it.
    crate::sys::kill_group(pgid);
    crate::sys::reap_group(pgid);
    let stderr_tail = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
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
    Ok(RunResult {
        exit,
        stderr_tail,
        duration,
        census: Vec::new(),
        outside: Vec::new(),
    })
}

fn run_traced(
    cmd: Command,
    subject: &Subject,
    req: &RunRequest<'_>,
) -> Result<RunResult, RunnerError> {
    use crate::trace::{self, TraceConfig, TraceExit};
    let mut exempt = vec![req.state_out.to_path_buf(), req.events.to_path_buf()];
    exempt.extend(req.op_log.map(Path::to_path_buf));
    let cfg = TraceConfig {
        sandbox: req.sandbox.to_path_buf(),
        exempt,
        stop_at: match req.crash {
            Some(CrashPoint::Syscall(n)) => Some(n),
            _ => None,
        },
        timeout: Some(req.timeout),
    };
    let mut stderr = None;
    let out = trace::run_traced_with(cmd, &cfg, |child| {
        stderr = child.stderr.take().map(tail_reader);
    })
    .map_err(|e| {
        if e.is_not_found() {
            RunnerError::NotFound(subject.display_program())
        } else {
            RunnerError::Trace(e.to_string())
        }
    })?;
    let stderr_tail = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    let exit = match out.exit {
        TraceExit::Exited(c) => Exit::Code(c),
        TraceExit::Signaled(s) => Exit::Signal(s),
        TraceExit::KilledAtCall(_) => Exit::Crashed,
        TraceExit::TimedOut => Exit::TimedOut,
    };
    let rel = |p: &Path| {
        p.strip_prefix(req.sandbox)
            .map(|r| r.display().to_string())
            .unwrap_or_else(|_| p.display().to_string())
    };
    let census = out
        .calls
        .iter()
        .map(|c| CensusEntry {
            index: c.index,
            kind: c.name.to_string(),
            phase: String::new(),
            path: c
                .paths
                .iter()
                .map(|p| rel(p))
                .collect::<Vec<_>>()
                .join(" -> "),
        })
        .collect();
    Ok(RunResult {
        exit,
        stderr_tail,
        duration: out.wall,
        census,
        outside: out.outside,
    })
}
