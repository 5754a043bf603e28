//! Misuse probes: hand the subject a resume path it must refuse (the
//! checkpoint root itself, a missing file, a truncated checkpoint) and flag
//! `bad-resume-accepted` when it exits 0 instead. Each probe runs in a
//! fresh sandbox through the same run driver as every case, so it works for
//! any subject: one uninterrupted run leaves the subject's own checkpoints
//! in the tree, then one run gets the bad resume path.
//!
//! The corrupt probe truncates what a resume in the target's mode would
//! read: a checkpoint file (through links), or for a checkpoint directory
//! two variants, each in a sandbox of its own: its largest file, and its
//! metadata file (a `*state*.json`, else its smallest `.json`, else its
//! smallest file).

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::inject::Probe;
use crate::observe::{DirSnapshot, EntryKind, Resolution, StateError};
use crate::runner::{Exit, RunnerError};

use super::checks::loadable::newest_surviving;
use super::checks::shape::{names_last, CkptPath};
use super::driver::{prepare, Driver};
use super::runs::{KillEach, Runs};
use super::{CaseOutcome, FailureKind, Finding, Reference, ResumeMode, Target};

/// What the corrupt probe damages.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Victim {
    /// These files (or links to files), relative to the checkpoint directory.
    Files(Vec<String>),
    /// Files inside this checkpoint directory (one per variant).
    InDir(String),
}

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
    run_probe_with(target, reference, probe, case_dir, &KillEach)
}

/// [`run_probe`] with its runs carried out by `runs` (an engine that knows
/// what the uninterrupted run leaves puts that in place instead).
pub fn run_probe_with(
    target: &Target,
    reference: &Reference,
    probe: Probe,
    case_dir: &Path,
    runs: &dyn Runs,
) -> Result<CaseOutcome, RunnerError> {
    let start = Instant::now();
    let mut outcome = CaseOutcome {
        layout: reference.layout,
        plan: probe.plan(),
        findings: Vec::new(),
        warnings: Vec::new(),
        runs: 0,
        crashes_hit: 0,
        after_save: false,
        duration: Default::default(),
        harness_error: None,
        power_states: 0,
    };
    let mut variant = 0;
    loop {
        let dir = if variant == 0 {
            case_dir.to_path_buf()
        } else {
            case_dir.join(format!("variant-{variant}"))
        };
        let more = one_variant(target, reference, probe, variant, &dir, runs, &mut outcome)?;
        variant += 1;
        if !more || outcome.harness_error.is_some() {
            break;
        }
    }
    outcome.duration = start.elapsed();
    Ok(outcome)
}

