//! The oracle: runs the reference (two uninterrupted runs that must agree),
//! then each case (kill at the crash plan's points, resume until a run exits
//! 0), and judges what it sees: invariants after every crash, the final digest
//! against the reference bit for bit, the final directory against the
//! reference's.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::inject::{CensusEntry, CrashPlan, CrashPoint, Mode};
use crate::layout::{Layout, Sandbox};
use crate::observe::{read_state, DirSnapshot, EntryKind, HarnessFiles, Resolution};
use crate::protocol::{Event, StateFile};
use crate::runner::{self, Exit, RunRequest, RunResult, RunnerError, Subject};

mod probe;
mod runs;
mod watch;
pub use probe::run_probe;
pub use runs::{CaseRuns, KillEach, Runs};
use watch::Watch;

use crate::verdict::{FailureKind, Finding};

/// What the subject is asked to resume from after a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeMode {
    /// `<CRASHPOINT_CKPT_DIR>/last.ckpt` (the default).
    Path,
    /// The keyword `last`.
    Last,
    /// The keyword `best`.
    Best,
    /// A concrete file name inside the checkpoint directory.
    File(String),
}

impl ResumeMode {
    /// Parses `path`, `last`, `best` or a file name.
    pub fn parse(s: &str) -> ResumeMode {
        match s {
            "path" => ResumeMode::Path,
            "last" => ResumeMode::Last,
            "best" => ResumeMode::Best,
            f => ResumeMode::File(f.to_string()),
        }
    }

    /// The value of `CRASHPOINT_RESUME` in `sandbox`.
    pub fn arg(&self, sandbox: &Sandbox) -> String {
        match self {
            ResumeMode::Path => sandbox.last_path_arg(),
            ResumeMode::Last => "last".into(),
            ResumeMode::Best => "best".into(),
            ResumeMode::File(f) => {
                format!("{}/{f}", sandbox.place().ckpt_dir.trim_end_matches('/'))
            }
        }
    }

    /// Does the directory hold what this mode resumes from (as a name, even a dangling link)?
    fn present(&self, snap: &DirSnapshot) -> bool {
        match self {
            ResumeMode::Path => snap.get("last.ckpt").is_some(),
            ResumeMode::Last => snap
                .entries
                .iter()
                .any(|e| e.name.starts_with("last") && e.name.ends_with(".ckpt")),
            ResumeMode::Best => snap.get("best.ckpt").is_some(),
            ResumeMode::File(f) => snap.get(f).is_some(),
        }
    }

    /// Does the directory hold something this mode can load (a file, or a
    /// link that resolves)?
    fn loadable(&self, snap: &DirSnapshot) -> bool {
        match self {
            ResumeMode::Path => snap.loadable("last.ckpt"),
            ResumeMode::Last => snap.entries.iter().any(|e| {
                e.name.starts_with("last") && e.name.ends_with(".ckpt") && snap.loadable(&e.name)
            }),
            ResumeMode::Best => snap.loadable("best.ckpt"),
            ResumeMode::File(f) => snap.loadable(f),
        }
    }
}

impl fmt::Display for ResumeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResumeMode::Path => f.write_str("path"),
            ResumeMode::Last => f.write_str("last"),
            ResumeMode::Best => f.write_str("best"),
            ResumeMode::File(n) => f.write_str(n),
        }
    }
}

/// What is being certified, and how.
#[derive(Debug, Clone)]
pub struct Target {
    /// The program.
    pub subject: Subject,
    /// How crashes are placed.
    pub mode: Mode,
    /// `CRASHPOINT_MAX_STEPS`.
    pub max_steps: u64,
    /// `CRASHPOINT_SEED`.
    pub seed: u64,
    /// What resume runs are given.
    pub resume: ResumeMode,
    /// Per-run time limit; `None`: 10 times the slowest reference run, at least 10 s.
    pub timeout: Option<Duration>,
    /// Which runs go through the system-call tracer.
    pub tracing: Tracing,
}

/// Which runs go through the system-call tracer, which sees every write
/// outside the sandbox and every removal inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracing {
    /// Only the runs whose census or crash points need it (`syscall` mode's
    /// first reference run and killed runs).
    Needed,
    /// Every run: both references, killed runs, resume runs, probes.
    Every,
    /// Every run but the resume runs (the runs of a case after its first,
    /// and the probes' runs given a bad resume path): `--no-trace-resume`.
    NotResumes,
}

impl Tracing {
    /// Is a run traced? `resume`: a run after a crash or given a resume path.
    fn traced(self, resume: bool) -> bool {
        match self {
            Tracing::Needed => false,
            Tracing::Every => true,
            Tracing::NotResumes => !resume,
        }
    }
}

