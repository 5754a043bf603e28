//! The census: every numbered file operation of an uninterrupted run, where
//! crash points can land. The simulated trainer's I/O layer and the system-call
//! tracer both produce it, as the same typed [`CensusEntry`]: the call, the
//! paths it touches (relative to the sandbox), what the subject was doing
//! ([`Phase`]), and, where known, the descriptor, offset and length.
//!
//! ```
//! use crashpoint::census::{Call, CensusEntry, Phase, PhaseKind};
//! let e = CensusEntry {
//!     index: 45,
//!     call: Call::Symlink,
//!     name: "symlinkat".into(),
//!     paths: vec!["checkpoints/last.ckpt".into()],
//!     phase: Phase::at(PhaseKind::RelinkLast, 6),
//!     fd: None,
//!     offset: None,
//!     len: None,
//! };
//! assert_eq!(e.describe(), "symlink checkpoints/last.ckpt (relink last after the save of step 6)");
//! let line = e.to_line();
//! assert_eq!(CensusEntry::from_line(&line).unwrap(), e);
//! ```

use std::fmt;

/// What a numbered operation does, whatever system call or I/O-layer
/// function carried it out.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Call {
    /// Open a file for writing, creating or truncating it.
    Create,
    /// Write bytes to a file.
    Write,
    /// Cut a file to a length.
    Truncate,
    /// Make a file's data and metadata durable (`fsync`).
    Fsync,
    /// Make a file's data durable (`fdatasync`).
    Fdatasync,
    /// Make a directory's entries durable (`fsync` of a directory).
    FsyncDir,
    /// Make a whole file system durable (`sync`, `syncfs`).
    Sync,
    /// Move a name over another.
    Rename,
    /// Add a hard link.
    Link,
    /// Create a symbolic link.
    Symlink,
    /// Remove a name.
    Unlink,
    /// Create a directory.
    Mkdir,
    /// Remove a directory.
    Rmdir,
    /// Read a file (the simulated trainer counts its reads too).
    Read,
    /// Read a symbolic link.
    ReadLink,
    /// List a directory.
    List,
    /// Any other counted call.
    Other,
}

impl Call {
    /// The name used in censuses, sites and reports.
    pub fn name(self) -> &'static str {
        match self {
            Call::Create => "create",
            Call::Write => "write",
            Call::Truncate => "truncate",
            Call::Fsync => "fsync",
            Call::Fdatasync => "fdatasync",
            Call::FsyncDir => "fsync-dir",
            Call::Sync => "sync",
            Call::Rename => "rename",
            Call::Link => "link",
            Call::Symlink => "symlink",
            Call::Unlink => "unlink",
            Call::Mkdir => "mkdir",
            Call::Rmdir => "rmdir",
            Call::Read => "read",
            Call::ReadLink => "readlink",
            Call::List => "list",
            Call::Other => "other",
        }
    }

    /// Does this operation change names in a directory (where ordering and
    /// atomicity bugs live)?
    pub fn is_namespace(self) -> bool {
        matches!(
            self,
            Call::Rename | Call::Link | Call::Symlink | Call::Unlink | Call::Mkdir | Call::Rmdir
        )
    }

    /// The call a system call's name stands for (`renameat2` is a rename).
    ///
    /// ```
    /// use crashpoint::census::Call;
    /// assert_eq!(Call::from_syscall("renameat2"), Call::Rename);
    /// assert_eq!(Call::from_syscall("pwrite64"), Call::Write);
    /// assert_eq!(Call::from_syscall("openat"), Call::Create);
    /// ```
    pub fn from_syscall(name: &str) -> Call {
        match name {
            "open" | "openat" | "openat2" | "creat" => Call::Create,
            "write" | "pwrite64" | "writev" | "pwritev" | "pwritev2" | "copy_file_range"
            | "sendfile" | "fallocate" => Call::Write,
            "truncate" | "ftruncate" => Call::Truncate,
            "fsync" => Call::Fsync,
            "fdatasync" | "sync_file_range" => Call::Fdatasync,
            "sync" | "syncfs" => Call::Sync,
            "rename" | "renameat" | "renameat2" => Call::Rename,
            "link" | "linkat" => Call::Link,
            "symlink" | "symlinkat" => Call::Symlink,
            "unlink" | "unlinkat" => Call::Unlink,
            "rmdir" => Call::Rmdir,
            "mkdir" | "mkdirat" => Call::Mkdir,
            _ => Call::Other,
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the subject was doing when it made a call, as far as the harness
/// knows: the simulated trainer says it; for other subjects it is
/// [`PhaseKind::Unknown`] unless inferred from their `saved` events.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseKind {
    /// Not known.
    #[default]
    Unknown,
    /// Starting a fresh run (creating the checkpoint directory).
    Start,
    /// Loading a checkpoint to resume from.
    Resume,
    /// Writing the checkpoint of a step.
    Save,
    /// Writing a `last` copy.
    SaveLast,
    /// Pointing `last` at the newest checkpoint.
    RelinkLast,
    /// Pointing `best` at the best checkpoint.
    RelinkBest,
    /// Deleting checkpoints that fell out of the top k (or past a total limit).
    Rotate,
    /// Writing a pointer file that names the newest checkpoint.
    Pointer,
    /// After a save, work on files outside the checkpoint directory that
    /// no save uses (a library's temporary files at shutdown).
    Outside,
}

impl PhaseKind {
    /// The words used in censuses and reports.
    pub fn name(self) -> &'static str {
        match self {
            PhaseKind::Unknown => "unknown",
            PhaseKind::Start => "start",
            PhaseKind::Resume => "resume",
            PhaseKind::Save => "save",
            PhaseKind::SaveLast => "save last",
            PhaseKind::RelinkLast => "relink last",
            PhaseKind::RelinkBest => "relink best",
            PhaseKind::Rotate => "rotate",
            PhaseKind::Pointer => "pointer",
            PhaseKind::Outside => "outside the checkpoint directory",
        }
    }
}

