//! The real judge: candidates run through the oracle and the runner.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{Case, Judge, ShrinkError};
use crate::census::CensusEntry;
use crate::layout::Layout;
use crate::oracle::{self, Reference, ReferenceError, Target};
use crate::verdict::FailureKind;

/// The real judge: every candidate runs through the oracle and the runner
/// (references cached per layout and step count), in sandboxes under a
/// work directory.
#[derive(Debug)]
pub struct RunnerJudge {
    target: Target,
    work: PathBuf,
    references: HashMap<(Layout, u64), Option<Reference>>,
    runs: usize,
}

impl RunnerJudge {
    /// A judge for `target` (its `max_steps` is the case's), working in `work`.
    pub fn new(target: Target, work: &Path) -> RunnerJudge {
        RunnerJudge {
            target,
            work: work.to_path_buf(),
            references: HashMap::new(),
            runs: 0,
        }
    }

    fn target(&self, max_steps: u64) -> Target {
        Target {
            max_steps,
            ..self.target.clone()
        }
    }

    /// The reference of (layout, steps); `None` when the subject cannot be
    /// certified there (nondeterministic, unusable).
    fn reference(
        &mut self,
        layout: Layout,
        max_steps: u64,
    ) -> Result<Option<&Reference>, ShrinkError> {
        if !self.references.contains_key(&(layout, max_steps)) {
            let scratch = self
                .work
                .join(format!("reference-{}-{max_steps}", layout.name()));
            std::fs::create_dir_all(&scratch)?;
            let r = match oracle::reference(&self.target(max_steps), layout, &scratch) {
                Ok(r) => Some(r),
                Err(ReferenceError::Runner(e)) => return Err(e.into()),
                Err(_) => None,
            };
            let _ = std::fs::remove_dir_all(&scratch);
            self.references.insert((layout, max_steps), r);
        }
        Ok(self
            .references
            .get(&(layout, max_steps))
            .and_then(|r| r.as_ref()))
    }
}

impl Judge for RunnerJudge {
    fn census(&mut self, layout: Layout, max_steps: u64) -> Result<Vec<CensusEntry>, ShrinkError> {
        Ok(self
            .reference(layout, max_steps)?
            .map(|r| r.census.clone())
            .unwrap_or_default())
    }

    fn fails(
        &mut self,
        case: &Case,
        kind: FailureKind,
    ) -> Result<Option<(usize, String)>, ShrinkError> {
        self.runs += 1;
        let case_dir = self.work.join(format!("candidate-{}", self.runs));
        let target = self.target(case.max_steps);
        let Some(reference) = self.reference(case.layout, case.max_steps)?.cloned() else {
            return Ok(None);
        };
        if !reference.findings.is_empty() {
            // A failure visible without a crash: the case is the uninterrupted run.
            let hit = case.plan.points.is_empty();
            return Ok(reference
                .findings
                .iter()
                .find(|f| hit && f.kind == kind)
                .map(|f| (1, f.detail.clone())));
        }
        let outcome = match case.plan.probe() {
            Some(p) => oracle::run_probe(&target, &reference, p, &case_dir),
            None => oracle::run_case(&target, &reference, &case.plan, &case_dir),
        };
        let _ = std::fs::remove_dir_all(&case_dir);
        let outcome = outcome?;
        Ok(outcome
            .findings
            .iter()
            .find(|f| f.kind == kind)
            .map(|f| (outcome.runs, f.detail.clone())))
    }
}
