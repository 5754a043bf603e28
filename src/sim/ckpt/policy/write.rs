//! Writing: checkpoint files and directories, the `last` link, the `latest`
//! pointer file, and removing checkpoints. Every operation goes through the
//! numbered I/O layer.

use std::path::{Path, PathBuf};

use crate::sim::Mutant;

use super::super::format::{encode, Checkpoint};
use super::super::io::Io;
use super::super::parts::encode_dir;
use super::super::CkptError;
use super::{ModelCheckpoint, Shape, LATEST};

/// An I/O error's mapping to a [`CkptError`] naming `what` and `p`.
fn err(what: &'static str, p: &Path) -> impl FnOnce(std::io::Error) -> CkptError {
    let p = p.to_path_buf();
    move |e| CkptError::io(what, &p, e)
}

impl ModelCheckpoint {
    /// Deletes the checkpoints top-k evicted (never the one resumed from),
    /// then makes the deletions durable.
    pub(super) fn delete_evicted(&self, io: &mut Io, names: &[String]) -> Result<(), CkptError> {
        let mut any = false;
        for name in names {
            let path = self.dir.join(name);
            if self.is_resumed_from(&path) || path.symlink_metadata().is_err() {
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

    /// Removes the checkpoint `name`: a file is unlinked; a directory is
    /// first renamed to `.<name>.trash` (it disappears at once, never half
    /// deleted under its own name), then its files are removed.
    pub(super) fn remove_checkpoint(&self, io: &mut Io, name: &str) -> Result<(), CkptError> {
        let path = self.dir.join(name);
        let is_dir = path.symlink_metadata().is_ok_and(|m| m.is_dir());
        if !is_dir {
            return io
                .unlink(&path)
                .map_err(err("delete evicted checkpoint", &path));
        }
        let trash = self.dir.join(format!(".{name}.trash"));
        if trash.symlink_metadata().is_ok() {
            io.remove_tree(&trash)
                .map_err(err("remove stale trash", &trash))?;
        }
        io.rename(&path, &trash)
            .map_err(err("move away old checkpoint", &path))?;
        io.remove_tree(&trash)
            .map_err(err("delete old checkpoint", &trash))
    }

    /// Writes the checkpoint `name` of `ck` in the configured shape.
    pub(super) fn write_checkpoint(
        &self,
        io: &mut Io,
        name: &str,
        ck: &Checkpoint,
    ) -> Result<(), CkptError> {
        match self.cfg.shape {
            Shape::File => self.write_file(io, name, &encode(ck)),
            Shape::Dir => self.write_dir(io, name, ck),
        }
    }

    /// Writes a directory checkpoint: its files into `.<name>.tmp/`, each
    /// fsynced, the metadata file last, the staging directory fsynced, then
    /// renamed to `name` and the checkpoint directory fsynced. A directory
    /// already called `name` (left by a run whose progress a crash undid) is
    /// renamed away first and removed afterwards. `partial-dir-picked`
    /// writes straight into `name/` instead.
    fn write_dir(&self, io: &mut Io, name: &str, ck: &Checkpoint) -> Result<(), CkptError> {
        let dir = &self.dir;
        let fin = dir.join(name);
        let sync = !self.mutants.has(Mutant::NoFsyncRename);
        let in_place = self.mutants.has(Mutant::PartialDirPicked);
        let stage = if in_place {
            fin.clone()
        } else {
            dir.join(format!(".{name}.tmp"))
        };
        if !in_place && stage.symlink_metadata().is_ok() {
            io.remove_tree(&stage)
                .map_err(err("remove stale staging directory", &stage))?;
        }
        if !(in_place && stage.is_dir()) {
            io.mkdir(&stage).map_err(err("create", &stage))?;
        }
        for (file, bytes) in encode_dir(ck) {
            let path = stage.join(file);
            let mut f = io.create(&path).map_err(err("create", &path))?;
            io.write(&mut f, &path, &bytes)
                .map_err(err("write", &path))?;
            if sync {
                io.fsync(&f, &path).map_err(err("fsync", &path))?;
            }
        }
        if sync {
            io.fsync_dir(&stage).map_err(err("fsync", &stage))?;
        }
        if in_place {
            return if sync {
                io.fsync_dir(dir).map_err(err("fsync", dir))
            } else {
                Ok(())
            };
        }
        let trash = dir.join(format!(".{name}.trash"));
        let replaced = fin.symlink_metadata().is_ok();
        if replaced {
            if trash.symlink_metadata().is_ok() {
                io.remove_tree(&trash)
                    .map_err(err("remove stale trash", &trash))?;
            }
            io.rename(&fin, &trash)
                .map_err(err("move away stale checkpoint", &fin))?;
        }
        io.rename(&stage, &fin).map_err(err("rename", &fin))?;
        if sync {
            io.fsync_dir(dir).map_err(err("fsync", dir))?;
        }
        if replaced {
            io.remove_tree(&trash)
                .map_err(err("delete stale checkpoint", &trash))?;
        }
        if self.mutants.has(Mutant::RotateByMtime) {
            self.stamp(io, &fin)?;
        }
        Ok(())
    }

    /// Points the `latest` file at the checkpoint `name`: through a
    /// temporary file and a rename, or rewritten in place (open with
    /// truncate, then write) for `latest-in-place`.
    pub(super) fn write_latest(&self, io: &mut Io, name: &str) -> Result<(), CkptError> {
        let text = format!("{name}\n");
        if !self.mutants.has(Mutant::LatestInPlace) {
            return self.write_file(io, LATEST, text.as_bytes());
        }
        let path = self.dir.join(LATEST);
        let mut f = io.create(&path).map_err(err("create", &path))?;
        io.write(&mut f, &path, text.as_bytes())
            .map_err(err("write", &path))?;
        io.fsync(&f, &path).map_err(err("fsync", &path))
    }

    /// Writes a checkpoint file: atomically, or in place for `torn-write`.
    pub(super) fn write_file(
        &self,
        io: &mut Io,
        name: &str,
        bytes: &[u8],
    ) -> Result<(), CkptError> {
        let dir = &self.dir;
        let fin = dir.join(name);
        if self.mutants.has(Mutant::TornWrite) {
            let mut f = io.create(&fin).map_err(err("create", &fin))?;
            io.write(&mut f, &fin, bytes).map_err(err("write", &fin))?;
            return io.fsync(&f, &fin).map_err(err("fsync", &fin));
        }
        let sync = !self.mutants.has(Mutant::NoFsyncRename);
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut f = io.create(&tmp).map_err(err("create", &tmp))?;
        io.write(&mut f, &tmp, bytes).map_err(err("write", &tmp))?;
        if sync {
            io.fsync(&f, &tmp).map_err(err("fsync", &tmp))?;
        }
        drop(f);
        io.rename(&tmp, &fin).map_err(err("rename", &fin))?;
        if sync {
            io.fsync_dir(dir).map_err(err("fsync", dir))?;
        }
        Ok(())
    }

    /// Points the link `link_name` at `target_name`, both in the directory.
    pub(super) fn relink(
        &self,
        io: &mut Io,
        link_name: &str,
        target_name: &str,
    ) -> Result<(), CkptError> {
        let dir = &self.dir;
        let link = dir.join(link_name);
        let target: PathBuf = if self.mutants.has(Mutant::CwdRelativeLink) {
            dir.join(target_name)
        } else if self.mutants.has(Mutant::AbsoluteLink) {
            std::path::absolute(dir.join(target_name))
                .map_err(|e| CkptError::io("absolute path", dir, e))?
        } else {
            PathBuf::from(target_name)
        };
        if self.mutants.has(Mutant::UnlinkThenLink) {
            if link.symlink_metadata().is_ok() {
                io.unlink(&link).map_err(err("unlink", &link))?;
            }
            io.symlink(&target, &link).map_err(err("symlink", &link))?;
        } else {
            let tmp = dir.join(format!(".{link_name}.tmp"));
            if tmp.symlink_metadata().is_ok() {
                io.unlink(&tmp)
                    .map_err(err("remove stale temporary link", &tmp))?;
            }
            io.symlink(&target, &tmp).map_err(err("symlink", &tmp))?;
            io.rename(&tmp, &link).map_err(err("rename", &link))?;
        }
        if !self.mutants.has(Mutant::NoFsyncRename) {
            io.fsync_dir(dir).map_err(err("fsync", dir))?;
        }
        Ok(())
    }
}
