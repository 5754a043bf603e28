//! The workspace: one directory (under [`default_base`]: `TMPDIR`, else
//! `/dev/shm`, else the system temporary directory) that holds every sandbox of
//! one harness process, and the rule by which a harness tells a workspace
//! left by a dead run from one whose owner is alive, whatever PID namespace,
//! container or machine the owner runs in.
//!
//! # Liveness
//!
//! The owner proves it is alive itself: for its whole life it holds an
//! exclusive `flock` on [`LOCK`] inside its workspace. The kernel drops the
//! lock when the owner dies, however it dies (SIGKILL included), and a lock
//! is seen by every process that opens the same file, in any PID namespace.
//! Beside it the marker [`MARKER`] records, for humans, the owner's pid and
//! start time, boot id, PID namespace and host.
//!
//! At start, [`remove_stale`] removes a `crashpoint-*` directory of the base
//! only when it is a real directory of this user, holds the marker and the
//! lock file, looks stale (its marker names a pid of this boot and PID
//! namespace that is gone, or another boot or namespace), and its lock can
//! be taken without waiting; it keeps holding that lock while it removes the
//! directory, so two harnesses never remove one workspace, nor one that an
//! owner still holds. On a file system where locks cannot be trusted (NFS,
//! SMB/CIFS and other network or FUSE mounts, see [`lock_trust`]) nothing is
//! removed automatically: the user is told once how to clean up.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{Flock, FlockArg};

/// The marker that says a directory is a crashpoint workspace; it holds, one
/// `key value` per line, the owner's `pid`, `start-time` (field 22 of
/// `/proc/<pid>/stat`), `boot-id`, `pid-namespace` and `host`. Liveness is
/// decided by [`LOCK`], never by the marker alone.
pub const MARKER: &str = ".crashpoint-workspace";

/// The lock file inside a workspace: its owner holds an exclusive `flock`
/// on it for as long as it lives.
pub const LOCK: &str = ".crashpoint-lock";

/// Where workspaces go when no directory is given: `TMPDIR` when it is set
/// (the user chose it), else `/dev/shm` when it is a writable tmpfs (sandboxes
/// are written and removed all the time, and subjects fsync what they save:
/// memory is the fastest place), else the system temporary directory.
pub fn default_base() -> PathBuf {
    if std::env::var_os("TMPDIR").is_some_and(|v| !v.is_empty()) {
        return std::env::temp_dir();
    }
    let shm = Path::new("/dev/shm");
    if crate::sys::is_writable_tmpfs(shm) {
        return shm.to_path_buf();
    }
    std::env::temp_dir()
}

/// A workspace: a directory under [`default_base`] (or a base of the
/// caller's choosing) that holds every sandbox of one harness process, marked as its own,
/// locked for as long as it exists, and removed when dropped, without
/// following links out of it.
#[derive(Debug)]
pub struct Workspace {
    dir: PathBuf,
    /// Held until the directory is removed (fields drop after [`Drop::drop`]).
    _lock: Option<Flock<File>>,
}

impl Workspace {
    /// Creates a new marked and locked workspace in [`default_base`], after
    /// removing workspaces left behind by dead harness runs (see
    /// [`remove_stale`]).
    pub fn create() -> io::Result<Workspace> {
        Workspace::create_in(&default_base())
    }

    /// [`Workspace::create`] in `base` instead of [`default_base`].
    pub fn create_in(base: &Path) -> io::Result<Workspace> {
        let sweep = remove_stale(base);
        if let Some(hint) = sweep.hint {
            if !HINTED.swap(true, Ordering::SeqCst) {
                eprintln!("{hint}");
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("crashpoint-")
            .tempdir_in(base)?
            .keep();
        // The lock file exists only once its lock is held, and the marker
        // only after that: a harness that finds the marker and can take the
        // lock knows the owner is gone. Where the lock cannot be taken
        // (ENOLCK on a mount without locking), there is no lock file, and
        // no harness ever removes this workspace automatically.
        let lock_path = dir.join(LOCK);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&lock_path)?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => Some(l),
            Err(_) => {
                let _ = std::fs::remove_file(&lock_path);
                None
            }
        };
        let ws = Workspace { dir, _lock: lock };
        std::fs::write(ws.dir.join(MARKER), Owner::me().to_marker())?;
        Ok(ws)
    }

    /// The workspace directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Does this workspace hold its lock (false only on file systems without
    /// working `flock`)?
    pub fn locked(&self) -> bool {
        self._lock.is_some()
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = remove_tree(&self.dir);
    }
}

