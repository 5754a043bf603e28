//! Warm starts for Python subjects (`certify --preload MODULE,...`) and for
//! the simulated trainer.
//!
//! The simulated trainer is always warm-started: each worker starts
//! `crashpoint sim-server` once ([`crate::sim::serve`], which speaks the
//! protocol below) and every untraced run without a crash point is a fork
//! of it, because starting a process costs more than a short run of the
//! trainer (on a virtual machine, a millisecond or two before `main`).
//!
//! A training program in Python spends most of a short run importing its
//! framework (torch and Lightning: seconds per run), and a campaign makes
//! one resume run per distinct crash state. With a preload list, each
//! worker starts the subject's own interpreter once, imports the modules
//! there (`server.py`), and every untraced run of that worker is a fork of
//! it that becomes `PYTHON SCRIPT ARGS...`: the run's working directory,
//! environment, stdin and stdout on `/dev/null`, stderr kept, the script
//! run as `__main__` (or `-m MODULE`), and the interpreter's normal exit.
//!
//! What it changes, and how that is checked: the preloaded modules were
//! imported once, with the environment of the first run minus the protocol
//! variables, and each run inherits their state (and the interpreter's
//! hash seed). A subject whose result depends on that is caught: the
//! second reference run is warm-started and must agree with the first,
//! cold and traced one, bit for bit (the oracle's reference runs).
//! Traced runs (the census run, which also records, and killed runs) and
//! time crash points are never warm-started; resume runs are then untraced,
//! and so are the runs that repeat the census run (the second reference
//! run, each probe's first run).
//!
//! The forked run is the leader of its own process group, registered as a
//! live run ([`crate::sys::adopt`]); the server kills that group before it
//! reaps the run, and the harness sweeps what carries the run's tag, as for
//! any other run.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::runner::{Exit, RunRequest, RunResult, RunnerError, Subject, STDERR_TAIL};

/// The server's source, run with `PYTHON -c`.
const SERVER_SOURCE: &str = include_str!("server.py");

/// How long past a run's own time limit the harness waits for the server
/// to report it (the server enforces the limit itself).
const GRACE: Duration = Duration::from_secs(30);

/// Why a preload list cannot be used with a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarmError {
    /// The command is not `PYTHON SCRIPT ARGS...` or `PYTHON -m MODULE ARGS...`.
    #[error("--preload needs the command to be `PYTHON SCRIPT [ARGS...]` or `PYTHON -m MODULE [ARGS...]` (got `{0}`)")]
    NotPythonScript(String),
    /// A module name that is not a dotted Python name.
    #[error("--preload: `{0}` is not a Python module name")]
    BadModule(String),
}

