//! The few process-control system calls the harness needs, fenced in one
//! place: putting a child in its own process group with a parent-death signal,
//! killing a whole group, making the harness a child subreaper, and the
//! simulated trainer killing itself at a crash point. (The system-call tracer
//! has its own fenced module, `trace`.)

use std::os::unix::process::CommandExt;
use std::process::Command;

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

/// Kills the calling process with SIGKILL, as a crash point demands: no
/// destructor, no flush, no exit handler runs.
pub fn kill_self() -> ! {
    let _ = signal::raise(Signal::SIGKILL);
    // SIGKILL cannot be caught; this is only reached if raise failed.
    std::process::abort()
}
