//! Runs one subject process under the protocol: its own process group, a
//! parent-death signal, a watchdog, the crash point armed, stderr kept (the
//! tail of it, however much the subject prints), and at the end everything
//! the run started killed and reaped, daemons that left the group included
//! (see [`crate::sys`]).

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::census::{Call, CensusEntry, Phase};
use crate::inject::CrashPoint;
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
    /// Python modules to import once per worker, for warm starts of the
    /// untraced runs (see [`crate::warm`]); empty: every run starts cold.
    pub preload: Vec<String>,
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
    /// Trace, and record the operations the power-loss model needs
    /// ([`RunResult::power`]).
    pub power: bool,
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
    /// Was the run traced (so that `outside` and `removed` are known)?
    pub traced: bool,
    /// Paths in the sandbox the subject unlinked, removed or renamed away
    /// (canonical; traced runs only): whatever vanished under them was the
    /// subject's doing.
    pub removed: Vec<PathBuf>,
    /// With [`RunRequest::power`]: the operations inside the sandbox, for
    /// the power-loss model (see [`crate::trace::TracedOp`]).
    pub power: Vec<crate::trace::TracedOp>,
}

/// Why a run could not be carried out at all (not: why the subject failed).
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The command does not exist.
    #[error("command not found: {0}")]
    NotFound(String),
    /// The command names a directory.
    #[error("command is a directory, not a program: {0}")]
    IsDirectory(String),
    /// The command is a file without execute permission.
    #[error("command is not executable (no execute permission): {0}; run `chmod +x` on it, or name its interpreter first (`-- python3 {0}`)")]
    NotExecutable(String),
    /// The command is a script whose `#!` interpreter does not exist.
    #[error(
        "cannot start {program}: its interpreter {interpreter} (on its #! line) does not exist"
    )]
    BadInterpreter {
        /// The program.
        program: String,
        /// The interpreter named on its first line.
        interpreter: String,
    },
    /// The kernel cannot execute the file (ENOEXEC).
    #[error("cannot start {0}: not a program this system can run (exec format error); a script needs a #! line, or name its interpreter first")]
    NotAProgram(String),
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
    /// The simulated trainer's operation census is missing or malformed.
    #[error("{0}")]
    Census(String),
    /// The harness is stopping (SIGINT or SIGTERM): the run was not made, or
    /// was killed, and says nothing about the subject.
    #[error("interrupted")]
    Interrupted,
}

