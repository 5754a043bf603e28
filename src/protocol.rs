//! The subject protocol v1 (PROTOCOL.md): the environment a subject run gets,
//! the state file it writes when done, and the events it may append. Both
//! sides use these definitions: the runner to set up runs and read results,
//! the simulated trainer to take part.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// `CRASHPOINT_PROTOCOL`: the protocol version, `1`.
pub const PROTOCOL: &str = "CRASHPOINT_PROTOCOL";
/// `CRASHPOINT_CKPT_DIR`: the checkpoint directory as a user would write it.
pub const CKPT_DIR: &str = "CRASHPOINT_CKPT_DIR";
/// `CRASHPOINT_MAX_STEPS`: train until the global step equals this.
pub const MAX_STEPS: &str = "CRASHPOINT_MAX_STEPS";
/// `CRASHPOINT_SEED`: the one seed.
pub const SEED: &str = "CRASHPOINT_SEED";
/// `CRASHPOINT_RESUME`: absent on a fresh run; the resume argument otherwise.
pub const RESUME: &str = "CRASHPOINT_RESUME";
/// `CRASHPOINT_STATE_OUT`: where the final state JSON goes.
pub const STATE_OUT: &str = "CRASHPOINT_STATE_OUT";
/// `CRASHPOINT_EVENTS`: optional events file.
pub const EVENTS: &str = "CRASHPOINT_EVENTS";
/// Extension for the simulated trainer: the `op` crash point, `INDEX:WHEN`.
pub const OP_CRASH: &str = "CRASHPOINT_OP_CRASH";
/// Extension for the simulated trainer: where to write the operation census.
pub const OP_LOG: &str = "CRASHPOINT_OP_LOG";
/// Simulated trainer only: `1` makes its I/O layer pause at every crash
/// point (before and after each operation, half-way through each write):
/// it prints `INDEX WHEN PATHS` on stdout (PATHS: the tab-separated paths
/// the operation changed, on `mid` and `after` lines) and waits for one
/// byte on stdin, while the harness captures the crash state.
pub const OP_PAUSE: &str = "CRASHPOINT_OP_PAUSE";

/// Simulated trainer only: the pid of the harness that started it. The
/// trainer asks for the parent-death signal itself and dies at once when
/// its parent is not that process any more (it is started without a hook
/// between fork and exec, see `sys::isolate_spawned`).
pub const SIM_PARENT: &str = "CRASHPOINT_SIM_PARENT";

/// Every variable of the protocol and its extensions: removed from the
/// harness's own environment before a subject gets its own values.
pub const ALL_VARS: [&str; 11] = [
    PROTOCOL, CKPT_DIR, MAX_STEPS, SEED, RESUME, STATE_OUT, EVENTS, OP_CRASH, OP_LOG, OP_PAUSE,
    SIM_PARENT,
];

/// The state file a subject writes when it reaches `MAX_STEPS`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StateFile {
    /// The global step reached.
    pub step: u64,
    /// A digest of the complete training state; compared as a string.
    pub digest: String,
    /// The step the run started from (0 or null when fresh).
    #[serde(default)]
    pub resumed_from_step: Option<u64>,
    /// Optional per-part digests.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

impl StateFile {
    /// Parses the bytes of a state file. Any bytes give a value or an error
    /// message, never a panic: the file is written by the subject.
    ///
    /// ```
    /// use crashpoint::protocol::StateFile;
    /// let s = StateFile::parse(br#"{"step": 4, "digest": "ab"}"#).unwrap();
    /// assert_eq!((s.step, s.digest.as_str(), s.resumed_from_step), (4, "ab", None));
    /// assert!(StateFile::parse(b"  ").unwrap_err().contains("empty"));
    /// ```
    pub fn parse(bytes: &[u8]) -> Result<StateFile, String> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err("the file is empty; the protocol asks for one JSON object".into());
        }
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// The first 12 characters of a digest, for display. A digest is any text a
/// subject wrote, so it is cut at a character boundary.
///
/// ```
/// use crashpoint::protocol::short_digest;
/// assert_eq!(short_digest("9f2c41d0aa77b3e1ff"), "9f2c41d0aa77");
/// assert_eq!(short_digest("xéééééééééééééé"), "xééééééééééé");
/// ```
pub fn short_digest(d: &str) -> &str {
    match d.char_indices().nth(12) {
        Some((i, _)) => &d[..i],
        None => d,
    }
}

/// One line of the events file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `saved <step> <path>`: a save is complete by the subject's own standard.
    Saved {
        /// The step saved.
        step: u64,
        /// The file, as the subject names it.
        path: String,
    },
    /// `resumed <step>` (optional extension): a run resumed from this step.
    Resumed {
        /// The step resumed from.
        step: u64,
    },
    /// `state <step> <part>=<digest> ...` (optional extension): per-part
    /// digests of the state at a step (after restoring, and after each
    /// step), so a mismatch can name where it began.
    State {
        /// The step.
        step: u64,
        /// Part name to digest.
        parts: BTreeMap<String, String>,
    },
}

impl Event {
    /// Parses one line; unknown or malformed lines give `None` (they are ignored).
    ///
    /// ```
    /// use crashpoint::protocol::Event;
    /// assert_eq!(Event::parse("saved 5 ckpt/last.ckpt"),
    ///            Some(Event::Saved { step: 5, path: "ckpt/last.ckpt".into() }));
    /// assert_eq!(Event::parse("resumed 10"), Some(Event::Resumed { step: 10 }));
    /// assert!(matches!(Event::parse("state 3 params=ab rng=cd"), Some(Event::State { step: 3, .. })));
    /// assert_eq!(Event::parse("hello"), None);
    /// ```
    pub fn parse(line: &str) -> Option<Event> {
        let mut words = line.splitn(3, ' ');
        match (words.next()?, words.next()?.trim().parse().ok()?) {
            ("saved", step) => Some(Event::Saved {
                step,
                path: words.next().unwrap_or("").trim_end().to_string(),
            }),
            ("resumed", step) => Some(Event::Resumed { step }),
            ("state", step) => Some(Event::State {
                step,
                parts: words
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }),
            _ => None,
        }
    }