/// The time limit for reference runs when none is given.
pub const REFERENCE_TIMEOUT: Duration = Duration::from_secs(600);

/// An uninterrupted run of one layout: what every case is compared with.
#[derive(Debug, Clone)]
pub struct Reference {
    /// The layout.
    pub layout: Layout,
    /// The final state.
    pub state: StateFile,
    /// The final checkpoint directory.
    pub dir: DirSnapshot,
    /// The census of the first reference run.
    pub census: Vec<CensusEntry>,
    /// The slower of the two runs.
    pub duration: Duration,
    /// The time limit cases use.
    pub timeout: Duration,
    /// Did the subject announce saves through the events file?
    pub events: bool,
    /// Failures visible without any crash (a trainer that never saves).
    pub findings: Vec<Finding>,
    /// Files the subject wrote outside its sandbox.
    pub outside: Vec<String>,
    /// Per-part digests by step, from `state` events (when the subject writes them).
    pub trajectory: BTreeMap<u64, BTreeMap<String, String>>,
}

/// Why a subject cannot be certified at all (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// Two reference runs disagree.
    #[error("nondeterministic: two uninterrupted runs in layout {layout} disagree: {detail}")]
    Nondeterministic {
        /// The layout.
        layout: Layout,
        /// What differed.
        detail: String,
    },
    /// The uninterrupted run itself failed.
    #[error("the uninterrupted reference run in layout {layout} failed: {detail}")]
    Unusable {
        /// The layout.
        layout: Layout,
        /// How.
        detail: String,
    },
    /// The run could not be started.
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// The sandbox could not be built.
    #[error("cannot build the sandbox: {0}")]
    Io(#[from] std::io::Error),
    /// Someone outside disturbed the reference's sandbox: a harness error,
    /// which says nothing about the subject.
    #[error("harness error in the reference run of layout {layout}: {detail}; this says nothing about the subject")]
    Disturbed {
        /// The layout.
        layout: Layout,
        /// What went missing.
        detail: String,
    },
}

impl ReferenceError {
    /// Is this the `nondeterministic` verdict?
    pub fn is_nondeterministic(&self) -> bool {
        matches!(self, ReferenceError::Nondeterministic { .. })
    }
}

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseOutcome {
    /// The layout.
    pub layout: Layout,
    /// The crash plan.
    pub plan: CrashPlan,
    /// What went wrong (empty: the case passed).
    pub findings: Vec<Finding>,
    /// Things worth a look that are not failures (leftover temporary files).
    pub warnings: Vec<String>,
    /// Runs started.
    pub runs: usize,
    /// Crash points that were reached.
    pub crashes_hit: usize,
    /// Wall time of the case.
    pub duration: Duration,
    /// Set when the case's sandbox was disturbed from outside: the case says
    /// nothing about the subject (and has no findings).
    pub harness_error: Option<String>,
}

impl CaseOutcome {
    /// Did the case pass (no finding, and no harness error)?
    pub fn passed(&self) -> bool {
        self.findings.is_empty() && self.harness_error.is_none()
    }
}

/// Creates `sandbox/` and `harness/` in `case_dir` and builds the layout.
pub(crate) fn prepare(layout: Layout, case_dir: &Path) -> std::io::Result<(Sandbox, HarnessFiles)> {
    let sb = case_dir.join("sandbox");
    let h = case_dir.join("harness");
    std::fs::create_dir_all(&sb)?;
    std::fs::create_dir_all(&h)?;
    Ok((Sandbox::create(layout, &sb)?, HarnessFiles::in_dir(&h)))
}

pub(crate) fn request<'a>(
    target: &Target,
    sandbox: &'a Sandbox,
    place: &'a crate::layout::Place,
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

