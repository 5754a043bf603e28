//! The checkpoint policy of the simulated trainer, modelled on PyTorch
//! Lightning's `ModelCheckpoint` (see `docs/lightning.md`) and, for
//! directory checkpoints, on Hugging Face `Trainer`: when to save, how
//! checkpoints are named (with `-v1`, `-v2` when a name is taken), which the
//! top-k keeps, how the pointer to the newest one (`last.ckpt` link or copy,
//! or a `latest` file) is kept up to date, and `save_total_limit` rotation.
//!
//! The correct policy follows the durability protocol: temporary file (or
//! staging directory), fsync, rename, fsync of the directory; links relinked
//! atomically with targets relative to the link's own directory; deletions
//! only after the new checkpoint and its pointer are durable, a directory
//! renamed away before its files are removed. Its bookkeeping travels inside
//! each checkpoint, including the deletions it still owes, so a resumed run
//! ends with the same directory as an uninterrupted one. Mutants switch
//! single steps of this into the bugs real frameworks shipped.

mod names;
mod rotate;
mod write;

use std::path::{Path, PathBuf};

use crate::census::{Phase, PhaseKind};
use crate::sim::SimState;
use crate::sim::{Mutant, Mutants};

use super::format::{encode, Checkpoint};
use super::io::Io;
pub use super::topk::TopK;
use super::CkptError;

/// How `last.ckpt` is maintained (the `save_last` setting; [`Pointer`] says the same and more).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum SaveLast {
    /// A symbolic link to the newest top-k checkpoint (Lightning's `save_last="link"`).
    Link,
    /// A full copy written at every save (Lightning's `save_last=True`).
    Copy,
    /// No `last.ckpt`.
    Off,
}

/// What one checkpoint is on disk.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// One file per checkpoint, named by the file name template.
    File,
    /// A directory `checkpoint-<step>/` of part files and a metadata file
    /// (Hugging Face `Trainer`, torch.distributed.checkpoint).
    Dir,
}

/// What points at the newest checkpoint.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Pointer {
    /// `last.ckpt`, a symbolic link to the newest checkpoint (file or directory).
    Link,
    /// `last.ckpt`, a full single-file copy of the newest checkpoint.
    Copy,
    /// `latest`, a text file naming the newest checkpoint (DeepSpeed).
    Latest,
    /// Nothing: resume finds the newest complete checkpoint by scanning.
    None,
}

impl From<SaveLast> for Pointer {
    fn from(s: SaveLast) -> Pointer {
        match s {
            SaveLast::Link => Pointer::Link,
            SaveLast::Copy => Pointer::Copy,
            SaveLast::Off => Pointer::None,
        }
    }
}

/// Whether a smaller or a larger monitored value is better.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Smaller is better (a loss).
    Min,
    /// Larger is better (an accuracy).
    Max,
}

/// The `ModelCheckpoint` settings.
///
/// ```
/// let p = crashpoint::sim::ckpt::policy::PolicyConfig::default();
/// assert_eq!(p.every_n_steps, 5);
/// assert_eq!(p.save_top_k, -1);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// Save when the global step is a multiple of this (0: never by steps).
    pub every_n_steps: u64,
    /// Save at the end of every n-th epoch (0: never by epochs).
    pub every_n_epochs: u64,
    /// How many checkpoints to keep: -1 all, 0 none (only `last.ckpt`), k the best k.
    pub save_top_k: i64,
    /// Rank by the training loss in this mode; `None` ranks by recency.
    pub monitor: Option<Mode>,
    /// What points at the newest checkpoint.
    pub pointer: Pointer,
    /// One file or one directory per checkpoint.
    pub shape: Shape,
    /// Keep only the newest this many checkpoint directories by step number,
    /// deleting older ones once a save is durable (0: keep all).
    pub save_total_limit: u64,
    /// File name template: `{epoch}`, `{step}`, `{loss}` or `{loss:.4f}`.
    pub filename: String,
    /// Insert `name=` before each placeholder's value, as Lightning does by default.
    pub auto_insert_metric_name: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            every_n_steps: 5,
            every_n_epochs: 0,
            save_top_k: -1,
            monitor: None,
            pointer: Pointer::Link,
            shape: Shape::File,
            save_total_limit: 0,
            filename: "{step}".to_string(),
            auto_insert_metric_name: true,
        }
    }
}

/// The name of the `last` checkpoint.
pub const LAST: &str = "last.ckpt";
/// The name of the `best` link.
pub const BEST: &str = "best.ckpt";
/// The name of the pointer file of [`Pointer::Latest`].
pub const LATEST: &str = "latest";

/// A `ModelCheckpoint` bound to one checkpoint directory and one run.
#[derive(Debug)]
pub struct ModelCheckpoint {
    cfg: PolicyConfig,
    /// The directory as the user wrote it (relative to the working directory or absolute).
    dir: PathBuf,
    mutants: Mutants,
    /// The bookkeeping.
    pub topk: TopK,
    /// The checkpoint file this run resumed from, as the user named it:
    /// never deleted (Lightning's rule; directory checkpoints have no such rule).
    resumed_from: Option<PathBuf>,
}

