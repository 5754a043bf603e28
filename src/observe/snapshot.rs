//! A snapshot of the whole checkpoint tree below `CRASHPOINT_CKPT_DIR`:
//! every entry at any depth (names relative to the checkpoint directory,
//! `/`-separated), its kind, a file's size, where a link resolves, and what
//! a `latest` text file names. The scan never descends through a link, is
//! bounded in depth and entries, and never writes; links are resolved with
//! `stat` only.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{read_bounded, BoundedError};

/// The deepest level the scan descends to (the checkpoint directory is 0).
pub const SCAN_DEPTH: usize = 16;
/// The most entries one snapshot holds; a larger tree is marked truncated.
pub const SCAN_ENTRIES: usize = 20_000;
/// The largest `latest` file read as a pointer.
const POINTER_LIMIT: u64 = 4096;

/// One entry of the checkpoint tree.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Entry {
    /// The path relative to the checkpoint directory, `/`-separated
    /// (`last.ckpt`, `checkpoints/last.ckpt`, `checkpoint-4/model.bin`).
    pub name: String,
    /// What it is.
    pub kind: EntryKind,
}

/// The kind of an entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum EntryKind {
    /// A regular file (or anything that is neither a directory nor a link).
    File {
        /// Its size in bytes.
        size: u64,
    },
    /// A directory.
    Dir,
    /// A symbolic link: its target as written, and where it resolves.
    Link {
        /// The target as stored in the link.
        target: String,
        /// Where it resolves.
        resolves: Resolution,
    },
}

/// Where a link (or a pointer file) resolves, described independently of
/// the sandbox's location.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "to", content = "path")]
pub enum Resolution {
    /// To this path inside the checkpoint directory (relative to it).
    InDir(String),
    /// To this path inside the sandbox but outside the checkpoint directory.
    InSandbox(String),
    /// Outside the sandbox.
    Outside(String),
    /// Nowhere: the target does not exist.
    Dangling,
}

/// A small text file named `latest` or `latest.txt` (DeepSpeed's
/// convention), `last_checkpoint` (detectron2's, mmengine's) or
/// `latest_checkpointed_iteration.txt` (Megatron-LM's, which holds an
/// iteration number): the checkpoint it names, and where that resolves.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct TextPointer {
    /// The pointer file, relative to the checkpoint directory.
    pub name: String,
    /// Its first line, trimmed (empty: it names nothing).
    pub names: String,
    /// Where that resolves: relative to the pointer's own directory, else
    /// to the checkpoint directory; a bare number names the entry beside
    /// the pointer that carries that number (`3` is `iter_0000003`);
    /// `Dangling` when it names nothing.
    pub resolves: Resolution,
}

/// The checkpoint tree after a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DirSnapshot {
    /// Does the checkpoint directory exist at all?
    pub exists: bool,
    /// Every entry at any depth, sorted by name.
    pub entries: Vec<Entry>,
    /// The `latest` pointer files found, sorted by name.
    pub pointers: Vec<TextPointer>,
    /// Did the scan stop at [`SCAN_DEPTH`] or [`SCAN_ENTRIES`]?
    pub truncated: bool,
}

/// A link target as text, an absolute one inside the sandbox written as
/// `<sandbox>/...`: what a snapshot shows must not depend on where the
/// sandbox happened to be.
fn in_sandbox_terms(target: &Path, root: &Path) -> String {
    match target.strip_prefix(root) {
        Ok(rest) if target.is_absolute() => format!("<sandbox>/{}", rest.display()),
        _ => target.display().to_string(),
    }
}

/// Where `path` resolves, relative to the real checkpoint directory.
fn resolve(path: &Path, real_dir: &Path, root: &Path) -> Resolution {
    match path.canonicalize() {
        Err(_) => Resolution::Dangling,
        Ok(p) => match (p.strip_prefix(real_dir), p.strip_prefix(root)) {
            (Ok(rel), _) => Resolution::InDir(rel.display().to_string()),
            (_, Ok(rel)) => Resolution::InSandbox(rel.display().to_string()),
            _ => Resolution::Outside(p.display().to_string()),
        },
    }
}

