//! The few process-control system calls the harness needs, fenced in one
//! place: putting a child in its own process group with a parent-death signal
//! (set between fork and exec, or by the simulated trainer itself),
//! the registry of live subject runs, killing and reaping everything a run
//! left behind (daemons that `setsid` included), stopping every run at once
//! on SIGINT or SIGTERM, making the harness a child subreaper, and the
//! simulated trainer killing itself at a crash point, pinning a campaign
//! worker to one CPU, telling a tmpfs. (The system-call tracer
//! has its own fenced module, `trace`, and spawns through [`spawn_registered`]
//! and ends its runs with [`end_run`] like the plain runner.)
//!
//! # What is killed, and how it is found
//!
//! Every run's first process is a process-group leader (the group id is its
//! pid), registered, before any sweep can look, with its *tag*: the
//! `CRASHPOINT_STATE_OUT=<path>` entry of its environment, a path unique to
//! the run. When a run ends, [`end_run`] kills and reaps, by process id, every
//! process that descends from the harness and belongs to that run: a member
//! of its process group, or a process whose environment carries its tag (a
//! daemon that called `setsid`, or a worker that made a group of its own,
//! inherits the environment). The harness is a child subreaper, so such
//! orphans are re-parented to it and it can reap them. Processes of runs that
//! are still live (other parallel workers) are never touched.
//!
//! A daemon that both leaves the group and scrubs its environment cannot be
//! told apart from another run's; [`kill_descendants`], called by the command
//! line once no run is live, kills every remaining descendant.
//!
//! # The parent-death signal
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that spawned the subject exits,
//! not only the process. Every subject is spawned by the thread that then
//! waits for it (the main thread for references, a campaign worker for its
//! cases) and that thread outlives the run, so the signal only ever fires when
//! the harness itself dies. It is not inherited by the subject's own
//! children: when the harness is SIGKILLed, descendants that left the group
//! survive, and the next harness run kills them when it removes the dead
//! run's workspace (see `workspace::remove_stale`), recognising them by a tag
//! that points into that workspace.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// Makes the child started by `cmd` the leader of a new process group and
/// asks the kernel to SIGKILL it if the harness dies.
pub fn isolate(cmd: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls (setpgid, prctl, getppid, kill); it
    // allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The parent may have died before prctl took effect.
            if nix::unistd::getppid() != parent {
                let _ = signal::kill(nix::unistd::getpid(), Signal::SIGKILL);
            }
            Ok(())
        });
    }
}

/// Makes the child started by `cmd` the leader of a new process group,
/// like [`isolate`], but without a hook between fork and exec, so that the
/// standard library starts it with `posix_spawn` (a `vfork`, no copy of the
/// harness's page tables) instead of `fork`. For a child that asks for the
/// parent-death signal itself, first thing ([`die_with_parent`], told the
/// harness's pid by [`crate::protocol::SIM_PARENT`]): the simulated
/// trainer.
pub fn isolate_spawned(cmd: &mut Command) {
    cmd.process_group(0)
        .env(crate::protocol::SIM_PARENT, std::process::id().to_string());
}

/// Asks the kernel to SIGKILL this process when the thread that started it
/// exits, and dies at once if `parent` is not its parent any more (the
/// harness died before the request took effect): what [`isolate`] does for
/// a child between fork and exec, done by a child started with
/// [`isolate_spawned`].
pub fn die_with_parent(parent: u32) {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if u32::try_from(nix::unistd::getppid().as_raw()).ok() != Some(parent) {
        kill_self();
    }
}

