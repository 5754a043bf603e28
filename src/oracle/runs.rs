//! How the runs of a case are carried out: the oracle's run loop asks a
//! [`Runs`] for each run, so that an engine can put a run's known effect in
//! place instead of starting the subject.

use std::path::Path;

use super::seen::SeenSlot;
use super::Target;
use crate::inject::CrashPlan;
use crate::layout::Sandbox;
use crate::observe::HarnessFiles;
use crate::runner::{self, RunRequest, RunResult, RunnerError};
use crate::store::StateId;

/// How the runs of a case are carried out: by starting the subject each time
/// ([`KillEach`]), or, where a run's effect is already known, by putting
/// that effect in place (the record-once engine).
pub trait Runs: Sync {
    /// The runs of one case of `plan`.
    fn case<'a>(&'a self, plan: &'a CrashPlan, case_dir: &'a Path) -> Box<dyn CaseRuns + 'a>;

    /// The runs of one misuse probe (or one variant of it) in `case_dir`:
    /// an uninterrupted run from a fresh sandbox, then one given a bad
    /// resume path after the probe damaged the tree. By default each is
    /// started.
    fn probe<'a>(&'a self, case_dir: &'a Path) -> Box<dyn CaseRuns + 'a> {
        let _ = case_dir;
        Box::new(KillEach)
    }

    /// When a case of `plan` is known to see exactly what a case of another
    /// plan sees (a deterministic subject, the same first crash state, the
    /// same runs after it), the place where the first of them leaves what
    /// it saw for the others to be judged from. By default (and for a plan
    /// no other shares a state with) `None`: every case is run.
    fn same_case(&self, plan: &CrashPlan) -> Option<SeenSlot> {
        let _ = plan;
        None
    }
}

/// The runs of one case, in order.
pub trait CaseRuns {
    /// Carries out run `run` (1-based) of `req` in `sandbox`, whose harness
    /// files are `files`: afterwards the sandbox, the events file and the
    /// state file are as the run left them.
    fn run(
        &mut self,
        target: &Target,
        run: usize,
        sandbox: &Sandbox,
        files: &HarnessFiles,
        req: &RunRequest<'_>,
    ) -> Result<RunResult, RunnerError>;

    /// Something other than a run has put a crash state in the sandbox (a
    /// power-loss state, over what a crash left), named `id`: equal ids
    /// stand for equal trees and events files. An engine that remembers
    /// runs by the state they start from keys the next run by it; by
    /// default nothing is done.
    fn state_installed(&mut self, id: StateId) {
        let _ = id;
    }
}

/// The engine that starts the subject for every run and kills it at each
/// crash point.
#[derive(Debug, Clone, Copy, Default)]
pub struct KillEach;

impl Runs for KillEach {
    fn case<'a>(&'a self, _: &'a CrashPlan, _: &'a Path) -> Box<dyn CaseRuns + 'a> {
        Box::new(KillEach)
    }
}

impl CaseRuns for KillEach {
    fn run(
        &mut self,
        target: &Target,
        _: usize,
        _: &Sandbox,
        _: &HarnessFiles,
        req: &RunRequest<'_>,
    ) -> Result<RunResult, RunnerError> {
        runner::run(&target.subject, req)
    }
}
