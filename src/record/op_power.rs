//! Power loss at the simulated trainer's `op` points: the operation log of
//! the recording, built from what the trainer's I/O layer says at its
//! pauses (each operation's name and paths, see
//! [`crate::protocol::OP_PAUSE`]) and what the sandbox holds there, as the
//! system-call tracer would have recorded it for a run killed at the point
//! ([`crate::trace::TracedOp`]): paths relative to the sandbox, resolved as
//! the kernel resolves them when the call is made (at the `before` pause),
//! a creation as an open with `O_CREAT | O_TRUNC` and its close, a write
//! with its offset and bytes (read from the file once it is written), the
//! text of a symbolic link, a directory made with its missing parents as
//! one `mkdir` per directory and then an `fsync` of each one's parent.
//! Reads, listings and times are not operations of the model.
//!
//! Each operation is numbered by the trainer's operation it belongs to, so
//! the log of `op:N:before` is the operations numbered below `N`, that of
//! `op:N:after` those up to `N`; `op:N:mid` of a write adds its first half
//! (a kill half-way through a write leaves that), of anything else is
//! `op:N:before` (a kill there lands before the operation).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::power::{FileRef, Handle, Op, OpenFlags, Rope, SyncMode};
use crate::protocol::{OpCrash, When};
use crate::trace::{canonicalize_loose, TracedOp};

/// What the operation under way names, resolved at its `before` pause.
#[derive(Debug)]
enum Pending {
    /// A creation (open for writing with `O_CREAT | O_TRUNC`).
    Create(String),
    /// A write through the file at this path, from this offset.
    Write(String, PathBuf, u64),
    /// An `fsync` of a file or directory.
    Fsync(String),
    /// A rename.
    Rename(String, String),
    /// A symbolic link to be made at this path.
    Symlink(String, PathBuf),
    /// An unlink.
    Unlink(String),
    /// A single directory.
    Mkdir(String),
    /// A removal of an empty directory.
    Rmdir(String),
    /// Directories to create, parent first, each then made durable in its
    /// parent (the parents, in the same order).
    MkdirAll(Vec<String>, Vec<String>),
    /// Nothing the model sees (a read, a listing, a time, or a path
    /// outside the sandbox).
    Nothing,
}

/// Why the log could not be built: the recording then keeps none, and the
/// power-loss cases are killed one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown(pub String);

/// The operation log of one recording run of the simulated trainer.
#[derive(Debug)]
pub struct OpLog {
    /// The sandbox, canonical.
    root: PathBuf,
    /// The run's working directory as it names it.
    cwd: PathBuf,
    /// Every operation, in order, numbered by the trainer's operation.
    ops: Vec<TracedOp>,
    /// The first half of each write, by the trainer's operation.
    mid: BTreeMap<u64, TracedOp>,
    /// The operation under way.
    pending: Option<(u64, Pending)>,
    /// How far each file open for writing has been written, by path.
    written: HashMap<String, u64>,
    handles: u64,
    /// The first thing the log could not make sense of.
    failed: Option<Unknown>,
}

impl OpLog {
    /// The log of a run in the sandbox `root` whose working directory is
    /// `cwd`.
    pub fn new(root: &Path, cwd: &Path) -> OpLog {
        OpLog {
            root: root.canonicalize().unwrap_or_else(|_| root.to_path_buf()),
            cwd: cwd.to_path_buf(),
            ops: Vec::new(),
            mid: BTreeMap::new(),
            pending: None,
            written: HashMap::new(),
            handles: 0,
            failed: None,
        }
    }

    /// `p` relative to the sandbox (`None`: outside it).
    fn rel(&self, p: &Path) -> Option<String> {
        let r = p.strip_prefix(&self.root).ok()?.to_str()?;
        Some(if r.is_empty() { ".".into() } else { r.into() })
    }

    /// A path the trainer names, resolved and relative to the sandbox.
    fn named(&self, p: &str, follow: bool) -> Option<String> {
        self.rel(&canonicalize_loose(&self.cwd.join(p), follow))
    }