impl Subject {
    /// An external command (not the simulated trainer), started cold: the
    /// program, then its arguments.
    pub fn external(mut words: Vec<OsString>) -> Subject {
        let program = if words.is_empty() {
            OsString::new()
        } else {
            words.remove(0)
        };
        Subject {
            program,
            args: words,
            sim: false,
            preload: Vec::new(),
        }
    }

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
///
/// Once the harness is stopping (see [`crate::sys::stop_all`]) every run
/// ends with [`RunnerError::Interrupted`], whatever the subject did.
pub fn run(subject: &Subject, req: &RunRequest<'_>) -> Result<RunResult, RunnerError> {
    if crate::sys::stopping() {
        return Err(RunnerError::Interrupted);
    }
    check_program(subject, &req.place.cwd)?;
    let cmd = subject.command(req);
    // A time crash point in a traced run is the tracer's watchdog firing
    // early (see `run_traced`).
    let result = if req.traced || req.power || matches!(req.crash, Some(CrashPoint::Syscall(_))) {
        run_traced(cmd, subject, req, None)
    } else if crate::warm::applies(subject, req) {
        crate::warm::run(subject, &cmd, req)
    } else {
        run_plain(cmd, subject, req, None)
    };
    if crate::sys::stopping() {
        return Err(RunnerError::Interrupted);
    }
    let mut result = result?;
    if let (true, Some(log), Exit::Code(0)) = (subject.sim, req.op_log, result.exit) {
        if result.census.is_empty() {
            // A census that cannot be read is an error, never a shorter census
            // (an empty one would certify a campaign that ran no crash).
            let text = std::fs::read_to_string(log).map_err(|e| {
                RunnerError::Census(format!("cannot read the op log {}: {e}", log.display()))
            })?;
            result.census =
                CensusEntry::parse_log(&text).map_err(|e| RunnerError::Census(e.to_string()))?;
            // Paths inside the sandbox, as the system-call census names them.
            for p in result.census.iter_mut().flat_map(|e| e.paths.iter_mut()) {
                if let Ok(rel) = Path::new(p.as_str()).strip_prefix(req.sandbox) {
                    *p = rel.display().to_string();
                }
            }
        }
    }
    Ok(result)
}

/// Refuses a program that cannot be started, with a specific message: not
/// found, a directory, not executable, or a script whose `#!` interpreter
/// does not exist. A program without a `/` is looked up on `PATH`; one with
/// a `/` relative to `cwd`.
pub fn check_program(subject: &Subject, cwd: &Path) -> Result<(), RunnerError> {
    use std::os::unix::fs::PermissionsExt;
    let name = subject.display_program();
    let prog = Path::new(&subject.program);
    if subject.program.is_empty() {
        return Err(RunnerError::NotFound("(an empty command)".into()));
    }
    let on_path = !subject.program.as_encoded_bytes().contains(&b'/');
    let candidates: Vec<PathBuf> = if on_path {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(prog)).collect())
            .unwrap_or_default()
    } else {
        vec![cwd.join(prog)]
    };
    let mut seen: Option<RunnerError> = None;
    for c in candidates {
        let Ok(m) = std::fs::metadata(&c) else {
            continue;
        };
        let err = if m.is_dir() {
            RunnerError::IsDirectory(name.clone())
        } else if m.permissions().mode() & 0o111 == 0 {
            RunnerError::NotExecutable(name.clone())
        } else {
            return match missing_interpreter(&c) {
                Some(interpreter) => Err(RunnerError::BadInterpreter {
                    program: name,
                    interpreter,
                }),
                None => Ok(()),
            };
        };
        // As the shell does: a later directory of PATH may still hold it.
        seen.get_or_insert(err);
    }
    Err(seen.unwrap_or_else(|| {
        RunnerError::NotFound(if on_path {
            format!("{name} (not in any directory of PATH)")
        } else {
            format!("{name} (no such file)")
        })
    }))
}

/// The interpreter named on the `#!` line of `file`, when it is an absolute
/// path that does not exist.
fn missing_interpreter(file: &Path) -> Option<String> {
    let mut head = [0u8; 256];
    let n = std::fs::File::open(file)
        .and_then(|mut f| f.read(&mut head))
        .ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let text = String::from_utf8_lossy(line);
    let interpreter = text.split_ascii_whitespace().next()?;
    (interpreter.starts_with('/') && !Path::new(interpreter).exists())
        .then(|| interpreter.to_string())
}

fn spawn_error(subject: &Subject, e: std::io::Error) -> RunnerError {
    let program = subject.display_program();
    if e.kind() == std::io::ErrorKind::Interrupted && crate::sys::stopping() {
        return RunnerError::Interrupted;
    }
    match e.kind() {
        std::io::ErrorKind::NotFound => RunnerError::NotFound(program),
        std::io::ErrorKind::PermissionDenied => RunnerError::NotExecutable(program),
        _ if e.raw_os_error() == Some(libc::ENOEXEC) => RunnerError::NotAProgram(program),
        _ => RunnerError::Spawn { program, source: e },
    }
}

