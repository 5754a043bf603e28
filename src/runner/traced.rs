//! Traced runs: through the system-call supervisor ([`crate::trace`]),
//! which gives the census, `syscall` crash points and writes outside.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::plain::Tail;
use super::{spawn_error, Exit, RunRequest, RunResult, RunnerError, Subject};
use crate::census::{Call, CensusEntry, Phase};
use crate::inject::CrashPoint;

/// Runs the subject traced, to its end, pausing at the entry of each counted
/// call `at` names while `sink` captures what it needs (see
/// [`crate::trace::run_traced_paused`]). `req.crash` is ignored.
pub fn run_paused(
    subject: &Subject,
    req: &RunRequest<'_>,
    at: crate::trace::PauseAt,
    sink: &mut crate::trace::PauseSink<'_>,
) -> Result<RunResult, RunnerError> {
    let req = super::paused_request(subject, req)?;
    let cmd = subject.command(&req);
    let result = run_traced(cmd, subject, &req, Some((at, sink)));
    if crate::sys::stopping() {
        return Err(RunnerError::Interrupted);
    }
    result
}

type Paused<'s, 'a> = Option<(crate::trace::PauseAt, &'s mut crate::trace::PauseSink<'a>)>;

pub(super) fn run_traced(
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
        kill_after_change: match req.crash {
            Some(CrashPoint::AfterChange(ms)) => Some((
                req.place.cwd.join(&req.place.ckpt_dir),
                Duration::from_millis(ms),
            )),
            _ => None,
        },
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
        TraceExit::KilledAtCall(_) | TraceExit::KilledOnTime => Exit::Crashed,
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
