//! The supervisor: the tracer thread's wait loop. It attaches to the
//! subject, follows every task it forks, clones or execs, answers each stop
//! (signal delivery, group stops, seccomp stops), and kills the whole
//! subject at the crash point, when the first process exits, or when asked.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::{Mutex, MutexGuard};

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::account::Accounting;
use super::capture::Pauses;
use super::filter::{arch, lookup};
use super::power::{Recorder, TracedOp};
use super::resolve::Policy;
use super::{io_err, CallRecord, TraceError, TraceExit, FILTER_MARK};

/// State shared by the tracer thread and the watchdog (the calling thread).
#[derive(Default)]
pub(super) struct Shared {
    /// Every live task (thread id) the tracer knows of.
    pub(super) tids: HashSet<i32>,
    /// The tracer has reaped everything: the watchdog must not kill.
    pub(super) finished: bool,
    /// The watchdog fired.
    pub(super) timed_out: bool,
    /// ... at the time crash point, not at the timeout.
    pub(super) on_time: bool,
}

pub(super) fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// SIGKILLs the process group and every known task one by one (a task may
/// have left the group with `setsid`). Killing a thread id kills its process.
///
/// The group is signalled only while its leader, the first process, is not
/// yet reaped: until then no other group can have its id, whereas after it
/// the id could in principle be recycled for another group (say, another
/// run's subject). The known tasks are all unreaped, so their ids are safe.
pub(super) fn kill_tasks(pgid: i32, tids: &HashSet<i32>) {
    if tids.contains(&pgid) {
        let _ = kill(Pid::from_raw(-pgid), Signal::SIGKILL);
    }
    for &tid in tids {
        let _ = kill(Pid::from_raw(tid), Signal::SIGKILL);
    }
}

/// What the tracer thread found.
pub(super) struct Traced {
    pub(super) exit: TraceExit,
    pub(super) calls: Vec<CallRecord>,
    pub(super) outside: Vec<std::path::PathBuf>,
    pub(super) power: Vec<TracedOp>,
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
pub(super) fn trace_subject(
    program: &str,
    report: OwnedFd,
    go: OwnedFd,
    spawn_rx: Receiver<io::Result<u32>>,
    policy: &Policy,
    shared: &Mutex<Shared>,
    pauses: Pauses<'_>,
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
        account: Accounting::default(),
        pauses,
        power: policy.power.then(Recorder::default),
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
                    Ok(t.finish(false, false))
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
    let (timed_out, on_time) = {
        let mut st = lock(shared);
        st.finished = true;
        (st.timed_out, st.on_time)
    };
    t.reap_orphans();
    Ok(t.finish(timed_out, on_time))
}

struct Tracer<'a, 'p> {
    policy: &'a Policy,
    pauses: Pauses<'p>,
    /// The operations for the power-loss model, when asked for.
    power: Option<Recorder>,
    shared: &'a Mutex<Shared>,
    /// The first process: its pid is the process group id.
    main: i32,
    account: Accounting,
    /// Processes seen to exit that were then left as zombies for their real
    /// parent (see [`Tracer::reap_orphans`]).
    zombies: Vec<i32>,
    killed_at: Option<u64>,
    main_exit: Option<TraceExit>,
    /// The first process has exited: every task left is being killed.
    ending: bool,
}

impl Tracer<'_, '_> {
    fn finish(self, timed_out: bool, on_time: bool) -> Traced {
        let exit = match (self.killed_at, timed_out, self.main_exit) {
            (Some(k), _, _) => TraceExit::KilledAtCall(k),
            (None, true, _) if on_time => TraceExit::KilledOnTime,
            (None, true, _) => TraceExit::TimedOut,
            (None, false, Some(e)) => e,
            (None, false, None) => TraceExit::Signaled(libc::SIGKILL),
        };
        Traced {
            exit,
            calls: self.account.calls,
            outside: self.account.outside,
            power: self.power.map(|r| r.ops).unwrap_or_default(),
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
                self.account.forget(tid);
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
                        self.account.forget(old);
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
        let counted = self.account.count(self.policy, tid, desc, &args);
        if let Some(index) = counted {
            self.pauses
                .at_call(index, &self.account.calls, &self.account.outside);
        }
        if let Some(rec) = self.power.as_mut() {
            let call = counted.unwrap_or(self.account.calls.len() as u64);
            rec.observe(self.policy, tid, desc, &args, call);
        }
        if let Some(index) = counted.filter(|i| self.policy.stop_at == Some(*i)) {
            // Leave the task stopped at the entry: SIGKILL ends the stop
            // and the kernel skips the call.
            self.killed_at = Some(index);
            self.kill_all();
            return;
        }
        restart(libc::PTRACE_CONT, tid, 0);
    }
}