    /// The pause at `at` of the operation `call` with `paths` (see
    /// [`crate::protocol::OP_PAUSE`]).
    pub fn pause(&mut self, at: OpCrash, call: &str, paths: &[&str]) {
        if self.failed.is_some() {
            return;
        }
        match at.when {
            When::Before => {
                let pending = self.before(call, paths);
                self.pending = Some((at.index, pending));
            }
            When::Mid => {
                if let Some((n, Pending::Write(rel, abs, offset))) = &self.pending {
                    if *n == at.index {
                        if let Some(op) = write(rel, abs, *offset) {
                            self.mid.insert(*n, TracedOp { call: *n, op });
                        }
                    }
                }
            }
            When::After => match self.pending.take() {
                Some((n, p)) if n == at.index => self.after(n, p),
                _ => self.failed = Some(Unknown(format!("op:{} after without before", at.index))),
            },
        }
    }

    fn before(&mut self, call: &str, paths: &[&str]) -> Pending {
        let first = paths.first().copied().unwrap_or_default();
        let one = |follow: bool| self.named(first, follow);
        let p = match call {
            "create" => one(true).map(Pending::Create),
            "write" => {
                let abs = canonicalize_loose(&self.cwd.join(first), true);
                self.rel(&abs).map(|rel| {
                    let offset = self.written.get(&rel).copied().unwrap_or(0);
                    Pending::Write(rel, abs, offset)
                })
            }
            "fsync" | "fsync-dir" => one(true).map(Pending::Fsync),
            "rename" => match paths {
                [from, to] => match (self.named(from, false), self.named(to, false)) {
                    (Some(f), Some(t)) => Some(Pending::Rename(f, t)),
                    // Moved out of the sandbox: gone from it.
                    (Some(f), None) => Some(Pending::Unlink(f)),
                    _ => None,
                },
                _ => {
                    self.failed = Some(Unknown(format!("a rename of {paths:?}")));
                    None
                }
            },
            "symlink" => {
                let abs = canonicalize_loose(&self.cwd.join(first), false);
                self.rel(&abs).map(|rel| Pending::Symlink(rel, abs))
            }
            "unlink" => one(false).map(Pending::Unlink),
            "mkdir" => one(false).map(Pending::Mkdir),
            "rmdir" => one(false).map(Pending::Rmdir),
            "mkdir-all" => Some(self.mkdir_all(first)),
            "read" | "readlink" | "list" | "other" => None,
            other => {
                self.failed = Some(Unknown(format!("an operation `{other}`")));
                None
            }
        };
        p.unwrap_or(Pending::Nothing)
    }

    /// The directories `dir` still lacks, parent first, and the parent
    /// each is made durable in.
    fn mkdir_all(&self, dir: &str) -> Pending {
        let mut missing: Vec<PathBuf> = Vec::new();
        let mut p = self.cwd.join(dir);
        while p.symlink_metadata().is_err() {
            missing.push(p.clone());
            match p.parent() {
                Some(parent) => p = parent.to_path_buf(),
                None => break,
            }
        }
        let mut made = Vec::new();
        let mut parents = Vec::new();
        let mut at: Option<PathBuf> = None;
        for d in missing.iter().rev() {
            let (parent, here) = match (&at, d.file_name()) {
                (Some(a), Some(name)) => (a.clone(), a.join(name)),
                _ => {
                    let here = canonicalize_loose(d, false);
                    (
                        here.parent().map(Path::to_path_buf).unwrap_or_default(),
                        here,
                    )
                }
            };
            if let (Some(m), Some(f)) = (self.rel(&here), self.rel(&parent)) {
                made.push(m);
                parents.push(f);
            }
            at = Some(here);
        }
        Pending::MkdirAll(made, parents)
    }

