//! Resolving and loading what a user asked to resume from: a path (relative
//! to the working directory, as typed), or the keywords `last` (the newest
//! `last*.ckpt` in the checkpoint directory, as Lightning's `ckpt_path="last"`)
//! and `best`. Every way this can go wrong is refused with its own message.

use std::path::{Path, PathBuf};

use super::format::{decode, Checkpoint};
use super::io::Io;
use super::policy::BEST;
use super::CkptError;

/// What the user asked to resume from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeArg {
    /// A concrete path, relative to the working directory or absolute.
    Path(PathBuf),
    /// The newest `last*.ckpt` in the checkpoint directory.
    Last,
    /// `best.ckpt` in the checkpoint directory.
    Best,
}

impl ResumeArg {
    /// Parses the value of `CRASHPOINT_RESUME`.
    ///
    /// ```
    /// use crashpoint::sim::ckpt::resume::ResumeArg;
    /// assert_eq!(ResumeArg::parse("last"), ResumeArg::Last);
    /// assert_eq!(ResumeArg::parse("ckpts/last.ckpt"), ResumeArg::Path("ckpts/last.ckpt".into()));
    /// ```
    pub fn parse(s: &str) -> ResumeArg {
        match s {
            "last" => ResumeArg::Last,
            "best" => ResumeArg::Best,
            p => ResumeArg::Path(PathBuf::from(p)),
        }
    }
}

/// Turns the resume argument into the path of a checkpoint file, refusing a
/// directory, a missing file and a dangling link.
pub fn resolve(io: &mut Io, arg: &ResumeArg, dir: &Path) -> Result<PathBuf, CkptError> {
    let path = match arg {
        ResumeArg::Path(p) => p.clone(),
        ResumeArg::Best => dir.join(BEST),
        ResumeArg::Last => newest_last(io, dir)?,
    };
    check_file(io, &path)?;
    Ok(path)
}

/// The newest `last*.ckpt` (by modification time, then name) in `dir`.
fn newest_last(io: &mut Io, dir: &Path) -> Result<PathBuf, CkptError> {
    let names = match io.list(dir) {
        Ok(n) => n,
        Err(_) => return Err(CkptError::NoLast(dir.to_path_buf())),
    };
    names
        .into_iter()
        .filter(|n| n.starts_with("last") && n.ends_with(".ckpt"))
        .map(|n| {
            let p = dir.join(&n);
            let t = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
            (t, n, p)
        })
        .max_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)))
        .map(|(_, _, p)| p)
        .ok_or_else(|| CkptError::NoLast(dir.to_path_buf()))
}

/// Refuses anything that is not a readable regular file (through links).
fn check_file(io: &mut Io, path: &Path) -> Result<(), CkptError> {
    let lmeta = path
        .symlink_metadata()
        .map_err(|_| CkptError::NotFound(path.to_path_buf()))?;
    if lmeta.file_type().is_symlink() {
        let target = io
            .read_link(path)
            .map_err(|e| CkptError::io("read link", path, e))?;
        if std::fs::metadata(path).is_err() {
            return Err(CkptError::Dangling {
                path: path.to_path_buf(),
                target,
            });
        }
    }
    if std::fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false) {
        return Err(CkptError::IsDirectory(path.to_path_buf()));
    }
    Ok(())
}

/// Reads and decodes the checkpoint at `path`.
pub fn load(io: &mut Io, path: &Path) -> Result<Checkpoint, CkptError> {
    let bytes = io.read(path).map_err(|e| CkptError::io("read", path, e))?;
    decode(&bytes).map_err(|source| CkptError::Corrupt {
        path: path.to_path_buf(),
        source,
    })
}
