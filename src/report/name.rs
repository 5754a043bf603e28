//! Names of crash points, as every report shows them: the point, its call,
//! its path relative to the sandbox and its phase, e.g.
//! `syscall:45 symlink work/checkpoints/last.ckpt (relink last step=5)`;
//! and its site ([`crate::inject::sites`]): the call and path with every
//! volatile part a placeholder, so the same window of every save groups
//! together (`rename work/checkpoints/.step=#.ckpt.tmp-# -> work/checkpoints/step=#.ckpt`).
//!
//! ```
//! use crashpoint::census::{Call, CensusEntry, Phase, PhaseKind};
//! use crashpoint::inject::CrashPoint;
//! use crashpoint::report::name;
//! let census = vec![CensusEntry { index: 1, call: Call::Rename, name: "renameat2".into(),
//!     paths: vec!["work/checkpoints/.step=5.ckpt.tmp-41".into(), "work/checkpoints/step=5.ckpt".into()],
//!     phase: Phase::at(PhaseKind::Save, 5), fd: None, offset: None, len: None }];
//! let p: CrashPoint = "syscall:1".parse().unwrap();
//! assert_eq!(name::point(&p, &census),
//!     "syscall:1 rename work/checkpoints/.step=5.ckpt.tmp-41 -> work/checkpoints/step=5.ckpt (save of step 5)");
//! assert_eq!(name::site(&p, &census), "rename work/checkpoints/.step=#.ckpt.tmp-# -> work/checkpoints/step=#.ckpt");
//! ```

use crate::inject::{sites, CensusEntry, CrashPlan, CrashPoint};

/// The census entry a first crash point stops at, if it names one.
pub fn entry<'a>(point: &CrashPoint, census: &'a [CensusEntry]) -> Option<&'a CensusEntry> {
    let n = match point {
        CrashPoint::Op(c) => c.index,
        CrashPoint::Syscall(n) => *n,
        CrashPoint::Time(_)
        | CrashPoint::AfterChange(_)
        | CrashPoint::Fraction(_)
        | CrashPoint::Probe(_) => return None,
    };
    let i = usize::try_from(n).ok()?.checked_sub(1)?;
    census.get(i).filter(|e| e.index == n)
}

/// What a census entry does: `symlink work/checkpoints/last.ckpt (relink last ...)`.
pub fn describe(e: &CensusEntry) -> String {
    e.describe()
}

/// A first crash point with what it stops: its call, path and phase.
pub fn point(point: &CrashPoint, census: &[CensusEntry]) -> String {
    match (point, entry(point, census)) {
        (_, Some(e)) => format!("{point} {}", describe(e)),
        (CrashPoint::Probe(p), _) => format!("{point} ({})", probe_text(*p)),
        _ => point.to_string(),
    }
}

fn probe_text(p: crate::inject::Probe) -> &'static str {
    match p {
        crate::inject::Probe::Directory => "resume from the checkpoint directory itself",
        crate::inject::Probe::Missing => "resume from a missing file",
        crate::inject::Probe::Corrupt => "resume from a truncated checkpoint",
    }
}

/// A crash plan, its first point named from the census (later points land
/// in resume runs, which the census of the uninterrupted run does not cover).
pub fn plan(plan: &CrashPlan, census: &[CensusEntry]) -> String {
    match plan.points.split_first() {
        None => "none (no crash)".into(),
        Some((first, [])) => point(first, census),
        Some((first, rest)) => {
            let later: Vec<String> = rest.iter().map(|p| p.to_string()).collect();
            format!(
                "{}, then {} in the resume runs",
                point(first, census),
                later.join(", ")
            )
        }
    }
}

/// The site of a first crash point (see [`crate::inject::sites`]): its
/// call family and path pattern, and for an `op` point the moment; `probe`
/// for a probe, `time` for a timed kill.
pub fn site(point: &CrashPoint, census: &[CensusEntry]) -> String {
    match (point, entry(point, census)) {
        (CrashPoint::Probe(_), _) => "probe".into(),
        (CrashPoint::Time(_) | CrashPoint::AfterChange(_) | CrashPoint::Fraction(_), _) => {
            "time".into()
        }
        (CrashPoint::Op(c), Some(e)) => sites::site_of(e, Some(c.when)).to_string(),
        (_, Some(e)) => site_of(e),
        _ => "unknown".into(),
    }
}

/// The site of a census entry, whatever the moment.
pub fn site_of(e: &CensusEntry) -> String {
    sites::site_of(e, None).to_string()
}

/// The site of a plan: that of its first point (`none` without a crash).
pub fn plan_site(plan: &CrashPlan, census: &[CensusEntry]) -> String {
    plan.points
        .first()
        .map(|p| site(p, census))
        .unwrap_or_else(|| "none".into())
}
