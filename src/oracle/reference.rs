//! A layout's reference: two uninterrupted runs in fresh sandboxes, which
//! must agree bit for bit. The first takes the census (and, under the record
//! engine, records the crash states as it goes: see [`FirstRun`]); the
//! second is warm-started when the subject has a preload list. With
//! [`ReferenceRuns::side_by_side`] the two run at the same time.

use std::path::Path;
use std::time::Duration;

use super::checks::shape::{Announced, RefShape};
use super::checks::steps::{differing_fields, short};
use super::driver::{self, describe_exit, plain_paths};
use super::watch::Watch;
use super::REFERENCE_TIMEOUT;
use super::{checks, phases, prepare, request, Reference, ReferenceError, ResumeMode, Target};
use crate::inject::{Mode, SaveWindow};
use crate::layout::Layout;
use crate::observe::{read_state, DirSnapshot, HarnessFiles};
use crate::protocol::{Event, StateFile};
use crate::runner::{self, Exit, RunResult};
use crate::verdict::{FailureKind, Finding};

/// How a layout's first reference run is made when not by [`runner::run`]:
/// given the run's request, its harness files and its case directory, it
/// makes the run and returns what `runner::run` would. The record engine
/// records the crash states this way as the census is taken
/// (its module `record::early`).
pub type FirstRun<'f> = dyn FnMut(
        &runner::RunRequest<'_>,
        &HarnessFiles,
        &Path,
    ) -> Result<runner::RunResult, runner::RunnerError>
    + 'f;