/// Runs variant `variant` of `probe` under `case_dir`; true when there is
/// another variant to run.
fn one_variant(
    target: &Target,
    reference: &Reference,
    probe: Probe,
    variant: usize,
    case_dir: &Path,
    runs: &dyn Runs,
    outcome: &mut CaseOutcome,
) -> Result<bool, RunnerError> {
    let (sandbox, files) = prepare(reference.layout, case_dir).map_err(|e| RunnerError::Spawn {
        program: "sandbox".into(),
        source: e,
    })?;
    let root = sandbox.root().display().to_string();
    let harness = case_dir.display().to_string();
    let plain = |s: &str| s.replace(&root, "<sandbox>").replace(&harness, "<case>");
    let mut d = Driver::new(target, reference, sandbox, files).with_runs(runs.probe(case_dir));
    let name = probe.name();
    let Some(first) = d.run_given(None, None)? else {
        return Ok(disturbed(outcome, probe, &d, &plain));
    };
    outcome.runs += 1;
    warn_outside(outcome, probe, first, &plain);
    match first.exit {
        Exit::Code(0) => {}
        Exit::TimedOut => {
            outcome.findings.push(hang(probe, 1, reference));
            return Ok(false);
        }
        _ => {
            let w = format!("probe {name} skipped: its uninterrupted run {}", first.how);
            outcome.warnings.push(plain(&w));
            return Ok(false);
        }
    }
    let (arg, what, more, victim_step) = match bad_resume_arg(probe, variant, target, &d) {
        Ok(x) => x,
        Err(why) => {
            outcome
                .warnings
                .push(plain(&format!("probe {name} skipped: {why}")));
            return Ok(false);
        }
    };
    let Some(res) = d.run_given(None, Some(arg.clone()))? else {
        return Ok(disturbed(outcome, probe, &d, &plain));
    };
    outcome.runs += 1;
    warn_outside(outcome, probe, res, &plain);
    match res.exit {
        Exit::TimedOut => outcome.findings.push(hang(probe, 2, reference)),
        // Exit 0 without the state file: the run neither resumed nor
        // refused, and a scheduler would take it for a finished job
        // (Megatron-LM's `sys.exit()` after "could not load the
        // checkpoint").
        Exit::Code(0) if !matches!(res.state, Some(Ok(_))) => {
            let why = match &res.state {
                Some(Err(e @ StateError::Missing)) => e.to_string(),
                Some(Err(e)) => format!("exited 0, but {e}"),
                _ => "exited 0 and wrote no state file".to_string(),
            };
            outcome.findings.push(Finding {
                kind: FailureKind::BadResumeAccepted,
                run: 2,
                detail: plain(&format!(
                    "probe {name}: resume path `{arg}` ({what}): run 2 {why}: it neither resumed nor refused, and a run that cannot resume must exit non-zero"
                )),
            });
        }
        Exit::Code(0) => {
            let from = res.resumed_event().or_else(|| {
                res.state
                    .as_ref()
                    .and_then(|s| s.as_ref().ok())
                    .and_then(|s| s.resumed_from_step)
            });
            let how = match from {
                None | Some(0) => "started fresh".to_string(),
                Some(s) => format!("resumed from step {s}"),
            };
            // Given the keyword `last`, the subject chooses: passing over the
            // damaged checkpoint for an older one (or a fresh start) is what
            // it must do with a checkpoint a crash tore, not a bad resume.
            let passed_over = target.resume == ResumeMode::Last
                && victim_step.is_some_and(|v| from.unwrap_or(0) < v);
            if passed_over {
                outcome.warnings.push(plain(&format!(
                    "probe {name} ({what}): given `last`, the subject passed over the damaged checkpoint and {how}"
                )));
                return Ok(more);
            }
            outcome.findings.push(Finding {
                kind: FailureKind::BadResumeAccepted,
                run: 2,
                detail: plain(&format!(
                    "probe {name}: resume path `{arg}` ({what}): run 2 exited 0 ({how}) instead of refusing"
                )),
            });
        }
        // Any other end of the probe run is a refusal.
        _ => {}
    }
    outcome.warnings.extend(
        super::watch::leftovers(d.sandbox(), &d.reference().usual_leftovers)
            .iter()
            .map(|w| plain(w)),
    );
    Ok(more)
}

/// Records that the probe's sandbox was disturbed from outside: no finding
/// of the probe stands; returns false (no further variant).
fn disturbed(
    outcome: &mut CaseOutcome,
    probe: Probe,
    d: &Driver<'_>,
    plain: &dyn Fn(&str) -> String,
) -> bool {
    let why = d.observations().harness_error.clone().unwrap_or_default();
    outcome.harness_error = Some(plain(&format!("probe {}: {why}", probe.name())));
    outcome.findings.clear();
    false
}

/// Warns of the files run `o` of a probe wrote outside its sandbox.
fn warn_outside(
    outcome: &mut CaseOutcome,
    probe: Probe,
    o: &super::obs::RunObs,
    plain: &dyn Fn(&str) -> String,
) {
    for p in &o.outside {
        let w = plain(&format!(
            "wrote-outside: probe {} run {} wrote {}",
            probe.name(),
            o.run,
            p.display()
        ));
        if !outcome.warnings.contains(&w) {
            outcome.warnings.push(w);
        }
    }
}

