//! Misuse probes: hand the subject a resume path it must refuse (the
//! checkpoint directory itself, a missing file, a truncated checkpoint) and
//! flag `bad-resume-accepted` when it exits 0 instead. Each probe runs in a
//! fresh sandbox through the same runner as every case, so it works for any
//! subject: one uninterrupted run leaves the subject's own checkpoints in
//! the directory, then one run gets the bad resume path.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::inject::Probe;
use crate::layout::Sandbox;
use crate::observe::read_state;
use crate::protocol::Event;
use crate::runner::{self, Exit, RunnerError};

use super::{
    describe_exit, plain_paths, prepare, request, CaseOutcome, FailureKind, Finding, Reference,
    ResumeMode, Target, Watch,
};

/// Runs `probe` in a fresh sandbox of the reference's layout under
/// `case_dir` and judges it: exit 0 is `bad-resume-accepted`, a run over
/// its time limit is `hang`, any refusal passes. A probe that cannot be set
/// up (the uninterrupted run fails, nothing to corrupt) passes with a warning.
pub fn run_probe(
    target: &Target,
    reference: &Reference,
    probe: Probe,
    case_dir: &Path,
) -> Result<CaseOutcome, RunnerError> {
    let start = Instant::now();
    let (sandbox, files) = prepare(reference.layout, case_dir).map_err(|e| RunnerError::Spawn {
        program: "sandbox".into(),
        source: e,
    })?;
    let mut outcome = CaseOutcome {
        layout: reference.layout,
        plan: probe.plan(),
        findings: Vec::new(),
        warnings: Vec::new(),
        runs: 0,
        crashes_hit: 0,
        duration: Default::default(),
        harness_error: None,
    };
    let place = sandbox.place();
    for run in 1..=2 {
        let arg = match run {
            1 => None,
            _ => match bad_resume_arg(probe, target, &sandbox) {
                Ok(arg) => Some(arg),
                Err(why) => {
                    let name = probe.name();
                    outcome
                        .warnings
                        .push(format!("probe {name} skipped: {why}"));
                    break;
                }
            },
        };
        let _ = std::fs::remove_file(&files.state);
        let events_before = crate::observe::read_events(&files.events).len();
        let mut req = request(target, &sandbox, &place, &files, None, reference.timeout);
        req.resume = arg.clone();
        req.traced = target.tracing.traced(run > 1);
        let watch = Watch::before(case_dir, &sandbox, req.traced);
        let res = runner::run(&target.subject, &req);
        if let Some(why) = watch.disturbed(res.as_ref().ok()) {
            outcome.harness_error = Some(format!("probe {}: run {run}: {why}", probe.name()));
            outcome.findings.clear();
            break;
        }
        let res = res?;
        for p in &res.outside {
            let w = format!(
                "wrote-outside: probe {} run {run} wrote {}",
                probe.name(),
                p.display()
            );
            if !outcome.warnings.contains(&w) {
                outcome.warnings.push(w);
            }
        }
        outcome.runs = run;
        match (res.exit, &arg) {
            (Exit::TimedOut, _) => {
                outcome.findings.push(Finding {
                    kind: FailureKind::Hang,
                    run,
                    detail: format!(
                        "probe {}: run {run} exceeded its time limit of {:.1}s",
                        probe.name(),
                        reference.timeout.as_secs_f64()
                    ),
                });
                break;
            }
            (Exit::Code(0), Some(arg)) => {
                let events = crate::observe::read_events(&files.events);
                let resumed =
                    events[events_before.min(events.len())..]
                        .iter()
                        .find_map(|e| match e {
                            Event::Resumed { step } => Some(*step),
                            _ => None,
                        });
                let from = resumed.or_else(|| {
                    read_state(&files.state)
                        .ok()
                        .and_then(|s| s.resumed_from_step)
                });
                let how = match from {
                    None | Some(0) => "started fresh".to_string(),
                    Some(s) => format!("resumed from step {s}"),
                };
                outcome.findings.push(Finding {
                    kind: FailureKind::BadResumeAccepted,
                    run,
                    detail: format!(
                        "resume path `{arg}` ({}): run {run} exited 0 ({how}) instead of refusing",
                        what(probe)
                    ),
                });
            }
            (Exit::Code(0), None) => {}
            (_, None) => {
                outcome.warnings.push(format!(
                    "probe {} skipped: its uninterrupted run {}",
                    probe.name(),
                    describe_exit(&res)
                ));
                break;
            }
            // Any other end of the probe run is a refusal.
            (_, Some(_)) => {}
        }
    }
    if outcome.harness_error.is_none() {
        outcome.warnings.extend(super::watch::leftovers(&sandbox));
    }
    // Reports must not depend on where the workspace happened to be.
    let plain = |s: &str| plain_paths(s, &sandbox, case_dir);
    for f in &mut outcome.findings {
        f.detail = plain(&f.detail);
    }
    for w in &mut outcome.warnings {
        *w = plain(w);
    }
    outcome.harness_error = outcome.harness_error.as_deref().map(plain);
    outcome.duration = start.elapsed();
    Ok(outcome)
}

