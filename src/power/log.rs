//! The ordered log of file-system operations up to a crash point.
//!
//! Paths are relative to the modelled root (a sandbox), `/`-separated.
//! Each operation is checked against the file system the earlier ones
//! built as it is pushed, so a [`Log`] is always one that a real run could
//! have produced, and the functions that derive crash states from it cannot
//! fail.

use std::fmt;

use super::model::Fs;
use super::rope::Rope;
use super::states::Entry;

/// An open file description, numbered by whoever records the log (a
/// tracer may use `pid << 32 | fd`; the number only has to be unique
/// among the open ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(pub u64);

/// The file an operation acts on: by path (resolved when the operation
/// happens) or through an open handle (which keeps naming the same inode
/// across renames and unlinks, as a file descriptor does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileRef {
    /// A path, resolved at the time of the operation, links followed.
    Path(String),
    /// An open handle.
    Handle(Handle),
}

/// Synchronous-write flags of an open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// Ordinary buffered writes.
    #[default]
    None,
    /// `O_SYNC`: every write is durable when it returns.
    Sync,
    /// `O_DSYNC`: every write's data is durable when it returns (the same
    /// thing in this model, which keeps no timestamps).
    DSync,
}

/// The flags of an open that matter to persistence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenFlags {
    /// `O_CREAT`: create the file when missing.
    pub create: bool,
    /// `O_TRUNC`: cut the file to zero length.
    pub truncate: bool,
    /// `O_SYNC` / `O_DSYNC`.
    pub sync: SyncMode,
}

/// One file-system operation, as a traced program issued it (successful
/// calls only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `open`/`creat`: binds `handle` to the file or directory at `path`.
    Open {
        /// The path.
        path: String,
        /// The handle later operations use.
        handle: Handle,
        /// Create, truncate, synchronous writes.
        flags: OpenFlags,
    },
    /// `close`: releases the handle. It makes nothing durable.
    Close(Handle),
    /// `write`/`pwrite` of `data` at `offset`.
    Write {
        /// The file.
        file: FileRef,
        /// Byte offset.
        offset: u64,
        /// The bytes (literal, or ranges of stored blobs).
        data: Rope,
    },
    /// `truncate`/`ftruncate` to `len` bytes.
    Truncate {
        /// The file.
        file: FileRef,
        /// New length.
        len: u64,
    },
    /// `fsync`: a file's data, or a directory's entries, become durable.
    Fsync(FileRef),
    /// `fdatasync`: the same as [`Op::Fsync`] here (no timestamps are
    /// modelled; the size needed to read the data back is kept).
    Fdatasync(FileRef),
    /// `sync`/`syncfs`: everything becomes durable.
    Sync,
    /// `rename(from, to)`, replacing `to` atomically if it exists.
    Rename {
        /// Old path.
        from: String,
        /// New path.
        to: String,
    },
    /// `link(from, to)`: a second name for the inode at `from`.
    Link {
        /// Existing path.
        from: String,
        /// New name.
        to: String,
    },
    /// `symlink(target, path)`.
    Symlink {
        /// Link text, stored as given.
        target: String,
        /// Where the link is created.
        path: String,
    },
    /// `unlink(path)` of a file or symbolic link.
    Unlink(String),
    /// `mkdir(path)`.
    Mkdir(String),
    /// `rmdir(path)` of an empty directory.
    Rmdir(String),
}

impl Op {
    /// `open(path, O_CREAT | O_WRONLY | O_TRUNC)` as `handle`.
    pub fn create(path: &str, handle: u64) -> Op {
        Op::Open {
            path: path.into(),
            handle: Handle(handle),
            flags: OpenFlags {
                create: true,
                truncate: true,
                sync: SyncMode::None,
            },
        }
    }

    /// `pwrite(handle, bytes, offset)`.
    pub fn write(handle: u64, offset: u64, bytes: &[u8]) -> Op {
        Op::Write {
            file: FileRef::Handle(Handle(handle)),
            offset,
            data: Rope::from_bytes(bytes.to_vec()),
        }
    }

    /// `fsync` of an open handle.
    pub fn fsync(handle: u64) -> Op {
        Op::Fsync(FileRef::Handle(Handle(handle)))
    }

    /// `fsync` of a directory (or file) by path.
    pub fn fsync_path(path: &str) -> Op {
        Op::Fsync(FileRef::Path(path.into()))
    }

    /// `rename(from, to)`.
    pub fn rename(from: &str, to: &str) -> Op {
        Op::Rename {
            from: from.into(),
            to: to.into(),
        }
    }

    /// `symlink(target, path)`.
    pub fn symlink(target: &str, path: &str) -> Op {
        Op::Symlink {
            target: target.into(),
            path: path.into(),
        }
    }
}

