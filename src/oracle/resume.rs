//! What a resume run is given as `CRASHPOINT_RESUME`, and whether the
//! checkpoint tree holds what that mode resumes from (docs/protocol-notes.md
//! says exactly what a subject receives in each mode).

use std::fmt;

use crate::layout::Sandbox;
use crate::observe::{DirSnapshot, EntryKind};

use super::checks::shape::{names_last, Patterns};

/// What the subject is asked to resume from after a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeMode {
    /// `<CRASHPOINT_CKPT_DIR>/last.ckpt` (the default).
    Path,
    /// The keyword `last`: the subject finds its own latest checkpoint.
    Last,
    /// The keyword `best`.
    Best,
    /// The harness names the newest complete checkpoint the subject
    /// announced (`saved` events): `<CRASHPOINT_CKPT_DIR>/<its path>`, a file
    /// or a directory.
    Newest,
    /// A concrete file name inside the checkpoint directory.
    File(String),
}

impl ResumeMode {
    /// Parses `path`, `last`, `best`, `newest` or a file name.
    ///
    /// ```
    /// use crashpoint::oracle::ResumeMode;
    /// assert_eq!(ResumeMode::parse("newest"), ResumeMode::Newest);
    /// assert_eq!(ResumeMode::parse("step=5.ckpt"), ResumeMode::File("step=5.ckpt".into()));
    /// ```
    pub fn parse(s: &str) -> ResumeMode {
        match s {
            "path" => ResumeMode::Path,
            "last" => ResumeMode::Last,
            "best" => ResumeMode::Best,
            "newest" => ResumeMode::Newest,
            f => ResumeMode::File(f.to_string()),
        }
    }

    /// The value of `CRASHPOINT_RESUME` in `sandbox`. `newest` is the
    /// checkpoint chosen in [`ResumeMode::Newest`] mode: a path relative to
    /// the checkpoint directory, or an absolute path the subject announced
    /// outside it (in `Newest` mode without one, the checkpoint directory).
    pub fn arg(&self, sandbox: &Sandbox, newest: Option<&str>) -> String {
        let dir = sandbox.place().ckpt_dir;
        let under = |name: &str| format!("{}/{name}", dir.trim_end_matches('/'));
        match self {
            ResumeMode::Path => sandbox.last_path_arg(),
            ResumeMode::Last => "last".into(),
            ResumeMode::Best => "best".into(),
            ResumeMode::Newest => match newest {
                Some(p) if p.starts_with('/') => p.to_string(),
                Some(p) => under(p),
                None => dir,
            },
            ResumeMode::File(f) => under(f),
        }
    }

    /// The file in the checkpoint directory this mode resumes from, when it
    /// is one fixed file: `last.ckpt` for `path`, `best.ckpt` for `best`
    /// (which the subject is told as a keyword), the name given.
    ///
    /// ```
    /// use crashpoint::oracle::ResumeMode;
    /// assert_eq!(ResumeMode::Path.file(), Some("last.ckpt"));
    /// assert_eq!(ResumeMode::parse("last.pt").file(), Some("last.pt"));
    /// assert_eq!(ResumeMode::Newest.file(), None);
    /// ```
    pub fn file(&self) -> Option<&str> {
        match self {
            ResumeMode::Path => Some("last.ckpt"),
            ResumeMode::Best => Some("best.ckpt"),
            ResumeMode::File(f) => Some(f),
            ResumeMode::Last | ResumeMode::Newest => None,
        }
    }

    /// Does the tree hold what this mode resumes from (as a name, even a
    /// dangling link)? `Newest` is decided from the announced saves instead
    /// (see the driver), so it is never "present" here.
    pub fn present(&self, snap: &DirSnapshot, patterns: &Patterns) -> bool {
        match self {
            ResumeMode::Path | ResumeMode::Best | ResumeMode::File(_) => {
                self.file().is_some_and(|f| snap.get(f).is_some())
            }
            ResumeMode::Last => {
                snap.entries.iter().any(|e| {
                    let b = e.base();
                    let file = e.kind != EntryKind::Dir && patterns.is_checkpoint_file(b);
                    // `last*.ckpt`, a file named like an announced one
                    // (`last.pt`, `step-#.pt`) or as the last checkpoint
                    // (`checkpoint_last.pt`), a checkpoint directory.
                    (file && (b.starts_with("last") || !b.ends_with(".ckpt")))
                        || (e.kind != EntryKind::Dir && names_last(b))
                        || (e.kind == EntryKind::Dir && patterns.is_checkpoint_dir(b))
                }) || !snap.pointers.is_empty()
            }
            ResumeMode::Newest => false,
        }
    }
}

impl fmt::Display for ResumeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResumeMode::Path => f.write_str("path"),
            ResumeMode::Last => f.write_str("last"),
            ResumeMode::Best => f.write_str("best"),
            ResumeMode::Newest => f.write_str("newest"),
            ResumeMode::File(n) => f.write_str(n),
        }
    }
}
