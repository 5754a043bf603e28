//! The search: each round tries fewer crashes, a simpler layout, earlier
//! points and fewer steps, keeping a candidate only when it fails the same
//! way, within the attempt budget.

use std::collections::HashSet;

use super::candidates::{first_op_candidates, later_op_candidates, syscall_candidates};
use super::{Case, Failing, Judge, Limits, ShrinkError, Shrunk};
use crate::inject::{CrashPlan, CrashPoint};
use crate::layout::Layout;
use crate::verdict::FailureKind;

/// Shrinks `start`, which fails with `kind`, to a minimal case failing the
/// same way.
pub fn shrink(
    judge: &mut dyn Judge,
    start: Failing,
    kind: FailureKind,
    limits: Limits,
) -> Result<Shrunk, ShrinkError> {
    let mut s = Search {
        judge,
        kind,
        limits,
        best: start.clone(),
        attempts: 0,
        tried: HashSet::from([start.case.clone()]),
    };
    loop {
        let round = s.best.case.clone();
        s.fewer_crashes()?;
        s.simpler_layout()?;
        // Earlier points first: a point moved to the first save's same
        // operation still exists in a shorter run, so fewer steps can fail.
        s.earlier_points()?;
        s.fewer_steps()?;
        if s.best.case == round || s.attempts >= limits.attempts {
            break;
        }
    }
    Ok(Shrunk {
        kind,
        before: start,
        after: s.best,
        attempts: s.attempts,
    })
}

pub(super) struct Search<'j> {
    judge: &'j mut dyn Judge,
    kind: FailureKind,
    limits: Limits,
    best: Failing,
    attempts: usize,
    tried: HashSet<Case>,
}

impl Search<'_> {
    /// Runs `case` unless it was tried or the budget is spent; keeps it
    /// when it fails the same way.
    fn attempt(&mut self, case: Case) -> Result<bool, ShrinkError> {
        if self.attempts >= self.limits.attempts || !self.tried.insert(case.clone()) {
            return Ok(false);
        }
        self.attempts += 1;
        match self.judge.fails(&case, self.kind)? {
            Some((runs, detail)) => {
                self.best = Failing { case, runs, detail };
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Drops crashes: the shortest prefix of the plan that still fails,
    /// down to no crash at all (a failure an uninterrupted run shows); else
    /// the plan without one of its earlier crashes (a first crash that only
    /// restarted the run from scratch).
    fn fewer_crashes(&mut self) -> Result<(), ShrinkError> {
        let points = self.best.case.plan.points.clone();
        if self.best.case.plan.probe().is_some() {
            return Ok(());
        }
        for n in 0..points.len() {
            let case = Case {
                plan: CrashPlan {
                    points: points[..n].to_vec(),
                },
                ..self.best.case.clone()
            };
            if self.attempt(case)? {
                return Ok(());
            }
        }
        for i in 0..points.len().saturating_sub(1) {
            let mut fewer = points.clone();
            fewer.remove(i);
            let case = Case {
                plan: CrashPlan { points: fewer },
                ..self.best.case.clone()
            };
            if self.attempt(case)? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The simplest layout that still fails (`relative` first).
    fn simpler_layout(&mut self) -> Result<(), ShrinkError> {
        let current = self.best.case.layout;
        for layout in Layout::ALL.into_iter().take_while(|l| *l != current) {
            let case = Case {
                layout,
                ..self.best.case.clone()
            };
            if self.attempt(case)? {
                break;
            }
        }
        Ok(())
    }

    /// The fewest steps that still fail: multiples of the save interval,
    /// smallest first.
    fn fewer_steps(&mut self) -> Result<(), ShrinkError> {
        let current = self.best.case.max_steps;
        let candidates: Vec<u64> = if self.limits.step_unit > 0 {
            let unit = self.limits.step_unit;
            (1..)
                .map(|k| k * unit)
                .take_while(|s| *s < current)
                .collect()
        } else {
            let mut v: Vec<u64> = [current / 8, current / 4, current / 2]
                .into_iter()
                .filter(|s| *s > 0 && *s < current)
                .collect();
            v.dedup();
            v
        };
        for max_steps in candidates {
            let case = Case {
                max_steps,
                ..self.best.case.clone()
            };
            if self.attempt(case)? {
                break;
            }
        }
        Ok(())
    }

    /// Moves each crash point earlier: first to the same operation of an
    /// earlier save (or load), then to earlier operations nearby.
    fn earlier_points(&mut self) -> Result<(), ShrinkError> {
        for i in 0..self.best.case.plan.points.len() {
            let current = self.best.case.plan.points[i];
            let candidates = match current {
                CrashPoint::Op(c) if i == 0 => {
                    let census = self
                        .judge
                        .census(self.best.case.layout, self.best.case.max_steps)?;
                    first_op_candidates(c, &census)
                }
                CrashPoint::Op(c) => later_op_candidates(c),
                CrashPoint::Syscall(n) => {
                    let census = if i == 0 {
                        self.judge
                            .census(self.best.case.layout, self.best.case.max_steps)?
                    } else {
                        Vec::new()
                    };
                    syscall_candidates(n, &census)
                }
                CrashPoint::Time(ms) => [ms / 4, ms / 2]
                    .into_iter()
                    .filter(|t| *t < ms)
                    .map(CrashPoint::Time)
                    .collect(),
                CrashPoint::AfterChange(ms) => [ms / 4, ms / 2]
                    .into_iter()
                    .filter(|t| *t < ms)
                    .map(CrashPoint::AfterChange)
                    .collect(),
                CrashPoint::Fraction(f) => [f / 4, f / 2]
                    .into_iter()
                    .filter(|t| *t < f)
                    .map(CrashPoint::Fraction)
                    .collect(),
                CrashPoint::Probe(_) => Vec::new(),
            };
            for point in candidates {
                let mut plan = self.best.case.plan.clone();
                plan.points[i] = point;
                let case = Case {
                    plan,
                    ..self.best.case.clone()
                };
                if self.attempt(case)? {
                    break;
                }
            }
        }
        Ok(())
    }
}