fn describe_exit(res: &RunResult) -> String {
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

/// Runs the subject twice, uninterrupted, in a fresh sandbox of `layout`
/// under `scratch`; the first run also takes the census.
pub fn reference(
    target: &Target,
    layout: Layout,
    scratch: &Path,
) -> Result<Reference, ReferenceError> {
    let limit = target.timeout.unwrap_or(REFERENCE_TIMEOUT);
    let mut results = Vec::new();
    for i in 0..2 {
        let case_dir = scratch.join(format!("reference-{}-{i}", layout.name()));
        let (sandbox, files) = prepare(layout, &case_dir)?;
        let place = sandbox.place();
        let mut req = request(target, &sandbox, &place, &files, None, limit);
        req.traced = target.tracing.traced(false);
        if i == 0 {
            req.op_log = target.subject.sim.then_some(files.op_log.as_path());
            req.traced |= target.mode == Mode::Syscall;
        }
        let watch = Watch::before(&case_dir, &sandbox, req.traced);
        let res = runner::run(&target.subject, &req);
        let disturbed = |detail: String| ReferenceError::Disturbed {
            layout,
            detail: plain_paths(&detail, &sandbox, &case_dir),
        };
        if let Some(why) = watch.disturbed(res.as_ref().ok()) {
            return Err(disturbed(why));
        }
        let res = res?;
        let unusable = |detail: String| ReferenceError::Unusable { layout, detail };
        if res.exit != Exit::Code(0) {
            return Err(unusable(describe_exit(&res)));
        }
        let state = read_state(&files.state).map_err(|e| unusable(e.to_string()))?;
        if state.step != target.max_steps {
            return Err(unusable(format!(
                "exited 0 at step {} before CRASHPOINT_MAX_STEPS={}",
                state.step, target.max_steps
            )));
        }
        if i == 0 && target.mode == Mode::Syscall && res.census.is_empty() {
            return Err(unusable(
                "made no file-mutating system call in the sandbox (is CRASHPOINT_CKPT_DIR used?)"
                    .into(),
            ));
        }
        let dir = DirSnapshot::take(&sandbox.ckpt_dir(), sandbox.root());
        let events = crate::observe::read_events(&files.events);
        results.push((res, state, dir, events));
        let _ = std::fs::remove_dir_all(&case_dir);
    }
    let (b, a) = (results.pop(), results.pop());
    let (Some((mut ra, sa, da, ea)), Some((rb, sb, _, _))) = (a, b) else {
        unreachable!("two reference runs were pushed")
    };
    if sa.digest != sb.digest {
        let parts = differing_fields(&sa.fields, &sb.fields);
        return Err(ReferenceError::Nondeterministic {
            layout,
            detail: format!(
                "digest {} vs {}{}",
                short(&sa.digest),
                short(&sb.digest),
                parts
            ),
        });
    }
    let duration = ra.duration.max(rb.duration);
    // Both runs' writes outside, once each; a time-mode census is not one.
    let mut outside: Vec<String> = Vec::new();
    for p in ra.outside.iter().chain(&rb.outside) {
        let p = p.display().to_string();
        if !outside.contains(&p) {
            outside.push(p);
        }
    }
    if target.mode == Mode::Time {
        ra.census.clear();
    }
    let timeout = target
        .timeout
        .unwrap_or_else(|| (duration * 10).max(Duration::from_secs(10)));
    let saved = ea.iter().any(|e| matches!(e, Event::Saved { .. }));
    let mut findings = Vec::new();
    if !saved && da.checkpoints().is_empty() {
        findings.push(Finding {
            kind: FailureKind::NoCheckpoint,
            run: 0,
            detail: format!(
                "an uninterrupted run of {} steps wrote no checkpoint: nothing survives a crash",
                target.max_steps
            ),
        });
    }
    // With no finding, the cases are all there is to judge: an empty op
    // census would certify a campaign that never crashed anything.
    if findings.is_empty() && target.mode == Mode::Op && ra.census.is_empty() {
        return Err(ReferenceError::Unusable {
            layout,
            detail: "wrote an empty operation census: there is no op crash point to try".into(),
        });
    }
    Ok(Reference {
        layout,
        state: sa,
        dir: da,
        census: ra.census,
        duration,
        timeout,
        events: saved,
        findings,
        outside,
        trajectory: ea
            .into_iter()
            .filter_map(|e| match e {
                Event::State { step, parts } => Some((step, parts)),
                _ => None,
            })
            .collect(),
    })
}

fn short(d: &str) -> &str {
    crate::protocol::short_digest(d)
}

fn differing_fields(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> String {
    let diff: Vec<&str> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, _)| k.as_str())
        .collect();
    if diff.is_empty() {
        String::new()
    } else {
        format!("; differing at the end: {}", diff.join(", "))
    }
}

/// Checks the invariants that must hold after every crash and at the end.
fn check_dir(snap: &DirSnapshot, run: usize, when: &str, out: &mut Vec<Finding>) {
    for e in &snap.entries {
        if let EntryKind::Link { target, resolves } = &e.kind {
            match resolves {
                Resolution::Dangling if e.name == "last.ckpt" => out.push(Finding {
                    kind: FailureKind::DanglingLast,
                    run,
                    detail: format!("{when}: last.ckpt -> {target} does not resolve"),
                }),
                Resolution::InSandbox(p) | Resolution::Outside(p) => out.push(Finding {
                    kind: FailureKind::EscapedDir,
                    run,
                    detail: format!(
                        "{when}: {} -> {target} resolves outside the checkpoint directory, to {p}",
                        e.name
                    ),
                }),
                _ => {}
            }
        }
    }
}

