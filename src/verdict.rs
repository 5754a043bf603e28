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

/// How many findings of each kind, as a report's layout rows count them.
/// Kept, printed and serialised in the order of the kinds' names
/// (alphabetical: `dangling-last`, `dir-mismatch`, `resume-failed`), the
/// order reports have always shown; in JSON a map from each name to its
/// count, kinds never seen left out.
///
/// ```
/// use crashpoint::verdict::{FailureKind, KindCounts};
/// let mut n = KindCounts::default();
/// n.add(FailureKind::ResumeFailed);
/// n.add(FailureKind::DanglingLast);
/// n.add(FailureKind::ResumeFailed);
/// assert_eq!(n.get(FailureKind::ResumeFailed), 2);
/// assert_eq!(n["dangling-last"], 1);
/// assert_eq!(n["hang"], 0);
/// let order: Vec<FailureKind> = n.iter().map(|(k, _)| k).collect();
/// assert_eq!(order, [FailureKind::DanglingLast, FailureKind::ResumeFailed]);
/// assert_eq!(serde_json::to_string(&n).unwrap(), r#"{"dangling-last":1,"resume-failed":2}"#);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindCounts(std::collections::BTreeMap<ByName, usize>);

/// A kind ordered by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ByName(FailureKind);

impl Ord for ByName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.name().cmp(other.0.name())
    }
}

impl PartialOrd for ByName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl KindCounts {
    /// Counts one more finding of `kind`.
    pub fn add(&mut self, kind: FailureKind) {
        *self.0.entry(ByName(kind)).or_default() += 1;
    }

    /// How many findings of `kind` (0 when none).
    pub fn get(&self, kind: FailureKind) -> usize {
        self.0.get(&ByName(kind)).copied().unwrap_or(0)
    }

    /// Each kind seen and its count, in the order of the kinds' names.
    pub fn iter(&self) -> impl Iterator<Item = (FailureKind, usize)> + '_ {
        self.0.iter().map(|(k, n)| (k.0, *n))
    }

    /// Was no finding counted?
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many kinds were seen.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl FromIterator<FailureKind> for KindCounts {
    fn from_iter<I: IntoIterator<Item = FailureKind>>(kinds: I) -> Self {
        let mut n = KindCounts::default();
        for k in kinds {
            n.add(k);
        }
        n
    }
}

/// The count of the kind so named (0 for a kind never seen or no kind).
impl std::ops::Index<&str> for KindCounts {
    type Output = usize;
    fn index(&self, name: &str) -> &usize {
        self.0
            .iter()
            .find(|(k, _)| k.0.name() == name)
            .map_or(&0, |(_, n)| n)
    }
}

/// The count of `kind` (0 when none).
impl std::ops::Index<FailureKind> for KindCounts {
    type Output = usize;
    fn index(&self, kind: FailureKind) -> &usize {
        self.0.get(&ByName(kind)).unwrap_or(&0)
    }
}

impl serde::Serialize for KindCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, n)| (k.0.name(), n)))
    }
}

impl<'de> serde::Deserialize<'de> for KindCounts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let named = std::collections::BTreeMap::<String, usize>::deserialize(d)?;
        let mut out = KindCounts::default();
        for (name, n) in named {
            let kind: FailureKind = name.parse().map_err(serde::de::Error::custom)?;
            out.0.insert(ByName(kind), n);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_of_every_kind_go_in_name_order_and_round_trip_through_json() {
        // Each kind counted a different number of times, in report order.
        let counts: KindCounts = FailureKind::ALL
            .iter()
            .enumerate()
            .flat_map(|(i, k)| std::iter::repeat(*k).take(i + 1))
            .collect();
        let mut names: Vec<&str> = FailureKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        let seen: Vec<&str> = counts.iter().map(|(k, _)| k.name()).collect();
        assert_eq!(seen, names);
        for (i, k) in FailureKind::ALL.iter().enumerate() {
            assert_eq!(counts.get(*k), i + 1);
            assert_eq!(counts[*k], i + 1);
            assert_eq!(counts[k.name()], i + 1);
        }
        let text = serde_json::to_string(&counts).expect("serialises");
        let as_strings: std::collections::BTreeMap<String, usize> =
            serde_json::from_str(&text).expect("a map of names");
        // The same text a map keyed by the names writes.
        assert_eq!(
            serde_json::to_string(&as_strings).expect("serialises"),
            text
        );
        let back: KindCounts = serde_json::from_str(&text).expect("deserialises");
        assert_eq!(back, counts);
        assert!(serde_json::from_str::<KindCounts>(r#"{"no-such-kind":1}"#).is_err());
    }
}