/// How the two reference runs of a layout are made.
#[derive(Default)]
pub struct ReferenceRuns<'a, 'f> {
    /// The first run made by this function instead of [`runner::run`], in
    /// the case directory of this name under the scratch directory.
    pub first: Option<(&'a str, &'a mut FirstRun<'f>)>,
    /// Make the two runs at the same time (two CPUs); otherwise the second
    /// starts once the first went well.
    pub side_by_side: bool,
}

/// Runs the subject twice, uninterrupted, in a fresh sandbox of `layout`
/// under `scratch`; the first run also takes the census.
pub fn reference(
    target: &Target,
    layout: Layout,
    scratch: &Path,
) -> Result<Reference, ReferenceError> {
    reference_with(target, layout, scratch, ReferenceRuns::default())
}

/// What one reference run left.
struct OneRun {
    res: RunResult,
    state: StateFile,
    dir: DirSnapshot,
    events: Vec<Event>,
    saves: Vec<Announced>,
    window: Option<SaveWindow>,
    /// What it left in the sandbox's `TMPDIR` and `HOME`.
    left: Vec<String>,
}

/// [`reference()`], its runs made as `runs` says.
pub fn reference_with(
    target: &Target,
    layout: Layout,
    scratch: &Path,
    runs: ReferenceRuns<'_, '_>,
) -> Result<Reference, ReferenceError> {
    let ReferenceRuns {
        first,
        side_by_side,
    } = runs;
    let (a, b) = if side_by_side {
        std::thread::scope(|s| {
            let second = s.spawn(|| {
                let b = one_run(target, layout, scratch, 1, None);
                // Its warm-start server ends (or goes back) now, not after
                // the scope.
                crate::runner::warm::release();
                b
            });
            let a = one_run(target, layout, scratch, 0, first);
            let b = second
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (a, b)
        })
    } else {
        let a = one_run(target, layout, scratch, 0, first)?;
        (Ok(a), one_run(target, layout, scratch, 1, None))
    };
    let (a, b) = (a?, b?);
    let OneRun {
        res: mut ra,
        state: sa,
        dir: da,
        events: ea,
        saves,
        window,
        left,
    } = a;
    let OneRun {
        res: rb,
        state: sb,
        dir: db,
        ..
    } = b;
    if sa.digest != sb.digest {
        let parts = differing_fields(&sa.fields, &sb.fields);
        let error = if target.subject.preload.is_empty() {
            |layout, detail| ReferenceError::Nondeterministic { layout, detail }
        } else {
            |layout, detail| ReferenceError::WarmDiffers { layout, detail }
        };
        return Err(error(
            layout,
            format!(
                "digest {} vs {}{}",
                short(&sa.digest),
                short(&sb.digest),
                parts
            ),
        ));
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
    let mut shape = RefShape::learn(&da, &db, &saves);
    shape.patterns.learn_made(&saves, &ra.census);
    shape.patterns.learn_links(&ra.census);
    if target.mode == Mode::Time {
        ra.census.clear();
    }
    // A traced census has no phases of its own: read them off the saves.
    if target.mode == Mode::Syscall {
        phases::name_phases(&mut ra.census, &saves);
    }
    let timeout = target
        .timeout
        .unwrap_or_else(|| (duration * 10).max(Duration::from_secs(10)));
    if let Some(e) = resume_never_made(target, layout, &da, &saves, &ra.census) {
        return Err(e);
    }
    let (findings, mut notes) = reference_verdict(target, &da, &shape, &saves);
    notes.extend(super::watch::usual_leftovers(&left));
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
        shape,
        events: !saves.is_empty(),
        saved: saves
            .iter()
            .map(|a| match &a.at {
                checks::shape::CkptPath::InDir(p) | checks::shape::CkptPath::Elsewhere(p) => {
                    p.clone()
                }
            })
            .collect(),
        saves,
        window,
        notes,
        usual_leftovers: left,
        census: ra.census,
        duration,
        timeout,
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

/// A resume mode that names one file (`path`: `last.ckpt`; a file name)
/// that the uninterrupted run never made, not even for a moment (its final
/// tree, its census and its announced saves do not name it), while it
/// announced checkpoints in the checkpoint directory under other names: a
/// loop that saves `last.pt`, a `Trainer` that writes `checkpoint-N/`.
/// Without announced saves nothing says the name is wrong.
fn resume_never_made(
    target: &Target,
    layout: Layout,
    dir: &DirSnapshot,
    saves: &[Announced],
    census: &[crate::census::CensusEntry],
) -> Option<ReferenceError> {
    // `best` is a keyword the subject resolves itself.
    let name = match &target.resume {
        ResumeMode::Best => return None,
        mode => mode.file()?.to_string(),
    };
    let announced: Vec<&str> = saves
        .iter()
        .filter_map(|a| match &a.at {
            checks::shape::CkptPath::InDir(p) => Some(p.as_str()),
            checks::shape::CkptPath::Elsewhere(_) => None,
        })
        .collect();
    let names = |p: &str| p == name || p.ends_with(&format!("/{name}"));
    let made = dir.get(&name).is_some()
        || announced.iter().any(|p| names(p))
        || census.iter().any(|e| e.paths.iter().any(|p| names(p)));
    if made || announced.is_empty() {
        return None;
    }
    let newest = saves.iter().max_by_key(|a| a.step)?;
    let shown = newest.show(dir);
    // The name the subject saves under every time, when it has one.
    let same = announced.iter().all(|p| *p == announced[0]) && !shown.ends_with('/');
    let advice = if same {
        format!(
            "--resume-arg {} (that file in the checkpoint directory), newest (the newest complete checkpoint announced) or last (the subject's own keyword)",
            announced[0]
        )
    } else {
        "--resume-arg newest (the newest complete checkpoint announced) or last (the subject's own keyword)".to_string()
    };
    Some(ReferenceError::ResumeNeverMade {
        layout,
        mode: target.resume.clone(),
        arg: name,
        announced: match announced.len() {
            1 => shown,
            _ if same => format!("every save as {shown}"),
            n => format!("{n} checkpoints, the newest {shown}"),
        },
        advice,
    })
}

/// What the uninterrupted run shows on its own: `no-checkpoint` when it
/// announced no save and left nothing at all in its checkpoint tree; notes
/// on what cannot be checked (no events, no checkpoint of a known shape,
/// saves announced outside the checkpoint directory).
fn reference_verdict(
    target: &Target,
    dir: &DirSnapshot,
    shape: &RefShape,
    saves: &[Announced],
) -> (Vec<Finding>, Vec<String>) {
    let mut findings = Vec::new();
    let mut notes = Vec::new();
    let known = checks::shape::Shape::of(dir, &shape.patterns);
    let recognised =
        !known.files.is_empty() || !known.dirs.is_empty() || !known.pointers.is_empty();
    if saves.is_empty() && dir.entries.is_empty() {
        findings.push(Finding {
            kind: FailureKind::NoCheckpoint,
            run: 0,
            detail: format!(
                "an uninterrupted run of {} steps wrote no checkpoint: nothing survives a crash",
                target.max_steps
            ),
        });
        return (findings, notes);
    }
    if saves.is_empty() {
        let mut n = "the subject announces no saves (no `saved` lines in CRASHPOINT_EVENTS): no-checkpoint and progress-lost are not checked, and a checkpoint directory is judged complete only against the reference's".to_string();
        if target.resume == ResumeMode::Newest {
            n += "; resume mode `newest` has no announced checkpoint to name, so every run after a crash starts fresh and resuming is not tested";
        }
        notes.push(n);
    }
    if !recognised && !saves.is_empty() && dir.entries.is_empty() {
        notes.push("the uninterrupted run removes every checkpoint it announced before it ends (its checkpoint directory is empty or gone at the end): any checkpoint a case leaves at its end is one too many (dir-mismatch)".into());
    } else if !recognised {
        notes.push("the final checkpoint tree holds no checkpoint of a known shape (*.ckpt, checkpoint-<N>/, an announced file or directory, latest): dir-mismatch has nothing to compare".into());
    }
    let elsewhere: Vec<&str> = saves
        .iter()
        .filter_map(|a| match &a.at {
            checks::shape::CkptPath::Elsewhere(p) => Some(p.as_str()),
            _ => None,
        })
        .collect();
    if let Some(p) = elsewhere.first() {
        notes.push(format!(
            "{} saved event(s) name paths outside CRASHPOINT_CKPT_DIR (such as {p}): whether they survive is not checked",
            elsewhere.len()
        ));
    }
    (findings, notes)
}

/// Reference run `i` (0: the census run, made by `first` when given).
fn one_run(
    target: &Target,
    layout: Layout,
    scratch: &Path,
    i: usize,
    first: Option<(&str, &mut FirstRun<'_>)>,
) -> Result<OneRun, ReferenceError> {
    let limit = target.timeout.unwrap_or(REFERENCE_TIMEOUT);
    let case_dir = match &first {
        Some((dir, _)) if i == 0 => scratch.join(dir),
        _ => scratch.join(format!("reference-{}-{i}", layout.name())),
    };
    let (sandbox, files) = prepare(layout, &case_dir)?;
    let place = sandbox.place();
    let mut req = request(target, &sandbox, &place, &files, None, limit);
    // With warm starts, the second run is one (untraced): it must agree
    // with the first, cold one.
    req.traced = target.traces_repeat();
    if i == 0 {
        req.op_log = target.subject.sim.then_some(files.op_log.as_path());
        req.traced |= target.mode == Mode::Syscall;
    }
    let window_watch = (i == 0 && target.mode == Mode::Time)
        .then(|| crate::inject::window::Watch::start(sandbox.root()))
        .flatten();
    let watch = Watch::before(&case_dir, &sandbox, req.traced);
    let res = match first {
        Some((_, first)) if i == 0 => first(&req, &files, &case_dir),
        _ => runner::run(&target.subject, &req),
    };
    let window = window_watch.and_then(|w| w.finish(&sandbox.ckpt_dir()));
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
        let how = if state.step > target.max_steps {
            ", past"
        } else {
            " before"
        };
        return Err(unusable(format!(
            "exited 0 at step {}{how} CRASHPOINT_MAX_STEPS={}",
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
    let saves = driver::announced(&events, &place.cwd, &sandbox.ckpt_dir(), 0);
    let left = super::watch::left(&sandbox);
    let _ = std::fs::remove_dir_all(&case_dir);
    Ok(OneRun {
        res,
        state,
        dir,
        events,
        saves,
        window,
        left,
    })
}
