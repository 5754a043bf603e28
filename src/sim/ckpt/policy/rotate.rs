//! `save_total_limit` rotation of checkpoint directories, as Hugging Face
//! `Trainer` does it after each save: what is on disk decides, not the
//! bookkeeping. The correct rotation keeps the newest N `checkpoint-<step>`
//! directories by step number and removes the others atomically (renamed
//! away first); it runs after a save is durable, and again on resume to
//! finish a rotation a crash cut short.

use std::path::Path;

use crate::sim::Mutant;

use super::super::io::Io;
use super::super::parts::step_of;
use super::super::CkptError;
use super::ModelCheckpoint;

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
}
