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

use std::collections::{BTreeMap, BTreeSet};

use crate::census::{Call, CensusEntry};
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
fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Does a file name mention the last checkpoint: it begins with `last`
/// (after any leading dots), or one of its words is `last`? Temporary
/// names count (`.last.ckpt.tmp-9`, on its way to become `last.ckpt`).
pub fn mentions_last(base: &str) -> bool {
    base.trim_start_matches('.').starts_with("last")
        || base
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| w.eq_ignore_ascii_case("last"))
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
fn generalise(name: &str) -> String {
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
                if self.is_checkpoint_file(base(from)) && !self.is_checkpoint_file(base(to)) {
                    self.links.insert(generalise(base(to)));
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
            if e.kind != EntryKind::Dir && patterns.is_checkpoint_file(e.base()) {
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
        let base = name.rsplit('/').next().unwrap_or(name);
        let same = self
            .dirs
            .iter()
            .find(|(n, _)| n.rsplit('/').next() == Some(base))
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
pub(crate) mod tests {
    use super::*;
    use crate::observe::{Entry, TextPointer};

    /// A hand-made snapshot: `name` (file, size 10), `name/` (directory),
    /// `name#size`, `name->target` (a link resolving in the directory, or
    /// dangling when the target is `!`), `latest:text`.
    pub fn snap(items: &[&str]) -> DirSnapshot {
        let mut s = DirSnapshot {
            exists: true,
            ..DirSnapshot::default()
        };
        for i in items {
            let (name, kind) = if let Some(d) = i.strip_suffix('/') {
                (d.to_string(), EntryKind::Dir)
            } else if let Some((n, t)) = i.split_once("->") {
                let resolves = if t == "!" {
                    Resolution::Dangling
                } else {
                    Resolution::InDir(t.to_string())
                };
                (
                    n.to_string(),
                    EntryKind::Link {
                        target: t.to_string(),
                        resolves,
                    },
                )
            } else if let Some((n, text)) = i.split_once(':') {
                let resolves = if items.iter().any(|x| x.trim_end_matches('/') == text) {
                    Resolution::InDir(text.to_string())
                } else {
                    Resolution::Dangling
                };
                s.pointers.push(TextPointer {
                    name: n.to_string(),
                    names: text.to_string(),
                    resolves,
                });
                (n.to_string(), EntryKind::File { size: 4 })
            } else if let Some((n, size)) = i.split_once('#') {
                (
                    n.to_string(),
                    EntryKind::File {
                        size: size.parse().unwrap(),
                    },
                )
            } else {
                (i.to_string(), EntryKind::File { size: 10 })
            };
            s.entries.push(Entry { name, kind });
        }
        s.entries.sort();
        s
    }

    /// A `saved` event of `step` at `path` in the checkpoint directory.
    pub fn saved(step: u64, path: &str, run: usize) -> Announced {
        Announced {
            step,
            at: CkptPath::InDir(path.into()),
            run,
        }
    }

    const HF: [&str; 4] = [
        "model.bin#100",
        "optim.bin#200",
        "rng.json#5",
        "trainer_state.json",
    ];

    fn hf_dir(name: &str, files: &[&str]) -> Vec<String> {
        let mut v = vec![format!("{name}/")];
        v.extend(files.iter().map(|f| format!("{name}/{f}")));
        v
    }

    fn items(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    #[test]
    fn files_named_like_the_announced_ones_are_checkpoints() {
        // A hand-written loop: torch.save into last.pt and step-N.pt.
        let s = snap(&[
            "last.pt",
            "step-8.pt",
            "step-12.pt",
            "train.log",
            "a/step-3.pt",
        ]);
        let saves = [saved(8, "step-8.pt", 0), saved(12, "last.pt", 0)];
        let pats = Patterns::learn(&saves, &s);
        assert!(pats.is_checkpoint_file("step-100.pt") && pats.is_checkpoint_file("x.ckpt"));
        assert!(!pats.is_checkpoint_file("train.log") && !pats.is_checkpoint_dir("step-8.pt"));
        let shape = Shape::of(&s, &pats);
        assert_eq!(
            shape.files.iter().collect::<Vec<_>>(),
            ["a/step-3.pt", "last.pt", "step-12.pt", "step-8.pt"]
        );
        assert_eq!(shape.others.iter().collect::<Vec<_>>(), ["train.log"]);
        // Announced names that are gone teach nothing.
        let gone = Patterns::learn(&[saved(4, "step-4.pt", 0)], &snap(&["train.log"]));
        assert!(!gone.is_checkpoint_file("step-4.pt"));
    }

    #[test]
    fn directories_and_files_at_any_depth_are_classified() {
        let s = snap(&[
            "checkpoints/",
            "checkpoints/epoch=0-step=4.ckpt",
            "checkpoints/last.ckpt->checkpoints/epoch=0-step=4.ckpt",
            "checkpoint-2/",
            "checkpoint-2/model.bin",
            "global_step4/",
            "global_step4/a.pt",
            "latest:global_step4",
            "notes.txt",
        ]);
        let pats = Patterns::learn(&[saved(4, "global_step4", 1)], &s);
        let shape = Shape::of(&s, &pats);
        assert_eq!(
            shape.files.iter().collect::<Vec<_>>(),
            [
                "checkpoints/epoch=0-step=4.ckpt",
                "checkpoints/last.ckpt -> (checkpoints/epoch=0-step=4.ckpt)"
            ]
        );
        assert_eq!(
            shape.dirs.keys().collect::<Vec<_>>(),
            ["checkpoint-2", "global_step4"]
        );
        assert_eq!(shape.pointers["latest"], "global_step4");
        assert_eq!(
            shape.others.iter().collect::<Vec<_>>(),
            ["checkpoints/", "notes.txt"]
        );
    }

    #[test]
    fn a_directory_is_complete_when_it_matches_the_reference() {
        let mut full = hf_dir("checkpoint-4", &HF);
        full.extend(hf_dir("checkpoint-8", &HF));
        let reference = snap(&items(&full));
        let r = RefShape::learn(&reference, &reference, &[]);
        assert_eq!(r.common.len(), 4);
        // Same name as in the reference: names and sizes.
        let torn = snap(&items(&hf_dir(
            "checkpoint-8",
            &[
                "model.bin#50",
                "optim.bin#200",
                "rng.json#5",
                "trainer_state.json",
            ],
        )));
        assert_eq!(
            r.dir_complete(&torn, "checkpoint-8"),
            Err("model.bin has 50 bytes, 100 in the reference".into())
        );
        // Rotated away in the reference: the common file names.
        let partial = snap(&items(&hf_dir("checkpoint-2", &HF[..3])));
        assert_eq!(
            r.dir_complete(&partial, "checkpoint-2"),
            Err("trainer_state.json missing".into())
        );
        let whole = snap(&items(&hf_dir("checkpoint-2", &HF)));
        assert_eq!(r.survives(&whole, &saved(2, "checkpoint-2", 1)), Ok(true));
        assert_eq!(r.survives(&whole, &saved(6, "checkpoint-6", 1)), Ok(false));
    }

    #[test]
    fn sizes_the_reference_runs_disagree_on_are_not_compared() {
        let a = snap(&items(&hf_dir(
            "checkpoint-8",
            &["model.bin#100", "log.json#7"],
        )));
        let b = snap(&items(&hf_dir(
            "checkpoint-8",
            &["model.bin#100", "log.json#9"],
        )));
        let r = RefShape::learn(&a, &b, &[]);
        let got = snap(&items(&hf_dir(
            "checkpoint-8",
            &["model.bin#100", "log.json#3"],
        )));
        assert_eq!(r.dir_complete(&got, "checkpoint-8"), Ok(()));
    }
}