    /// Every event of an events file's text; malformed lines are skipped.
    pub fn parse_all(text: &str) -> Vec<Event> {
        text.lines().filter_map(Event::parse).collect()
    }

    /// Is `line` an event ([`Event::parse`] gives `Some`)? Builds nothing.
    pub fn is_event(line: &str) -> bool {
        let mut words = line.splitn(3, ' ');
        let (Some(kind), Some(step)) = (words.next(), words.next()) else {
            return false;
        };
        matches!(kind, "saved" | "resumed" | "state") && step.trim().parse::<u64>().is_ok()
    }

    /// The events of `text` after its first `skip` (those earlier runs
    /// already saw), and how many it holds in all: the first `skip` are
    /// counted, not built.
    ///
    /// ```
    /// use crashpoint::protocol::Event;
    /// let text = "saved 1 a\nnoise\nresumed 1\nsaved 2 b\n";
    /// let (after, total) = Event::parse_after(text, 1);
    /// assert_eq!(total, 3);
    /// assert_eq!(after, Event::parse_all(text)[1..]);
    /// ```
    pub fn parse_after(text: &str, skip: usize) -> (Vec<Event>, usize) {
        let mut seen = 0;
        let mut out = Vec::new();
        for line in text.lines() {
            if seen < skip {
                seen += usize::from(Event::is_event(line));
            } else if let Some(e) = Event::parse(line) {
                seen += 1;
                out.push(e);
            }
        }
        (out, seen)
    }
}

/// What a subject reads from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectEnv {
    /// `CRASHPOINT_CKPT_DIR`.
    pub ckpt_dir: PathBuf,
    /// `CRASHPOINT_MAX_STEPS`.
    pub max_steps: u64,
    /// `CRASHPOINT_SEED`.
    pub seed: u64,
    /// `CRASHPOINT_RESUME`.
    pub resume: Option<String>,
    /// `CRASHPOINT_STATE_OUT`.
    pub state_out: PathBuf,
    /// `CRASHPOINT_EVENTS`.
    pub events: Option<PathBuf>,
}

/// A protocol variable is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {var}: {problem} (is this run started by crashpoint?)")]
pub struct EnvError {
    /// The variable.
    pub var: &'static str,
    /// What is wrong.
    pub problem: String,
}

impl SubjectEnv {
    /// Reads the protocol variables through `get` (usually `std::env::var`).
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<SubjectEnv, EnvError> {
        let need = |var: &'static str| {
            get(var).filter(|v| !v.is_empty()).ok_or(EnvError {
                var,
                problem: "not set".into(),
            })
        };
        let num = |var: &'static str| -> Result<u64, EnvError> {
            let v = need(var)?;
            v.parse().map_err(|_| EnvError {
                var,
                problem: format!("`{v}` is not a non-negative integer"),
            })
        };
        Ok(SubjectEnv {
            ckpt_dir: PathBuf::from(need(CKPT_DIR)?),
            max_steps: num(MAX_STEPS)?,
            seed: num(SEED)?,
            resume: get(RESUME).filter(|v| !v.is_empty()),
            state_out: PathBuf::from(need(STATE_OUT)?),
            events: get(EVENTS).filter(|v| !v.is_empty()).map(PathBuf::from),
        })
    }
}

/// Where, relative to the numbered operation, the process is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum When {
    /// Before the operation happens.
    Before,
    /// Half-way through a write (for other operations: before it).
    Mid,
    /// Right after the operation completed.
    After,
}

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            When::Before => "before",
            When::Mid => "mid",
            When::After => "after",
        })
    }
}

impl FromStr for When {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "before" => Ok(When::Before),
            "mid" => Ok(When::Mid),
            "after" => Ok(When::After),
            other => Err(format!("`{other}` is not before, mid or after")),
        }
    }
}

/// An `op` crash point (the simulated trainer's extension of the protocol,
/// passed in `CRASHPOINT_OP_CRASH` as `INDEX:WHEN`): kill at operation `index` (1-based), at `when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpCrash {
    /// 1-based operation number within one run.
    pub index: u64,
    /// Where relative to that operation.
    pub when: When,
}

impl fmt::Display for OpCrash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.index, self.when)
    }
}

impl FromStr for OpCrash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (n, w) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` is not INDEX:WHEN"))?;
        let index: u64 = n
            .parse()
            .map_err(|_| format!("`{n}` is not an operation number"))?;
        if index == 0 {
            return Err("operation numbers start at 1".into());
        }
        Ok(OpCrash {
            index,
            when: w.parse()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_event_says_what_parse_says() {
        let lines = [
            "saved 5 ckpt/last.ckpt",
            "saved 5",
            "saved  5 x",
            "saved 5\t",
            "saved x 5",
            "resumed 10",
            "resumed -1",
            "state 3 params=ab rng=cd",
            "state 3",
            "statex 3",
            "saved",
            "",
            " saved 5 x",
            "resumed 18446744073709551616",
            "resumed 7 trailing words",
        ];
        for l in lines {
            assert_eq!(Event::is_event(l), Event::parse(l).is_some(), "{l:?}");
        }
        let text = lines.join("\n");
        for skip in 0..12 {
            let all = Event::parse_all(&text);
            let (after, total) = Event::parse_after(&text, skip);
            assert_eq!(total, all.len());
            assert_eq!(after, all[skip.min(all.len())..]);
        }
    }
}
