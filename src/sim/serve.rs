//! The simulated trainer's warm-start server, `crashpoint sim-server`.
//!
//! Starting a process costs more than a short run of the simulated trainer
//! does (on a virtual machine, a millisecond or two before `main`: the
//! dynamic loader, the C library's probes of the processor), and a campaign
//! makes one resume run per distinct crash state. So each worker starts
//! this server once, and every untraced, uninterrupted run of the trainer
//! (resume runs, the runs that repeat the census run) is a fork of it
//! (the runner's warm starts, which speak the same line protocol to the
//! Python server of `--preload`).
//!
//! The protocol, one line each way: the server says `ready`; each request
//! is a JSON object `{argv, cwd, env, stderr, timeout, cpus}` (`argv`
//! begins with `sim`); the server forks a child that becomes the run (its
//! own process group, killed when the server dies; stdin and stdout on
//! `/dev/null`, stderr into the file `stderr`, pinned to `cpus`, in `cwd`,
//! reading the protocol's variables from `env`) and answers `pid N`; once
//! the child is gone, `exit N`, `signal N` or `timeout`. The server kills
//! the child's group before it reaps the child, so the group id cannot
//! have been reused when it is killed. The trainer starts no process, so
//! nothing can escape the group.
//!
//! A run forked from the server is the run a cold `crashpoint sim` makes:
//! the trainer reads nothing but its arguments, its environment (given
//! here as `env`, not inherited), its working directory and files. The
//! oracle checks it anyway: the second reference run is warm-started and
//! must agree with the first, cold and traced one, bit for bit.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::SimSettings;

/// One run asked of the server.
#[derive(Debug, serde::Deserialize)]
struct Request {
    /// The trainer's arguments, `sim` first.
    argv: Vec<String>,
    /// Its working directory.
    cwd: String,
    /// Its whole environment.
    env: BTreeMap<String, String>,
    /// The file its stderr goes to.
    stderr: String,
    /// Its time limit, in seconds.
    timeout: f64,
    /// The CPUs it may run on (empty: the server's).
    #[serde(default)]
    cpus: Vec<usize>,
}

/// The arguments of `crashpoint sim`.
#[derive(Debug, clap::Parser)]
#[command(name = "crashpoint sim")]
struct SimArgv {
    #[command(flatten)]
    settings: SimSettings,
}

/// Serves runs read from `input`, answering on `out`, until `input` ends;
/// returns the exit status (0; 1 when the protocol broke).
pub fn serve(input: impl BufRead, mut out: impl Write) -> i32 {
    let server = std::process::id();
    let mut say = |line: &str| writeln!(out, "{line}").and_then(|_| out.flush()).is_ok();
    if !say("ready") {
        return 1;
    }
    for line in input.lines() {
        let Ok(line) = line else { return 1 };
        let req: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                say(&format!("error {e}"));
                return 1;
            }
        };
        let pid = match crate::sys::fork_single_threaded() {
            Ok(None) => become_run(&req, server),
            Ok(Some(pid)) => pid,
            Err(e) => {
                say(&format!("error cannot fork: {e}"));
                return 1;
            }
        };
        if !say(&format!("pid {pid}")) {
            crate::sys::kill_group(pid);
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None);
            return 1;
        }
        let answer = end_of(pid, Duration::from_secs_f64(req.timeout.clamp(0.0, 1e9)));
        if !say(&answer) {
            return 1;
        }
    }
    0
}

/// Waits for the run `pid` (up to `limit`), kills its group, reaps it;
/// the answer that says how it ended.
fn end_of(pid: u32, limit: Duration) -> String {
    use nix::sys::wait::{waitpid, WaitStatus};
    let timed_out = !exited_within(pid, limit);
    // The group while its leader is unreaped: its id cannot be reused.
    crate::sys::kill_group(pid);
    let status = loop {
        match waitpid(Pid::from_raw(pid as i32), None) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other,
        }
    };
    match status {
        _ if timed_out => "timeout".into(),
        Ok(WaitStatus::Exited(_, code)) => format!("exit {code}"),
        Ok(WaitStatus::Signaled(_, sig, _)) => format!("signal {}", sig as i32),
        Ok(other) => format!("error unexpected status {other:?}"),
        Err(e) => format!("error cannot wait for the run: {e}"),
    }
}

/// Has the child `pid` exited (not reaped) within `limit`?
fn exited_within(pid: u32, limit: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
    let exited = || {
        !matches!(
            waitid(
                Id::Pid(Pid::from_raw(pid as i32)),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG,
            ),
            Ok(WaitStatus::StillAlive)
        )
    };
    let deadline = std::time::Instant::now() + limit;
    let pidfd = crate::sys::pidfd_open(pid).ok();
    loop {
        if exited() {
            return true;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        match &pidfd {
            Some(fd) => {
                let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(fd), PollFlags::POLLIN)];
                let ms = left.as_millis().min(i32::MAX as u128) as i32;
                let _ = poll(
                    &mut fds,
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
                );
            }
            // Without pidfds (before Linux 5.3): look again shortly.
            None => std::thread::sleep(left.min(Duration::from_millis(1))),
        }
    }
}

/// In the forked child: becomes the run `req` describes, and exits with
/// its status.
fn become_run(req: &Request, server: u32) -> ! {
    let code = match enter(req, server) {
        Ok(()) => run(req),
        Err(e) => {
            eprintln!("error: the warm-start server cannot start the run: {e}");
            126
        }
    };
    std::process::exit(code)
}

/// The run's process group, parent-death signal, descriptors, CPUs and
/// working directory.
fn enter(req: &Request, server: u32) -> std::io::Result<()> {
    nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    // The server may have died before the request took effect.
    if u32::try_from(nix::unistd::getppid().as_raw()).ok() != Some(server) {
        crate::sys::kill_self();
    }
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    nix::unistd::dup2(null.as_raw_fd(), 0)?;
    nix::unistd::dup2(null.as_raw_fd(), 1)?;
    let err = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&req.stderr)?
    };
    nix::unistd::dup2(err.as_raw_fd(), 2)?;
    if !req.cpus.is_empty() {
        let mut set = nix::sched::CpuSet::new();
        for &c in &req.cpus {
            let _ = set.set(c);
        }
        let _ = nix::sched::sched_setaffinity(Pid::from_raw(0), &set);
    }
    std::env::set_current_dir(&req.cwd)
}

/// The trainer, as `crashpoint sim ARGS...` runs it.
fn run(req: &Request) -> i32 {
    use clap::Parser;
    match SimArgv::try_parse_from(&req.argv) {
        Ok(a) => super::trainer::main(&a.settings, |k| req.env.get(k).cloned()),
        Err(e) => {
            let _ = e.print();
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_that_is_not_json_ends_the_server_with_an_error() {
        let mut out = Vec::new();
        let code = serve(&b"not json\n"[..], &mut out);
        assert_eq!(code, 1);
        let text = String::from_utf8(out).expect("utf-8");
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("ready"));
        assert!(
            lines.next().is_some_and(|l| l.starts_with("error ")),
            "{text}"
        );
    }

    #[test]
    fn the_end_of_the_input_ends_the_server() {
        let mut out = Vec::new();
        assert_eq!(serve(&b""[..], &mut out), 0);
        assert_eq!(out, b"ready\n");
    }
}