/// A pidfd for the child `pid` (Linux 5.3 and later): readable once the
/// child has exited, before it is reaped.
pub fn pidfd_open(pid: u32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: pidfd_open takes a pid and flags, no memory; it returns a new
    // descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// SIGKILLs every process of the group `pgid`. A group that is already gone
/// is not an error.
pub fn kill_group(pgid: u32) {
    if let Ok(raw) = i32::try_from(pgid) {
        if raw > 1 {
            let _ = signal::killpg(Pid::from_raw(raw), Signal::SIGKILL);
        }
    }
}

/// Makes this process a child subreaper: orphans of its subjects are
/// re-parented to it, so it can still kill and reap them.
pub fn become_subreaper() {
    let _ = nix::sys::prctl::set_child_subreaper(true);
}

/// Reaps every exited child of this process that is in process group `pgid`
/// without blocking. Returns how many were reaped.
pub fn reap_group(pgid: u32) -> usize {
    use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
    let mut n = 0;
    loop {
        match waitid(
            Id::PGid(Pid::from_raw(pgid as i32)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
        ) {
            Ok(WaitStatus::StillAlive) | Err(_) => return n,
            Ok(_) => n += 1,
        }
    }
}

/// The real user id of this process.
pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Kills the calling process with SIGKILL, as a crash point demands: no
/// destructor, no flush, no exit handler runs.
pub fn kill_self() -> ! {
    let _ = signal::raise(Signal::SIGKILL);
    // SIGKILL cannot be caught; this is only reached if raise failed.
    std::process::abort()
}

/// Forks this process, which must have one thread (checked: an error
/// otherwise): `Ok(None)` in the child, `Ok(Some(pid))` in the parent. The
/// child is a copy of a single-threaded process, so it may do anything the
/// parent could (allocate, take locks) and should end with
/// [`std::process::exit`]. For the simulated trainer's warm-start server
/// (`crashpoint sim-server`).
pub fn fork_single_threaded() -> io::Result<Option<u32>> {
    let threads = std::fs::read_dir("/proc/self/task")?.count();
    if threads != 1 {
        return Err(io::Error::other(format!(
            "cannot fork a process of {threads} threads"
        )));
    }
    // SAFETY: the process has one thread (checked above, and a process of
    // one thread cannot gain another behind its back), so the child holds
    // no lock another thread held at the fork and may run any code.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => Ok(None),
        nix::unistd::ForkResult::Parent { child } => Ok(Some(child.as_raw() as u32)),
    }
}

/// Bounds the C allocator to two arenas. glibc gives threads arenas of
/// their own (up to eight per core), each keeping its own high-water mark;
/// the harness's threads (the case workers, a watchdog and an stderr
/// reader per run, tracers) mostly wait on subjects and gain nothing from
/// them, while the more runs a campaign makes, the more arenas come to
/// exist at once: the harness's resident memory grew with its cases
/// although what it holds does not. No effect with another C library.
pub fn bound_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called
    // before the harness starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

// ---------------------------------------------------------------------------
// The registry of live runs
// ---------------------------------------------------------------------------

/// The environment variable whose value tags a run's processes.
const TAG_VAR: &str = crate::protocol::STATE_OUT;

#[derive(Default)]
struct Registry {
    /// Leader pid (= process group id) -> the run's tag (`NAME=value` bytes).
    live: HashMap<i32, Option<Vec<u8>>>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

/// Spawns hold it shared, from before the fork until the new run is
/// registered; sweeps and [`stop_all`] hold it exclusively, so they never
/// see a process that is being started and is not registered yet. (Taken
/// before the registry's mutex, never after.)
static GATE: RwLock<()> = RwLock::new(());

/// Set by [`stop_all`]: no run starts any more.
static STOPPING: AtomicBool = AtomicBool::new(false);

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

fn gate_shared() -> RwLockReadGuard<'static, ()> {
    GATE.read().unwrap_or_else(|e| e.into_inner())
}

fn gate_exclusive() -> RwLockWriteGuard<'static, ()> {
    GATE.write().unwrap_or_else(|e| e.into_inner())
}

/// The leaders of the live runs.
fn live_leaders() -> HashSet<i32> {
    registry().live.keys().copied().collect()
}

/// True once [`stop_all`] has been called: runs are being killed, and the
/// results of runs that end now mean nothing.
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

fn tag_of(cmd: &Command) -> Option<Vec<u8>> {
    cmd.get_envs()
        .find(|(k, _)| *k == OsStr::new(TAG_VAR))
        .and_then(|(_, v)| v)
        .map(|v| tag_bytes(v.as_bytes()))
}

