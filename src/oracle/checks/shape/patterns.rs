//! Which names are checkpoints: the patterns learned from the announced
//! saves, the names the census made and the hard links it made of them.

use std::collections::{BTreeMap, BTreeSet};

use crate::census::{Call, CensusEntry};
use crate::observe::{DirSnapshot, EntryKind};

use super::{Announced, CkptPath};

/// Names that are checkpoints: directories `checkpoint-<N>` and named like
/// the announced directories with their digits as placeholders
/// (`global_step#`); files named like the announced files (`last.pt`,
/// `step-#.pt`), besides every `*.ckpt`.
///
/// ```
/// use crashpoint::oracle::checks::shape::Patterns;
/// let p = Patterns::default();
/// assert!(p.is_checkpoint_dir("checkpoint-12"));
/// assert!(p.is_checkpoint_file("epoch=0-step=4.ckpt"));
/// assert!(!p.is_checkpoint_file("step-4.pt"), "not announced");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patterns {
    dirs: BTreeSet<String>,
    files: BTreeSet<String>,
    links: BTreeSet<String>,
}

impl Default for Patterns {
    fn default() -> Patterns {
        Patterns {
            dirs: BTreeSet::from(["checkpoint-#".to_string()]),
            files: BTreeSet::new(),
            links: BTreeSet::new(),
        }
    }
}

/// The last component of a `/`-separated path.
///
/// ```
/// use crashpoint::oracle::checks::shape::base_name;
/// assert_eq!(base_name("work/checkpoints/last.ckpt"), "last.ckpt");
/// ```
pub fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Does a file name mention the last checkpoint: it begins with `last`
/// (after any leading dots), or one of its words is `last` or `latest`
/// (Composer's `latest-rank0.pt`, mmcv's `latest.pth`)? Temporary names
/// count (`.last.ckpt.tmp-9`, on its way to become `last.ckpt`).
///
/// ```
/// use crashpoint::oracle::checks::shape::mentions_last;
/// assert!(mentions_last("last-v1.ckpt") && mentions_last("latest-rank0.pt"));
/// assert!(mentions_last("model_latest.pth") && !mentions_last("checkpoint_lastly.pt"));
/// ```
pub fn mentions_last(base: &str) -> bool {
    base.trim_start_matches('.').starts_with("last")
        || base
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| w.eq_ignore_ascii_case("last") || w.eq_ignore_ascii_case("latest"))
}

/// Is this the name of the last checkpoint itself (`last.ckpt`,
/// `last-v1.ckpt`, `checkpoint_last.pt` as fairseq names it,
/// `model-last.pth`): it mentions `last` ([`mentions_last`]) and is no
/// temporary name (hidden, or with a word `tmp` or `temp`)?
///
/// ```
/// use crashpoint::oracle::checks::shape::names_last;
/// assert!(names_last("last.pt") && names_last("checkpoint_last.pt"));
/// assert!(!names_last("checkpoint_lastly.pt") && !names_last("step-4.pt"));
/// assert!(!names_last(".last.ckpt.tmp-9") && !names_last("checkpoint_last.pt.tmp"));
/// ```
pub fn names_last(base: &str) -> bool {
    let temporary = base.starts_with('.')
        || base
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| w.eq_ignore_ascii_case("tmp") || w.eq_ignore_ascii_case("temp"));
    mentions_last(base) && !temporary
}

