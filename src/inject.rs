//! Crash points and crash plans: where a run is killed. `op` points belong to
//! the simulated trainer's own I/O layer; `syscall` points stop any subject at
//! the entry of its N-th file-mutating system call in the sandbox; `time`
//! points kill after a delay. A plan lists one point per crash: the first for
//! the fresh run, later ones for the resume runs after it.
//!
//! ```
//! use crashpoint::inject::CrashPlan;
//! let plan: CrashPlan = "op:17:mid,op:2:before".parse().unwrap();
//! assert_eq!(plan.points.len(), 2);
//! assert_eq!(plan.to_string(), "op:17:mid,op:2:before");
//! ```

use std::fmt;
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::census::Call;
pub use crate::census::CensusEntry;
use crate::protocol::{OpCrash, When};

/// One place to kill a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CrashPoint {
    /// The simulated trainer's N-th I/O operation.
    Op(OpCrash),
    /// The entry of the N-th file-mutating system call inside the sandbox.
    Syscall(u64),
    /// SIGKILL this many milliseconds after the start.
    Time(u64),
    /// Not a kill: a misuse probe that hands the subject a bad resume path
    /// (see [`Probe`]). A plan holding a probe holds nothing else.
    Probe(Probe),
}

/// A misuse probe: after an uninterrupted run, the subject is resumed from
/// something it must refuse; exiting 0 is `bad-resume-accepted`.
///
/// ```
/// use crashpoint::inject::{CrashPlan, Probe};
/// let plan: CrashPlan = "probe:corrupt".parse().unwrap();
/// assert_eq!(plan.probe(), Some(Probe::Corrupt));
/// assert!("probe:missing,op:3:after".parse::<CrashPlan>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Probe {
    /// The checkpoint directory itself as the resume path.
    Directory,
    /// A path to a file that does not exist (`<dir>/missing.ckpt`).
    Missing,
    /// The file the resume argument resolves to, truncated to half its size.
    Corrupt,
}

impl Probe {
    /// Every probe, in the order campaigns run them.
    pub const ALL: [Probe; 3] = [Probe::Directory, Probe::Missing, Probe::Corrupt];

    /// The name after `probe:`.
    pub fn name(self) -> &'static str {
        match self {
            Probe::Directory => "directory",
            Probe::Missing => "missing",
            Probe::Corrupt => "corrupt",
        }
    }

    /// The one-point plan that runs this probe.
    pub fn plan(self) -> CrashPlan {
        CrashPlan {
            points: vec![CrashPoint::Probe(self)],
        }
    }
}

impl FromStr for Probe {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Probe::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown probe `{s}` (directory, missing or corrupt)"))
    }
}

impl fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrashPoint::Op(c) => write!(f, "op:{c}"),
            CrashPoint::Syscall(n) => write!(f, "syscall:{n}"),
            CrashPoint::Time(ms) => write!(f, "time:{ms}ms"),
            CrashPoint::Probe(p) => write!(f, "probe:{}", p.name()),
        }
    }
}

impl FromStr for CrashPoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, rest) = s.split_once(':').ok_or_else(|| {
            format!("`{s}` is not a crash point (op:N:WHEN, syscall:N, time:MSms or probe:NAME)")
        })?;
        match kind {
            "op" => Ok(CrashPoint::Op(rest.parse()?)),
            "syscall" => match rest.parse::<u64>() {
                Ok(n) if n > 0 => Ok(CrashPoint::Syscall(n)),
                _ => Err(format!("`{rest}` is not a system call number (1, 2, ...)")),
            },
            "time" => rest
                .trim_end_matches("ms")
                .parse()
                .map(CrashPoint::Time)
                .map_err(|_| format!("`{rest}` is not a delay in milliseconds")),
            "probe" => rest.parse().map(CrashPoint::Probe),
            other => Err(format!(
                "unknown crash point kind `{other}` (op, syscall, time or probe)"
            )),
        }
    }
}

/// The crash points of one case, in the order the runs meet them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CrashPlan {
    /// One point per crash.
    pub points: Vec<CrashPoint>,
}

impl fmt::Display for CrashPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.points.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self.points.iter().map(|p| p.to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

impl FromStr for CrashPlan {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim() == "none" {
            return Ok(CrashPlan { points: Vec::new() });
        }
        let points = s
            .split(',')
            .map(|p| p.trim().parse())
            .collect::<Result<Vec<_>, _>>()?;
        if points.is_empty() {
            return Err("a crash plan needs at least one point".into());
        }
        let plan = CrashPlan { points };
        if plan.points.len() > 1
            && plan
                .points
                .iter()
                .any(|p| matches!(p, CrashPoint::Probe(_)))
        {
            return Err("a probe (probe:NAME) is a case of its own: give it alone".into());
        }
        Ok(plan)
    }
}

