//! What a run left behind, as the oracle judges it: the state file, and a
//! snapshot of the checkpoint directory (names, kinds, where links resolve).
//! Inspection never follows a link out of the sandbox for anything but
//! `stat`, and never writes.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::protocol::{Event, StateFile};

/// One entry of a checkpoint directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Entry {
    /// The file name.
    pub name: String,
    /// What it is.
    pub kind: EntryKind,
}

/// The kind of a directory entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum EntryKind {
    /// A regular file.
    File,
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

/// Where a link resolves, described independently of the sandbox's location.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "to", content = "path")]
pub enum Resolution {
    /// To this name inside the checkpoint directory.
    InDir(String),
    /// To this path inside the sandbox but outside the checkpoint directory.
    InSandbox(String),
    /// Outside the sandbox.
    Outside(String),
    /// Nowhere: the target does not exist.
    Dangling,
}

/// The checkpoint directory after a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DirSnapshot {
    /// Does the directory exist at all?
    pub exists: bool,
    /// Its entries, sorted by name.
    pub entries: Vec<Entry>,
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

impl DirSnapshot {
    /// Takes a snapshot of `dir` (which may be reached through a link) inside
    /// the sandbox `root`.
    pub fn take(dir: &Path, root: &Path) -> DirSnapshot {
        let Ok(real_dir) = dir.canonicalize() else {
            return DirSnapshot::default();
        };
        let Ok(read) = std::fs::read_dir(&real_dir) else {
            return DirSnapshot::default();
        };
        let mut entries = Vec::new();
        for e in read.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = real_dir.join(&name);
            let Ok(meta) = path.symlink_metadata() else {
                continue;
            };
            let kind = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path)
                    .map(|t| in_sandbox_terms(&t, root))
                    .unwrap_or_default();
                let resolves = match path.canonicalize() {
                    Err(_) => Resolution::Dangling,
                    Ok(p) => match (p.strip_prefix(&real_dir), p.strip_prefix(root)) {
                        (Ok(rel), _) => Resolution::InDir(rel.display().to_string()),
                        (_, Ok(rel)) => Resolution::InSandbox(rel.display().to_string()),
                        _ => Resolution::Outside(p.display().to_string()),
                    },
                };
                EntryKind::Link { target, resolves }
            } else if meta.is_dir() {
                EntryKind::Dir
            } else {
                EntryKind::File
            };
            entries.push(Entry { name, kind });
        }
        entries.sort();
        DirSnapshot {
            exists: true,
            entries,
        }
    }

    /// The entry named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The entries whose names end in `.ckpt`: what `dir-mismatch` compares.
    pub fn checkpoints(&self) -> Vec<&Entry> {
        self.entries
            .iter()
            .filter(|e| e.name.ends_with(".ckpt"))
            .collect()
    }

    /// Entries that are neither checkpoints nor links: temporary files and
    /// the like, reported as warnings when the reference has none of them.
    pub fn others(&self) -> Vec<&Entry> {
        self.entries
            .iter()
            .filter(|e| !e.name.ends_with(".ckpt"))
            .collect()
    }

    /// Is there something under `name` a user could resume from (a file, or
    /// a link to one)?
    pub fn loadable(&self, name: &str) -> bool {
        match self.get(name).map(|e| &e.kind) {
            Some(EntryKind::File) => true,
            Some(EntryKind::Link { resolves, .. }) => !matches!(resolves, Resolution::Dangling),
            _ => false,
        }
    }
}

impl Entry {
    /// What `dir-mismatch` compares: the name, and for a link where it
    /// resolves (not the target text, which holds sandbox paths when absolute).
    pub fn comparable(&self) -> String {
        match &self.kind {
            EntryKind::Link { resolves, .. } => {
                let plain = Entry {
                    name: self.name.clone(),
                    kind: EntryKind::Link {
                        target: String::new(),
                        resolves: resolves.clone(),
                    },
                };
                plain.to_string().replacen(" ->  (", " -> (", 1)
            }
            _ => self.to_string(),
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            EntryKind::File => write!(f, "{}", self.name),
            EntryKind::Dir => write!(f, "{}/", self.name),
            EntryKind::Link { target, resolves } => {
                let to = match resolves {
                    Resolution::InDir(n) => n.clone(),
                    Resolution::InSandbox(p) => format!("<sandbox>/{p}"),
                    Resolution::Outside(p) => format!("outside: {p}"),
                    Resolution::Dangling => "dangling".into(),
                };
                write!(f, "{} -> {} ({})", self.name, target, to)
            }
        }
    }
}

