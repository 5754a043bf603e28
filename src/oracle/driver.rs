//! The run driver: spawns the subject in a case's sandbox, lets it be killed
//! at the plan's crash points, and starts the next run (a resume run when
//! there is something to resume from) until a run is not killed. It records
//! what it sees as [`Observations`] and judges nothing.
//!
//! The step "start the next run from this sandbox" is a seam of its own:
//! [`Driver::crashed_elsewhere`] takes a sandbox that already holds a crash
//! state (materialised from a recording instead of produced by a killed
//! run), and [`Driver::drive`] goes on from there.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::inject::CrashPoint;
use crate::layout::{Layout, Place, Sandbox};
use crate::observe::{read_events_after, read_state, DirSnapshot, HarnessFiles};
use crate::protocol::Event;
use crate::runner::{Exit, RunRequest, RunResult, RunnerError};
use crate::store::StateId;

use super::checks::loadable::newest_surviving;
use super::checks::shape::{Announced, CkptPath};
use super::obs::{Observations, RunObs};
use super::runs::{CaseRuns, KillEach};
use super::watch::Watch;
use super::{Reference, ResumeMode, Target};

/// Creates `sandbox/` and `harness/` in `case_dir` and builds the layout.
pub fn prepare(layout: Layout, case_dir: &Path) -> std::io::Result<(Sandbox, HarnessFiles)> {
    let sb = case_dir.join("sandbox");
    let h = case_dir.join("harness");
    std::fs::create_dir_all(&sb)?;
    std::fs::create_dir_all(&h)?;
    Ok((Sandbox::create(layout, &sb)?, HarnessFiles::in_dir(&h)))
}

/// The request of one run of `target` in `sandbox`.
pub fn request<'a>(
    target: &Target,
    sandbox: &'a Sandbox,
    place: &'a Place,
    files: &'a HarnessFiles,
    crash: Option<CrashPoint>,
    timeout: Duration,
) -> RunRequest<'a> {
    RunRequest {
        place,
        sandbox: sandbox.root(),
        max_steps: target.max_steps,
        seed: target.seed,
        resume: None,
        state_out: &files.state,
        events: &files.events,
        crash,
        op_log: None,
        traced: false,
        power: false,
        timeout,
    }
}

fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(n)..].join(" | ");
    // The last lines may be very long (a subject that prints megabytes):
    // a message shows their last 1000 characters.
    match tail.char_indices().rev().nth(999) {
        Some((i, _)) => format!("...{}", &tail[i..]),
        None => tail,
    }
}

/// How a run ended, in words, with the last lines of its stderr.
pub fn describe_exit(res: &RunResult) -> String {
    let how = match res.exit {
        Exit::Code(c) => format!("exited {c}"),
        Exit::Signal(s) => format!("died of signal {s}"),
        Exit::Crashed => "was killed at its crash point".into(),
        Exit::TimedOut => format!("timed out after {:.1}s", res.duration.as_secs_f64()),
    };
    let tail = tail_lines(&res.stderr_tail, 3);
    if tail.is_empty() {
        how
    } else {
        format!("{how}; stderr: {tail}")
    }
}

/// `text` with the sandbox's and the case directory's paths as
/// `<sandbox>` and `<case>`: reports must not depend on where the
/// workspace happened to be.
pub fn plain_paths(text: &str, sandbox: &Sandbox, case_dir: &Path) -> String {
    plain_paths_at(text, sandbox.root(), case_dir)
}

/// [`plain_paths`] for a sandbox whose root was `root`.
pub fn plain_paths_at(text: &str, root: &Path, case_dir: &Path) -> String {
    let root = root.display().to_string();
    let harness = case_dir.display().to_string();
    text.replace(&root, "<sandbox>").replace(&harness, "<case>")
}

/// `p` with `.` removed and `..` applied, without touching the disk.
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Where the checkpoint a `saved` event names is: `path` as the subject
/// wrote it (relative to the run's working directory `cwd`, or absolute),
/// placed relative to the checkpoint directory `dir` (as the run saw it),
/// lexically first, then through links.
pub fn place_saved(path: &str, cwd: &Path, dir: &Path) -> CkptPath {
    let p = Path::new(path);
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    };
    let inside = |a: &Path, d: &Path| {
        a.strip_prefix(d)
            .ok()
            .map(|r| r.to_string_lossy().into_owned())
            .filter(|r| !r.is_empty())
    };
    if let Some(rel) = inside(&normalise(&abs), &normalise(dir)) {
        return CkptPath::InDir(rel);
    }
    if let Ok(real_dir) = dir.canonicalize() {
        let real = abs.canonicalize().ok().or_else(|| {
            let parent = abs.parent()?.canonicalize().ok()?;
            Some(parent.join(abs.file_name()?))
        });
        if let Some(rel) = real.and_then(|r| inside(&r, &real_dir)) {
            return CkptPath::InDir(rel);
        }
    }
    CkptPath::Elsewhere(path.to_string())
}