fn tag_bytes(value: &[u8]) -> Vec<u8> {
    let mut t = TAG_VAR.as_bytes().to_vec();
    t.push(b'=');
    t.extend_from_slice(value);
    t
}

/// Spawns a subject (whose command makes it a process-group leader, see
/// [`isolate`]) and registers it as a live run; no sweep runs between the
/// fork and the registration, so none can mistake the new process for a
/// leftover (spawns of parallel workers do not wait for each other).
/// Refused with [`io::ErrorKind::Interrupted`] once [`stop_all`] was called.
pub fn spawn_registered(cmd: &mut Command) -> io::Result<Child> {
    let tag = tag_of(cmd);
    let _gate = gate_shared();
    if stopping() {
        return Err(io::Error::new(
            io::ErrorKind::Interrupted,
            "crashpoint is stopping: no new run is started",
        ));
    }
    let child = cmd.spawn()?;
    registry().live.insert(child.id() as i32, tag);
    Ok(child)
}

/// Registers `leader`, a descendant of this process that another of its
/// children forked (a warm-started run of `--preload`), as a live
/// run tagged like `cmd`'s: [`stop_all`] kills its group, other runs'
/// sweeps leave it alone, and [`end_run`] ends it as usual.
pub fn adopt(leader: u32, cmd: &Command) {
    if let Ok(leader) = i32::try_from(leader) {
        let _gate = gate_shared();
        registry().live.insert(leader, tag_of(cmd));
    }
}

/// Ends the run whose first process is `leader`: it is no longer live, and
/// with `sweep`, everything it left (the rest of its process group, and any
/// descendant of the harness that carries its tag) is SIGKILLed and, where
/// the harness is the parent, reaped. The leader itself is left for its
/// caller to reap (or was reaped already, by the tracer). Returns how many
/// processes of the run were still alive after the deadline (0 unless one
/// is stuck in the kernel).
///
/// The sweep reads `/proc` (about a millisecond): it can be skipped for a
/// run that cannot have left anything, a traced one (the tracer follows
/// every fork and kills every task before it returns) or the built-in
/// simulated trainer (which never forks).
pub fn end_run(leader: u32, sweep_after: bool) -> usize {
    let Ok(leader) = i32::try_from(leader) else {
        return 0;
    };
    if !sweep_after {
        registry().live.remove(&leader);
        return 0;
    }
    let _gate = gate_exclusive();
    let tag = registry().live.remove(&leader).flatten();
    sweep(
        &live_leaders(),
        Some(leader),
        tag.as_deref(),
        Duration::from_secs(3),
    )
}

/// Stops everything: no new run starts, and every live run's process group
/// is SIGKILLed (their workers then end them with [`end_run`] as usual).
pub fn stop_all() {
    let _gate = gate_exclusive();
    STOPPING.store(true, Ordering::SeqCst);
    let desc = descendants(&processes());
    for leader in live_leaders() {
        // Only a group whose leader is still ours (alive or a zombie we have
        // not reaped): its id cannot have been reused.
        if desc.contains_key(&leader) {
            let _ = signal::killpg(Pid::from_raw(leader), Signal::SIGKILL);
            let _ = signal::kill(Pid::from_raw(leader), Signal::SIGKILL);
        }
    }
}

/// Kills and reaps every descendant of this process that is not the leader
/// of a live run. For the command line, once no run is live: whatever is
/// left then (a daemon that scrubbed its environment) is a subject's.
pub fn kill_descendants() -> usize {
    let _gate = gate_exclusive();
    sweep(&live_leaders(), None, None, Duration::from_secs(3))
}