    fn after(&mut self, n: u64, p: Pending) {
        let push = |ops: &mut Vec<TracedOp>, op: Op| ops.push(TracedOp { call: n, op });
        match p {
            Pending::Create(path) => {
                self.handles += 1;
                let handle = Handle(self.handles);
                let flags = OpenFlags {
                    create: true,
                    truncate: true,
                    sync: SyncMode::None,
                };
                self.written.insert(path.clone(), 0);
                push(
                    &mut self.ops,
                    Op::Open {
                        path,
                        handle,
                        flags,
                    },
                );
                push(&mut self.ops, Op::Close(handle));
            }
            Pending::Write(rel, abs, offset) => {
                let len = std::fs::symlink_metadata(&abs).map_or(offset, |m| m.len());
                self.written.insert(rel.clone(), len.max(offset));
                if let Some(op) = write(&rel, &abs, offset) {
                    push(&mut self.ops, op);
                }
            }
            Pending::Fsync(path) => push(&mut self.ops, Op::Fsync(FileRef::Path(path))),
            Pending::Rename(from, to) => {
                if let Some(w) = self.written.remove(&from) {
                    self.written.insert(to.clone(), w);
                }
                push(&mut self.ops, Op::Rename { from, to });
            }
            // A link that is not there was not made (the call failed).
            Pending::Symlink(path, abs) => {
                if let Ok(t) = std::fs::read_link(&abs) {
                    match t.to_str() {
                        Some(target) => push(
                            &mut self.ops,
                            Op::Symlink {
                                target: target.to_string(),
                                path,
                            },
                        ),
                        None => self.failed = Some(Unknown(format!("the link text of {path}"))),
                    }
                }
            }
            Pending::Unlink(path) => {
                self.written.remove(&path);
                push(&mut self.ops, Op::Unlink(path));
            }
            Pending::Mkdir(path) => push(&mut self.ops, Op::Mkdir(path)),
            Pending::Rmdir(path) => push(&mut self.ops, Op::Rmdir(path)),
            Pending::MkdirAll(made, parents) => {
                for d in made {
                    push(&mut self.ops, Op::Mkdir(d));
                }
                for f in parents {
                    push(&mut self.ops, Op::Fsync(FileRef::Path(f)));
                }
            }
            Pending::Nothing => {}
        }
    }

    /// The log: every operation, and the first half of each write; or
    /// what could not be made sense of.
    pub fn finish(self) -> Result<(Vec<TracedOp>, BTreeMap<u64, TracedOp>), Unknown> {
        match self.failed {
            Some(e) => Err(e),
            None => Ok((self.ops, self.mid)),
        }
    }
}

/// The write of what the file at `abs` (`rel` in the sandbox) holds from
/// `offset` on (`None`: nothing, as a write of no bytes makes no call).
fn write(rel: &str, abs: &Path, offset: u64) -> Option<Op> {
    let bytes = std::fs::read(abs).ok()?;
    let data = bytes.get(offset as usize..).filter(|d| !d.is_empty())?;
    Some(Op::Write {
        file: FileRef::Path(rel.to_string()),
        offset,
        data: Rope::from_bytes(data.to_vec()),
    })
}