/// Is `base` the name of a pointer file: DeepSpeed's `latest` (or
/// `latest.txt`), the `last_checkpoint` of detectron2's and mmengine's
/// checkpointers, or Megatron-LM's tracker
/// `latest_checkpointed_iteration.txt`, a text file naming the newest
/// checkpoint (or its iteration)?
///
/// ```
/// use crashpoint::observe::is_pointer_name;
/// assert!(is_pointer_name("latest") && is_pointer_name("last_checkpoint"));
/// assert!(is_pointer_name("latest_checkpointed_iteration.txt"));
/// assert!(!is_pointer_name("last.ckpt"));
/// ```
pub fn is_pointer_name(base: &str) -> bool {
    matches!(
        base,
        "latest" | "latest.txt" | "last_checkpoint" | "latest_checkpointed_iteration.txt"
    )
}

/// The entry of `dir` that a pointer holding the bare number `n` names:
/// the one whose name carries `n` as its only number, zero padding
/// allowed (`iter_0000003`, `global_step3`, `checkpoint-3`), a directory
/// before a file when several do, the first by name among equals.
fn numbered_entry(dir: &Path, n: u64) -> Option<String> {
    let mut found: Vec<(bool, String)> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let mut numbers = name
                .split(|c: char| !c.is_ascii_digit())
                .filter(|run| !run.is_empty());
            let only = numbers.next()?.parse::<u64>().ok()?;
            (numbers.next().is_none() && only == n && !is_pointer_name(&name)).then(|| {
                let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                (!is_dir, name)
            })
        })
        .collect();
    found.sort();
    found.into_iter().next().map(|(_, name)| name)
}

struct Scan<'a> {
    real_dir: PathBuf,
    root: &'a Path,
    out: DirSnapshot,
}

impl Scan<'_> {
    fn walk(&mut self, dir: &Path, prefix: &str, depth: usize) {
        let Ok(read) = std::fs::read_dir(dir) else {
            return;
        };
        let mut names: Vec<String> = read
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for base in names {
            if self.out.entries.len() >= SCAN_ENTRIES {
                self.out.truncated = true;
                return;
            }
            let path = dir.join(&base);
            let name = format!("{prefix}{base}");
            let Ok(meta) = path.symlink_metadata() else {
                continue;
            };
            let kind = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path)
                    .map(|t| in_sandbox_terms(&t, self.root))
                    .unwrap_or_default();
                let resolves = resolve(&path, &self.real_dir, self.root);
                EntryKind::Link { target, resolves }
            } else if meta.is_dir() {
                EntryKind::Dir
            } else {
                if meta.is_file() && is_pointer_name(&base) {
                    self.pointer(dir, &path, &name);
                }
                EntryKind::File { size: meta.len() }
            };
            let descend = kind == EntryKind::Dir;
            self.out.entries.push(Entry {
                name: name.clone(),
                kind,
            });
            if descend {
                if depth + 1 >= SCAN_DEPTH {
                    self.out.truncated = true;
                } else {
                    self.walk(&path, &format!("{name}/"), depth + 1);
                }
            }
        }
    }

    fn pointer(&mut self, dir: &Path, path: &Path, name: &str) {
        let text = match read_bounded(path, POINTER_LIMIT) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(BoundedError::TooLarge) => return,
            Err(_) => String::new(),
        };
        let names = text.lines().next().unwrap_or("").trim().to_string();
        let number = names
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| names.parse::<u64>().ok())
            .flatten();
        let resolves = if names.is_empty() {
            Resolution::Dangling
        } else if let Some(n) = number {
            match numbered_entry(dir, n) {
                Some(entry) => resolve(&dir.join(entry), &self.real_dir, self.root),
                None => Resolution::Dangling,
            }
        } else {
            let named = Path::new(&names);
            match resolve(&dir.join(named), &self.real_dir, self.root) {
                Resolution::Dangling if named.is_relative() => {
                    resolve(&self.real_dir.join(named), &self.real_dir, self.root)
                }
                r => r,
            }
        };
        self.out.pointers.push(TextPointer {
            name: name.to_string(),
            names,
            resolves,
        });
    }
}

