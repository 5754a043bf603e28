//! The checkpoint policy of the simulated trainer, modelled on PyTorch
//! Lightning's `ModelCheckpoint` (see `docs/lightning.md`): when to save, how
//! files are named (with `-v1`, `-v2` when a name is taken), which files the
//! top-k keeps, and how `last.ckpt` / `best.ckpt` are kept up to date.
//!
//! The correct policy follows the durability protocol: temporary file, fsync,
//! rename, fsync of the directory; links relinked atomically with targets
//! relative to the link's own directory; top-k deletions only after the new
//! checkpoint and `last.ckpt` are durable. Its bookkeeping travels inside each
//! checkpoint, including the deletions it still owes, so a resumed run ends
//! with the same directory as an uninterrupted one. Mutants switch single
//! steps of this into the bugs real frameworks shipped.

use std::path::{Path, PathBuf};

use crate::census::{Phase, PhaseKind};
use crate::sim::SimState;
use crate::sim::{Mutant, Mutants};

use super::format::{encode, Checkpoint};
use super::io::Io;
pub use super::topk::TopK;
use super::CkptError;

/// How `last.ckpt` is maintained.
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
    /// How `last.ckpt` is kept.
    pub save_last: SaveLast,
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
            save_last: SaveLast::Link,
            filename: "{step}".to_string(),
            auto_insert_metric_name: true,
        }
    }
}

/// The name of the `last` checkpoint.
pub const LAST: &str = "last.ckpt";
/// The name of the `best` link.
pub const BEST: &str = "best.ckpt";

/// A `ModelCheckpoint` bound to one checkpoint directory and one run.
#[derive(Debug)]
pub struct ModelCheckpoint {
    cfg: PolicyConfig,
    /// The directory as the user wrote it (relative to the working directory or absolute).
    dir: PathBuf,
    mutants: Mutants,
    /// The bookkeeping.
    pub topk: TopK,
    /// The checkpoint this run resumed from, as the user named it: never deleted.
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