/// Has the clean-up hint been printed by this process?
static HINTED: AtomicBool = AtomicBool::new(false);

/// Who made a workspace, as its marker records it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Owner {
    /// Its pid, in its own PID namespace.
    pub pid: Option<u32>,
    /// Its start time in clock ticks since boot.
    pub start_time: Option<u64>,
    /// `/proc/sys/kernel/random/boot_id` when it started.
    pub boot_id: Option<String>,
    /// `readlink /proc/self/ns/pid`, e.g. `pid:[4026531836]`.
    pub pid_ns: Option<String>,
    /// The host name.
    pub host: Option<String>,
}

impl Owner {
    /// This process.
    pub fn me() -> Owner {
        let pid = std::process::id();
        Owner {
            pid: Some(pid),
            start_time: start_time(pid),
            boot_id: boot_id(),
            pid_ns: pid_namespace(),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty()),
        }
    }

    /// The marker's text.
    pub fn to_marker(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                out += &format!("{k} {v}\n");
            }
        };
        line("pid", self.pid.map(|p| p.to_string()));
        line("start-time", self.start_time.map(|t| t.to_string()));
        line("boot-id", self.boot_id.clone());
        line("pid-namespace", self.pid_ns.clone());
        line("host", self.host.clone());
        out
    }

    /// Reads a marker: the `key value` lines above, or the single line
    /// `pid [start-time]` that earlier versions wrote.
    pub fn parse(text: &str) -> Owner {
        let mut o = Owner::default();
        let mut words = text.split_ascii_whitespace();
        if let Some(Ok(pid)) = words.next().map(str::parse::<u32>) {
            o.pid = Some(pid);
            o.start_time = words.next().and_then(|t| t.parse().ok());
            return o;
        }
        for l in text.lines() {
            let Some((k, v)) = l.trim().split_once(' ') else {
                continue;
            };
            let v = v.trim().to_string();
            match k {
                "pid" => o.pid = v.parse().ok(),
                "start-time" => o.start_time = v.parse().ok(),
                "boot-id" => o.boot_id = Some(v),
                "pid-namespace" => o.pid_ns = Some(v),
                "host" => o.host = Some(v),
                _ => {}
            }
        }
        o
    }

    /// Does the marker alone make the owner look gone, seen from `here`?
    /// Another boot, another PID namespace or another host: its pid means
    /// nothing here, so only the lock can tell. Same boot and namespace: the
    /// pid is gone, or is now a process with another start time.
    pub fn looks_gone(&self, here: &Owner) -> bool {
        let differs = |a: &Option<String>, b: &Option<String>| a.is_some() && a != b;
        if differs(&self.boot_id, &here.boot_id)
            || differs(&self.pid_ns, &here.pid_ns)
            || differs(&self.host, &here.host)
        {
            return true;
        }
        let Some(pid) = self.pid else {
            return true;
        };
        match (self.start_time, start_time(pid)) {
            (_, None) => true,
            (Some(t), Some(now)) => t != now,
            (None, Some(_)) => false,
        }
    }
}

/// The start time of process `pid` in clock ticks since boot, if it exists
/// in this PID namespace.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    // Fields from 3 (state) on; the start time is field 22.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// This boot's id.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// This process's PID namespace, e.g. `pid:[4026531836]`.
fn pid_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|p| p.display().to_string())
}

/// Is the harness that wrote this marker gone (by the marker alone, in this
/// PID namespace)? `None` when the marker names no pid.
pub fn owner_gone(marker: &str) -> Option<bool> {
    let o = Owner::parse(marker);
    o.pid?;
    Some(o.looks_gone(&Owner::me()))
}

/// Can `flock` on this file system be trusted to prove an owner alive?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockTrust {
    /// A local file system: one kernel sees every lock.
    Local,
    /// A network or user-space file system (named): locks may be emulated,
    /// local to one client, or lost on a server restart.
    Unreliable(&'static str),
}

/// What `statfs`'s `f_type` says about locks on a file system.
pub fn lock_trust(f_type: i64) -> LockTrust {
    let name = match f_type {
        0x6969 => "nfs",
        0x517B => "smb",
        0xFF53_4D42 => "cifs",
        0xFE53_4D42 => "smb2",
        0x0102_1997 => "9p",
        0x5346_414F => "afs",
        0x6B41_4653 => "kafs",
        0x7375_7245 => "coda",
        0x00C3_6400 => "ceph",
        0x0BD0_0BD0 => "lustre",
        0x4750_4653 => "gpfs",
        0x0116_1970 => "gfs2",
        0x7461_636F => "ocfs2",
        0x6573_5546 => "fuse",
        0x564C => "ncp",
        _ => return LockTrust::Local,
    };
    LockTrust::Unreliable(name)
}

