//! Crash points and crash plans: where a run is killed. `op` points belong to
//! the simulated trainer's own I/O layer; `syscall` points stop any subject at
//! the entry of its N-th file-mutating system call in the sandbox; `time`
//! points kill after a delay. A plan lists one point per crash: the first for
//! the fresh run, later ones for the resume runs after it.
//!
//! Which points a layout runs, and in which order, is the plan: [`sites`]
//! groups the census into sites, [`order`] puts them windows first,
//! [`budget`] spends a time budget on that order, [`window`] finds the save
//! window that time points are fractions of.
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

pub mod budget;
pub mod order;
pub mod sites;
pub mod window;

pub use window::SaveWindow;

/// One place to kill a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CrashPoint {
    /// The simulated trainer's N-th I/O operation.
    Op(OpCrash),
    /// The entry of the N-th file-mutating system call inside the sandbox.
    Syscall(u64),
    /// SIGKILL this many milliseconds after the start.
    Time(u64),
    /// SIGKILL this many milliseconds after the run's checkpoint tree first
    /// changed (`time:+40ms`): what a [`CrashPoint::Fraction`] becomes, so
    /// that a run slower to start than the reference is still killed inside
    /// its saves.
    AfterChange(u64),
    /// SIGKILL at this fraction (in 1/10000) of the reference run's save
    /// window (see [`window`]): `time:0.4172`.
    Fraction(u32),
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
            CrashPoint::AfterChange(ms) => write!(f, "time:+{ms}ms"),
            CrashPoint::Fraction(v) if *v >= 10_000 => f.write_str("time:1.0000"),
            CrashPoint::Fraction(v) => write!(f, "time:0.{v:04}"),
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
            "time" if rest.contains('.') => match rest.parse::<f64>() {
                Ok(x) if (0.0..=1.0).contains(&x) => {
                    Ok(CrashPoint::Fraction((x * 10_000.0).round() as u32))
                }
                _ => Err(format!(
                    "`{rest}` is not a fraction of the save window (0.0 to 1.0)"
                )),
            },
            "time" if rest.starts_with('+') => rest[1..]
                .trim_end_matches("ms")
                .parse()
                .map(CrashPoint::AfterChange)
                .map_err(|_| {
                    format!("`{rest}` is not a delay after the first checkpoint change (+40ms)")
                }),
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// Crash points and plans are written as `--crash` takes them (`syscall:17`,
/// `op:3:mid,syscall:2`, `none`) in reports, and read back from them:
///
/// ```
/// use crashpoint::inject::CrashPlan;
/// let plan: CrashPlan = "op:3:mid,syscall:2".parse().unwrap();
/// let text = serde_json::to_string(&plan).unwrap();
/// assert_eq!(text, "\"op:3:mid,syscall:2\"");
/// assert_eq!(serde_json::from_str::<CrashPlan>(&text).unwrap(), plan);
/// assert_eq!(serde_json::to_string(&CrashPlan::default()).unwrap(), "\"none\"");
/// assert!(serde_json::from_str::<CrashPlan>("\"syscall:0\"").is_err());
/// ```
macro_rules! serde_as_text {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_as_text!(CrashPoint);
serde_as_text!(CrashPlan);

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
    /// Every point of the census (in time mode: 64 kill times).
    All,
    /// The first N points of the windows-first order (all of them if
    /// there are fewer; in time mode: N kill times).
    Sample(usize),
}

/// Kill times a time-mode layout draws when every point is asked for.
pub const TIME_POINTS: usize = 64;

/// Every first crash point a census offers in `mode`: for `op`, before and
/// after each operation and half-way through each write; for `syscall`, each
/// call. `time` points are fractions of the save window instead.
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
pub struct PlanSpec<'a> {
    /// How crashes are placed.
    pub mode: Mode,
    /// Which first points.
    pub selection: Selection,
    /// Crashes per case (1 or more).
    pub crashes: u32,
    /// The seed that draws the order and later crashes.
    pub seed: u64,
    /// The layout's name: part of the draw, so layouts cover different
    /// occurrences of each site.
    pub layout: &'a str,
    /// The paths of the reference's `saved` events, in order (they place
    /// the first completed save in the census).
    pub saved: &'a [String],
}

