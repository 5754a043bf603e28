//! Time budgets: `--budget 10m` (`30s`, `1h`, `1h30m`; `budget = "10m"` in a
//! scenario). A budgeted layout runs its cases in the windows-first order
//! and starts a case only while the estimate says it can still finish in
//! time. The estimate starts from the reference runs (a case is a killed
//! run and a resume run per crash, each at most as long as an uninterrupted
//! one) and becomes the mean of the cases that finished, once some have.
//!
//! ```
//! use std::time::Duration;
//! use crashpoint::inject::budget::parse_duration;
//! assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
//! assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
//! assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
//! assert!(parse_duration("ten").is_err());
//! assert!(parse_duration("0s").is_err());
//! ```

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Parses `30s`, `10m`, `1h`, `1h30m`, `90` (seconds) or `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration (such as 30s, 10m, 1h, 1h30m)");
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return (secs > 0)
            .then(|| Duration::from_secs(secs))
            .ok_or_else(bad);
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit_end = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .map(|i| digits + i)
            .unwrap_or(rest.len());
        let unit = match &rest[digits..unit_end] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        total = unit
            .checked_mul(u32::try_from(n).map_err(|_| bad())?)
            .and_then(|d| total.checked_add(d))
            .ok_or_else(bad)?;
        rest = &rest[unit_end..];
    }
    if total.is_zero() {
        return Err(bad());
    }
    Ok(total)
}

/// Shows a duration as the flag takes it (`10m`, `1h30m`, `45s`).
pub fn show_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_millis() != 0 || s == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, sec) = (s / 3600, (s / 60) % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if sec > 0 {
        out += &format!("{sec}s");
    }
    out
}

/// The cost estimate of one layout's cases, shared by its workers.
#[derive(Debug)]
pub struct Estimate {
    deadline: Instant,
    state: Mutex<(Duration, Duration, u32)>,
}

impl Estimate {
    /// Cases must end by `deadline`; before any has finished a case is
    /// taken to cost `initial` (see [`initial_cost`]).
    pub fn new(deadline: Instant, initial: Duration) -> Estimate {
        Estimate {
            deadline,
            state: Mutex::new((initial, Duration::ZERO, 0)),
        }
    }

    /// The expected wall time of one case now.
    pub fn per_case(&self) -> Duration {
        match self.state.lock() {
            Ok(s) if s.2 > 0 => s.1 / s.2,
            Ok(s) => s.0,
            Err(_) => Duration::MAX,
        }
    }

    /// May a case start now: will it finish before the deadline?
    pub fn may_start(&self) -> bool {
        Instant::now()
            .checked_add(self.per_case())
            .is_some_and(|end| end <= self.deadline)
    }

    /// Records a finished case's wall time.
    pub fn finished(&self, took: Duration) {
        if let Ok(mut s) = self.state.lock() {
            s.1 += took;
            s.2 += 1;
        }
    }
}

/// A case's cost before any has run: per crash a killed run and a resume
/// run, each taken as long as the slower uninterrupted reference run.
pub fn initial_cost(reference: Duration, crashes: u32) -> Duration {
    reference.saturating_mul(crashes.max(1) + 1)
}