/// Checks that `subject` can be warm-started with `modules`.
///
/// ```
/// use crashpoint::runner::Subject;
/// let s = Subject::external(vec!["python3".into(), "train.py".into()]);
/// assert!(crashpoint::runner::warm::check(&s, &["torch".into()]).is_ok());
/// let sh = Subject::external(vec!["./train.sh".into()]);
/// assert!(crashpoint::runner::warm::check(&sh, &["torch".into()]).is_err());
/// ```
pub fn check(subject: &Subject, modules: &[String]) -> Result<(), WarmError> {
    for m in modules {
        let ok = !m.is_empty()
            && m.split('.').all(|part| {
                part.chars()
                    .next()
                    .is_some_and(|c| c.is_alphabetic() || c == '_')
                    && part.chars().all(|c| c.is_alphanumeric() || c == '_')
            });
        if !ok {
            return Err(WarmError::BadModule(m.clone()));
        }
    }
    let words = || {
        std::iter::once(&subject.program)
            .chain(&subject.args)
            .map(|w| w.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let program = Path::new(&subject.program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let first = subject
        .args
        .first()
        .map(|a| a.to_string_lossy().into_owned());
    let second_ok = subject.args.get(1).is_some();
    let python = program.starts_with("python") || program == "py";
    match first.as_deref() {
        Some("-m") if python && second_ok => Ok(()),
        Some(s) if python && !s.starts_with('-') => Ok(()),
        _ => Err(WarmError::NotPythonScript(words())),
    }
}

/// Does this run go through the worker's warm server? Only untraced,
/// uncrashed runs of an external subject with a preload list, or of the
/// simulated trainer (whose server is `crashpoint sim-server`, see
/// [`crate::sim::serve`]).
pub fn applies(subject: &Subject, req: &RunRequest<'_>) -> bool {
    (sim_server(subject) || !subject.preload.is_empty())
        && !req.traced
        && !req.power
        && req.crash.is_none()
        && req.op_log.is_none()
}

/// Is `subject` the simulated trainer, `PROGRAM sim ...`, whose program
/// then has the subcommand `sim-server`? (A stand-in that only speaks the
/// `op` protocol, such as a shell script, runs cold.)
fn sim_server(subject: &Subject) -> bool {
    subject.sim && subject.args.first().is_some_and(|a| a == "sim")
}

/// One worker's server: the interpreter with the modules imported, or the
/// simulated trainer's server.
struct Server {
    /// What it was started for: the program and its preload list.
    key: Key,
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    /// Has it said "ready" (its imports done)?
    ready: bool,
    /// Started by [`prestart`]: it outlives the thread that takes it, and
    /// goes back to the idle ones when that thread ends.
    shared: bool,
}

/// A server's program, preload list, and whether it is the simulated
/// trainer's.
type Key = (OsString, Vec<String>, bool);

fn key_of(subject: &Subject) -> Key {
    (
        subject.program.clone(),
        subject.preload.clone(),
        sim_server(subject),
    )
}

/// A thread's server; when the thread ends, a shared one is given back.
struct Slot(Option<Server>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(s) = self.0.take().filter(|s| s.shared && s.ready) {
            idle().push(s);
        }
    }
}

thread_local! {
    /// The server this thread's runs go to, once it took one.
    static SERVER: RefCell<Slot> = const { RefCell::new(Slot(None)) };
}

/// Servers started ahead ([`prestart`]) that no thread has taken yet.
static IDLE: Mutex<Vec<Server>> = Mutex::new(Vec::new());

fn idle() -> std::sync::MutexGuard<'static, Vec<Server>> {
    IDLE.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id();
        crate::sys::kill_group(pid);
        let _ = self.child.wait();
        // The simulated trainer's server leaves nothing: each of its runs
        // was killed and reaped by it, or dies with it (parent-death signal).
        crate::sys::end_run(pid, !self.key.2);
    }
}

fn failed(what: impl Into<String>) -> RunnerError {
    RunnerError::Spawn {
        program: "the warm-start server".into(),
        source: std::io::Error::other(what.into()),
    }
}

/// The full environment `cmd` gives its process.
fn environment(cmd: &Command) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => env.insert(k.to_os_string(), v.to_os_string()),
            None => env.remove(k),
        };
    }
    env
}