/// The first crash points of a layout, windows first (see [`order`]), each
/// with its site; in time mode, fractions of the save window drawn from the
/// seed (no sites).
pub fn first_points(spec: &PlanSpec<'_>, census: &[CensusEntry]) -> Vec<sites::SitedPoint> {
    match spec.mode {
        Mode::Time => {
            let n = match spec.selection {
                Selection::All => TIME_POINTS,
                Selection::Sample(n) => n,
            };
            let mut rng = ChaCha8Rng::seed_from_u64(order::salt(spec.seed, spec.layout) ^ 0x7153);
            (0..n)
                .map(|_| sites::SitedPoint {
                    point: draw_fraction(&mut rng),
                    index: 0,
                    site: sites::Site {
                        call: "time".into(),
                        path: String::new(),
                        when: None,
                    },
                    in_place: false,
                })
                .collect()
        }
        mode => {
            let boundary = sites::first_save_boundary(census, spec.saved);
            let mut all = order::windows_first(
                sites::sited_points(mode, census),
                boundary,
                spec.seed,
                spec.layout,
            );
            if let Selection::Sample(n) = spec.selection {
                all.truncate(n);
            }
            all
        }
    }
}

/// The crash plans of one layout, deterministic in `spec.seed` and the
/// layout, in the order they should run (windows first). Later crashes (in
/// resume runs) are drawn from the seed; half of them land in the first
/// operations of the resume run, where it loads its checkpoint.
pub fn plans(spec: &PlanSpec<'_>, census: &[CensusEntry]) -> Vec<CrashPlan> {
    let mut rng = ChaCha8Rng::seed_from_u64(order::salt(spec.seed, spec.layout));
    let span = census.len().max(1) as u64;
    first_points(spec, census)
        .into_iter()
        .map(|first| {
            let mut points = vec![first.point];
            for _ in 1..spec.crashes.max(1) {
                points.push(draw_later(&mut rng, spec.mode, span));
            }
            CrashPlan { points }
        })
        .collect()
}

/// A time point as a delay: a fraction of the reference's save window
/// becomes milliseconds after the run's own checkpoint tree first changes
/// (so a run whose start-up is slower than the reference's is still killed
/// inside its saves); without a window (`None`: the reference's tree never
/// changed), a fraction of `duration`, from the start of the run. Every
/// other point is itself.
///
/// ```
/// use crashpoint::inject::{resolve, CrashPoint, SaveWindow};
/// let w = SaveWindow { start_ms: 3_400, end_ms: 3_500 };
/// assert_eq!(resolve(CrashPoint::Fraction(5_000), Some(w), 9_000), CrashPoint::AfterChange(50));
/// assert_eq!(resolve(CrashPoint::Fraction(5_000), None, 9_000), CrashPoint::Time(4_500));
/// assert_eq!(resolve(CrashPoint::Syscall(3), Some(w), 9_000), CrashPoint::Syscall(3));
/// ```
pub fn resolve(point: CrashPoint, window: Option<SaveWindow>, duration_ms: u64) -> CrashPoint {
    match (point, window) {
        (CrashPoint::Fraction(f), Some(w)) => {
            CrashPoint::AfterChange(w.at(f).saturating_sub(w.start_ms))
        }
        (CrashPoint::Fraction(f), None) => CrashPoint::Time(
            SaveWindow {
                start_ms: 0,
                end_ms: duration_ms,
            }
            .at(f),
        ),
        (p, _) => p,
    }
}

fn draw_fraction(rng: &mut ChaCha8Rng) -> CrashPoint {
    CrashPoint::Fraction(rng.gen_range(0..10_000))
}

fn draw_later(rng: &mut ChaCha8Rng, mode: Mode, span: u64) -> CrashPoint {
    const LOAD_WINDOW: u64 = 6;
    let index = if rng.gen_bool(0.5) {
        rng.gen_range(1..=LOAD_WINDOW)
    } else {
        rng.gen_range(1..=span + LOAD_WINDOW)
    };
    match mode {
        Mode::Op => {
            let when = [When::Before, When::Mid, When::After][rng.gen_range(0..3)];
            CrashPoint::Op(OpCrash { index, when })
        }
        Mode::Syscall => CrashPoint::Syscall(index),
        Mode::Time => draw_fraction(rng),
    }
}

/// What a layout's cases covered of what its census offers (reports keep
/// it per layout, flat beside the layout's other fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Coverage {
    /// First crash points the census offers (in time mode: kill times planned).
    pub points: usize,
    /// Of those, the ones a case ran.
    pub points_run: usize,
    /// Sites of the census (none in time mode).
    pub sites: usize,
    /// Sites at least one case ran a point of.
    pub sites_covered: usize,
    /// The sites no case covered, in windows-first order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uncovered: Vec<String>,
    /// Misuse probes planned and run.
    pub probes: (usize, usize),
    /// Cases whose first crash landed after a completed save (something to
    /// resume from, or a `saved` event, before the kill).
    pub after_save: usize,
    /// Why a time budget stopped the layout early, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_cut: Option<String>,
    /// Time mode: the points are kill times, not census entries.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub timed: bool,
}

