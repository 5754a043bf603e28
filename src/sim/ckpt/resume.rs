//! Resolving and loading what a user asked to resume from: a path (relative
//! to the working directory, as typed) to a checkpoint file, a checkpoint
//! directory, a `last.ckpt` link or copy, or a `latest` pointer file; or the
//! keywords `last` (the newest `last*.ckpt` in the checkpoint directory, as
//! Lightning's `ckpt_path="last"`, else what `latest` names, else the newest
//! complete checkpoint found by scanning), `newest` (the newest complete
//! checkpoint by scanning) and `best`. Every way this can go wrong is refused
//! with its own message; an incomplete checkpoint directory is refused when
//! named and skipped when scanning.

use std::path::{Path, PathBuf};

use super::format::{decode, Checkpoint};
use super::io::Io;
use super::parts::{decode_dir, step_of, METADATA, PART_FILES};
use super::policy::{BEST, LATEST};
use super::CkptError;
use crate::sim::{Mutant, Mutants};

/// What the user asked to resume from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeArg {
    /// A concrete path, relative to the working directory or absolute.
    Path(PathBuf),
    /// The newest `last*.ckpt`, else what `latest` names, else the newest complete checkpoint.
    Last,
    /// `best.ckpt` in the checkpoint directory.
    Best,
    /// The newest complete checkpoint, found by scanning the directory.
    Newest,
}

impl ResumeArg {
    /// Parses the value of `CRASHPOINT_RESUME`.
    ///
    /// ```
    /// use crashpoint::sim::ckpt::resume::ResumeArg;
    /// assert_eq!(ResumeArg::parse("last"), ResumeArg::Last);
    /// assert_eq!(ResumeArg::parse("newest"), ResumeArg::Newest);
    /// assert_eq!(ResumeArg::parse("ckpts/last.ckpt"), ResumeArg::Path("ckpts/last.ckpt".into()));
    /// ```
    pub fn parse(s: &str) -> ResumeArg {
        match s {
            "last" => ResumeArg::Last,
            "best" => ResumeArg::Best,
            "newest" => ResumeArg::Newest,
            p => ResumeArg::Path(PathBuf::from(p)),
        }
    }
}

/// A resume argument, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The checkpoint as the user named it (a path, or the `last*.ckpt`
    /// the keyword found); `None` when a scan chose it.
    pub named: Option<PathBuf>,
    /// The checkpoint file or directory to load (a `latest` file followed).
    pub checkpoint: PathBuf,
}

/// Turns the resume argument into the checkpoint to load, refusing a
/// directory that is not a checkpoint, a missing file, a dangling link and
/// a `latest` file that names nothing.
pub fn resolve(
    io: &mut Io,
    arg: &ResumeArg,
    dir: &Path,
    mutants: &Mutants,
) -> Result<Resolved, CkptError> {
    let named = |p: PathBuf, io: &mut Io| -> Result<Resolved, CkptError> {
        Ok(Resolved {
            checkpoint: follow(io, &p)?,
            named: Some(p),
        })
    };
    let scanned = |p: PathBuf| Resolved {
        named: None,
        checkpoint: p,
    };
    let picks_highest = mutants.has(Mutant::PartialDirPicked);
    match arg {
        ResumeArg::Path(p) => named(p.clone(), io),
        ResumeArg::Best => named(dir.join(BEST), io),
        ResumeArg::Last | ResumeArg::Newest if picks_highest => match highest_numbered(io, dir) {
            Some(p) => Ok(scanned(p)),
            None => scan_newest(io, dir).map(scanned),
        },
        ResumeArg::Last => {
            if let Some(p) = newest_last(io, dir) {
                return named(p, io);
            }
            let latest = dir.join(LATEST);
            if latest.symlink_metadata().is_ok() {
                return named(latest, io);
            }
            scan_newest(io, dir).map(scanned)
        }
        ResumeArg::Newest => scan_newest(io, dir).map(scanned),
    }
}

/// The newest `last*.ckpt` (by modification time, then name) in `dir`.
fn newest_last(io: &mut Io, dir: &Path) -> Option<PathBuf> {
    let names = io.list(dir).ok()?;
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
}