impl ModelCheckpoint {
    /// A policy writing into `dir` (as the user wrote it).
    pub fn new(cfg: PolicyConfig, dir: PathBuf, mutants: Mutants) -> Self {
        ModelCheckpoint {
            cfg,
            dir,
            mutants,
            topk: TopK::default(),
            resumed_from: None,
        }
    }

    /// Takes over the bookkeeping of the checkpoint resumed from, and
    /// finishes the deletions that checkpoint still owed (top-k evictions,
    /// and a rotation a crash cut short, never touching `loaded`). `named`
    /// is the checkpoint as the user named it, if they named one.
    pub fn resume(
        &mut self,
        io: &mut Io,
        topk: TopK,
        named: Option<&Path>,
        loaded: &Path,
    ) -> Result<(), CkptError> {
        self.resumed_from = named
            .filter(|_| self.cfg.shape == Shape::File)
            .map(Path::to_path_buf);
        if self.mutants.has(Mutant::StaleTopK) {
            return Ok(());
        }
        for name in &topk.pending_delete {
            if topk.kept.iter().any(|(k, _)| k == name) {
                continue;
            }
            let path = self.dir.join(name);
            if path.symlink_metadata().is_ok() && !self.is_resumed_from(&path) {
                self.remove_checkpoint(io, name)?;
            }
        }
        self.topk = TopK {
            pending_delete: Vec::new(),
            ..topk
        };
        // A crash between the save and the relink of best.ckpt leaves the
        // link behind the bookkeeping: repair it now.
        if let (Some(_), Some(best)) = (self.cfg.monitor, self.topk.best.clone()) {
            let link = self.dir.join(BEST);
            let current = match link.symlink_metadata() {
                Ok(_) => io.read_link(&link).ok(),
                Err(_) => None,
            };
            if current.as_deref() != Some(Path::new(&best)) {
                self.relink(io, BEST, &best)?;
            }
        }
        // `rotate-by-mtime` rotates after saves only, as the Trainer does.
        if !self.mutants.has(Mutant::RotateByMtime) {
            let keep = loaded
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
            self.rotate(io, keep.as_deref())?;
        }
        Ok(())
    }

    /// Removes temporary files and staging or trash directories a killed
    /// run left in the directory.
    pub fn clean_stale(&self, io: &mut Io) -> Result<(), CkptError> {
        if !self.dir.is_dir() {
            return Ok(());
        }
        let names = io
            .list(&self.dir)
            .map_err(|e| CkptError::io("list", &self.dir, e))?;
        for name in names
            .iter()
            .filter(|n| n.starts_with('.') && (n.ends_with(".tmp") || n.ends_with(".trash")))
        {
            let path = self.dir.join(name);
            let is_dir = path.symlink_metadata().is_ok_and(|m| m.is_dir());
            let done = if is_dir {
                io.remove_tree(&path)
            } else {
                io.unlink(&path)
            };
            done.map_err(|e| CkptError::io("remove stale temporary file", &path, e))?;
        }
        Ok(())
    }

    fn is_resumed_from(&self, path: &Path) -> bool {
        self.resumed_from
            .as_deref()
            .is_some_and(|r| same_name(r, path))
    }

    /// Called after every optimizer step; saves when a trigger fires.
    /// `epoch_ended` says whether that step finished an epoch. Returns the
    /// path of the checkpoint to announce when a save completed.
    pub fn on_step_end(
        &mut self,
        io: &mut Io,
        state: &SimState,
        epoch_ended: bool,
    ) -> Result<Option<PathBuf>, CkptError> {
        let step = state.global_step;
        if step == 0 || step == self.topk.last_step_saved {
            return Ok(None);
        }
        let by_steps = self.cfg.every_n_steps > 0 && step % self.cfg.every_n_steps == 0;
        let by_epochs = epoch_ended
            && self.cfg.every_n_epochs > 0
            && state.epoch % self.cfg.every_n_epochs == 0;
        if !(by_steps || by_epochs) {
            return Ok(None);
        }
        self.save_written(io, state)
    }

    fn better(&self, a: f32, b: f32) -> bool {
        match self.cfg.monitor {
            Some(Mode::Max) => a > b,
            _ => a < b,
        }
    }