impl Server {
    /// Starts the server for `subject` with the environment `run` (a run's
    /// command) gives, minus the protocol variables; it imports in the
    /// background ([`Server::wait_ready`]).
    fn start(subject: &Subject, run: &Command) -> Result<Server, RunnerError> {
        let mut cmd = Command::new(&subject.program);
        if sim_server(subject) {
            cmd.arg("sim-server");
        } else {
            // The script's directory, where the run finds its own modules.
            let dir = match subject.args.first() {
                Some(a) if a != "-m" => std::fs::canonicalize(a)
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .unwrap_or_default(),
                _ => PathBuf::new(),
            };
            cmd.arg("-c")
                .arg(SERVER_SOURCE)
                .arg(dir)
                .args(&subject.preload);
        }
        cmd.current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in run.get_envs() {
            let protocol = k
                .to_str()
                .is_some_and(|k| crate::protocol::ALL_VARS.contains(&k));
            match v {
                Some(v) if !protocol => {
                    cmd.env(k, v);
                }
                _ => {
                    cmd.env_remove(k);
                }
            }
        }
        crate::sys::isolate(&mut cmd);
        let mut child = crate::sys::spawn_registered(&mut cmd).map_err(|e| RunnerError::Spawn {
            program: subject.display_program(),
            source: e,
        })?;
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(failed("no pipes to the server"));
        };
        Ok(Server {
            key: key_of(subject),
            child,
            input,
            output: BufReader::new(output),
            ready: false,
            shared: false,
        })
    }

    /// Waits until its imports are done.
    fn wait_ready(&mut self, subject: &Subject) -> Result<(), RunnerError> {
        if self.ready {
            return Ok(());
        }
        match self.line().as_deref() {
            Some("ready") => {
                self.ready = true;
                Ok(())
            }
            Some(l) if l.starts_with("error ") => Err(failed(format!(
                "cannot import the --preload modules {}: {}",
                subject.preload.join(","),
                &l["error ".len()..]
            ))),
            _ if sim_server(subject) => Err(failed(format!(
                "`{} sim-server` did not start",
                subject.display_program()
            ))),
            _ => Err(failed(format!(
                "{} did not start (is it a Python 3 interpreter?)",
                subject.display_program()
            ))),
        }
    }

    /// The next line, if it comes by `deadline`; past it, the server is
    /// killed (and its line is `None`).
    fn line_by(&mut self, deadline: Instant) -> Option<String> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        while self.output.buffer().is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                crate::sys::kill_group(self.child.id());
                break;
            }
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            let mut fds = [PollFd::new(
                self.output.get_ref().as_fd(),
                PollFlags::POLLIN,
            )];
            match poll(
                &mut fds,
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
            ) {
                Ok(n) if n > 0 => break,
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        self.line()
    }

    fn line(&mut self) -> Option<String> {
        let mut s = String::new();
        match self.output.read_line(&mut s) {
            Ok(n) if n > 0 => Some(s.trim_end().to_string()),
            _ => None,
        }
    }

    /// Makes one run; `None` when the server is gone (it is then dropped).
    fn run(
        &mut self,
        subject: &Subject,
        cmd: &Command,
        req: &RunRequest<'_>,
        stderr: &Path,
    ) -> Result<RunResult, RunnerError> {
        let text = |w: &OsString| {
            w.to_str()
                .map(str::to_string)
                .ok_or_else(|| failed("an argument or variable that is not UTF-8"))
        };
        let argv = subject
            .args
            .iter()
            .map(text)
            .collect::<Result<Vec<_>, _>>()?;
        let mut env = serde_json::Map::new();
        for (k, v) in environment(cmd) {
            env.insert(text(&k)?, text(&v.clone())?.into());
        }
        let cwd = cmd.get_current_dir().unwrap_or(Path::new("/"));
        let request = serde_json::json!({
            "argv": argv,
            "cwd": cwd.to_string_lossy(),
            "env": env,
            "stderr": stderr.to_string_lossy(),
            "timeout": req.timeout.as_secs_f64(),
            // The calling worker's CPUs: the run is pinned as a cold one is.
            "cpus": crate::sys::allowed_cpus(),
        });
        let start = Instant::now();
        // One write: the pipe is unbuffered, and each write wakes the server.
        let line = format!("{request}\n");
        self.input
            .write_all(line.as_bytes())
            .and_then(|_| self.input.flush())
            .map_err(|e| failed(format!("the server is gone: {e}")))?;
        // A fork is quick: a server that does not answer in the grace is
        // killed.
        let Some(pid) = self
            .line_by(start + GRACE)
            .and_then(|l| l.strip_prefix("pid ").and_then(|p| p.parse::<u32>().ok()))
        else {
            return Err(failed("the server did not fork the run"));
        };
        crate::sys::adopt(pid, cmd);
        // The server enforces the run's limit; past it and a grace, the
        // server itself is killed.
        let end = self.line_by(start + req.timeout + GRACE);
        let duration = start.elapsed();
        // The simulated trainer starts no process: nothing to sweep.
        crate::sys::end_run(pid, !sim_server(subject));
        let exit = match end.as_deref().map(|l| l.split_once(' ').unwrap_or((l, ""))) {
            Some(("exit", n)) => n.parse().map(Exit::Code).ok(),
            Some(("signal", n)) => n.parse().map(Exit::Signal).ok(),
            Some(("timeout", _)) => Some(Exit::TimedOut),
            _ => None,
        };
        let stderr_tail = tail(stderr);
        let _ = std::fs::remove_file(stderr);
        let Some(exit) = exit else {
            if crate::sys::stopping() {
                return Err(RunnerError::Interrupted);
            }
            return Err(failed("the server died during a run"));
        };
        Ok(RunResult::untraced(exit, stderr_tail, duration))
    }
}

