//! Runs one subject process under the protocol: its own process group, a
//! parent-death signal, a watchdog, the crash point armed, stderr kept (the
//! tail of it, however much the subject prints), and at the end everything
//! the run started killed and reaped, daemons that left the group included
//! (see [`crate::sys`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod check;
mod plain;
mod traced;
pub mod warm;

pub use check::check_program;
use check::spawn_error;
pub use plain::run_op_paused;
use plain::run_plain;
use std::time::Duration;
pub use traced::run_paused;
use traced::run_traced;

use crate::census::CensusEntry;
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
    /// untraced runs (see [`warm`]); empty: every run starts cold.
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

/// The request of a paused run (a recording: it runs to its end, so its
/// crash point is dropped), once the harness is not stopping and the
/// program can start.
fn paused_request<'a>(
    subject: &Subject,
    req: &RunRequest<'a>,
) -> Result<RunRequest<'a>, RunnerError> {
    if crate::sys::stopping() {
        return Err(RunnerError::Interrupted);
    }
    check_program(subject, &req.place.cwd)?;
    Ok(RunRequest {
        crash: None,
        ..req.clone()
    })
}

impl RunResult {
    /// What an untraced run shows: how it ended, its stderr's tail, its
    /// wall time (no census, nothing seen of its calls).
    pub fn untraced(exit: Exit, stderr_tail: String, duration: Duration) -> RunResult {
        RunResult {
            exit,
            stderr_tail,
            duration,
            census: Vec::new(),
            outside: Vec::new(),
            traced: false,
            removed: Vec::new(),
            power: Vec::new(),
        }
    }
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
    } else if warm::applies(subject, req) {
        warm::run(subject, &cmd, req)
    } else {
        run_plain(cmd, subject, req, None)
    };
    if crate::sys::stopping() {
        return Err(RunnerError::Interrupted);
    }
    let mut result = result?;
    read_op_census(subject, req, &mut result)?;
    Ok(result)
}

/// For a run to be killed some time after its checkpoint tree first
/// changes ([`CrashPoint::AfterChange`]): the watch of its sandbox, started
/// now, before the run. `None` for any other run, and where inotify is
/// refused (the kill then never comes: the case says so).
fn after_change(req: &RunRequest<'_>) -> Option<crate::inject::window::AfterChange> {
    let Some(CrashPoint::AfterChange(ms)) = req.crash else {
        return None;
    };
    let ckpt = req.place.cwd.join(&req.place.ckpt_dir);
    crate::inject::window::AfterChange::start(req.sandbox, &ckpt, Duration::from_millis(ms))
}

/// The simulated trainer's op census, when the run wrote one and ended
/// well: into `result.census`, if the tracer did not fill it.
fn read_op_census(
    subject: &Subject,
    req: &RunRequest<'_>,
    result: &mut RunResult,
) -> Result<(), RunnerError> {
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
    Ok(())
}
