//! The shape of checkpoints in a tree: which entries are checkpoints (files
//! named `*.ckpt` or like the files the subject announced, `last.pt`,
//! `step-#.pt`, at any depth; `checkpoint-<N>/` directories and directories
//! named like the ones the subject announced), which are pointers (links or
//! copies named `last*.ckpt` / `best*.ckpt`, `latest` text files), and
//! whether an announced checkpoint is still complete. Hard links the
//! uninterrupted run made of announced checkpoint files (timm's
//! `checkpoint-<epoch>.pth.tar` and `model_best.pth.tar` of `last.pth.tar`)
//! are complete copies of a checkpoint wherever they survive.
//!
//! A checkpoint directory is *complete* when it holds the files (names, and
//! sizes where the two reference runs agree on them) that the reference's
//! same-named directory holds at the end of the uninterrupted run; when the
//! reference no longer has it (rotated away), when it holds every file name
//! that all of the reference's checkpoint directories share; with no
//! reference directory to compare with, when it holds at least one file.
//! The harness reads events only after a run, so it cannot record a
//! directory at the moment it is announced: the reference is the record.

mod patterns;

pub use patterns::{base_name, generalise, mentions_last, names_last, Patterns};

use std::collections::{BTreeMap, BTreeSet};

use crate::observe::{DirSnapshot, EntryKind, Resolution};

/// Where an announced checkpoint is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum CkptPath {
    /// Relative to the checkpoint directory (`/`-separated).
    InDir(String),
    /// Somewhere else (as the subject wrote it, in sandbox terms).
    Elsewhere(String),
}

/// One `saved <step> <path>` event, placed in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    /// The step saved.
    pub step: u64,
    /// Where.
    pub at: CkptPath,
    /// The run of the case that announced it (1-based; 0 in the reference).
    pub run: usize,
}

impl Announced {
    /// The path as reports show it (a directory with a trailing `/` when
    /// `snap` shows it as one).
    pub fn show(&self, snap: &DirSnapshot) -> String {
        match &self.at {
            CkptPath::InDir(p) if snap.get(p).is_some_and(|e| e.kind == EntryKind::Dir) => {
                format!("{p}/")
            }
            CkptPath::InDir(p) | CkptPath::Elsewhere(p) => p.clone(),
        }
    }
}

/// The checkpoints of one tree, as `dir-mismatch` compares them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    /// Checkpoint files and links outside checkpoint directories, as
    /// compared (`name`, `name -> (where it resolves)`).
    pub files: BTreeSet<String>,
    /// Checkpoint directories: name to (file path inside it to size).
    pub dirs: BTreeMap<String, BTreeMap<String, u64>>,
    /// `latest` pointers: name to where they resolve.
    pub pointers: BTreeMap<String, String>,
    /// Everything else (temporary files, logs), as displayed.
    pub others: BTreeSet<String>,
}

impl Shape {
    /// Classifies every entry of `snap`.
    pub fn of(snap: &DirSnapshot, patterns: &Patterns) -> Shape {
        let mut s = Shape::default();
        let ckpt_dirs: Vec<&str> = snap
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Dir && patterns.is_checkpoint_dir(e.base()))
            .map(|e| e.name.as_str())
            .collect();
        let inside = |name: &str| {
            ckpt_dirs
                .iter()
                .find(|d| name.strip_prefix(**d).is_some_and(|r| r.starts_with('/')))
                .copied()
        };
        for d in &ckpt_dirs {
            s.dirs.insert(d.to_string(), BTreeMap::new());
        }
        for e in &snap.entries {
            if let Some(d) = inside(&e.name) {
                if let (EntryKind::File { size }, Some(files)) = (&e.kind, s.dirs.get_mut(d)) {
                    files.insert(e.name[d.len() + 1..].to_string(), *size);
                }
                continue;
            }
            if ckpt_dirs.contains(&e.name.as_str()) {
                continue;
            }
            let pointer = snap.pointers.iter().any(|p| p.name == e.name);
            // A link named as the last checkpoint (Composer's
            // `latest-rank0.pt`) is compared by where it resolves.
            let last_link = matches!(e.kind, EntryKind::Link { .. }) && names_last(e.base());
            if last_link || (e.kind != EntryKind::Dir && patterns.is_checkpoint_file(e.base())) {
                s.files.insert(e.comparable());
            } else if !pointer {
                s.others.insert(e.to_string());
            }
        }
        for p in &snap.pointers {
            s.pointers
                .insert(p.name.clone(), crate::observe::resolution_text(&p.resolves));
        }
        s
    }
}