/// Why a state file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The subject exited 0 but wrote no state file.
    #[error("exited 0 but wrote no state file to CRASHPOINT_STATE_OUT")]
    Missing,
    /// Something other than a regular file is at CRASHPOINT_STATE_OUT.
    #[error("CRASHPOINT_STATE_OUT is not a regular file but {0}; the protocol asks for one JSON object in a file")]
    NotAFile(String),
    /// The state file is larger than any state file needs to be.
    #[error("the state file is larger than {} MiB; the protocol asks for one small JSON object", STATE_LIMIT >> 20)]
    TooLarge,
    /// The state file could not be read.
    #[error("cannot read the state file: {0}")]
    Unreadable(String),
    /// The state file is not the JSON object the protocol asks for.
    #[error("state file is not valid protocol JSON: {0}")]
    Malformed(String),
}

/// The largest state file read (its per-part digests included).
pub const STATE_LIMIT: u64 = 16 << 20;

/// Why [`read_bounded`] read nothing.
#[derive(Debug)]
pub enum BoundedError {
    /// Nothing is there.
    Missing,
    /// Something other than a regular file is there (described).
    NotAFile(&'static str),
    /// The file is larger than the limit.
    TooLarge,
    /// Reading failed.
    Io(std::io::Error),
}

/// Reads the regular file at `path` (not following a final symbolic link,
/// and without blocking on a FIFO or a device a subject may have put there)
/// if it is at most `limit` bytes long. What a subject leaves for the harness
/// to read is read through this, so no subject can make the harness hang or
/// run out of memory.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, BoundedError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BoundedError::Missing),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(BoundedError::NotAFile("a symbolic link"))
        }
        Err(e) => return Err(BoundedError::Io(e)),
    };
    let meta = file.metadata().map_err(BoundedError::Io)?;
    if !meta.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        return Err(BoundedError::NotAFile(if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_socket() {
            "a socket"
        } else {
            "a device"
        }));
    }
    if meta.len() > limit {
        return Err(BoundedError::TooLarge);
    }
    let mut out = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(BoundedError::Io)?;
    if out.len() as u64 > limit {
        return Err(BoundedError::TooLarge);
    }
    Ok(out)
}

/// Reads the state file a run wrote.
pub fn read_state(path: &Path) -> Result<StateFile, StateError> {
    let text = read_bounded(path, STATE_LIMIT).map_err(|e| match e {
        BoundedError::Missing => StateError::Missing,
        BoundedError::NotAFile(what) => StateError::NotAFile(what.into()),
        BoundedError::TooLarge => StateError::TooLarge,
        BoundedError::Io(e) => StateError::Unreadable(e.to_string()),
    })?;
    StateFile::parse(&text).map_err(StateError::Malformed)
}

/// The file names of the harness's own per-case files, outside the sandbox.
#[derive(Debug, Clone)]
pub struct HarnessFiles {
    /// The state file.
    pub state: PathBuf,
    /// The events file.
    pub events: PathBuf,
    /// The op census of the simulated trainer.
    pub op_log: PathBuf,
}

impl HarnessFiles {
    /// The files under `dir` (created by the caller).
    pub fn in_dir(dir: &Path) -> HarnessFiles {
        HarnessFiles {
            state: dir.join("state.json"),
            events: dir.join("events"),
            op_log: dir.join("oplog"),
        }
    }
}

/// Reads every event of an events file (a missing file, or one that is not a
/// regular file of at most 64 MiB, has none; malformed lines are skipped).
pub fn read_events(path: &Path) -> Vec<Event> {
    read_bounded(path, 64 << 20)
        .map(|b| Event::parse_all(&String::from_utf8_lossy(&b)))
        .unwrap_or_default()
}