impl Coverage {
    /// Did every point (and every probe) of the layout run?
    pub fn complete(&self) -> bool {
        self.points_run == self.points && self.probes.0 == self.probes.1
    }

    /// Why the layout's cases prove nothing, if they do not: in time mode,
    /// no kill landed after a completed save.
    pub fn inconclusive(&self) -> Option<String> {
        (self.timed && self.points_run > 0 && self.after_save == 0).then(|| {
            format!(
                "inconclusive: none of the {} kills landed after a completed save (each found nothing to resume from), so they say nothing about saving",
                self.points_run
            )
        })
    }

    /// Why a layout's time-mode cases, conclusive or not, are no
    /// certification: kill times drawn from a stretch of time are a sample
    /// of it; no number of them runs every point. `None` for a census.
    pub fn sampled_times(&self) -> Option<String> {
        (self.timed && self.points_run > 0 && self.after_save > 0).then(|| {
            format!(
                "time mode: {} kill times are a sample of the save window, not every point of it (--mode syscall runs every point)",
                self.points_run
            )
        })
    }

    /// The coverage of two partitions of one run (`--partition I/N`) taken
    /// together: the same points and sites offered, the points and probes
    /// each ran added up (partitions split the cases, whose first points
    /// differ), a site uncovered only when neither covered it. `None` when
    /// the two do not offer the same points.
    ///
    /// ```
    /// use crashpoint::inject::Coverage;
    /// let part = |run, uncovered: &[&str]| Coverage {
    ///     points: 4, points_run: run, sites: 3, sites_covered: 3 - uncovered.len(),
    ///     uncovered: uncovered.iter().map(|s| s.to_string()).collect(),
    ///     probes: (3, 1), ..Coverage::default()
    /// };
    /// let both = part(2, &["a", "b"]).join(&part(2, &["b", "c"])).unwrap();
    /// assert_eq!((both.points_run, both.sites_covered, both.uncovered), (4, 2, vec!["b".to_string()]));
    /// assert_eq!(both.probes, (3, 2));
    /// assert!(part(2, &[]).join(&Coverage { points: 5, ..part(2, &[]) }).is_none());
    /// ```
    pub fn join(&self, other: &Coverage) -> Option<Coverage> {
        if (self.points, self.sites, self.probes.0, self.timed)
            != (other.points, other.sites, other.probes.0, other.timed)
        {
            return None;
        }
        let uncovered: Vec<String> = self
            .uncovered
            .iter()
            .filter(|s| other.uncovered.contains(s))
            .cloned()
            .collect();
        Some(Coverage {
            points: self.points,
            points_run: (self.points_run + other.points_run).min(self.points),
            sites: self.sites,
            sites_covered: if self.timed {
                0
            } else {
                self.sites.saturating_sub(uncovered.len())
            },
            uncovered,
            probes: (
                self.probes.0,
                (self.probes.1 + other.probes.1).min(self.probes.0),
            ),
            after_save: self.after_save + other.after_save,
            budget_cut: self.budget_cut.clone().or_else(|| other.budget_cut.clone()),
            timed: self.timed,
        })
    }

    /// Counts what `run` (the first points of the cases that ran) covers of
    /// `all` (every first point, windows first).
    pub fn of(all: &[sites::SitedPoint], run: &[CrashPoint]) -> Coverage {
        let ran: std::collections::HashSet<&CrashPoint> = run.iter().collect();
        let mut sites: Vec<&sites::Site> = Vec::new();
        let mut covered: std::collections::HashSet<&sites::Site> = Default::default();
        for p in all {
            if !sites.contains(&&p.site) {
                sites.push(&p.site);
            }
            if ran.contains(&p.point) {
                covered.insert(&p.site);
            }
        }
        let timed = all.iter().all(|p| p.site.call == "time");
        Coverage {
            points: all.len(),
            points_run: all.iter().filter(|p| ran.contains(&p.point)).count(),
            sites: if timed { 0 } else { sites.len() },
            sites_covered: if timed { 0 } else { covered.len() },
            uncovered: sites
                .iter()
                .filter(|s| !timed && !covered.contains(*s))
                .map(|s| s.to_string())
                .collect(),
            timed,
            ..Coverage::default()
        }
    }
}
