//! The power-loss persistence model: from the ordered log of file-system
//! operations up to a crash point, the directory trees a power cut could
//! leave on disk.
//!
//! A process kill keeps everything the subject wrote (the page cache
//! survives); a power cut keeps only what was made durable. The rules,
//! after ALICE's abstract persistence model (Pillai et al., OSDI'14) and
//! CrashMonkey's persistence points (Mohan et al., OSDI'18):
//!
//! * **File data** written since the file's last `fsync`, `fdatasync`,
//!   `sync`/`syncfs` or synchronous write may be lost: the file holds its
//!   content as of that sync (nothing if it was never synced), possibly
//!   followed by a prefix, in order, of the 4 KiB blocks written since
//!   (a torn write). Writes through an `O_SYNC`/`O_DSYNC` handle are
//!   durable when they return.
//! * **Directory entries** changed since the directory's last `fsync`
//!   (creation, rename, link, symlink, unlink, mkdir, rmdir) may be
//!   undone. They persist **in order per directory**: a state keeps a
//!   prefix of each directory's changes, independently of other
//!   directories. A rename between two directories is atomic: durable in
//!   both or in neither (and an fsync of either makes it durable in both,
//!   with the earlier changes of the other).
//! * **Names and data are independent**: data belongs to the inode, so a
//!   durable rename of a file whose data was never synced shows the new
//!   name with an empty file; a synced file whose name was never made
//!   durable is simply absent.
//!
//! [`most_pessimistic`] loses everything unsynced; [`sample`] draws more
//! states from a seed; [`enumerate`] lists them all when the window is
//! small; [`kill_state`] is the process-kill state of the same log. Each
//! state says in words what it dropped, and [`materialise`] writes it into
//! a directory. File content is a [`Rope`] of literal bytes and ranges of
//! blobs named by blake3 hash, so a content-addressed store can feed the
//! model without copying. `docs/power-loss.md` says what the model leaves
//! out.
//!
//! ```
//! use crashpoint::power::{self, Entry, Log, Op};
//!
//! // Save a checkpoint: temporary file, fsync, rename; no directory fsync.
//! let log = Log::from_ops([
//!     Op::Mkdir("checkpoints".into()),
//!     Op::fsync_path("."),
//!     Op::fsync_path("checkpoints"),
//!     Op::create("checkpoints/step=3.ckpt.tmp", 1),
//!     Op::write(1, 0, b"weights"),
//!     Op::fsync(1),
//!     Op::rename("checkpoints/step=3.ckpt.tmp", "checkpoints/step=3.ckpt"),
//! ])?;
//!
//! // A process kill keeps the rename ...
//! let kill = power::kill_state(&log);
//! assert!(kill.entries.contains_key("checkpoints/step=3.ckpt"));
//!
//! // ... a power cut may not: the directory was not fsynced after it.
//! // Not even the temporary name is durable, though its data is.
//! let cut = power::most_pessimistic(&log);
//! assert_eq!(cut.entries.get("checkpoints"), Some(&Entry::Dir));
//! assert!(!cut.entries.contains_key("checkpoints/step=3.ckpt"));
//! assert!(!cut.entries.contains_key("checkpoints/step=3.ckpt.tmp"));
//! assert_eq!(
//!     cut.dropped[0].message,
//!     "creation of step=3.ckpt.tmp not made durable: directory checkpoints not fsynced after it"
//! );
//!
//! // Every legal state: nothing, the temporary name, or the final name,
//! // always with the synced data.
//! let all = power::enumerate(&log, 100).expect("a small window");
//! assert_eq!(all.len(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod log;
mod materialise;
mod model;
mod rope;
mod states;

pub use log::{FileRef, Handle, Log, LogError, LogErrorKind, Op, OpenFlags, SyncMode};
pub use materialise::{materialise, MaterialiseError};
pub use model::BLOCK;
pub use rope::{ContentHash, Piece, Rope};
pub use states::{
    enumerate, kill_state, most_optimistic, most_pessimistic, sample, unsynced, CrashState,
    Dropped, DroppedKind, Entry, Unsynced,
};
