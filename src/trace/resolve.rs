//! Path resolution: what a trapped call touches, resolved as the kernel
//! would (descriptors through `/proc/<tid>/fd`, relative paths against the
//! caller's cwd or directory descriptor, final symlinks followed or not),
//! and whether that is inside the sandbox, exempt, outside, or a
//! pseudo-file.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;

use super::filter::{open_mutates, Kind, SysDesc};
use super::TraceConfig;

/// The resolved configuration.
pub(super) struct Policy {
    pub(super) sandbox: PathBuf,
    pub(super) exempt: Vec<PathBuf>,
    pub(super) stop_at: Option<u64>,
    pub(super) power: bool,
}

impl Policy {
    pub(super) fn new(cfg: &TraceConfig) -> Self {
        let sandbox = fs::canonicalize(&cfg.sandbox).unwrap_or_else(|_| cfg.sandbox.clone());
        let exempt = cfg
            .exempt
            .iter()
            .map(|e| {
                let abs = if e.is_absolute() {
                    e.clone()
                } else {
                    std::env::current_dir().unwrap_or_default().join(e)
                };
                canonicalize_loose(&abs, true)
            })
            .collect();
        Policy {
            sandbox,
            exempt,
            stop_at: cfg.stop_at,
            power: cfg.power,
        }
    }

    /// Exempt first, then the sandbox (which may itself live under `/dev`,
    /// as in `/dev/shm`), then the pseudo-file systems.
    pub(super) fn class_of(&self, path: &Path) -> Class {
        if self.exempt.iter().any(|e| path.starts_with(e)) {
            Class::Exempt
        } else if path.starts_with(&self.sandbox) {
            Class::Inside
        } else if is_special(path) {
            Class::Ignored
        } else {
            Class::Outside
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// Touches the sandbox: counted.
    Inside,
    /// One of the exempt files: neither counted nor reported.
    Exempt,
    /// A regular path outside the sandbox: reported.
    Outside,
    /// Pipes, sockets, anonymous inodes, `/dev`, `/proc`, `/sys`, unreadable.
    Ignored,
}

/// Pseudo-file systems and devices (and what is not a path at all, such as
/// `pipe:[..]`): never "outside", and counted only if the sandbox is there.
pub(super) fn is_special(path: &Path) -> bool {
    !path.is_absolute()
        || path.starts_with("/dev")
        || path.starts_with("/proc")
        || path.starts_with("/sys")
        || path.as_os_str().as_bytes().starts_with(b"/memfd:")
}

/// Canonicalizes `full` (absolute). When it does not exist yet, or `follow`
/// is false (the call acts on a final symlink itself), the parent is
/// canonicalized and the last component joined; failing that, the path is
/// normalized lexically.
pub fn canonicalize_loose(full: &Path, follow: bool) -> PathBuf {
    if follow {
        if let Ok(c) = fs::canonicalize(full) {
            return c;
        }
    }
    match (full.parent(), full.file_name()) {
        (Some(parent), Some(name)) => {
            if let Ok(c) = fs::canonicalize(parent) {
                return c.join(name);
            }
        }
        _ => {
            if let Ok(c) = fs::canonicalize(full) {
                return c;
            }
        }
    }
    normalize_lexically(full)
}

pub(super) fn normalize_lexically(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A `/proc` link target, without the ` (deleted)` the kernel appends for an
/// unlinked file or directory.
pub(super) fn read_proc_link(link: &str) -> Option<PathBuf> {
    let target = fs::read_link(link).ok()?;
    let bytes = target.as_os_str().as_bytes();
    const DELETED: &[u8] = b" (deleted)";
    Some(match bytes.strip_suffix(DELETED) {
        Some(b) if b.starts_with(b"/") => PathBuf::from(OsString::from_vec(b.to_vec())),
        _ => target,
    })
}

/// Reads `buf.len()` bytes at `addr` in the tracee, with `process_vm_readv`,
/// or `/proc/<tid>/mem` if that is refused. Returns how many were read.
pub(super) fn read_tracee(tid: i32, addr: u64, buf: &mut [u8]) -> Option<usize> {
    let remote = [RemoteIoVec {
        base: usize::try_from(addr).ok()?,
        len: buf.len(),
    }];
    match process_vm_readv(Pid::from_raw(tid), &mut [io::IoSliceMut::new(buf)], &remote) {
        Ok(n) => Some(n),
        Err(_) => File::open(format!("/proc/{tid}/mem"))
            .and_then(|f| f.read_at(buf, addr))
            .ok(),
    }
}

/// Reads a NUL-terminated string (a path: at most `PATH_MAX` bytes) from the
/// tracee, never reading across a 4 KiB boundary in one go so that a string
/// ending just before an unmapped page is still read.
pub(super) fn read_cstring(tid: i32, addr: u64) -> Option<Vec<u8>> {
    const CHUNK: u64 = 4096;
    const MAX: usize = libc::PATH_MAX as usize;
    if addr == 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut cur = addr;
    let mut buf = [0u8; CHUNK as usize];
    while out.len() < MAX {
        let want = ((CHUNK - cur % CHUNK) as usize).min(MAX - out.len());
        let n = read_tracee(tid, cur, &mut buf[..want])?;
        if n == 0 {
            return None;
        }
        if let Some(end) = buf[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..end]);
            return Some(out);
        }
        out.extend_from_slice(&buf[..n]);
        cur += n as u64;
    }
    None
}

/// What one argument of a trapped call refers to.
pub(super) enum Target {
    Path(PathBuf, Class),
    Ignored,
}

impl Policy {
    /// The file behind descriptor `fd` of the tracee.
    pub(super) fn fd_target(&self, tid: i32, fd: u64) -> Target {
        let fd = fd as libc::c_int;
        if fd < 0 {
            return Target::Ignored;
        }
        // `pipe:[..]`, `socket:[..]` and `anon_inode:..` are not absolute.
        match read_proc_link(&format!("/proc/{tid}/fd/{fd}")) {
            Some(p) => match self.class_of(&p) {
                Class::Ignored => Target::Ignored,
                class => Target::Path(p, class),
            },
            None => Target::Ignored,
        }
    }