fn hang(probe: Probe, run: usize, reference: &Reference) -> Finding {
    Finding {
        kind: FailureKind::Hang,
        run,
        detail: format!(
            "probe {}: run {run} exceeded its time limit of {:.1}s",
            probe.name(),
            reference.timeout.as_secs_f64()
        ),
    }
}

/// The resume argument of the probe run, after preparing the sandbox for
/// it, what it is in words, and whether another variant follows; `Err`
/// says why the probe cannot run.
fn bad_resume_arg(
    probe: Probe,
    variant: usize,
    target: &Target,
    d: &Driver<'_>,
) -> Result<(String, String, bool, Option<u64>), String> {
    let sandbox = d.sandbox();
    let dir_arg = sandbox.place().ckpt_dir;
    let dir = sandbox.ckpt_dir();
    match probe {
        Probe::Directory => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create the checkpoint directory: {e}"))?;
            Ok((dir_arg, "the checkpoint root directory".into(), false, None))
        }
        Probe::Missing => {
            let arg = format!("{}/missing.ckpt", dir_arg.trim_end_matches('/'));
            if dir.join("missing.ckpt").symlink_metadata().is_ok() {
                return Err("the subject wrote a file named missing.ckpt".into());
            }
            Ok((arg, "a file that does not exist".into(), false, None))
        }
        Probe::Corrupt => {
            let snap = d.snapshot();
            let (victim, newest) = corrupt_target(target, d, &snap).ok_or_else(|| {
                format!(
                    "nothing to corrupt: no checkpoint that resume mode `{}` reads",
                    target.resume
                )
            })?;
            let arg = target.resume.arg(sandbox, newest.as_deref());
            let saves = d.observations().saves();
            let step_of = |name: &str| {
                saves
                    .iter()
                    .filter(|a| a.at == CkptPath::InDir(name.to_string()))
                    .map(|a| a.step)
                    .max()
                    .or_else(|| Some(number(name)).filter(|n| *n > 0))
            };
            match victim {
                Victim::Files(names) => {
                    for name in &names {
                        truncate_half(&dir.join(name), sandbox.root())
                            .map_err(|why| format!("{name} {why}"))?;
                    }
                    let step = names.iter().filter_map(|n| step_of(n)).max();
                    Ok((
                        arg,
                        format!("{} truncated to half its size", names.join(", ")),
                        false,
                        step,
                    ))
                }
                Victim::InDir(ckpt) => {
                    let picks = dir_victims(&snap, &ckpt);
                    let Some((file, what)) = picks.get(variant).cloned() else {
                        return Err(format!("{ckpt}/ holds no file to corrupt"));
                    };
                    let path = format!("{ckpt}/{file}");
                    truncate_half(&dir.join(&path), sandbox.root())
                        .map_err(|why| format!("{path} {why}"))?;
                    Ok((
                        arg,
                        format!(
                            "checkpoint {ckpt}/ with its {what} {file} truncated to half its size"
                        ),
                        variant + 1 < picks.len(),
                        step_of(&ckpt),
                    ))
                }
            }
        }
    }
}

