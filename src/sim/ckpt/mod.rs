//! Checkpoints: the file [`format`](mod@format) and the directory format [`parts`], the
//! numbered I/O layer [`io`] every file operation goes through, the
//! `ModelCheckpoint`-like [`policy`] and its bookkeeping [`topk`], and
//! [`resume`]-path resolution.

pub mod format;
pub mod io;
pub mod parts;
pub mod policy;
pub mod resume;
pub mod topk;

use std::path::{Path, PathBuf};

/// Why saving or resuming failed. Each variant is a distinct message a user
/// of the simulated trainer sees on stderr.
#[derive(Debug, thiserror::Error)]
pub enum CkptError {
    /// The resume path does not exist.
    #[error("checkpoint file not found: {0}")]
    NotFound(PathBuf),
    /// The resume path is a link whose target does not exist.
    #[error("checkpoint link is dangling: {path} -> {target} (the target does not exist)")]
    Dangling {
        /// The link.
        path: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    /// The resume path is a directory.
    #[error("resume path is a directory, not a checkpoint file: {0}")]
    IsDirectory(PathBuf),
    /// `last` was asked for and there is none.
    #[error("no last*.ckpt to resume from in {0}")]
    NoLast(PathBuf),
    /// The file is not a valid checkpoint.
    #[error("corrupt checkpoint {path}: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: format::FormatError,
    },
    /// A checkpoint directory is incomplete or one of its files is corrupt.
    #[error("cannot resume from checkpoint directory {path}: {source}")]
    Incomplete {
        /// The directory.
        path: PathBuf,
        /// What is missing or wrong.
        source: parts::PartsError,
    },
    /// A `latest` pointer file does not name a checkpoint.
    #[error("pointer file {path} {problem}")]
    BadPointer {
        /// The pointer file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// Scanning for the newest checkpoint found no complete one.
    #[error("no complete checkpoint to resume from in {0}")]
    NoComplete(PathBuf),
    /// A file operation failed.
    #[error("cannot {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
}

impl CkptError {
    /// An I/O failure while doing `what` on `path`.
    pub fn io(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        CkptError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}