/// Where the case's `state` events first leave the reference's trajectory.
fn first_divergence(
    reference: &BTreeMap<u64, BTreeMap<String, String>>,
    events: &[Event],
) -> String {
    for e in events {
        let Event::State { step, parts } = e else {
            continue;
        };
        let Some(want) = reference.get(step) else {
            continue;
        };
        let diff: Vec<&str> = want
            .iter()
            .filter(|(k, v)| parts.get(*k).is_some_and(|p| p != *v))
            .map(|(k, _)| k.as_str())
            .collect();
        if !diff.is_empty() {
            return format!("; first divergence at step {step}: {}", diff.join(", "));
        }
    }
    String::new()
}

fn max_saved(events: &[Event]) -> Option<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Saved { step, .. } => Some(*step),
            _ => None,
        })
        .max()
}

/// Runs one case in a fresh sandbox under `case_dir` and judges it.
pub fn run_case(
    target: &Target,
    reference: &Reference,
    plan: &CrashPlan,
    case_dir: &Path,
) -> Result<CaseOutcome, RunnerError> {
    run_case_with(target, reference, plan, case_dir, &KillEach)
}

/// [`run_case`], with the runs carried out by `runs`.
pub fn run_case_with(
    target: &Target,
    reference: &Reference,
    plan: &CrashPlan,
    case_dir: &Path,
    runs: &dyn Runs,
) -> Result<CaseOutcome, RunnerError> {
    let mut runs = runs.case(plan, case_dir);
    let start = Instant::now();
    let layout = reference.layout;
    let (mut sandbox, files) = prepare(layout, case_dir).map_err(|e| RunnerError::Spawn {
        program: "sandbox".into(),
        source: e,
    })?;
    let mut findings: Vec<Finding> = Vec::new();
    let mut warnings = Vec::new();
    let mut next_crash = 0;
    let mut crashes_hit = 0;
    let mut run = 0;
    let mut harness_error = None;
    loop {
        run += 1;
        let before = crate::observe::read_events(&files.events);
        let saved_before = max_saved(&before);
        let snap = DirSnapshot::take(&sandbox.ckpt_dir(), sandbox.root());
        let resume = (run > 1 && (target.resume.present(&snap) || saved_before.is_some()))
            .then(|| target.resume.arg(&sandbox));
        let crash = plan.points.get(next_crash).copied();
        let _ = std::fs::remove_file(&files.state);
        let place = sandbox.place();
        let mut req = request(target, &sandbox, &place, &files, crash, reference.timeout);
        req.resume = resume.clone();
        req.traced = target.tracing.traced(run > 1);
        let watch = Watch::before(case_dir, &sandbox, req.traced);
        let res = runs.run(target, run, &sandbox, &files, &req);
        if let Some(why) = watch.disturbed(res.as_ref().ok()) {
            harness_error = Some(format!("run {run}: {why}"));
            break;
        }
        let res = res?;
        for p in &res.outside {
            let w = format!("wrote-outside: run {run} wrote {}", p.display());
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
        let events = crate::observe::read_events(&files.events);
        let started_from = events[before.len().min(events.len())..]
            .iter()
            .find_map(|e| match e {
                Event::Resumed { step } => Some(*step),
                _ => None,
            });
        let lost = |from: u64, findings: &mut Vec<Finding>| {
            if let Some(saved) = saved_before.filter(|s| from < *s) {
                findings.push(Finding {
                    kind: FailureKind::ProgressLost,
                    run,
                    detail: format!("run {run} resumed from step {from}, but the save of step {saved} had completed"),
                });
            }
        };
        if let Some(from) = started_from {
            lost(from, &mut findings);
        }
        match res.exit {
            Exit::Crashed => {
                crashes_hit += 1;
                next_crash += 1;
                let snap = DirSnapshot::take(&sandbox.ckpt_dir(), sandbox.root());
                let when = format!(
                    "after crash {crashes_hit} at {}",
                    crash.map(|c| c.to_string()).unwrap_or_default()
                );
                check_dir(&snap, run, &when, &mut findings);
                if saved_before.max(max_saved(&events)).is_some() && !target.resume.loadable(&snap)
                {
                    findings.push(Finding {
                        kind: FailureKind::NoCheckpoint,
                        run,
                        detail: format!(
                            "{when}: a save had completed, but nothing loadable to resume from ({}) is left",
                            target.resume
                        ),
                    });
                }
                if let Err(e) = sandbox.before_next_run() {
                    warnings.push(format!("cannot prepare the next run: {e}"));
                    break;
                }
                continue;
            }
            Exit::TimedOut => findings.push(Finding {
                kind: FailureKind::Hang,
                run,
                detail: format!(
                    "run {run} exceeded its time limit of {:.1}s",
                    reference.timeout.as_secs_f64()
                ),
            }),
            Exit::Code(0) => match read_state(&files.state) {
                Err(e) => findings.push(Finding {
                    kind: FailureKind::ResumeFailed,
                    run,
                    detail: format!("run {run} {e}"),
                }),
                Ok(state) => {
                    if started_from.is_none() && resume.is_some() {
                        lost(state.resumed_from_step.unwrap_or(0), &mut findings);
                    }
                    if state.step != target.max_steps {
                        findings.push(Finding {
                            kind: FailureKind::ResumeFailed,
                            run,
                            detail: format!(
                                "run {run} exited 0 at step {} before CRASHPOINT_MAX_STEPS={}",
                                state.step, target.max_steps
                            ),
                        });
                    } else if state.digest != reference.state.digest {
                        findings.push(Finding {
                            kind: FailureKind::DigestMismatch,
                            run,
                            detail: format!(
                                "final digest {} differs from the reference {}{}{}",
                                short(&state.digest),
                                short(&reference.state.digest),
                                first_divergence(&reference.trajectory, &events),
                                differing_fields(&reference.state.fields, &state.fields)
                            ),
                        });
                    }
                }
            },
            // A fresh start after a crash resumed nothing: its failure
            // is the restart's.
            _ => findings.push(Finding {
                kind: if resume.is_none() && run > 1 {
                    FailureKind::RestartFailed
                } else {
                    FailureKind::ResumeFailed
                },
                run,
                detail: format!(
                    "run {run} ({}) {}",
                    if resume.is_some() { "resume" } else { "fresh" },
                    describe_exit(&res)
                ),
            }),
        }
        break;
    }
    if harness_error.is_some() {
        // Nothing the subject did is judged in a disturbed sandbox.
        findings.clear();
    } else {
        let snap = DirSnapshot::take(&sandbox.ckpt_dir(), sandbox.root());
        check_dir(&snap, run, "at the end", &mut findings);
        compare_dirs(&reference.dir, &snap, run, &mut findings, &mut warnings);
        warnings.extend(watch::leftovers(&sandbox));
    }
    // Reports must not depend on where the workspace happened to be.
    for f in &mut findings {
        f.detail = plain_paths(&f.detail, &sandbox, case_dir);
    }
    for w in &mut warnings {
        *w = plain_paths(w, &sandbox, case_dir);
    }
    let harness_error = harness_error.map(|e| plain_paths(&e, &sandbox, case_dir));
    // One finding per kind: the first is the one that explains the rest.
    let mut seen = std::collections::HashSet::new();
    findings.retain(|f| seen.insert(f.kind));
    Ok(CaseOutcome {
        layout,
        plan: plan.clone(),
        findings,
        warnings,
        runs: run,
        crashes_hit,
        duration: start.elapsed(),
        harness_error,
    })
}

/// `text` with the sandbox's and the case directory's paths as
/// `<sandbox>` and `<case>`: reports must not depend on where the
/// workspace happened to be.
fn plain_paths(text: &str, sandbox: &Sandbox, case_dir: &Path) -> String {
    let root = sandbox.root().display().to_string();
    let harness = case_dir.display().to_string();
    text.replace(&root, "<sandbox>").replace(&harness, "<case>")
}

fn compare_dirs(
    reference: &DirSnapshot,
    got: &DirSnapshot,
    run: usize,
    findings: &mut Vec<Finding>,
    warnings: &mut Vec<String>,
) {
    let show =
        |v: Vec<&crate::observe::Entry>| v.iter().map(|e| e.comparable()).collect::<Vec<_>>();
    let (want, have) = (show(reference.checkpoints()), show(got.checkpoints()));
    if want != have {
        let missing: Vec<_> = want.iter().filter(|e| !have.contains(e)).cloned().collect();
        let extra: Vec<_> = have.iter().filter(|e| !want.contains(e)).cloned().collect();
        findings.push(Finding {
            kind: FailureKind::DirMismatch,
            run,
            detail: format!(
                "final checkpoint files differ from the reference: missing [{}], extra [{}]",
                missing.join(", "),
                extra.join(", ")
            ),
        });
    }
    let ref_others = show(reference.others());
    for e in show(got.others()) {
        if !ref_others.contains(&e) {
            warnings.push(format!("leftover file in the checkpoint directory: {e}"));
        }
    }
}