/// What a resume in the target's mode reads in `snap`, and for `newest`
/// the checkpoint named.
fn corrupt_target(
    target: &Target,
    d: &Driver<'_>,
    snap: &DirSnapshot,
) -> Option<(Victim, Option<String>)> {
    let patterns = &d.reference().shape.patterns;
    let as_victim = |name: &str| match snap.get(name).map(|e| &e.kind) {
        Some(EntryKind::Dir) => Some(Victim::InDir(name.to_string())),
        Some(_) => Some(Victim::Files(vec![name.to_string()])),
        None => None,
    };
    // The newest announced checkpoint that survives, inside the directory.
    let newest = || {
        let saves = d.observations().saves();
        match &newest_surviving(&d.reference().shape, snap, &saves)?.at {
            CkptPath::InDir(p) => Some(p.clone()),
            CkptPath::Elsewhere(_) => None,
        }
    };
    let v = match &target.resume {
        ResumeMode::Newest => {
            let p = newest()?;
            return as_victim(&p).map(|v| (v, Some(p)));
        }
        ResumeMode::Last => {
            // Every file named as the last checkpoint (`last.ckpt`,
            // `last.pt`, fairseq's `checkpoint_last.pt`), whichever the
            // subject reads; not a pointer file, which names another.
            let lasts: Vec<String> = snap
                .entries
                .iter()
                .filter(|e| {
                    names_last(e.base())
                        && !snap.pointers.iter().any(|p| p.name == e.name)
                        && match e.kind {
                            EntryKind::File { size } => {
                                size > 0 || patterns.is_checkpoint_file(e.base())
                            }
                            EntryKind::Link { .. } => patterns.is_checkpoint_file(e.base()),
                            EntryKind::Dir => false,
                        }
                })
                .map(|e| e.name.clone())
                .collect();
            if !lasts.is_empty() {
                Some(Victim::Files(lasts))
            } else if let Some(Resolution::InDir(to)) =
                snap.pointers.first().map(|p| p.resolves.clone())
            {
                as_victim(&to)
            } else {
                // As Trainer's get_last_checkpoint: the highest-numbered directory.
                snap.entries
                    .iter()
                    .filter(|e| e.kind == EntryKind::Dir && patterns.is_checkpoint_dir(e.base()))
                    .max_by_key(|e| (number(e.base()), e.name.clone()))
                    .and_then(|e| as_victim(&e.name))
                    // Otherwise the newest announced checkpoint still there
                    // (`step-12.pt` of a loop that keeps no `last` name).
                    .or_else(|| as_victim(&newest()?))
            }
        }
        mode => as_victim(mode.file()?),
    };
    v.map(|v| (v, None))
}

/// The last run of digits in `name`, as a number (0 without one).
fn number(name: &str) -> u64 {
    name.rsplit(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The files of the checkpoint directory `ckpt` the corrupt probe damages,
/// one per variant: its largest file, then its metadata file when that is
/// another one.
fn dir_victims(snap: &DirSnapshot, ckpt: &str) -> Vec<(String, &'static str)> {
    let files: Vec<(&str, u64)> = snap
        .below(ckpt)
        .filter_map(|(rel, e)| match e.kind {
            EntryKind::File { size } => Some((rel, size)),
            _ => None,
        })
        .collect();
    let Some(largest) = files
        .iter()
        .max_by_key(|(n, s)| (*s, std::cmp::Reverse(*n)))
        .map(|(n, _)| n.to_string())
    else {
        return Vec::new();
    };
    let smallest = |pred: &dyn Fn(&str) -> bool| {
        files
            .iter()
            .filter(|(n, _)| pred(n) && *n != largest)
            .min_by_key(|(n, s)| (*s, *n))
            .map(|(n, _)| n.to_string())
    };
    let meta = smallest(&|n| n.ends_with(".json") && n.contains("state"))
        .or_else(|| smallest(&|n| n.ends_with(".json")))
        .or_else(|| smallest(&|_| true));
    let mut out = vec![(largest, "largest file")];
    out.extend(meta.map(|m| (m, "metadata file")));
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

#[cfg(test)]
mod tests {
    use super::super::checks::shape::tests::snap;
    use super::*;

    #[test]
    fn a_directory_checkpoint_is_corrupted_in_its_largest_and_its_metadata_file() {
        let s = snap(&[
            "checkpoint-8/",
            "checkpoint-8/config.json#30",
            "checkpoint-8/model.bin#900",
            "checkpoint-8/optimizer.bin#500",
            "checkpoint-8/trainer_state.json#80",
        ]);
        assert_eq!(
            dir_victims(&s, "checkpoint-8"),
            [
                ("model.bin".to_string(), "largest file"),
                ("trainer_state.json".to_string(), "metadata file")
            ]
        );
        let one = snap(&["c/", "c/only.bin#3"]);
        assert_eq!(
            dir_victims(&one, "c"),
            [("only.bin".to_string(), "largest file")]
        );
        assert_eq!(number("checkpoint-12"), 12);
    }
}