impl fmt::Display for FileRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileRef::Path(p) => write!(f, "{p}"),
            FileRef::Handle(h) => write!(f, "#{}", h.0),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Open {
                path,
                handle,
                flags,
            } => {
                write!(f, "open {path} as #{}", handle.0)?;
                if flags.create {
                    write!(f, " create")?;
                }
                if flags.truncate {
                    write!(f, " truncate")?;
                }
                match flags.sync {
                    SyncMode::None => Ok(()),
                    SyncMode::Sync => write!(f, " O_SYNC"),
                    SyncMode::DSync => write!(f, " O_DSYNC"),
                }
            }
            Op::Close(h) => write!(f, "close #{}", h.0),
            Op::Write { file, offset, data } => {
                write!(f, "write {file} {} bytes at {offset}", data.len())
            }
            Op::Truncate { file, len } => write!(f, "truncate {file} to {len}"),
            Op::Fsync(file) => write!(f, "fsync {file}"),
            Op::Fdatasync(file) => write!(f, "fdatasync {file}"),
            Op::Sync => write!(f, "sync"),
            Op::Rename { from, to } => write!(f, "rename {from} {to}"),
            Op::Link { from, to } => write!(f, "link {from} {to}"),
            Op::Symlink { target, path } => write!(f, "symlink {path} -> {target}"),
            Op::Unlink(p) => write!(f, "unlink {p}"),
            Op::Mkdir(p) => write!(f, "mkdir {p}"),
            Op::Rmdir(p) => write!(f, "rmdir {p}"),
        }
    }
}

/// Why an operation cannot follow the ones before it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogErrorKind {
    /// A path component does not exist.
    #[error("{0}: no such file or directory")]
    NotFound(String),
    /// A component used as a directory is not one.
    #[error("{0}: not a directory")]
    NotADirectory(String),
    /// A file operation was given a directory.
    #[error("{0}: is a directory")]
    IsADirectory(String),
    /// The name to create exists.
    #[error("{0}: already exists")]
    Exists(String),
    /// `rmdir`, or a rename over a directory, that is not empty.
    #[error("{0}: directory not empty")]
    NotEmpty(String),
    /// A path that is absolute, leaves the root with `..`, or follows an
    /// absolute symbolic link.
    #[error("{0}: leaves the modelled root")]
    LeavesRoot(String),
    /// Too many symbolic links followed.
    #[error("{0}: too many levels of symbolic links")]
    LinkLoop(String),
    /// A directory moved below itself, or the root renamed.
    #[error("{0}: invalid rename")]
    InvalidRename(String),
    /// A handle that is not open.
    #[error("handle #{0} is not open")]
    UnknownHandle(u64),
    /// `Open` with a handle that is already open.
    #[error("handle #{0} is already open")]
    HandleInUse(u64),
    /// Data written to something that is not a regular file.
    #[error("{0}: not a regular file")]
    NotAFile(String),
    /// The initial tree is not a tree (an entry below a missing directory).
    #[error("initial tree: {0}")]
    BadInitialTree(String),
}

/// An operation refused by [`Log::push`], with its index in the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("operation {index} ({op}): {kind}")]
pub struct LogError {
    /// Position the operation would have had.
    pub index: usize,
    /// The operation, as text.
    pub op: String,
    /// What is wrong.
    pub kind: LogErrorKind,
}

/// The ordered operation log, with the file system it describes: what a
/// process sees (the page cache), and what was made durable.
#[derive(Clone, Debug, Default)]
pub struct Log {
    ops: Vec<Op>,
    pub(crate) fs: Fs,
}

impl Log {
    /// A log starting from an empty, durable root directory.
    pub fn new() -> Log {
        Log::default()
    }

    /// A log starting from a tree that is already durable (what existed
    /// before the recorded run: a sandbox as the harness built it, or the
    /// crash state an earlier run left). Paths as in [`super::CrashState`].
    pub fn with_initial<'a>(
        tree: impl IntoIterator<Item = (&'a String, &'a Entry)>,
    ) -> Result<Log, LogError> {
        let fs = Fs::from_tree(tree).map_err(|kind| LogError {
            index: 0,
            op: "initial tree".into(),
            kind,
        })?;
        Ok(Log {
            ops: Vec::new(),
            fs,
        })
    }

    /// Appends `op`, checking it against the file system so far. A refused
    /// operation leaves the log as it was (every check comes before any
    /// change).
    pub fn push(&mut self, op: Op) -> Result<(), LogError> {
        let index = self.ops.len();
        self.fs.apply(index, &op).map_err(|kind| LogError {
            index,
            op: op.to_string(),
            kind,
        })?;
        self.ops.push(op);
        Ok(())
    }

    /// Appends every operation, stopping at the first refused one.
    pub fn extend(&mut self, ops: impl IntoIterator<Item = Op>) -> Result<(), LogError> {
        for op in ops {
            self.push(op)?;
        }
        Ok(())
    }

    /// A log of `ops` from an empty root.
    pub fn from_ops(ops: impl IntoIterator<Item = Op>) -> Result<Log, LogError> {
        let mut log = Log::new();
        log.extend(ops)?;
        Ok(log)
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether no operation was recorded.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}