/// A phase: what the subject was doing, and for which step's save.
///
/// ```
/// use crashpoint::census::{Phase, PhaseKind};
/// assert_eq!(Phase::at(PhaseKind::Save, 5).to_string(), "save of step 5");
/// assert_eq!(Phase::of(PhaseKind::Resume).to_string(), "resume");
/// ```
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Phase {
    /// What.
    pub kind: PhaseKind,
    /// The step whose save this belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
}

impl Phase {
    /// A phase that belongs to the save of `step`.
    pub fn at(kind: PhaseKind, step: u64) -> Phase {
        Phase {
            kind,
            step: Some(step),
        }
    }

    /// A phase of no particular step.
    pub fn of(kind: PhaseKind) -> Phase {
        Phase { kind, step: None }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.step) {
            (PhaseKind::Save, Some(s)) => write!(f, "save of step {s}"),
            (k, Some(s)) => write!(f, "{} after the save of step {s}", k.name()),
            (k, None) => f.write_str(k.name()),
        }
    }
}

/// One entry of a census: an operation or system call of an uninterrupted
/// run, numbered as crash points number them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CensusEntry {
    /// 1-based number.
    pub index: u64,
    /// What the operation does.
    pub call: Call,
    /// The exact name: the system call (`renameat2`) or the I/O layer's
    /// operation (`fsync-dir`).
    pub name: String,
    /// The paths involved, relative to the sandbox where inside it (two for
    /// a rename or link: from, to).
    pub paths: Vec<String>,
    /// What the subject was doing.
    #[serde(default)]
    pub phase: Phase,
    /// The file descriptor, where the call takes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd: Option<i32>,
    /// The file offset of a write, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The length of a write, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub len: Option<u64>,
}

impl CensusEntry {
    /// The paths joined as reports show them (`a -> b` for a rename).
    pub fn path(&self) -> String {
        self.paths.join(" -> ")
    }

    /// The call, its paths and its phase, as reports name a crash point:
    /// `symlink checkpoints/last.ckpt (relink last after the save of step 6)`.
    pub fn describe(&self) -> String {
        let mut s = self.call.name().to_string();
        if !self.paths.is_empty() {
            s.push(' ');
            s.push_str(&self.path());
        }
        if self.phase.kind != PhaseKind::Unknown {
            s.push_str(&format!(" ({})", self.phase));
        }
        s
    }

    /// One line of an op log file (JSON).
    pub fn to_line(&self) -> String {
        // Serialising plain strings, numbers and enums cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses one line of an op log file.
    pub fn from_line(line: &str) -> Result<CensusEntry, CensusError> {
        serde_json::from_str(line).map_err(|e| CensusError(e.to_string()))
    }

    /// Parses a whole op log: one entry per non-empty line, numbered 1, 2, ...
    /// in order. A malformed line or a gap in the numbering is an error, never
    /// a shorter census.
    pub fn parse_log(text: &str) -> Result<Vec<CensusEntry>, CensusError> {
        let mut out: Vec<CensusEntry> = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let e = CensusEntry::from_line(line)
                .map_err(|e| CensusError(format!("line {}: {}", i + 1, e.0)))?;
            let want = out.len() as u64 + 1;
            if e.index != want {
                return Err(CensusError(format!(
                    "line {}: operation {} where {want} was due",
                    i + 1,
                    e.index
                )));
            }
            out.push(e);
        }
        Ok(out)
    }
}

/// An op log that cannot be read as a census.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed operation census: {0}")]
pub struct CensusError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64) -> CensusEntry {
        CensusEntry {
            index,
            call: Call::Write,
            name: "write".into(),
            paths: vec!["checkpoints/step=5.ckpt.tmp-1".into()],
            phase: Phase::at(PhaseKind::Save, 5),
            fd: None,
            offset: Some(0),
            len: Some(4096),
        }
    }

    #[test]
    fn a_log_round_trips() {
        let text = format!("{}\n{}\n", entry(1).to_line(), entry(2).to_line());
        assert_eq!(
            CensusEntry::parse_log(&text).unwrap(),
            vec![entry(1), entry(2)]
        );
    }

    #[test]
    fn a_malformed_or_gapped_log_is_an_error() {
        let bad = format!("{}\nnot json\n", entry(1).to_line());
        assert!(CensusEntry::parse_log(&bad)
            .unwrap_err()
            .to_string()
            .contains("line 2"));
        let gap = format!("{}\n{}\n", entry(1).to_line(), entry(3).to_line());
        assert!(CensusEntry::parse_log(&gap)
            .unwrap_err()
            .to_string()
            .contains("operation 3 where 2 was due"));
    }

    #[test]
    fn names_read_as_reports_show_them() {
        assert_eq!(
            entry(1).describe(),
            "write checkpoints/step=5.ckpt.tmp-1 (save of step 5)"
        );
        let mut e = entry(1);
        e.phase = Phase::default();
        assert_eq!(e.describe(), "write checkpoints/step=5.ckpt.tmp-1");
    }
}