/// What the reference says checkpoints look like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefShape {
    /// Checkpoint directory names.
    pub patterns: Patterns,
    /// The reference's final checkpoint directories: file to size, `None`
    /// where the two reference runs disagree on the size.
    pub dirs: BTreeMap<String, BTreeMap<String, Option<u64>>>,
    /// The file names every reference checkpoint directory holds.
    pub common: BTreeSet<String>,
}

impl RefShape {
    /// From the final trees of the two reference runs and the first one's
    /// announced saves.
    pub fn learn(first: &DirSnapshot, second: &DirSnapshot, saves: &[Announced]) -> RefShape {
        let patterns = Patterns::learn(saves, first);
        let (a, b) = (Shape::of(first, &patterns), Shape::of(second, &patterns));
        let dirs: BTreeMap<String, BTreeMap<String, Option<u64>>> = a
            .dirs
            .iter()
            .map(|(name, files)| {
                let other = b.dirs.get(name);
                let files = files
                    .iter()
                    .map(|(f, size)| {
                        let same = other.and_then(|o| o.get(f)) == Some(size);
                        (f.clone(), same.then_some(*size))
                    })
                    .collect();
                (name.clone(), files)
            })
            .collect();
        let mut common: Option<BTreeSet<String>> = None;
        for files in dirs.values() {
            let names: BTreeSet<String> = files.keys().cloned().collect();
            common = Some(match common {
                None => names,
                Some(c) => c.intersection(&names).cloned().collect(),
            });
        }
        RefShape {
            patterns,
            dirs,
            common: common.unwrap_or_default(),
        }
    }

    /// Is the checkpoint directory `name` of `snap` complete? `Err` says
    /// what is missing or wrong.
    pub fn dir_complete(&self, snap: &DirSnapshot, name: &str) -> Result<(), String> {
        let have: BTreeMap<&str, u64> = snap
            .below(name)
            .filter_map(|(rel, e)| match e.kind {
                EntryKind::File { size } => Some((rel, size)),
                _ => None,
            })
            .collect();
        let base = base_name(name);
        let same = self
            .dirs
            .iter()
            .find(|(n, _)| base_name(n) == base)
            .map(|(_, f)| f);
        let mut wrong = Vec::new();
        match same {
            Some(want) => {
                for (f, size) in want {
                    match (have.get(f.as_str()), size) {
                        (None, _) => wrong.push(format!("{f} missing")),
                        (Some(h), Some(w)) if h != w => {
                            wrong.push(format!("{f} has {h} bytes, {w} in the reference"))
                        }
                        _ => {}
                    }
                }
            }
            None if !self.common.is_empty() => {
                for f in &self.common {
                    if !have.contains_key(f.as_str()) {
                        wrong.push(format!("{f} missing"));
                    }
                }
            }
            None if have.is_empty() => wrong.push("no file in it".into()),
            None => {}
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join(", "))
        }
    }

    /// Is the announced checkpoint `a` still there and complete in `snap`?
    /// `Ok(false)`: it is gone; `Err`: it is there but not loadable, in
    /// words ("is incomplete (x missing)"). A checkpoint announced outside
    /// the checkpoint directory cannot be checked and counts as there.
    pub fn survives(&self, snap: &DirSnapshot, a: &Announced) -> Result<bool, String> {
        let CkptPath::InDir(name) = &a.at else {
            return Ok(true);
        };
        match snap.get(name).map(|e| &e.kind) {
            None => Ok(false),
            Some(EntryKind::File { .. }) => Ok(true),
            Some(EntryKind::Link {
                resolves: Resolution::Dangling,
                target,
            }) => Err(format!("is a link to {target}, which does not resolve")),
            Some(EntryKind::Link { .. }) => Ok(true),
            Some(EntryKind::Dir) => self
                .dir_complete(snap, name)
                .map(|()| true)
                .map_err(|why| format!("is incomplete ({why})")),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
