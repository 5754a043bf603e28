//! Recording for the power-loss model: every trapped call that changes the
//! sandbox, or makes it durable, as a [`crate::power::Op`] with what the
//! model needs (the bytes a write carries, its offset, the flags of an
//! open, the text of a symbolic link), on paths relative to the sandbox.
//!
//! Calls are seen at their entry, before they run: a call that then fails
//! (a `mkdir` of an existing directory) is recorded too, and the model
//! refuses it when it is replayed (every operation is checked against the
//! tree the earlier ones built), which drops it as the kernel did. A write
//! is assumed to write all its bytes (regular files on a local file system
//! do).
//!
//! Files are named by their path at the time of each call (the descriptor
//! resolved through `/proc/<tid>/fd`), so descriptors shared by `dup` or
//! `fork` need no bookkeeping; an open is an `Open` followed by a `Close`
//! of a handle of its own. A write through a descriptor opened with
//! `O_SYNC` or `O_DSYNC` (read from `/proc/<tid>/fdinfo`) is followed by an
//! `Fsync` of the file. `sync` and `syncfs` are recorded but not counted:
//! the census, and so the kill results, are unchanged.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::extent::{fdinfo, read_u64, write_offset};
use super::filter::SysDesc;
use super::resolve::{read_cstring, read_tracee, Class, Policy, Target};
use crate::power::{FileRef, Handle, Op, OpenFlags, Rope, SyncMode};

/// One operation for the power-loss model, with the census number it
/// belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedOp {
    /// The census number of the call, or for a call that is not counted
    /// (`sync`), the number of counted calls made before it. A run killed
    /// at the entry of call `k` did exactly the operations with `call < k`.
    pub call: u64,
    /// The operation.
    pub op: Op,
}

/// Writes larger than this are not recorded (their data could not be held).
const MAX_WRITE: u64 = 1 << 30;

/// The recorder of one traced run.
#[derive(Debug, Default)]
pub(super) struct Recorder {
    pub(super) ops: Vec<TracedOp>,
    next_handle: u64,
}

/// The path of `t` relative to the sandbox, when it is inside.
fn inside(policy: &Policy, t: &Target) -> Option<String> {
    match t {
        Target::Path(p, Class::Inside) => rel(policy, p),
        _ => None,
    }
}

fn rel(policy: &Policy, p: &Path) -> Option<String> {
    let r = p.strip_prefix(&policy.sandbox).ok()?;
    let s = r.to_str()?;
    Some(if s.is_empty() { ".".into() } else { s.into() })
}

/// `len` bytes at `addr` in the tracee.
fn read_buf(tid: i32, addr: u64, len: u64) -> Option<Vec<u8>> {
    if len > MAX_WRITE {
        return None;
    }
    let mut buf = vec![0u8; len as usize];
    let mut done = 0;
    while done < buf.len() {
        let n = read_tracee(tid, addr + done as u64, &mut buf[done..])?;
        if n == 0 {
            return None;
        }
        done += n;
    }
    Some(buf)
}

/// The bytes an iovec array of `count` entries at `addr` points at.
fn read_iov(tid: i32, addr: u64, count: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..count.min(1024) {
        let base = read_u64(tid, addr + i * 16)?;
        let len = read_u64(tid, addr + i * 16 + 8)?;
        if out.len() as u64 + len > MAX_WRITE {
            return None;
        }
        out.extend(read_buf(tid, base, len)?);
    }
    Some(out)
}

/// `len` bytes of the file behind `fd` at `offset` (a copy's source).
fn read_file(tid: i32, fd: u64, offset: u64, len: u64) -> Option<Vec<u8>> {
    let f = File::open(format!("/proc/{tid}/fd/{}", fd as i32)).ok()?;
    let size = f.metadata().ok()?.len();
    let len = len.min(size.saturating_sub(offset)).min(MAX_WRITE);
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, offset).ok()?;
    Some(buf)
}

/// The offset an optional `loff_t *` argument gives, else the position.
fn offset_arg(tid: i32, ptr: u64, fd: u64) -> Option<u64> {
    if ptr == 0 {
        fdinfo(tid, fd).map(|(pos, _)| pos)
    } else {
        read_u64(tid, ptr)
    }
}

impl Recorder {
    /// Looks at the trapped call `desc(args)` made by `tid`, numbered
    /// `call` (see [`TracedOp::call`]), and records what it does inside the
    /// sandbox.
    pub(super) fn observe(
        &mut self,
        policy: &Policy,
        tid: i32,
        desc: &SysDesc,
        args: &[u64; 6],
        call: u64,
    ) {
        let ops = self.decode(policy, tid, desc, args);
        self.ops
            .extend(ops.into_iter().map(|op| TracedOp { call, op }));
    }