    /// The path at `addr`, relative to descriptor `dir` (or the cwd).
    pub(super) fn path_target(
        &self,
        tid: i32,
        dir: Option<u64>,
        addr: u64,
        follow: bool,
    ) -> Target {
        let Some(raw) = read_cstring(tid, addr) else {
            return Target::Ignored;
        };
        let raw = PathBuf::from(OsString::from_vec(raw));
        let full = if raw.is_absolute() {
            raw
        } else {
            let base = match dir.map(|d| d as libc::c_int) {
                None | Some(libc::AT_FDCWD) => read_proc_link(&format!("/proc/{tid}/cwd")),
                Some(fd) if fd >= 0 => read_proc_link(&format!("/proc/{tid}/fd/{fd}")),
                Some(_) => None,
            };
            match base {
                Some(b) if b.is_absolute() => b.join(raw),
                _ => return Target::Ignored,
            }
        };
        // Checked before canonicalizing: `/proc/self` would resolve to us.
        if is_special(&full) && !full.starts_with(&self.sandbox) {
            return Target::Ignored;
        }
        let canon = canonicalize_loose(&full, follow);
        let class = self.class_of(&canon);
        if class == Class::Ignored {
            Target::Ignored
        } else {
            Target::Path(canon, class)
        }
    }

    /// What the call `desc` with arguments `args` made by `tid` touches.
    pub(super) fn targets(&self, tid: i32, desc: &SysDesc, args: &[u64; 6]) -> Vec<Target> {
        match desc.kind {
            Kind::Open { dir, path, flags } => {
                if flags.is_some_and(|f| !open_mutates(args[f])) {
                    return Vec::new();
                }
                vec![self.path_target(tid, dir.map(|d| args[d]), args[path], true)]
            }
            Kind::OpenHow { dir, path, how } => {
                let mut flags = [0u8; 8];
                match read_tracee(tid, args[how], &mut flags) {
                    Some(8) if open_mutates(u64::from_ne_bytes(flags)) => {
                        vec![self.path_target(tid, Some(args[dir]), args[path], true)]
                    }
                    _ => Vec::new(),
                }
            }
            Kind::Fd(fd) => vec![self.fd_target(tid, args[fd])],
            Kind::Global => Vec::new(),
            Kind::Path { dir, path, follow } => {
                vec![self.path_target(tid, dir.map(|d| args[d]), args[path], follow)]
            }
            Kind::Two {
                old_dir,
                old,
                new_dir,
                new,
                flags,
            } => {
                let flags = flags.map_or(0, |f| args[f] as libc::c_int);
                let old_dir = old_dir.map(|d| args[d]);
                let empty_old = flags & libc::AT_EMPTY_PATH != 0
                    && read_cstring(tid, args[old]).is_some_and(|s| s.is_empty());
                let old_target = match old_dir {
                    Some(fd) if empty_old => self.fd_target(tid, fd),
                    _ => self.path_target(
                        tid,
                        old_dir,
                        args[old],
                        flags & libc::AT_SYMLINK_FOLLOW != 0,
                    ),
                };
                let new_target = self.path_target(tid, new_dir.map(|d| args[d]), args[new], false);
                vec![old_target, new_target]
            }
        }
    }
}
