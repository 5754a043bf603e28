//! What a run left behind, as the oracle judges it: the state file, the
//! events, and a snapshot of the whole checkpoint tree (names at any depth,
//! kinds, sizes, where links and `latest` files point). Inspection never
//! follows a link out of the sandbox for anything but `stat`, and never
//! writes.

use std::path::{Path, PathBuf};

use crate::protocol::{Event, StateFile};

mod snapshot;
pub use snapshot::{
    is_pointer_name, resolution_text, DirSnapshot, Entry, EntryKind, Resolution, TextPointer,
    SCAN_DEPTH, SCAN_ENTRIES,
};

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

/// The events of an events file after its first `skip` (as
/// [`read_events`] reads them), and how many it holds in all.
pub fn read_events_after(path: &Path, skip: usize) -> (Vec<Event>, usize) {
    read_bounded(path, 64 << 20)
        .map(|b| Event::parse_after(&String::from_utf8_lossy(&b), skip))
        .unwrap_or_default()
}