    fn decode(&mut self, policy: &Policy, tid: i32, desc: &SysDesc, a: &[u64; 6]) -> Vec<Op> {
        let name = desc.name;
        if name == "sync" || name == "syncfs" {
            return vec![Op::Sync];
        }
        let targets = policy.targets(tid, desc, a);
        let first = targets.first().and_then(|t| inside(policy, t));
        let second = targets.get(1).and_then(|t| inside(policy, t));
        let file = |p: &String| FileRef::Path(p.clone());
        match name {
            "open" | "openat" | "openat2" | "creat" => {
                let Some(path) = first else { return Vec::new() };
                let flags = match name {
                    "open" => a[1],
                    "openat" => a[2],
                    "openat2" => read_u64(tid, a[2]).unwrap_or(0),
                    _ => (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64,
                } as i32;
                if flags & libc::O_TMPFILE == libc::O_TMPFILE {
                    return Vec::new();
                }
                self.next_handle += 1;
                let handle = Handle(self.next_handle);
                vec![
                    Op::Open {
                        path,
                        handle,
                        flags: OpenFlags {
                            create: flags & libc::O_CREAT != 0,
                            truncate: flags & libc::O_TRUNC != 0,
                            sync: SyncMode::None,
                        },
                    },
                    Op::Close(handle),
                ]
            }
            "write" | "pwrite64" | "writev" | "pwritev" | "pwritev2" | "copy_file_range"
            | "sendfile" => {
                let Some(path) = first else { return Vec::new() };
                let fd = if name == "copy_file_range" {
                    a[2]
                } else {
                    a[0]
                };
                let Some((pos, flags)) = write_offset(tid, fd) else {
                    return Vec::new();
                };
                let explicit = |v: u64| if v as i64 == -1 { pos } else { v };
                let got = match name {
                    "write" => read_buf(tid, a[1], a[2]).map(|d| (pos, d)),
                    "pwrite64" => read_buf(tid, a[1], a[2]).map(|d| (a[3], d)),
                    "writev" => read_iov(tid, a[1], a[2]).map(|d| (pos, d)),
                    "pwritev" | "pwritev2" => {
                        read_iov(tid, a[1], a[2]).map(|d| (explicit(a[3]), d))
                    }
                    "copy_file_range" => {
                        let out = if a[3] == 0 {
                            Some(pos)
                        } else {
                            read_u64(tid, a[3])
                        };
                        offset_arg(tid, a[1], a[0])
                            .and_then(|from| read_file(tid, a[0], from, a[4]))
                            .zip(out)
                            .map(|(d, o)| (o, d))
                    }
                    _ => offset_arg(tid, a[2], a[1])
                        .and_then(|from| read_file(tid, a[1], from, a[3]))
                        .map(|d| (pos, d)),
                };
                let Some((offset, data)) = got else {
                    return Vec::new();
                };
                let mut ops = vec![Op::Write {
                    file: file(&path),
                    offset,
                    data: Rope::from_bytes(data),
                }];
                if flags & (libc::O_SYNC | libc::O_DSYNC) != 0 {
                    ops.push(Op::Fsync(file(&path)));
                }
                ops
            }
            "truncate" | "ftruncate" => first
                .map(|p| {
                    vec![Op::Truncate {
                        file: file(&p),
                        len: a[1],
                    }]
                })
                .unwrap_or_default(),
            "fsync" => first.map(|p| vec![Op::Fsync(file(&p))]).unwrap_or_default(),
            "fdatasync" => first
                .map(|p| vec![Op::Fdatasync(file(&p))])
                .unwrap_or_default(),
            "rename" | "renameat" | "renameat2" => {
                let flags = if name == "renameat2" { a[4] as u32 } else { 0 };
                if flags & (libc::RENAME_EXCHANGE | libc::RENAME_WHITEOUT) != 0 {
                    return Vec::new();
                }
                match (first, second) {
                    (Some(from), Some(to)) => vec![Op::Rename { from, to }],
                    // Moved out of the sandbox: gone from it.
                    (Some(from), None) => vec![Op::Unlink(from)],
                    _ => Vec::new(),
                }
            }
            "link" | "linkat" => match (first, second) {
                (Some(from), Some(to)) => vec![Op::Link { from, to }],
                _ => Vec::new(),
            },
            "symlink" | "symlinkat" => {
                let (Some(path), Some(text)) = (first, read_cstring(tid, a[0])) else {
                    return Vec::new();
                };
                match String::from_utf8(text) {
                    Ok(target) => vec![Op::Symlink { target, path }],
                    Err(_) => Vec::new(),
                }
            }
            "unlink" | "unlinkat" => {
                let Some(path) = first else { return Vec::new() };
                if name == "unlinkat" && a[2] as i32 & libc::AT_REMOVEDIR != 0 {
                    vec![Op::Rmdir(path)]
                } else {
                    vec![Op::Unlink(path)]
                }
            }
            "rmdir" => first.map(|p| vec![Op::Rmdir(p)]).unwrap_or_default(),
            "mkdir" | "mkdirat" => first.map(|p| vec![Op::Mkdir(p)]).unwrap_or_default(),
            // fallocate and sync_file_range are not modelled.
            _ => Vec::new(),
        }
    }
}