/// The lock trust of the file system holding `dir` (local when unknown).
pub fn lock_trust_of(dir: &Path) -> LockTrust {
    match nix::sys::statfs::statfs(dir) {
        #[allow(clippy::unnecessary_cast)]
        Ok(s) => lock_trust(s.filesystem_type().0 as i64),
        Err(_) => LockTrust::Local,
    }
}

/// What [`remove_stale`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Workspaces removed: their owner was gone and their lock was taken.
    pub removed: Vec<PathBuf>,
    /// Workspaces kept because their owner holds its lock.
    pub live: Vec<PathBuf>,
    /// Workspaces left alone because nothing can prove their owner gone
    /// (no lock file, an unreliable file system).
    pub unproven: Vec<PathBuf>,
    /// What to tell the user (an unreliable file system with workspaces on it).
    pub hint: Option<String>,
}

/// Removes `crashpoint-*` directories in `base` left by dead harness runs:
/// a real directory (not a link) of this user, holding [`MARKER`] and
/// [`LOCK`], whose owner looks gone ([`Owner::looks_gone`]) and whose lock
/// can be taken at once. Holding that lock, it first kills the processes
/// still tagged as that workspace's runs (descendants that outlived a
/// SIGKILLed harness), then removes the directory. Anything else is left
/// alone; on a file system whose locks cannot be trusted nothing is removed
/// and [`Sweep::hint`] says how to clean up by hand.
pub fn remove_stale(base: &Path) -> Sweep {
    remove_stale_with(base, lock_trust_of(base))
}

/// [`remove_stale`] with the file system's lock trust given.
pub fn remove_stale_with(base: &Path, trust: LockTrust) -> Sweep {
    let mut sweep = Sweep::default();
    let Ok(read) = std::fs::read_dir(base) else {
        return sweep;
    };
    let uid = crate::sys::uid();
    let me = Owner::me();
    let mut candidates: Vec<PathBuf> = Vec::new();
    for e in read.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // `symlink_metadata`: a link named crashpoint-* is not followed.
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        if !name.starts_with("crashpoint-") || !meta.is_dir() || meta.uid() != uid {
            continue;
        }
        let marker = e.path().join(MARKER);
        if !marker.symlink_metadata().is_ok_and(|m| m.is_file()) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&marker) else {
            continue;
        };
        if Owner::parse(&text).looks_gone(&me) {
            candidates.push(e.path());
        }
    }
    candidates.sort();
    if let LockTrust::Unreliable(fs) = trust {
        if !candidates.is_empty() {
            sweep.hint = Some(unreliable_hint(base, fs, &candidates));
        }
        sweep.unproven = candidates;
        return sweep;
    }
    for dir in candidates {
        match take_lock(&dir) {
            Taken::Held(lock) => {
                crate::sys::kill_tagged_under(&dir);
                let _ = remove_tree(&dir);
                drop(lock);
                sweep.removed.push(dir);
            }
            Taken::Busy => sweep.live.push(dir),
            Taken::NoLock => sweep.unproven.push(dir),
        }
    }
    sweep
}

/// What trying a workspace's lock gave.
enum Taken {
    /// Taken: the owner is gone.
    Held(Flock<File>),
    /// Held by someone: the owner (or another harness removing it) is alive.
    Busy,
    /// No usable lock file: nothing proves the owner gone.
    NoLock,
}

/// Tries the lock of the workspace `dir` without waiting. The lock file
/// must be a regular file (not followed if a link); once locked, it must
/// still be the file at that path (not removed and replaced meanwhile).
fn take_lock(dir: &Path) -> Taken {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(LOCK);
    let Ok(file) = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    else {
        return Taken::NoLock;
    };
    let Ok(meta) = file.metadata() else {
        return Taken::NoLock;
    };
    if !meta.is_file() {
        return Taken::NoLock;
    }
    let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Taken::Busy,
        Err(_) => return Taken::NoLock,
    };
    let same = path
        .symlink_metadata()
        .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
    if same {
        Taken::Held(lock)
    } else {
        // Removed by another harness between our open and our lock.
        Taken::Busy
    }
}