/// How a probe's bad path is described in a finding.
fn what(probe: Probe) -> &'static str {
    match probe {
        Probe::Directory => "the checkpoint directory",
        Probe::Missing => "a file that does not exist",
        Probe::Corrupt => "a checkpoint truncated to half its size",
    }
}

/// The resume argument of the probe run, after preparing the sandbox for
/// it; `Err` says why the probe cannot run.
fn bad_resume_arg(probe: Probe, target: &Target, sandbox: &Sandbox) -> Result<String, String> {
    let dir_arg = sandbox.place().ckpt_dir;
    let dir = sandbox.ckpt_dir();
    match probe {
        Probe::Directory => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create the checkpoint directory: {e}"))?;
            Ok(dir_arg)
        }
        Probe::Missing => {
            let arg = format!("{}/missing.ckpt", dir_arg.trim_end_matches('/'));
            if dir.join("missing.ckpt").symlink_metadata().is_ok() {
                return Err("the subject wrote a file named missing.ckpt".into());
            }
            Ok(arg)
        }
        Probe::Corrupt => {
            let victims = corrupt_targets(&target.resume, &dir);
            if victims.is_empty() {
                return Err(format!(
                    "nothing to corrupt: no checkpoint that resume mode `{}` reads",
                    target.resume
                ));
            }
            for name in victims {
                truncate_half(&dir.join(&name), sandbox.root())
                    .map_err(|why| format!("{name} {why}"))?;
            }
            Ok(target.resume.arg(sandbox))
        }
    }
}

/// The names in `dir` that resuming in `mode` reads.
fn corrupt_targets(mode: &ResumeMode, dir: &Path) -> Vec<String> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let wanted = |n: &str| match mode {
        ResumeMode::Path => n == "last.ckpt",
        ResumeMode::Last => n.starts_with("last") && n.ends_with(".ckpt"),
        ResumeMode::Best => n == "best.ckpt",
        ResumeMode::File(f) => n == f,
    };
    let mut out: Vec<String> = names.into_iter().filter(|n| wanted(n)).collect();
    out.sort();
    out
}

/// Truncates the file `path` resolves to (through links) to half its size,
/// refusing anything that resolves outside the sandbox `root`. The error
/// says what went wrong, without the sandbox's path.
fn truncate_half(path: &Path, root: &Path) -> Result<(), String> {
    let real: PathBuf = path
        .canonicalize()
        .map_err(|e| format!("does not resolve: {}", plain(&e)))?;
    if !real.starts_with(root) {
        return Err("resolves outside the sandbox; not touching it".into());
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&real)
        .map_err(|e| format!("cannot be opened: {}", plain(&e)))?;
    let len = file
        .metadata()
        .map_err(|e| format!("cannot be read: {}", plain(&e)))?
        .len();
    file.set_len(len / 2)
        .map_err(|e| format!("cannot be truncated: {}", plain(&e)))
}

/// An I/O error's message without its `(os error N)` suffix.
fn plain(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
