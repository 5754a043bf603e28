//! `save_total_limit` rotation of checkpoint directories, as Hugging Face
//! `Trainer` does it after each save: what is on disk decides, not the
//! bookkeeping. The correct rotation keeps the newest N `checkpoint-<step>`
//! directories by step number and removes the others atomically (renamed
//! away first); it runs after a save is durable, and again on resume to
//! finish a rotation a crash cut short.
//!
//! `rotate-by-mtime` keeps the newest N by modification time and removes
//! the others in place, file by file, as `Trainer._rotate_checkpoints` with
//! `shutil.rmtree` does: every removal bumps the directory's mtime, so a
//! directory whose removal was killed becomes the newest one, and the next
//! rotation keeps it and deletes a complete checkpoint instead.
//!
//! Modification times are modelled, not taken from the clock: the kernel's
//! timestamps are coarse (several milliseconds on ext4), so saves a
//! millisecond apart would tie and the bug would show or not by chance. The
//! mutant stamps each directory it changes (created, or a file removed from
//! it) with a logical time, one second after the newest stamp on disk,
//! counted from 2100-01-01; the stamp is an I/O operation of its own (a crash
//! point). A directory changed but not yet stamped (killed in between) has
//! the kernel's time, older than every stamp, so it sorts oldest. Ties are
//! broken by step number, so the order is always the same.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::sim::Mutant;

use super::super::io::Io;
use super::super::parts::step_of;
use super::super::CkptError;
use super::ModelCheckpoint;

/// The epoch of modelled modification times: 2100-01-01T00:00:00Z.
const STAMP_BASE: Duration = Duration::from_secs(4_102_444_800);

fn err(what: &'static str, p: &Path) -> impl FnOnce(std::io::Error) -> CkptError {
    let p = p.to_path_buf();
    move |e| CkptError::io(what, &p, e)
}

impl ModelCheckpoint {
    /// The checkpoint directories on disk: (step, name), by step.
    fn checkpoint_dirs(&self, io: &mut Io) -> Result<Vec<(u64, String)>, CkptError> {
        let names = io.list(&self.dir).map_err(err("list", &self.dir))?;
        let mut out: Vec<(u64, String)> = names
            .into_iter()
            .filter_map(|n| step_of(&n).map(|s| (s, n)))
            .filter(|(_, n)| {
                self.dir
                    .join(n)
                    .symlink_metadata()
                    .is_ok_and(|m| m.is_dir())
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Keeps the newest `save_total_limit` checkpoint directories by step
    /// number (and `keep`, the one just loaded), removing the others.
    pub(super) fn rotate(&self, io: &mut Io, keep: Option<&str>) -> Result<(), CkptError> {
        let limit = self.cfg.save_total_limit as usize;
        if limit == 0 || !self.dir.is_dir() {
            return Ok(());
        }
        let dirs = self.checkpoint_dirs(io)?;
        let old = dirs.len().saturating_sub(limit);
        let mut any = false;
        for (_, name) in &dirs[..old] {
            if Some(name.as_str()) == keep {
                continue;
            }
            self.remove_checkpoint(io, name)?;
            any = true;
        }
        if any && !self.mutants.has(Mutant::NoFsyncRename) {
            io.fsync_dir(&self.dir).map_err(err("fsync", &self.dir))?;
        }
        Ok(())
    }

    /// `rotate-by-mtime`: keeps the newest `save_total_limit` directories by
    /// (modelled) modification time and removes the others in place.
    pub(super) fn rotate_by_mtime(&self, io: &mut Io) -> Result<(), CkptError> {
        let limit = self.cfg.save_total_limit as usize;
        if limit == 0 || !self.dir.is_dir() {
            return Ok(());
        }
        let mut dirs: Vec<(SystemTime, u64, String)> = self
            .checkpoint_dirs(io)?
            .into_iter()
            .map(|(step, name)| (self.mtime(&name), step, name))
            .collect();
        dirs.sort();
        let old = dirs.len().saturating_sub(limit);
        for (_, _, name) in &dirs[..old] {
            let path = self.dir.join(name);
            for file in io.list(&path).map_err(err("list", &path))? {
                let f = path.join(&file);
                io.unlink(&f).map_err(err("delete", &f))?;
                self.stamp(io, &path)?;
            }
            io.rmdir(&path).map_err(err("remove", &path))?;
        }
        Ok(())
    }

    /// The modification time of the checkpoint directory `name` (the epoch
    /// when it cannot be read).
    fn mtime(&self, name: &str) -> SystemTime {
        self.dir
            .join(name)
            .symlink_metadata()
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// Stamps the directory `path` with the next modelled modification time.
    pub(super) fn stamp(&self, io: &mut Io, path: &Path) -> Result<(), CkptError> {
        let base = SystemTime::UNIX_EPOCH + STAMP_BASE;
        let newest = std::fs::read_dir(&self.dir)
            .map(|r| {
                r.flatten()
                    .filter(|e| step_of(&e.file_name().to_string_lossy()).is_some())
                    .filter_map(|e| e.metadata().and_then(|m| m.modified()).ok())
                    .max()
            })
            .ok()
            .flatten()
            .unwrap_or(base)
            .max(base);
        io.set_mtime(path, newest + Duration::from_secs(1))
            .map_err(err("set the modification time of", path))
    }
}