/// The last [`STDERR_TAIL`] bytes of the file.
fn tail(path: &Path) -> String {
    use std::io::{Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(STDERR_TAIL as u64)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Where a run's stderr goes: next to its state file, in the harness's
/// directory of the case.
fn stderr_file(req: &RunRequest<'_>) -> PathBuf {
    req.state_out.with_file_name("warm-stderr")
}

/// Makes the run `cmd` (built for `req`) as a fork of this worker's server,
/// starting the server first if it is not running.
pub fn run(
    subject: &Subject,
    cmd: &Command,
    req: &RunRequest<'_>,
) -> Result<RunResult, RunnerError> {
    SERVER.with(|cell| {
        let slot = &mut cell.borrow_mut().0;
        let key = key_of(subject);
        if slot.as_ref().is_some_and(|s| s.key != key) {
            *slot = None;
        }
        let server = match slot.as_mut() {
            Some(s) => s,
            None => {
                let taken = {
                    let mut idle = idle();
                    let at = idle.iter().position(|s| s.key == key);
                    at.map(|i| idle.swap_remove(i))
                };
                match taken {
                    Some(s) => slot.insert(s),
                    None => slot.insert(Server::start(subject, cmd)?),
                }
            }
        };
        let out = server
            .wait_ready(subject)
            .and_then(|_| server.run(subject, cmd, req, &stderr_file(req)));
        if out.is_err() {
            // A server that failed a run is not trusted with the next.
            *slot = None;
        }
        out
    })
}

/// Starts `n` servers for `subject` now, so that their imports run while
/// the cold runs (the traced census run) do; the threads
/// that make warm runs later take them. `dir` holds the `HOME` and
/// `TMPDIR` the imports see (inside the harness's workspace). Call it from
/// a thread that lives as long as the servers should: each dies with the
/// thread that started it.
pub fn prestart(subject: &Subject, dir: &Path, n: usize) -> Result<(), RunnerError> {
    let io = |e: std::io::Error| failed(format!("cannot make {}: {e}", dir.display()));
    let mut env = Command::new("true");
    for d in ["home", "tmp"] {
        std::fs::create_dir_all(dir.join(d)).map_err(io)?;
    }
    env.env("HOME", dir.join("home"))
        .env("TMPDIR", dir.join("tmp"))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for v in crate::protocol::ALL_VARS {
        env.env_remove(v);
    }
    let key = key_of(subject);
    let have = idle().iter().filter(|s| s.key == key).count();
    for _ in have..n {
        let mut s = Server::start(subject, &env)?;
        s.shared = true;
        idle().push(s);
    }
    Ok(())
}

/// Gives the calling thread's server back to the idle ones (if [`prestart`]
/// started it), for another thread to take: the reference runs' thread
/// calls it before the workers start.
pub fn release() {
    let _ = SERVER.try_with(|cell| {
        let server = cell.borrow_mut().0.take();
        // Dropping the slot gives a shared, ready server back.
        drop(Slot(server));
    });
}

/// Stops the calling thread's server and every idle one (workers' servers
/// stop when their threads end; the command line calls this at its end).
pub fn shutdown() {
    let _ = SERVER.try_with(|cell| cell.borrow_mut().0.take());
    idle().clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(words: &[&str]) -> Subject {
        Subject::external(words.iter().map(OsString::from).collect())
    }

    #[test]
    fn only_python_scripts_and_modules_are_warm_started() {
        let m = ["torch".to_string(), "lightning.pytorch".to_string()];
        assert!(check(&subject(&["python3", "train.py", "--x"]), &m).is_ok());
        assert!(check(&subject(&["/venv/bin/python", "-m", "pkg.train"]), &m).is_ok());
        for bad in [
            &["./train.sh"][..],
            &["python3"],
            &["python3", "-u", "train.py"],
            &["python3", "-m"],
            &["bash", "train.py"],
        ] {
            let e = check(&subject(bad), &m).unwrap_err();
            assert!(matches!(e, WarmError::NotPythonScript(_)), "{bad:?}: {e}");
        }
        for bad in ["", "torch-x", "1torch", "a..b"] {
            let e = check(&subject(&["python3", "t.py"]), &[bad.to_string()]).unwrap_err();
            assert_eq!(e, WarmError::BadModule(bad.into()));
        }
    }
}