impl DirSnapshot {
    /// Takes a snapshot of the tree at `dir` (which may be reached through a
    /// link) inside the sandbox `root`.
    pub fn take(dir: &Path, root: &Path) -> DirSnapshot {
        let Ok(real_dir) = dir.canonicalize() else {
            return DirSnapshot::default();
        };
        if !real_dir.is_dir() {
            return DirSnapshot::default();
        }
        let mut scan = Scan {
            real_dir: real_dir.clone(),
            root,
            out: DirSnapshot {
                exists: true,
                ..DirSnapshot::default()
            },
        };
        scan.walk(&real_dir, "", 0);
        let mut out = scan.out;
        out.entries.sort();
        out
    }

    /// The entry named `name` (a path relative to the checkpoint directory).
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The entries below the directory `dir` (at any depth), with names
    /// relative to it.
    pub fn below<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = (&'a str, &'a Entry)> + 'a {
        self.entries.iter().filter_map(move |e| {
            e.name
                .strip_prefix(dir)
                .and_then(|r| r.strip_prefix('/'))
                .map(|r| (r, e))
        })
    }

    /// What the tree held, for a finding: `the checkpoint directory held:
    /// a.ckpt, last.ckpt -> a.ckpt (a.ckpt)`, `... was empty` or `... did
    /// not exist`; at most 12 entries, then a count.
    pub fn listing(&self) -> String {
        const SHOWN: usize = 12;
        if !self.exists {
            return "the checkpoint directory did not exist".into();
        }
        if self.entries.is_empty() {
            return "the checkpoint directory was empty".into();
        }
        let mut names: Vec<String> = self
            .entries
            .iter()
            .take(SHOWN)
            .map(|e| e.to_string())
            .collect();
        if self.entries.len() > SHOWN {
            names.push(format!("and {} more", self.entries.len() - SHOWN));
        }
        format!("the checkpoint directory held: {}", names.join(", "))
    }

    /// Is there something under `name` a user could resume from (a file, or
    /// a link to one)?
    pub fn loadable(&self, name: &str) -> bool {
        match self.get(name).map(|e| &e.kind) {
            Some(EntryKind::File { .. }) => true,
            Some(EntryKind::Link {
                resolves: Resolution::InDir(to),
                ..
            }) => matches!(self.get(to).map(|e| &e.kind), Some(EntryKind::File { .. })),
            Some(EntryKind::Link { resolves, .. }) => !matches!(resolves, Resolution::Dangling),
            _ => false,
        }
    }
}

impl Entry {
    /// The last component of the name.
    pub fn base(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or(&self.name)
    }

    /// What `dir-mismatch` compares: the name, and for a link where it
    /// resolves (not the target text, which holds sandbox paths when absolute).
    pub fn comparable(&self) -> String {
        match &self.kind {
            EntryKind::Link { resolves, .. } => {
                format!("{} -> ({})", self.name, resolution_text(resolves))
            }
            _ => self.to_string(),
        }
    }
}