/// The last [`STDERR_TAIL`] bytes of a pipe, read on a thread of its own.
struct Tail {
    keep: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

/// How long the end of stderr is waited for once every process of a run
/// was killed: only a process that escaped the kill still holds the pipe.
const TAIL_GRACE: Duration = Duration::from_secs(2);

impl Tail {
    fn start(mut pipe: impl Read + Send + 'static) -> Tail {
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
    fn finish(self) -> String {
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
    if crate::sys::stopping() {
        return Err(RunnerError::Interrupted);
    }
    check_program(subject, &req.place.cwd)?;
    let req = RunRequest {
        crash: None,
        ..req.clone()
    };
    let mut cmd = subject.command(&req);
    cmd.env(protocol::OP_PAUSE, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let result = run_plain(cmd, subject, &req, Some(on_pause));
    if crate::sys::stopping() {
        return Err(RunnerError::Interrupted);
    }
    result
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

fn run_plain(
    mut cmd: Command,
    subject: &Subject,
    req: &RunRequest<'_>,
    on_pause: Option<&mut dyn FnMut(&str)>,
) -> Result<RunResult, RunnerError> {
    crate::sys::isolate(&mut cmd);
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
    Ok(RunResult {
        exit,
        stderr_tail,
        duration,
        census: Vec::new(),
        outside: Vec::new(),
        traced: false,
        removed: Vec::new(),
        power: Vec::new(),
    })
}

/// Runs the subject traced, to its end, pausing at the entry of each counted
/// call numbered in `at` while `sink` captures what it needs (see
/// [`crate::trace::run_traced_paused`]). `req.crash` is ignored.
pub fn run_paused(
    subject: &Subject,
    req: &RunRequest<'_>,
    at: Vec<u64>,
    sink: &mut crate::trace::PauseSink<'_>,
) -> Result<RunResult, RunnerError> {
    if crate::sys::stopping() {
        return Err(RunnerError::Interrupted);
    }
    check_program(subject, &req.place.cwd)?;
    let req = RunRequest {
        crash: None,
        ..req.clone()
    };
    let cmd = subject.command(&req);
    let result = run_traced(cmd, subject, &req, Some((at, sink)));
    if crate::sys::stopping() {
        return Err(RunnerError::Interrupted);
    }
    result
}

type Paused<'s, 'a> = Option<(Vec<u64>, &'s mut crate::trace::PauseSink<'a>)>;

fn run_traced(
    cmd: Command,
    subject: &Subject,
    req: &RunRequest<'_>,
    paused: Paused<'_, '_>,
) -> Result<RunResult, RunnerError> {
    use crate::trace::{self, TraceConfig, TraceExit};
    let mut exempt = vec![req.state_out.to_path_buf(), req.events.to_path_buf()];
    exempt.extend(req.op_log.map(Path::to_path_buf));
    // A time crash point: the tracer's watchdog kills the subject then,
    // exactly as the plain runner's does (SIGKILL to every task).
    let crash_at = match req.crash {
        Some(CrashPoint::Time(ms)) => Some(Duration::from_millis(ms)).filter(|t| *t < req.timeout),
        _ => None,
    };
    let cfg = TraceConfig {
        sandbox: req.sandbox.to_path_buf(),
        exempt,
        stop_at: match req.crash {
            Some(CrashPoint::Syscall(n)) => Some(n),
            _ => None,
        },
        timeout: Some(crash_at.unwrap_or(req.timeout)),
        power: req.power,
    };
    let mut stderr = None;
    let on_spawn = |child: &mut std::process::Child| {
        stderr = child.stderr.take().map(Tail::start);
    };
    let out = match paused {
        None => trace::run_traced_with(cmd, &cfg, on_spawn),
        Some((at, sink)) => trace::run_traced_paused(cmd, &cfg, on_spawn, at, sink),
    }
    .map_err(|e| match e {
        trace::TraceError::Spawn { source, .. } => spawn_error(subject, source),
        e => RunnerError::Trace(e.to_string()),
    })?;
    let stderr_tail = stderr.map(Tail::finish).unwrap_or_default();
    let exit = match out.exit {
        TraceExit::Exited(c) => Exit::Code(c),
        // The simulated trainer kills itself at its `op` crash point.
        TraceExit::Signaled(libc::SIGKILL) if matches!(req.crash, Some(CrashPoint::Op(_))) => {
            Exit::Crashed
        }
        TraceExit::Signaled(s) => Exit::Signal(s),
        TraceExit::KilledAtCall(_) => Exit::Crashed,
        TraceExit::TimedOut if crash_at.is_some() => Exit::Crashed,
        TraceExit::TimedOut => Exit::TimedOut,
    };
    let removed = out
        .calls
        .iter()
        .filter(|c| {
            matches!(
                c.name,
                "unlink" | "unlinkat" | "rmdir" | "rename" | "renameat" | "renameat2"
            )
        })
        .filter_map(|c| c.paths.first().cloned())
        .collect();
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
            call: Call::from_syscall(c.name),
            name: c.name.to_string(),
            paths: c.paths.iter().map(|p| rel(p)).collect(),
            phase: Phase::default(),
            fd: c.fd,
            offset: c.offset,
            len: c.len,
        })
        .collect();
    Ok(RunResult {
        exit,
        stderr_tail,
        duration: out.wall,
        census,
        outside: out.outside,
        traced: true,
        removed,
        power: out.power,
    })
}