/// Kills every process, anywhere, whose environment tags it as a run whose
/// state file lies under `dir` (a dead harness's workspace). Only processes
/// whose environment this user may read are seen. Returns how many.
///
/// One look at `/proc` is not enough: a tagged process seen alive may fork
/// before its signal lands, and its child was not in the listing. So the
/// look is repeated until it finds no tagged process alive (a killed one
/// loses its environment as it exits), for at most two seconds.
pub fn kill_tagged_under(dir: &std::path::Path) -> usize {
    let mut prefix = tag_bytes(dir.as_os_str().as_bytes());
    prefix.push(b'/');
    let me = std::process::id() as i32;
    let mut killed = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let tagged: Vec<i32> = processes()
            .into_iter()
            .filter(|p| p.pid != me && !p.zombie && environ_has(p.pid, |e| e.starts_with(&prefix)))
            .map(|p| p.pid)
            .collect();
        if tagged.is_empty() || Instant::now() >= deadline {
            break;
        }
        for pid in tagged {
            let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            killed.insert(pid);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    killed.len()
}

/// One process, as `/proc/<pid>/stat` describes it.
#[derive(Debug, Clone, Copy)]
struct Proc {
    pid: i32,
    ppid: i32,
    pgrp: i32,
    zombie: bool,
}

fn processes() -> Vec<Proc> {
    let Ok(read) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    read.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid pgrp ...": comm may hold anything,
            // so parse after its last ')'.
            let close = stat.iter().rposition(|&b| b == b')')?;
            let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
            let mut f = rest.split_ascii_whitespace();
            let state = f.next()?;
            let ppid = f.next()?.parse().ok()?;
            let pgrp = f.next()?.parse().ok()?;
            Some(Proc {
                pid,
                ppid,
                pgrp,
                zombie: state == "Z" || state == "X",
            })
        })
        .collect()
}

/// The descendants of this process, by pid.
fn descendants(procs: &[Proc]) -> HashMap<i32, Proc> {
    let me = std::process::id() as i32;
    let mut children: HashMap<i32, Vec<Proc>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(*p);
    }
    let mut out = HashMap::new();
    let mut todo = vec![me];
    while let Some(parent) = todo.pop() {
        for c in children.get(&parent).into_iter().flatten() {
            if c.pid != me && out.insert(c.pid, *c).is_none() {
                todo.push(c.pid);
            }
        }
    }
    out
}

/// Does one entry of `/proc/<pid>/environ` satisfy `f`?
fn environ_has(pid: i32, f: impl Fn(&[u8]) -> bool) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|&b| b == 0).any(f))
        .unwrap_or(false)
}

