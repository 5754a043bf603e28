//! Verdict types: the kinds of failure as PROTOCOL.md names them, one
//! finding of the oracle, and the verdict a scenario expects. A leaf module:
//! the oracle produces these, reports and scenarios read them.
//!
//! ```
//! use crashpoint::verdict::FailureKind;
//! let k: FailureKind = "dangling-last".parse().unwrap();
//! assert_eq!(k, FailureKind::DanglingLast);
//! assert_eq!(k.to_string(), "dangling-last");
//! ```

use std::fmt;

/// The kinds of failure, as PROTOCOL.md names them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// Resumed training finished with a state that differs from the reference.
    DigestMismatch,
    /// A resume run exited non-zero.
    ResumeFailed,
    /// A run that started fresh after a crash (nothing to resume from yet,
    /// no `CRASHPOINT_RESUME` given) exited non-zero.
    RestartFailed,
    /// After a crash, `last.ckpt` is a link that does not resolve.
    DanglingLast,
    /// A link in the checkpoint directory resolves outside it.
    EscapedDir,
    /// A resume started before the step of a save completed before the crash.
    ProgressLost,
    /// After a completed save, a crash left nothing to resume from.
    NoCheckpoint,
    /// A run exceeded its time limit.
    Hang,
    /// The final checkpoint files differ from the reference run's.
    DirMismatch,
    /// A bad resume path was accepted instead of refused.
    BadResumeAccepted,
    /// The subject wrote outside its sandbox.
    WroteOutside,
    /// Two uninterrupted reference runs disagree.
    Nondeterministic,
    /// A run exited 0 having trained past `CRASHPOINT_MAX_STEPS`.
    Overshoot,
}

impl FailureKind {
    /// Every kind, in report order.
    pub const ALL: [FailureKind; 13] = [
        FailureKind::DigestMismatch,
        FailureKind::ResumeFailed,
        FailureKind::RestartFailed,
        FailureKind::DanglingLast,
        FailureKind::EscapedDir,
        FailureKind::ProgressLost,
        FailureKind::NoCheckpoint,
        FailureKind::Hang,
        FailureKind::DirMismatch,
        FailureKind::BadResumeAccepted,
        FailureKind::WroteOutside,
        FailureKind::Nondeterministic,
        FailureKind::Overshoot,
    ];

    /// The name used in reports and scenario files.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::DigestMismatch => "digest-mismatch",
            FailureKind::ResumeFailed => "resume-failed",
            FailureKind::RestartFailed => "restart-failed",
            FailureKind::DanglingLast => "dangling-last",
            FailureKind::EscapedDir => "escaped-dir",
            FailureKind::ProgressLost => "progress-lost",
            FailureKind::NoCheckpoint => "no-checkpoint",
            FailureKind::Hang => "hang",
            FailureKind::DirMismatch => "dir-mismatch",
            FailureKind::BadResumeAccepted => "bad-resume-accepted",
            FailureKind::WroteOutside => "wrote-outside",
            FailureKind::Nondeterministic => "nondeterministic",
            FailureKind::Overshoot => "overshoot",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for FailureKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FailureKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let valid: Vec<_> = FailureKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown failure kind `{s}`; valid kinds: {}",
                    valid.join(", ")
                )
            })
    }
}

/// One thing the oracle found wrong in a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What kind of failure.
    pub kind: FailureKind,
    /// Which run of the case showed it (1-based; 0 for the reference).
    pub run: usize,
    /// What exactly was seen.
    pub detail: String,
}

/// The verdict a scenario expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Every case passes.
    Pass,
    /// Some case fails, with each of these kinds somewhere (any kind if empty).
    Fail(Vec<FailureKind>),
}

impl Expect {
    /// Is a result that was `certified` (or not) and showed `seen` kinds of
    /// failure the verdict expected? `Fail` needs every listed kind among
    /// `seen`.
    ///
    /// ```
    /// use crashpoint::verdict::{Expect, FailureKind};
    /// let e = Expect::Fail(vec![FailureKind::DanglingLast]);
    /// assert!(e.matches(false, &[FailureKind::DanglingLast, FailureKind::ResumeFailed]));
    /// assert!(!e.matches(false, &[FailureKind::ResumeFailed]));
    /// assert!(Expect::Pass.matches(true, &[]));
    /// ```
    pub fn matches(&self, certified: bool, seen: &[FailureKind]) -> bool {
        match self {
            Expect::Pass => certified,
            Expect::Fail(kinds) => !certified && kinds.iter().all(|k| seen.contains(k)),
        }
    }

    /// `pass`, `fail`, or `fail: kind,kind`, as tables show it.
    pub fn text(&self) -> String {
        match self {
            Expect::Pass => "pass".into(),
            Expect::Fail(k) if k.is_empty() => "fail".into(),
            Expect::Fail(k) => format!(
                "fail: {}",
                k.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
            ),
        }
    }
}