impl CrashPlan {
    /// The probe this plan runs, if it is a probe rather than crashes.
    pub fn probe(&self) -> Option<Probe> {
        match self.points.as_slice() {
            [CrashPoint::Probe(p)] => Some(*p),
            _ => None,
        }
    }
}

/// How crashes are placed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The simulated trainer's own I/O operations (only for `crashpoint sim`).
    Op,
    /// File-mutating system calls, by seccomp and ptrace.
    Syscall,
    /// A delay drawn from the seed.
    Time,
}

/// Which first crash points a layout's cases use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Every point of the census.
    All,
    /// This many points drawn from the seed (all of them if there are fewer).
    Sample(usize),
}

/// Every first crash point a census offers in `mode`: for `op`, before and
/// after each operation and half-way through each write; for `syscall`, each
/// call. `time` points are drawn from `duration_ms` instead.
pub fn census_points(mode: Mode, census: &[CensusEntry]) -> Vec<CrashPoint> {
    let mut out = Vec::new();
    for e in census {
        match mode {
            Mode::Op => {
                for when in [When::Before, When::Mid, When::After] {
                    if when != When::Mid || e.call == Call::Write {
                        out.push(CrashPoint::Op(OpCrash {
                            index: e.index,
                            when,
                        }));
                    }
                }
            }
            Mode::Syscall => out.push(CrashPoint::Syscall(e.index)),
            Mode::Time => {}
        }
    }
    out
}

/// Everything that decides a layout's crash plans.
#[derive(Debug, Clone, Copy)]
pub struct PlanSpec {
    /// How crashes are placed.
    pub mode: Mode,
    /// Which first points.
    pub selection: Selection,
    /// Crashes per case (1 or more).
    pub crashes: u32,
    /// The seed that draws sampled points.
    pub seed: u64,
    /// How long the reference run took, for `time` points.
    pub duration_ms: u64,
}

/// The crash plans of one layout, deterministic in `spec.seed`. Later
/// crashes (in resume runs) are drawn from the seed; half of them land in the
/// first operations of the resume run, where it loads its checkpoint.
pub fn plans(spec: &PlanSpec, census: &[CensusEntry]) -> Vec<CrashPlan> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut firsts = match spec.mode {
        Mode::Time => {
            let n = match spec.selection {
                Selection::All => 64,
                Selection::Sample(n) => n,
            };
            (0..n)
                .map(|_| draw_time(&mut rng, spec.duration_ms))
                .collect()
        }
        _ => census_points(spec.mode, census),
    };
    if let Selection::Sample(n) = spec.selection {
        if spec.mode != Mode::Time && n < firsts.len() {
            // Partial Fisher-Yates: n distinct points, then back in census order.
            for i in 0..n {
                let j = rng.gen_range(i..firsts.len());
                firsts.swap(i, j);
            }
            firsts.truncate(n);
            firsts.sort();
        }
    }
    let span = census.len().max(1) as u64;
    firsts
        .into_iter()
        .map(|first| {
            let mut points = vec![first];
            for _ in 1..spec.crashes.max(1) {
                points.push(draw_later(&mut rng, spec, span));
            }
            CrashPlan { points }
        })
        .collect()
}

fn draw_time(rng: &mut ChaCha8Rng, duration_ms: u64) -> CrashPoint {
    CrashPoint::Time(rng.gen_range(0..=duration_ms.max(1)))
}

fn draw_later(rng: &mut ChaCha8Rng, spec: &PlanSpec, span: u64) -> CrashPoint {
    const LOAD_WINDOW: u64 = 6;
    let index = if rng.gen_bool(0.5) {
        rng.gen_range(1..=LOAD_WINDOW)
    } else {
        rng.gen_range(1..=span + LOAD_WINDOW)
    };
    match spec.mode {
        Mode::Op => {
            let when = [When::Before, When::Mid, When::After][rng.gen_range(0..3)];
            CrashPoint::Op(OpCrash { index, when })
        }
        Mode::Syscall => CrashPoint::Syscall(index),
        Mode::Time => draw_time(rng, spec.duration_ms),
    }
}