/// Kills and reaps the descendants that belong to the run `leader` (its
/// group, or its tag), or with `leader == None` every descendant; never a
/// process of a live run, and never `leader` itself. Loops until none is left
/// or `limit` has passed; returns how many were still there.
fn sweep(live: &HashSet<i32>, leader: Option<i32>, tag: Option<&[u8]>, limit: Duration) -> usize {
    let me = std::process::id() as i32;
    let deadline = Instant::now() + limit;
    // Pids seen alive as the run's: their zombies are the run's too.
    let mut seen: HashSet<i32> = HashSet::new();
    loop {
        let desc = descendants(&processes());
        let mut left = 0;
        for p in desc.values() {
            if Some(p.pid) == leader || live.contains(&p.pid) || live.contains(&p.pgrp) {
                continue;
            }
            let ours = match leader {
                None => true,
                Some(l) => {
                    p.pgrp == l
                        || (p.zombie && seen.contains(&p.pid))
                        || (!p.zombie && tag.is_some_and(|t| environ_has(p.pid, |e| e == t)))
                }
            };
            if !ours {
                continue;
            }
            left += 1;
            if p.zombie {
                if p.ppid == me {
                    let _ = nix::sys::wait::waitpid(
                        Pid::from_raw(p.pid),
                        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                    );
                }
            } else {
                seen.insert(p.pid);
                let _ = signal::kill(Pid::from_raw(p.pid), Signal::SIGKILL);
            }
        }
        if left == 0 || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ---------------------------------------------------------------------------
// Termination signals
// ---------------------------------------------------------------------------

/// The signals that ask the harness to stop: SIGINT, SIGTERM and SIGHUP.
pub const TERMINATION_SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// Blocks the termination signals in the calling thread (and so in every
/// thread it starts later) and starts a thread that receives them one by one
/// with `sigwait` and calls `handler` with the signal number. Call it first
/// thing in `main`, before any other thread exists. Children are not
/// affected: the standard library clears the signal mask of every process
/// it spawns.
pub fn on_termination_signals(handler: impl Fn(i32) + Send + 'static) -> io::Result<()> {
    let mut set = signal::SigSet::empty();
    for s in TERMINATION_SIGNALS {
        set.add(s);
    }
    set.thread_block().map_err(io::Error::from)?;
    std::thread::Builder::new()
        .name("crashpoint-signals".into())
        .spawn(move || loop {
            if let Ok(sig) = set.wait() {
                handler(sig as i32);
            }
        })?;
    Ok(())
}

/// The CPUs this process may run on, in order (empty when unknown).
pub fn allowed_cpus() -> Vec<usize> {
    use nix::sched::{sched_getaffinity, CpuSet};
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Pins the calling thread to `cpu`; the processes it starts from now on
/// inherit that (a campaign's worker pins itself, so its subjects run on
/// one CPU each and workers do not steal each other's caches). Best effort:
/// a refusal leaves the thread where it was.
pub fn pin_to_cpu(cpu: usize) {
    use nix::sched::{sched_setaffinity, CpuSet};
    let mut set = CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = sched_setaffinity(Pid::from_raw(0), &set);
    }
}

/// Is `dir` a directory on a tmpfs that this user may write to?
pub fn is_writable_tmpfs(dir: &std::path::Path) -> bool {
    use nix::sys::statfs::{statfs, TMPFS_MAGIC};
    let tmpfs = statfs(dir).is_ok_and(|s| s.filesystem_type() == TMPFS_MAGIC);
    tmpfs
        && nix::unistd::access(
            dir,
            nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
        )
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_is_parsed_for_this_process() {
        let me = std::process::id() as i32;
        let procs = processes();
        let p = procs.iter().find(|p| p.pid == me).expect("this process");
        assert_eq!(p.ppid, nix::unistd::getppid().as_raw());
        assert_eq!(p.pgrp, nix::unistd::getpgrp().as_raw());
        assert!(!p.zombie);
    }

    #[test]
    fn a_tagged_process_that_keeps_forking_leaves_nothing_behind() {
        // A dead harness's subject that forks sleepers as fast as it can:
        // children born after a look at /proc are found by the next look.
        let dir = tempfile::tempdir().expect("tempdir");
        let tagged = |pid: i32| {
            let mut prefix = tag_bytes(dir.path().as_os_str().as_bytes());
            prefix.push(b'/');
            environ_has(pid, |e| e.starts_with(&prefix))
        };
        let mut forker = Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 3000 ]; do sleep 30 & i=$((i+1)); done; wait",
            ])
            .env(TAG_VAR, dir.path().join("case/state.json"))
            .spawn()
            .expect("sh");
        let alive = || -> Vec<i32> {
            processes()
                .into_iter()
                .filter(|p| !p.zombie && tagged(p.pid))
                .map(|p| p.pid)
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while alive().len() < 5 {
            assert!(Instant::now() < deadline, "the sleepers did not start");
            std::thread::sleep(Duration::from_millis(2));
        }
        let killed = kill_tagged_under(dir.path());
        let _ = forker.wait();
        std::thread::sleep(Duration::from_millis(200));
        let left = alive();
        for &p in &left {
            let _ = signal::kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        assert!(killed >= 5, "{killed}");
        assert!(left.is_empty(), "{} tagged processes left", left.len());
    }

    #[test]
    fn a_spawned_child_is_a_descendant_and_its_run_is_swept() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        isolate(&mut cmd);
        let mut child = spawn_registered(&mut cmd).expect("spawn");
        let pid = child.id() as i32;
        assert!(descendants(&processes()).contains_key(&pid));
        kill_group(child.id());
        let _ = child.wait();
        assert_eq!(end_run(child.id(), true), 0);
        assert!(!registry().live.contains_key(&pid));
    }
}
