//! The bug zoo's catalogue: named, deliberate bugs the simulated trainer can
//! be switched into, one flag each. Each comes from a failure real frameworks
//! shipped; the harness is only worth what it catches of them (the hunt that
//! checks this is the harness's `zoo` hunt).
//!
//! ```
//! use crashpoint::sim::Mutant;
//! let m: Mutant = "cwd-relative-link".parse().unwrap();
//! assert_eq!(m.name(), "cwd-relative-link");
//! assert!(Mutant::ALL.len() >= 19);
//! ```

use std::fmt;
use std::str::FromStr;

macro_rules! mutants {
    ($( $variant:ident = $name:literal : $desc:literal ),+ $(,)?) => {
        /// One deliberate bug of the simulated trainer.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Mutant { $( #[doc = $desc] $variant ),+ }

        impl Mutant {
            /// Every mutant, in zoo order.
            pub const ALL: &'static [Mutant] = &[$(Mutant::$variant),+];
            /// The flag name, as in ZOO.md.
            pub fn name(self) -> &'static str {
                match self { $(Mutant::$variant => $name),+ }
            }
            /// One line saying what the bug is.
            pub fn description(self) -> &'static str {
                match self { $(Mutant::$variant => $desc),+ }
            }
        }
    };
}

mutants! {
    CwdRelativeLink = "cwd-relative-link": "last.ckpt links to the checkpoint path as the user wrote it (relative to the working directory), as Lightning 2.1.0-2.1.3 did",
    AbsoluteLink = "absolute-link": "last.ckpt links to an absolute path, which breaks when the run directory moves",
    LoadNotApplied = "load-not-applied": "the checkpoint is read but never applied; training silently continues from the initial state",
    NoOptimizerState = "no-optimizer-state": "optimizer moments are not restored on resume",
    NoRngState = "no-rng-state": "the noise RNG is re-seeded on resume instead of restored",
    NoDataPosition = "no-data-position": "the position inside the epoch is not restored; a mid-epoch resume restarts the epoch",
    NoSchedulerState = "no-scheduler-state": "the learning-rate schedule restarts on resume",
    StepOffByOne = "step-off-by-one": "the restored global step is one ahead",
    TornWrite = "torn-write": "checkpoints and last.ckpt copies are written in place, without a temporary file and rename",
    NoFsyncRename = "no-fsync-rename": "rename without fsync of the file and of the directory",
    UnlinkThenLink = "unlink-then-link": "last.ckpt is replaced by unlink then symlink, leaving a window with no link",
    DeleteBeforeSave = "delete-before-save": "top-k drops the old checkpoint before the new one is complete",
    StaleTopK = "stale-top-k": "top-k bookkeeping is rebuilt from nothing after resume, and names are versioned against whatever files are on disk",
    ManualStepNoCount = "manual-step-no-count": "the optimizer is stepped directly, the step counter never advances through the wrapper, no save trigger fires",
    DirAsResumePath = "dir-as-resume-path": "a directory given as the resume path is silently accepted and training starts fresh",
    PartialDirPicked = "partial-dir-picked": "checkpoint directories are written in place, and resume takes the highest-numbered one without checking it is complete, as Hugging Face Trainer does",
    RotateByMtime = "rotate-by-mtime": "save_total_limit rotation keeps the newest directories by modification time and deletes in place, so a killed deletion makes a broken directory the newest",
    LatestInPlace = "latest-in-place": "the latest pointer file is rewritten in place (open with truncate, then write), as DeepSpeed does",
    OvershootAtEnd = "overshoot-at-end": "a run resumed from the checkpoint at MAX_STEPS trains one more step before checking the limit",
    LastLostOnEarlyResume = "last-lost-on-early-resume": "the first checkpoint records no last link, so a run resumed from it writes last-v1.ckpt and leaves last.ckpt at the old file, as Lightning 2.6.6 does",
}

impl Mutant {
    /// Can process kills show this bug at all? `no-fsync-rename` loses data
    /// only when the machine loses power: only a scenario under the
    /// power-loss fault model catches it.
    pub fn needs_power_loss(self) -> bool {
        self == Mutant::NoFsyncRename
    }

    /// The scenario file that must catch this mutant, in the scenarios directory.
    pub fn scenario_file(self) -> String {
        format!("zoo-{}.toml", self.name())
    }
}

impl fmt::Display for Mutant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown mutant name; the message lists the valid ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mutant `{given}`; valid mutants: {}", valid_names())]
pub struct UnknownMutant {
    /// The name that was given.
    pub given: String,
}

fn valid_names() -> String {
    Mutant::ALL
        .iter()
        .map(|m| m.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Mutant {
    type Err = UnknownMutant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mutant::ALL
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownMutant {
                given: s.to_string(),
            })
    }
}

/// The set of mutants switched on in one simulated trainer (usually zero or one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mutants(Vec<Mutant>);

impl Mutants {
    /// A set holding exactly `list`.
    pub fn new(list: impl IntoIterator<Item = Mutant>) -> Self {
        let mut v: Vec<Mutant> = list.into_iter().collect();
        v.sort();
        v.dedup();
        Mutants(v)
    }
    /// Is `m` switched on?
    pub fn has(&self, m: Mutant) -> bool {
        self.0.contains(&m)
    }
    /// The mutants switched on.
    pub fn list(&self) -> &[Mutant] {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for Mutant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Mutant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}