/// The operations `log` (every operation numbered by the trainer's, and
/// the first half of each write) holds before the point `at`.
pub fn before<'a>(
    log: &'a [TracedOp],
    mid: &BTreeMap<u64, TracedOp>,
    at: OpCrash,
) -> std::borrow::Cow<'a, [TracedOp]> {
    let upto = match at.when {
        When::After => at.index + 1,
        When::Before | When::Mid => at.index,
    };
    let end = log.iter().position(|t| t.call >= upto).unwrap_or(log.len());
    match (at.when, mid.get(&at.index)) {
        (When::Mid, Some(half)) => {
            let mut v = log[..end].to_vec();
            v.push(half.clone());
            std::borrow::Cow::Owned(v)
        }
        _ => std::borrow::Cow::Borrowed(&log[..end]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(index: u64, when: When) -> OpCrash {
        OpCrash { index, when }
    }

    #[test]
    fn a_save_is_logged_as_the_tracer_logs_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("sandbox");
        let cwd = root.join("work");
        std::fs::create_dir_all(&cwd).expect("work");
        let mut log = OpLog::new(&root, &cwd);
        // mkdir-all of a/b: two directories, each fsynced in its parent.
        log.pause(at(1, When::Before), "mkdir-all", &["a/b"]);
        std::fs::create_dir_all(cwd.join("a/b")).expect("mkdir");
        log.pause(at(1, When::After), "mkdir-all", &["a/b"]);
        // create, a write paused half-way, fsync, rename, symlink.
        log.pause(at(2, When::Before), "create", &["a/b/x.tmp"]);
        std::fs::write(cwd.join("a/b/x.tmp"), b"").expect("create");
        log.pause(at(2, When::After), "create", &["a/b/x.tmp"]);
        log.pause(at(3, When::Before), "write", &["a/b/x.tmp"]);
        std::fs::write(cwd.join("a/b/x.tmp"), b"ab").expect("half");
        log.pause(at(3, When::Mid), "write", &["a/b/x.tmp"]);
        std::fs::write(cwd.join("a/b/x.tmp"), b"abcd").expect("all");
        log.pause(at(3, When::After), "write", &["a/b/x.tmp"]);
        log.pause(at(4, When::Before), "fsync", &["a/b/x.tmp"]);
        log.pause(at(4, When::After), "fsync", &["a/b/x.tmp"]);
        log.pause(at(5, When::Before), "rename", &["a/b/x.tmp", "a/b/x"]);
        std::fs::rename(cwd.join("a/b/x.tmp"), cwd.join("a/b/x")).expect("rename");
        log.pause(at(5, When::After), "rename", &["a/b/x.tmp", "a/b/x"]);
        log.pause(at(6, When::Before), "read", &["a/b/x"]);
        log.pause(at(6, When::After), "read", &["a/b/x"]);
        log.pause(at(7, When::Before), "symlink", &["a/b/last"]);
        std::os::unix::fs::symlink("x", cwd.join("a/b/last")).expect("symlink");
        log.pause(at(7, When::After), "symlink", &["a/b/last"]);
        let (ops, mid) = log.finish().expect("a log");
        let ops: Vec<(u64, Op)> = ops.into_iter().map(|t| (t.call, t.op)).collect();
        let p = |s: &str| FileRef::Path(s.into());
        let w = |b: &[u8]| Op::Write {
            file: p("work/a/b/x.tmp"),
            offset: 0,
            data: Rope::from_bytes(b.to_vec()),
        };
        let flags = OpenFlags {
            create: true,
            truncate: true,
            sync: SyncMode::None,
        };
        assert_eq!(
            ops,
            vec![
                (1, Op::Mkdir("work/a".into())),
                (1, Op::Mkdir("work/a/b".into())),
                (1, Op::Fsync(p("work"))),
                (1, Op::Fsync(p("work/a"))),
                (
                    2,
                    Op::Open {
                        path: "work/a/b/x.tmp".into(),
                        handle: Handle(1),
                        flags
                    }
                ),
                (2, Op::Close(Handle(1))),
                (3, w(b"abcd")),
                (4, Op::Fsync(p("work/a/b/x.tmp"))),
                (
                    5,
                    Op::Rename {
                        from: "work/a/b/x.tmp".into(),
                        to: "work/a/b/x".into()
                    }
                ),
                (
                    7,
                    Op::Symlink {
                        target: "x".into(),
                        path: "work/a/b/last".into()
                    }
                ),
            ]
        );
        let traced: Vec<TracedOp> = ops
            .iter()
            .map(|(call, op)| TracedOp {
                call: *call,
                op: op.clone(),
            })
            .collect();
        let half = w(b"ab");
        assert_eq!(mid.get(&3).map(|t| &t.op), Some(&half));
        assert_eq!(before(&traced, &mid, at(3, When::Before)).len(), 6);
        let m = before(&traced, &mid, at(3, When::Mid));
        assert_eq!((m.len(), &m[6].op), (7, &half));
        assert_eq!(before(&traced, &mid, at(3, When::After)).len(), 7);
        // A mid point of anything but a write is before it.
        assert_eq!(before(&traced, &mid, at(4, When::Mid)).len(), 7);
        assert_eq!(before(&traced, &mid, at(9, When::Before)).len(), 10);
    }

    #[test]
    fn an_operation_it_does_not_know_spoils_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = OpLog::new(dir.path(), dir.path());
        log.pause(at(1, When::Before), "fallocate", &["x"]);
        log.pause(at(1, When::After), "fallocate", &["x"]);
        assert!(log.finish().is_err());
    }
}