/// How to clean up by hand where locks cannot be trusted.
fn unreliable_hint(base: &Path, fs: &str, dirs: &[PathBuf]) -> String {
    let list: Vec<String> = dirs.iter().map(|d| format!("  {}", d.display())).collect();
    format!(
        "crashpoint: TMPDIR={} is on a {fs} file system, where a lock cannot prove a workspace's owner alive, so no workspace is removed automatically. These look left by runs that are over:\n{}\nEach one's {MARKER} names its owner (pid, boot-id, pid-namespace, host); once no crashpoint runs with it, remove it with `rm -rf`, or set TMPDIR to a local directory.",
        base.display(),
        list.join("\n")
    )
}

/// Removes the directory tree `dir`, never following a symbolic link (a
/// link to `/` or to the user's home inside it loses nothing but the link).
/// A directory a subject made unwritable or unreadable is given its owner's
/// permissions back first.
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            open_up(dir);
            std::fs::remove_dir_all(dir)
        }
    }
}

/// Gives every directory under `dir` (links not followed) `u+rwx`.
pub fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = dir.symlink_metadata() else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(read) = std::fs::read_dir(dir) {
        for e in read.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                open_up(&e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_old_markers_parse() {
        let me = Owner::me();
        assert_eq!(Owner::parse(&me.to_marker()), me);
        assert!(me.pid_ns.as_deref().is_some_and(|n| n.starts_with("pid:[")));
        let old = Owner::parse("123 456");
        assert_eq!((old.pid, old.start_time), (Some(123), Some(456)));
        assert!(!me.looks_gone(&me));
    }

    #[test]
    fn another_namespace_or_boot_looks_gone_by_the_marker() {
        let me = Owner::me();
        let other_ns = Owner {
            pid_ns: Some("pid:[1]".into()),
            ..me.clone()
        };
        assert!(other_ns.looks_gone(&me));
        let other_boot = Owner {
            boot_id: Some("x".into()),
            ..me.clone()
        };
        assert!(other_boot.looks_gone(&me));
    }

    #[test]
    fn network_file_systems_are_not_trusted() {
        assert_eq!(lock_trust(0x6969), LockTrust::Unreliable("nfs"));
        assert_eq!(lock_trust(0xFF53_4D42), LockTrust::Unreliable("cifs"));
        assert_eq!(lock_trust(0x0102_1994), LockTrust::Local); // tmpfs
        assert_eq!(lock_trust(0xEF53), LockTrust::Local); // ext4
    }

    #[test]
    fn a_live_workspace_is_kept_a_dead_one_removed() {
        let base = tempfile::tempdir().expect("tempdir");
        let live = Workspace::create_in(base.path()).expect("workspace");
        assert!(live.locked());
        // A dead owner's: a lock file nobody holds, a marker of another namespace.
        let dead = base.path().join("crashpoint-dead");
        std::fs::create_dir(&dead).expect("mkdir");
        std::fs::write(dead.join(LOCK), "").expect("lock");
        let ghost = Owner {
            pid_ns: Some("pid:[1]".into()),
            ..Owner::me()
        };
        std::fs::write(dead.join(MARKER), ghost.to_marker()).expect("marker");
        // The live one, seen as if from another namespace.
        std::fs::write(live.path().join(MARKER), ghost.to_marker()).expect("marker");
        let sweep = remove_stale_with(base.path(), LockTrust::Local);
        assert_eq!(sweep.removed, vec![dead.clone()]);
        assert_eq!(sweep.live, vec![live.path().to_path_buf()]);
        assert!(!dead.exists() && live.path().exists());
    }

    #[test]
    fn on_an_unreliable_file_system_nothing_is_removed_and_the_user_is_told() {
        let base = tempfile::tempdir().expect("tempdir");
        let dead = base.path().join("crashpoint-dead");
        std::fs::create_dir(&dead).expect("mkdir");
        std::fs::write(dead.join(LOCK), "").expect("lock");
        std::fs::write(dead.join(MARKER), "2147483646 1").expect("marker");
        let sweep = remove_stale_with(base.path(), LockTrust::Unreliable("nfs"));
        assert!(dead.exists());
        assert!(sweep.removed.is_empty());
        assert_eq!(sweep.unproven, vec![dead.clone()]);
        let hint = sweep.hint.expect("a hint");
        assert!(hint.contains("nfs file system"), "{hint}");
        assert!(hint.contains(&dead.display().to_string()), "{hint}");
        assert!(hint.contains("rm -rf"), "{hint}");
    }
}