    /// Decides the new bookkeeping: which file this save writes (if any)
    /// and which kept files it evicts.
    fn plan(&self, state: &SimState) -> (Option<String>, TopK) {
        let mut next = TopK {
            last_step_saved: state.global_step,
            pending_delete: Vec::new(),
            // What the checkpoint records as the `last` pointer: the name
            // this save gives it; `last-lost-on-early-resume` records the
            // name from before the save, nothing at the first one.
            last_link: if self.mutants.has(Mutant::LastLostOnEarlyResume) {
                self.topk.last_link.clone()
            } else {
                matches!(self.cfg.pointer, Pointer::Link | Pointer::Copy).then(|| LAST.to_string())
            },
            ..self.topk.clone()
        };
        let k = self.cfg.save_top_k;
        if k == 0 {
            return (None, next);
        }
        let score = state.loss;
        let full = k > 0 && next.kept.len() as i64 >= k;
        let victim: Option<usize> = if !full {
            None
        } else if self.cfg.monitor.is_none() {
            Some(0)
        } else {
            let worst = (0..next.kept.len()).reduce(|w, i| {
                if self.better(next.kept[w].1, next.kept[i].1) {
                    i
                } else {
                    w
                }
            });
            match worst {
                Some(w) if self.better(score, next.kept[w].1) => Some(w),
                _ => return (None, next),
            }
        };
        let evicted = victim.map(|v| next.kept.remove(v).0);
        let name = self.free_name(state, evicted.as_deref());
        next.kept.push((name.clone(), score));
        next.pending_delete.extend(evicted.filter(|e| *e != name));
        next.best = if self.cfg.monitor.is_some() {
            next.kept
                .iter()
                .fold(None::<&(String, f32)>, |b, e| match b {
                    Some(b) if !self.better(e.1, b.1) => Some(b),
                    _ => Some(e),
                })
                .map(|e| e.0.clone())
        } else {
            Some(name.clone())
        };
        next.last_saved = Some(name.clone());
        (Some(name), next)
    }

    /// Saves a checkpoint of `state` now, whatever the triggers say.
    /// Returns the path of the checkpoint announced.
    pub fn save(&mut self, io: &mut Io, state: &SimState) -> Result<PathBuf, CkptError> {
        let last = self.dir.join(LAST);
        self.save_written(io, state).map(|p| p.unwrap_or(last))
    }

    /// Saves a checkpoint of `state` now. Returns the path to announce (the
    /// checkpoint directory, or for files `last.ckpt` when there is one, else
    /// the file), or `None` when nothing was written (top-k declined the
    /// checkpoint and there is no `last.ckpt`): then no save happened, and
    /// none may be announced.
    fn save_written(
        &mut self,
        io: &mut Io,
        state: &SimState,
    ) -> Result<Option<PathBuf>, CkptError> {
        let step = state.global_step;
        io.set_phase(Phase::at(PhaseKind::Save, step));
        let dir = self.dir.clone();
        io.mkdir_all(&dir)
            .map_err(|e| CkptError::io("create checkpoint directory", &dir, e))?;
        let (name, next) = self.plan(state);
        let ck = Checkpoint {
            state: state.clone(),
            topk: next.clone(),
        };
        if self.mutants.has(Mutant::DeleteBeforeSave) {
            self.delete_evicted(io, &next.pending_delete)?;
        }
        if let Some(name) = &name {
            self.write_checkpoint(io, name, &ck)?;
        }
        let written = name.as_deref().map(|n| dir.join(n));
        let mut last_link = next.last_link.clone();
        let pointer = match self.cfg.pointer {
            // Link only to a checkpoint this very save wrote: a link to an
            // older one would make `last` lag behind the announced save.
            Pointer::Link if name.is_some() => {
                io.set_phase(Phase::at(PhaseKind::RelinkLast, step));
                let link = self.last_name();
                let target = next.last_saved.clone().unwrap_or_default();
                self.relink(io, &link, &target)?;
                last_link = Some(link.clone());
                Some(dir.join(link))
            }
            Pointer::Link | Pointer::Copy => {
                io.set_phase(Phase::at(PhaseKind::SaveLast, step));
                let copy = self.last_name();
                self.write_file(io, &copy, &encode(&ck))?;
                last_link = Some(copy.clone());
                Some(dir.join(copy))
            }
            Pointer::Latest => match &name {
                Some(n) => {
                    io.set_phase(Phase::at(PhaseKind::Pointer, step));
                    self.write_latest(io, n)?;
                    None
                }
                None => None,
            },
            Pointer::None => None,
        };
        if self.cfg.monitor.is_some() && next.best.is_some() && next.best != self.topk.best {
            io.set_phase(Phase::at(PhaseKind::RelinkBest, step));
            let best = next.best.clone().unwrap_or_default();
            self.relink(io, BEST, &best)?;
        }
        io.set_phase(Phase::at(PhaseKind::Rotate, step));
        if !self.mutants.has(Mutant::DeleteBeforeSave) {
            self.delete_evicted(io, &next.pending_delete)?;
        }
        self.topk = TopK {
            pending_delete: Vec::new(),
            ..next
        };
        if self.mutants.has(Mutant::LastLostOnEarlyResume) {
            self.topk.last_link = last_link;
        }
        if self.mutants.has(Mutant::RotateByMtime) {
            self.rotate_by_mtime(io)?;
        } else {
            self.rotate(io, None)?;
        }
        Ok(match self.cfg.shape {
            Shape::Dir => written.or(pointer),
            Shape::File => pointer.or(written),
        })
    }
}

/// Do two paths name the same directory entry (without following a final link)?
fn same_name(a: &Path, b: &Path) -> bool {
    let norm = |p: &Path| -> Option<PathBuf> {
        let parent = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Some(parent.canonicalize().ok()?.join(p.file_name()?))
    };
    match (norm(a), norm(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}