    /// Takes over the bookkeeping of the checkpoint resumed from, and finishes
    /// the deletions that checkpoint still owed. Stale temporary files of a
    /// killed run are removed.
    pub fn resume(&mut self, io: &mut Io, topk: TopK, from: &Path) -> Result<(), CkptError> {
        self.resumed_from = Some(from.to_path_buf());
        if self.mutants.has(Mutant::StaleTopK) {
            return Ok(());
        }
        for name in &topk.pending_delete {
            if topk.kept.iter().any(|(k, _)| k == name) {
                continue;
            }
            let path = self.dir.join(name);
            if path.symlink_metadata().is_ok() && !self.is_resumed_from(&path) {
                io.unlink(&path)
                    .map_err(|e| CkptError::io("delete evicted checkpoint", &path, e))?;
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
        Ok(())
    }

    /// Removes temporary files a killed run left in the directory.
    pub fn clean_stale(&self, io: &mut Io) -> Result<(), CkptError> {
        if !self.dir.is_dir() {
            return Ok(());
        }
        let names = io
            .list(&self.dir)
            .map_err(|e| CkptError::io("list", &self.dir, e))?;
        for name in names
            .iter()
            .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
        {
            let path = self.dir.join(name);
            io.unlink(&path)
                .map_err(|e| CkptError::io("remove stale temporary file", &path, e))?;
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
    /// path a user would resume from when a save completed.
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

    /// Formats the file name of a checkpoint of `state` (without version suffix).
    pub fn format_name(&self, state: &SimState, version: u32) -> String {
        let mut out = String::new();
        let mut rest = self.cfg.filename.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let Some(close) = rest[open..].find('}') else {
                out.push_str(&rest[open..]);
                rest = "";
                break;
            };
            let inner = &rest[open + 1..open + close];
            let (key, spec) = inner.split_once(':').unwrap_or((inner, ""));
            let value = match key {
                "epoch" => state.epoch.to_string(),
                "step" => state.global_step.to_string(),
                "loss" => match spec.strip_prefix('.').and_then(|s| s.strip_suffix('f')) {
                    Some(p) => format!("{:.*}", p.parse().unwrap_or(4), state.loss),
                    None => state.loss.to_string(),
                },
                other => format!("{{{other}}}"),
            };
            if self.cfg.auto_insert_metric_name && matches!(key, "epoch" | "step" | "loss") {
                out.push_str(key);
                out.push('=');
            }
            out.push_str(&value);
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        if version > 0 {
            out.push_str(&format!("-v{version}"));
        }
        out.push_str(".ckpt");
        out
    }

    /// A free name for a new checkpoint: the formatted name, or with `-v1`,
    /// `-v2`... when a checkpoint we keep already has it. A file by that name
    /// that our bookkeeping does not know (left by a run whose progress a
    /// crash undid) is overwritten instead, as the uninterrupted run would
    /// have written exactly that file.
    fn free_name(&self, state: &SimState, evicting: Option<&str>) -> String {
        let known = |n: &str| {
            if self.mutants.has(Mutant::StaleTopK) {
                self.dir.join(n).symlink_metadata().is_ok()
            } else {
                self.topk.kept.iter().any(|(k, _)| k == n)
            }
        };
        let mut version = 0;
        loop {
            let name = self.format_name(state, version);
            if !known(&name) || evicting == Some(name.as_str()) {
                return name;
            }
            version += 1;
        }
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
    /// Returns the path a user would resume from.
    pub fn save(&mut self, io: &mut Io, state: &SimState) -> Result<PathBuf, CkptError> {
        let last = self.dir.join(LAST);
        self.save_written(io, state).map(|p| p.unwrap_or(last))
    }

    /// Saves a checkpoint of `state` now. Returns the path a user would
    /// resume from, or `None` when nothing was written (top-k declined the
    /// checkpoint and there is no `last.ckpt`): then no save happened, and
    /// none may be announced.
    fn save_written(
        &mut self,
        io: &mut Io,
        state: &SimState,
    ) -> Result<Option<PathBuf>, CkptError> {
        io.set_phase(Phase::at(PhaseKind::Save, state.global_step));
        let dir = self.dir.clone();
        io.mkdir_all(&dir)
            .map_err(|e| CkptError::io("create checkpoint directory", &dir, e))?;
        let (file, next) = self.plan(state);
        let bytes = encode(&Checkpoint {
            state: state.clone(),
            topk: next.clone(),
        });
        if self.mutants.has(Mutant::DeleteBeforeSave) {
            self.delete_evicted(io, &next.pending_delete)?;
        }
        if let Some(name) = &file {
            self.write_file(io, name, &bytes)?;
        }
        let resume_path = match self.cfg.save_last {
            // Link only to a file this very save wrote: a link to an older
            // top-k file would make `last` lag behind the announced save.
            SaveLast::Link if file.is_some() => {
                io.set_phase(Phase::at(PhaseKind::RelinkLast, state.global_step));
                let target = next.last_saved.clone().unwrap_or_default();
                self.relink(io, LAST, &target)?;
                Some(dir.join(LAST))
            }
            SaveLast::Link | SaveLast::Copy => {
                io.set_phase(Phase::at(PhaseKind::SaveLast, state.global_step));
                self.write_file(io, LAST, &bytes)?;
                Some(dir.join(LAST))
            }
            SaveLast::Off => file.as_deref().map(|f| dir.join(f)),
        };
        if self.cfg.monitor.is_some() && next.best.is_some() && next.best != self.topk.best {
            io.set_phase(Phase::at(PhaseKind::RelinkBest, state.global_step));
            let best = next.best.clone().unwrap_or_default();
            self.relink(io, BEST, &best)?;
        }
        io.set_phase(Phase::at(PhaseKind::Rotate, state.global_step));
        if !self.mutants.has(Mutant::DeleteBeforeSave) {
            self.delete_evicted(io, &next.pending_delete)?;
        }
        self.topk = TopK {
            pending_delete: Vec::new(),
            ..next
        };
        Ok(resume_path)
    }

    fn delete_evicted(&self, io: &mut Io, names: &[String]) -> Result<(), CkptError> {
        let mut any = false;
        for name in names {
            let path = self.dir.join(name);
            if self.is_resumed_from(&path) || path.symlink_metadata().is_err() {
                continue;
            }
            io.unlink(&path)
                .map_err(|e| CkptError::io("delete evicted checkpoint", &path, e))?;
            any = true;
        }
        if any && !self.mutants.has(Mutant::NoFsyncRename) {
            io.fsync_dir(&self.dir)
                .map_err(|e| CkptError::io("fsync", &self.dir, e))?;
        }
        Ok(())
    }

    /// Writes a checkpoint file: atomically, or in place for `torn-write`.
    fn write_file(&self, io: &mut Io, name: &str, bytes: &[u8]) -> Result<(), CkptError> {
        let dir = &self.dir;
        let fin = dir.join(name);
        let err = |what, p: &Path| {
            let p = p.to_path_buf();
            move |e| CkptError::io(what, &p, e)
        };
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
    fn relink(&self, io: &mut Io, link_name: &str, target_name: &str) -> Result<(), CkptError> {
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
        let err = |what, p: &Path| {
            let p = p.to_path_buf();
            move |e| CkptError::io(what, &p, e)
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