/// The `saved` events of `events`, placed.
pub fn announced(events: &[Event], cwd: &Path, dir: &Path, run: usize) -> Vec<Announced> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Saved { step, path } => Some(Announced {
                step: *step,
                at: place_saved(path, cwd, dir),
                run,
            }),
            _ => None,
        })
        .collect()
}

/// Runs one case's subject runs in one sandbox.
pub struct Driver<'a> {
    target: &'a Target,
    reference: &'a Reference,
    sandbox: Sandbox,
    files: HarnessFiles,
    case_dir: PathBuf,
    runs: Box<dyn CaseRuns + 'a>,
    events_seen: usize,
    obs: Observations,
    /// Record the operations of the first killed run for the power-loss
    /// model ([`Driver::record_power`]).
    power: bool,
    /// What that run recorded.
    power_ops: Vec<crate::trace::TracedOp>,
}

impl std::fmt::Debug for Driver<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("sandbox", &self.sandbox)
            .field("obs", &self.obs)
            .finish_non_exhaustive()
    }
}

impl<'a> Driver<'a> {
    /// A driver for `sandbox`, whose harness files are `files` (in
    /// `<case>/harness/`, next to `<case>/sandbox/`).
    pub fn new(
        target: &'a Target,
        reference: &'a Reference,
        sandbox: Sandbox,
        files: HarnessFiles,
    ) -> Driver<'a> {
        let case_dir = files
            .state
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Driver {
            target,
            reference,
            sandbox,
            files,
            case_dir,
            runs: Box::new(KillEach),
            events_seen: 0,
            obs: Observations {
                timeout: reference.timeout,
                ..Observations::default()
            },
            power: false,
            power_ops: Vec::new(),
        }
    }

    /// The same driver, recording the operations of the first run that is
    /// given a crash point, for the power-loss model (see
    /// [`Driver::take_power_ops`]): that run is traced.
    pub fn record_power(mut self) -> Driver<'a> {
        self.power = true;
        self
    }

    /// The operations the first killed run made inside the sandbox, as
    /// [`Driver::record_power`] asked (empty otherwise).
    pub fn take_power_ops(&mut self) -> Vec<crate::trace::TracedOp> {
        std::mem::take(&mut self.power_ops)
    }

    /// Something other than the run replaced the sandbox's tree after the
    /// last crash (a power-loss state, named `id` as in
    /// [`Driver::state_installed`]): what the crash left is the tree now.
    pub fn crash_state_replaced(&mut self, id: StateId) {
        let snap = self.snapshot();
        if let Some(last) = self.obs.runs.last_mut() {
            if last.exit == Exit::Crashed {
                last.after = Some(snap);
            }
        }
        self.state_installed(id);
    }

    /// The sandbox and the events file hold a state put there by something
    /// other than a run, named `id` (equal ids: equal trees and events):
    /// the runs may start the next run from what they remember of it (see
    /// [`CaseRuns::state_installed`]).
    pub fn state_installed(&mut self, id: StateId) {
        self.runs.state_installed(id);
    }

    /// The same driver with its runs carried out by `runs` (default:
    /// [`KillEach`], the subject started for every run).
    pub fn with_runs(mut self, runs: Box<dyn CaseRuns + 'a>) -> Driver<'a> {
        self.runs = runs;
        self
    }

    /// The reference the case is judged against.
    pub fn reference(&self) -> &'a Reference {
        self.reference
    }

    /// The sandbox.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// The harness files (state, events) of the case.
    pub fn files(&self) -> &HarnessFiles {
        &self.files
    }

    /// What has been seen so far.
    pub fn observations(&self) -> &Observations {
        &self.obs
    }

    /// A snapshot of the checkpoint tree now.
    pub fn snapshot(&self) -> DirSnapshot {
        DirSnapshot::take(&self.sandbox.ckpt_dir(), self.sandbox.root())
    }

    /// `CRASHPOINT_RESUME` for the next run: none before the first crash;
    /// after one, the resume argument when the tree holds what the mode
    /// resumes from or a save was announced (`newest`: when an announced
    /// checkpoint survives complete, that one).
    pub fn next_resume(&self) -> Option<String> {
        if self.obs.crashes_hit() == 0 {
            return None;
        }
        let snap = self.snapshot();
        let saves = self.obs.saves();
        let shape = &self.reference.shape;
        match &self.target.resume {
            ResumeMode::Newest => {
                let newest = newest_surviving(shape, &snap, &saves)?;
                let at = match &newest.at {
                    CkptPath::InDir(p) | CkptPath::Elsewhere(p) => p.as_str(),
                };
                Some(self.target.resume.arg(&self.sandbox, Some(at)))
            }
            m => (m.present(&snap, &shape.patterns) || !saves.is_empty())
                .then(|| m.arg(&self.sandbox, None)),
        }
    }

    /// One run, killed at `crash` if it gets there, resuming as
    /// [`Driver::next_resume`] says. `None`: the sandbox was disturbed from
    /// outside during the run (see [`Observations::harness_error`]).
    pub fn run(&mut self, crash: Option<CrashPoint>) -> Result<Option<&RunObs>, RunnerError> {
        let resume = self.next_resume();
        self.run_given(crash, resume)
    }

    /// One run given exactly `resume` as `CRASHPOINT_RESUME`.
    pub fn run_given(
        &mut self,
        crash: Option<CrashPoint>,
        resume: Option<String>,
    ) -> Result<Option<&RunObs>, RunnerError> {
        let _ = std::fs::remove_file(&self.files.state);
        let place = self.sandbox.place();
        let mut req = request(
            self.target,
            &self.sandbox,
            &place,
            &self.files,
            crash,
            self.reference.timeout,
        );
        req.resume = resume.clone();
        let after_crash = self.obs.crashes_hit() > 0 || resume.is_some();
        // A fresh run to the end repeats the census run, which was traced.
        req.traced = if crash.is_none() && !after_crash {
            self.target.traces_repeat()
        } else {
            self.target.tracing.traced(after_crash)
        };
        req.power = self.power && !after_crash && crash.is_some();
        let watch = Watch::before(&self.case_dir, &self.sandbox, req.traced || req.power);
        let run = self.obs.runs.len() + 1;
        let res = self
            .runs
            .run(self.target, run, &self.sandbox, &self.files, &req);
        if let Some(why) = watch.disturbed(res.as_ref().ok()) {
            self.obs.harness_error = Some(format!("run {run}: {why}"));
            return Ok(None);
        }
        let mut res = res?;
        if req.power {
            self.power_ops = std::mem::take(&mut res.power);
        }
        let state = (res.exit == Exit::Code(0)).then(|| read_state(&self.files.state));
        let mut obs = self.observe(crash, res.exit);
        obs.resume = resume;
        obs.how = describe_exit(&res);
        obs.state = state;
        obs.outside = res.outside;
        self.obs.runs.push(obs);
        Ok(self.obs.runs.last())
    }

    /// What the sandbox and the events file hold after a run that ended
    /// with `exit`.
    fn observe(&mut self, crash: Option<CrashPoint>, exit: Exit) -> RunObs {
        let (events, total) = read_events_after(&self.files.events, self.events_seen);
        self.events_seen = total;
        let run = self.obs.runs.len() + 1;
        let place = self.sandbox.place();
        let saves = announced(&events, &place.cwd, &self.sandbox.ckpt_dir(), run);
        RunObs {
            run,
            resume: None,
            crash,
            exit,
            how: String::new(),
            events,
            saves,
            after: (exit == Exit::Crashed).then(|| self.snapshot()),
            state: None,
            outside: Vec::new(),
        }
    }

    /// The sandbox (and the events file) already hold the state a crash at
    /// `crash` left, made by something other than a killed run of this
    /// driver: record it as a crashed run and prepare the next run.
    pub fn crashed_elsewhere(&mut self, crash: CrashPoint) -> bool {
        let mut obs = self.observe(Some(crash), Exit::Crashed);
        obs.how = "was killed at its crash point (state materialised)".into();
        self.obs.runs.push(obs);
        self.prepare_next()
    }

    /// Between a killed run and the next (`relocated` moves the working
    /// directory, `other-cwd` changes it); false when that failed.
    pub fn prepare_next(&mut self) -> bool {
        match self.sandbox.before_next_run() {
            Ok(()) => true,
            Err(e) => {
                self.obs
                    .notes
                    .push(format!("cannot prepare the next run: {e}"));
                false
            }
        }
    }

    /// Runs until a run is not killed: the first run that is started is
    /// killed at `points[0]`, the next at `points[1]`, and so on.
    pub fn drive(&mut self, points: &[CrashPoint]) -> Result<(), RunnerError> {
        let mut next = 0;
        loop {
            let crash = points.get(next).copied();
            match self.run(crash)? {
                Some(o) if o.exit == Exit::Crashed => {}
                _ => return Ok(()),
            }
            next += 1;
            if !self.prepare_next() {
                return Ok(());
            }
        }
    }

    /// Everything seen, with the tree after the last run.
    pub fn finish(mut self) -> (Observations, Sandbox) {
        self.obs.end = self.snapshot();
        (self.obs, self.sandbox)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_paths_are_placed_relative_to_the_checkpoint_directory() {
        let cwd = Path::new("/s/work");
        let dir = Path::new("/s/work/runs/exp 1");
        assert_eq!(
            place_saved("runs/exp 1/checkpoint-4", cwd, dir),
            CkptPath::InDir("checkpoint-4".into())
        );
        assert_eq!(
            place_saved("./runs/x/../exp 1/checkpoints/a.ckpt", cwd, dir),
            CkptPath::InDir("checkpoints/a.ckpt".into())
        );
        assert_eq!(
            place_saved("/s/work/runs/exp 1/a.ckpt", cwd, dir),
            CkptPath::InDir("a.ckpt".into())
        );
        assert_eq!(
            place_saved("elsewhere/a.ckpt", cwd, dir),
            CkptPath::Elsewhere("elsewhere/a.ckpt".into())
        );
    }
}