/// `name` with every run of digits replaced by `#`.
///
/// ```
/// use crashpoint::oracle::checks::shape::generalise;
/// assert_eq!(generalise("20261204_211705/vis_data"), "#_#/vis_data");
/// ```
pub fn generalise(name: &str) -> String {
    let mut out = String::new();
    let mut in_digits = false;
    for c in name.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

impl Patterns {
    /// `checkpoint-<N>`, and the announced directories and files of `saves`
    /// as `snap` (the uninterrupted run's final tree) holds them; an
    /// announced name that is gone (rotated away) is still a pattern when
    /// another announced name of the same pattern is there.
    pub fn learn(saves: &[Announced], snap: &DirSnapshot) -> Patterns {
        let mut p = Patterns::default();
        let kinds: BTreeMap<String, bool> = snap
            .entries
            .iter()
            .filter(|e| {
                saves
                    .iter()
                    .any(|s| s.at == CkptPath::InDir(e.name.clone()))
            })
            .map(|e| (generalise(e.base()), e.kind == EntryKind::Dir))
            .collect();
        for (pattern, dir) in kinds {
            if dir {
                if pattern.contains('#') {
                    p.dirs.insert(pattern);
                }
            } else if !pattern.ends_with(".ckpt") {
                p.files.insert(pattern);
            }
        }
        p
    }

    /// Learns the announced checkpoints of `saves` that `census` (the
    /// uninterrupted run's) made, as a file (opened for writing, renamed or
    /// linked onto) or as a directory, also when the run removed them before
    /// it ended (Keras's `BackupAndRestore` deletes its backup at the end).
    ///
    /// ```
    /// use crashpoint::census::{Call, CensusEntry};
    /// use crashpoint::oracle::checks::shape::{Announced, CkptPath, Patterns};
    /// let create = CensusEntry {
    ///     index: 9,
    ///     call: Call::Create,
    ///     name: "openat".into(),
    ///     paths: vec!["work/checkpoints/latest.weights.h5".into()],
    ///     phase: Default::default(),
    ///     fd: None,
    ///     offset: None,
    ///     len: None,
    /// };
    /// let saved = Announced { step: 2, at: CkptPath::InDir("latest.weights.h5".into()), run: 0 };
    /// let mut p = Patterns::default();
    /// p.learn_made(&[saved], &[create]);
    /// assert!(p.is_checkpoint_file("latest.weights.h5"));
    /// ```
    pub fn learn_made(&mut self, saves: &[Announced], census: &[CensusEntry]) {
        for a in saves {
            let CkptPath::InDir(name) = &a.at else {
                continue;
            };
            let made = |e: &CensusEntry| {
                e.paths
                    .last()
                    .is_some_and(|p| p == name || p.ends_with(&format!("/{name}")))
            };
            let pattern = generalise(base_name(name));
            for e in census.iter().filter(|e| made(e)) {
                match e.call {
                    Call::Create | Call::Rename | Call::Link if !pattern.ends_with(".ckpt") => {
                        self.files.insert(pattern.clone());
                    }
                    Call::Mkdir if pattern.contains('#') => {
                        self.dirs.insert(pattern.clone());
                    }
                    _ => {}
                }
            }
        }
    }

    /// Learns the names of the hard links that `census` (the uninterrupted
    /// run's) made of checkpoint files: a link shares its file, so each is a
    /// complete copy of the checkpoint it was made of.
    ///
    /// ```
    /// use crashpoint::census::{Call, CensusEntry};
    /// use crashpoint::oracle::checks::shape::Patterns;
    /// let link = CensusEntry {
    ///     index: 30,
    ///     call: Call::Link,
    ///     name: "linkat".into(),
    ///     paths: vec![
    ///         "work/checkpoints/last.ckpt".into(),
    ///         "work/checkpoints/checkpoint-3.pth.tar".into(),
    ///     ],
    ///     phase: Default::default(),
    ///     fd: None,
    ///     offset: None,
    ///     len: None,
    /// };
    /// let mut p = Patterns::default();
    /// p.learn_links(&[link]);
    /// assert!(p.is_checkpoint_link("checkpoint-7.pth.tar"));
    /// assert!(!p.is_checkpoint_link("tmp.pth.tar"));
    /// ```
    pub fn learn_links(&mut self, census: &[CensusEntry]) {
        for e in census.iter().filter(|e| e.call == Call::Link) {
            if let [from, to] = &e.paths[..] {
                if self.is_checkpoint_file(base_name(from))
                    && !self.is_checkpoint_file(base_name(to))
                {
                    self.links.insert(generalise(base_name(to)));
                }
            }
        }
    }

    /// Is a file with this last component named like a hard link the
    /// uninterrupted run made of a checkpoint file ([`Patterns::learn_links`])?
    pub fn is_checkpoint_link(&self, base: &str) -> bool {
        self.links.contains(&generalise(base))
    }

    /// Is a directory with this last component a checkpoint?
    pub fn is_checkpoint_dir(&self, base: &str) -> bool {
        self.dirs.contains(&generalise(base))
    }

    /// Is a file (or link) with this last component a checkpoint: `*.ckpt`,
    /// or named like an announced file?
    pub fn is_checkpoint_file(&self, base: &str) -> bool {
        base.ends_with(".ckpt") || self.files.contains(&generalise(base))
    }
}