/// The highest-numbered `checkpoint-<N>` directory, complete or not (what
/// `partial-dir-picked` resumes from, as `get_last_checkpoint` does).
fn highest_numbered(io: &mut Io, dir: &Path) -> Option<PathBuf> {
    let names = io.list(dir).ok()?;
    names
        .into_iter()
        .filter_map(|n| step_of(&n).map(|s| (s, n)))
        .filter(|(_, n)| dir.join(n).is_dir())
        .max()
        .map(|(_, n)| dir.join(n))
}

/// The complete checkpoint with the highest step in `dir`: every
/// `checkpoint-<N>` directory and every `*.ckpt` file (not a link) that
/// loads; hidden (temporary) names are skipped.
fn scan_newest(io: &mut Io, dir: &Path) -> Result<PathBuf, CkptError> {
    let none = || CkptError::NoComplete(dir.to_path_buf());
    let names = io.list(dir).map_err(|_| none())?;
    let mut best: Option<(u64, PathBuf)> = None;
    for n in names.iter().filter(|n| !n.starts_with('.')) {
        let path = dir.join(n);
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        let candidate =
            (meta.is_dir() && step_of(n).is_some()) || (meta.is_file() && n.ends_with(".ckpt"));
        if !candidate {
            continue;
        }
        if let Ok(ck) = load(io, &path) {
            let step = ck.state.global_step;
            if !matches!(&best, Some((s, _)) if step <= *s) {
                best = Some((step, path));
            }
        }
    }
    best.map(|(_, p)| p).ok_or_else(none)
}

/// Checks that `path` can be loaded: follows a `latest` pointer file to the
/// checkpoint it names; refuses a dangling link, a missing path and a
/// directory that is not a checkpoint directory.
fn follow(io: &mut Io, path: &Path) -> Result<PathBuf, CkptError> {
    check_exists(io, path)?;
    let is_latest = path.file_name().is_some_and(|n| n == LATEST);
    if is_latest && !path.is_dir() {
        let bad = |problem: String| CkptError::BadPointer {
            path: path.to_path_buf(),
            problem,
        };
        let bytes = io.read(path).map_err(|e| CkptError::io("read", path, e))?;
        let text = String::from_utf8(bytes).map_err(|_| bad("is not text".into()))?;
        let name = text.trim_end_matches('\n');
        if name.is_empty() {
            return Err(bad("is empty (a torn write?)".into()));
        }
        if name.contains('/') || name.contains('\n') || name == "." || name == ".." {
            return Err(bad(format!("does not hold one checkpoint name: {name:?}")));
        }
        let target = path.parent().unwrap_or(Path::new("")).join(name);
        if target.symlink_metadata().is_err() {
            return Err(bad(format!("names {name}, which does not exist")));
        }
        check_exists(io, &target)?;
        check_not_plain_dir(&target)?;
        return Ok(target);
    }
    check_not_plain_dir(path)?;
    Ok(path.to_path_buf())
}

/// Refuses a missing path and a dangling link.
fn check_exists(io: &mut Io, path: &Path) -> Result<(), CkptError> {
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
    Ok(())
}

/// Refuses a directory that is not a checkpoint directory: one named
/// `checkpoint-<N>` (through links) or holding a checkpoint's files.
fn check_not_plain_dir(path: &Path) -> Result<(), CkptError> {
    if !path.is_dir() {
        return Ok(());
    }
    let named = path
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().and_then(|n| step_of(&n.to_string_lossy())))
        .is_some();
    let holds = std::iter::once(METADATA)
        .chain(PART_FILES.iter().map(|p| p.0))
        .any(|f| path.join(f).symlink_metadata().is_ok());
    if named || holds {
        Ok(())
    } else {
        Err(CkptError::IsDirectory(path.to_path_buf()))
    }
}

/// Reads and decodes the checkpoint at `path`: a checkpoint file, or a
/// checkpoint directory (its metadata file, then every part).
pub fn load(io: &mut Io, path: &Path) -> Result<Checkpoint, CkptError> {
    if path.is_dir() {
        return decode_dir(|name| io.read(&path.join(name)).ok()).map_err(|source| {
            CkptError::Incomplete {
                path: path.to_path_buf(),
                source,
            }
        });
    }
    let bytes = io.read(path).map_err(|e| CkptError::io("read", path, e))?;
    decode(&bytes).map_err(|source| CkptError::Corrupt {
        path: path.to_path_buf(),
        source,
    })
}