/// A resolution as reports show it.
pub fn resolution_text(r: &Resolution) -> String {
    match r {
        Resolution::InDir(n) => n.clone(),
        Resolution::InSandbox(p) => format!("<sandbox>/{p}"),
        Resolution::Outside(p) => format!("outside: {p}"),
        Resolution::Dangling => "dangling".into(),
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            EntryKind::File { .. } => write!(f, "{}", self.name),
            EntryKind::Dir => write!(f, "{}/", self.name),
            EntryKind::Link { target, resolves } => {
                write!(
                    f,
                    "{} -> {} ({})",
                    self.name,
                    target,
                    resolution_text(resolves)
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn the_scan_is_recursive_and_does_not_descend_through_links() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        let dir = root.join("ck");
        std::fs::create_dir_all(dir.join("checkpoints")).unwrap();
        std::fs::create_dir_all(dir.join("checkpoint-4")).unwrap();
        std::fs::write(dir.join("checkpoints/epoch=0-step=5.ckpt"), b"12345").unwrap();
        symlink("epoch=0-step=5.ckpt", dir.join("checkpoints/last.ckpt")).unwrap();
        std::fs::write(dir.join("checkpoint-4/model.bin"), b"xx").unwrap();
        symlink("/", dir.join("escape")).unwrap();
        std::fs::write(dir.join("latest"), b"checkpoint-4\n").unwrap();
        let s = DirSnapshot::take(&dir, &root);
        let names: Vec<String> = s.entries.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            names,
            [
                "checkpoint-4/",
                "checkpoint-4/model.bin",
                "checkpoints/",
                "checkpoints/epoch=0-step=5.ckpt",
                "checkpoints/last.ckpt -> epoch=0-step=5.ckpt (checkpoints/epoch=0-step=5.ckpt)",
                "escape -> / (outside: /)",
                "latest",
            ]
        );
        assert_eq!(
            s.get("checkpoints/epoch=0-step=5.ckpt").unwrap().kind,
            EntryKind::File { size: 5 }
        );
        assert!(s.loadable("checkpoints/last.ckpt"));
        assert_eq!(
            s.pointers,
            [TextPointer {
                name: "latest".into(),
                names: "checkpoint-4".into(),
                resolves: Resolution::InDir("checkpoint-4".into()),
            }]
        );
        assert!(!s.truncated);
        let below: Vec<&str> = s.below("checkpoint-4").map(|(n, _)| n).collect();
        assert_eq!(below, ["model.bin"]);
    }

    #[test]
    fn a_deep_tree_is_marked_truncated() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        let mut d = root.join("ck");
        for i in 0..SCAN_DEPTH + 2 {
            d = d.join(format!("d{i}"));
        }
        std::fs::create_dir_all(&d).unwrap();
        let s = DirSnapshot::take(&root.join("ck"), &root);
        assert!(s.truncated);
        assert_eq!(s.entries.len(), SCAN_DEPTH);
    }

    #[test]
    fn an_empty_latest_names_nothing() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("ck")).unwrap();
        std::fs::write(root.join("ck/latest"), b"").unwrap();
        let s = DirSnapshot::take(&root.join("ck"), &root);
        assert_eq!(s.pointers[0].resolves, Resolution::Dangling);
        assert_eq!(s.pointers[0].names, "");
    }

    #[test]
    fn a_tracker_holding_a_number_names_the_entry_with_that_number() {
        // Megatron-LM: latest_checkpointed_iteration.txt holds "3", the
        // checkpoint is iter_0000003/.
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        let ck = root.join("ck");
        for d in ["iter_0000002", "iter_0000003/mp_rank_00", "iter_0000030"] {
            std::fs::create_dir_all(ck.join(d)).unwrap();
        }
        std::fs::write(ck.join("log-3-of-7.txt"), b"two numbers").unwrap();
        let tracker = "latest_checkpointed_iteration.txt";
        std::fs::write(ck.join(tracker), b"3").unwrap();
        let s = DirSnapshot::take(&ck, &root);
        assert_eq!(
            s.pointers,
            [TextPointer {
                name: tracker.into(),
                names: "3".into(),
                resolves: Resolution::InDir("iter_0000003".into()),
            }]
        );
        // A number no entry carries names nothing that exists.
        std::fs::write(ck.join(tracker), b"4\n").unwrap();
        let s = DirSnapshot::take(&ck, &root);
        assert_eq!(s.pointers[0].names, "4");
        assert_eq!(s.pointers[0].resolves, Resolution::Dangling);
    }
}
