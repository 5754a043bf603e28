//! A case under the power-loss fault model. The first run is traced and
//! records what it does inside the sandbox (see [`crate::trace::TracedOp`]),
//! or, under the record-once engine, its crash state and operations come
//! from the recording (the operations of the calls before the point); when
//! it is killed at the plan's first crash point, the sandbox is rolled
//! back to the most pessimistic state a power cut there may leave, and the
//! run driver goes on from that state exactly as after a kill (later crash
//! points are process kills). Each further state (`--states N`) is put in a
//! fresh sandbox at the same path, with the events file as the killed run
//! left it, and driven the same way ([`Driver::crashed_elsewhere`]). The
//! case judges every state; its findings say which state they come from and
//! what that state dropped.
//!
//! Each installed state is named by its tree and events file
//! ([`state_id`]), so an engine that remembers runs by their start state
//! resumes equal states once, across points and cases.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use super::driver::{prepare, Driver};
use super::power;
use super::{judge_case, sandbox_error, CaseJob, CaseOutcome, Target};
use crate::inject::CrashPoint;
use crate::power::{CrashState, Entry};
use crate::runner::{Exit, RunnerError};
use crate::store::StateId;
use crate::trace::TracedOp;

fn power_error(e: power::PowerError) -> RunnerError {
    RunnerError::Trace(e.to_string())
}

/// The name of a power-loss state installed with `events` as the events
/// file: equal trees and events, equal names (a domain of its own, apart
/// from the store's manifests).
pub fn state_id(state: &CrashState, events: &[u8]) -> StateId {
    let mut h = blake3::Hasher::new();
    h.update(b"crashpoint power-loss state\0");
    h.update(&state.fingerprint());
    h.update(&(events.len() as u64).to_le_bytes());
    h.update(events);
    crate::store::Hash(*h.finalize().as_bytes())
}

/// The layout's sandbox as [`prepare`] builds it under `case_dir`, as the
/// power-loss model's durable starting tree.
pub fn initial_tree(
    layout: crate::layout::Layout,
    case_dir: &Path,
) -> std::io::Result<BTreeMap<String, Entry>> {
    let (sandbox, _) = prepare(layout, case_dir)?;
    power::scan(sandbox.root())
}

/// The names ([`state_id`]) of the disk states a case judges after a power
/// cut at `point`, given the tree the run started from, its operations
/// before the point and the events file there: two points with the same
/// names are judged in the same states.
pub fn state_ids(
    target: &Target,
    initial: &BTreeMap<String, Entry>,
    ops: &[TracedOp],
    point: CrashPoint,
    events: &[u8],
) -> Result<Vec<StateId>, RunnerError> {
    let killed_at = match point {
        CrashPoint::Syscall(k) => Some(k),
        _ => None,
    };
    let seed = power::seed_for(target.seed, &point.to_string());
    let states =
        power::states(initial, ops, killed_at, &target.fault, seed).map_err(power_error)?;
    Ok(states.states.iter().map(|s| state_id(s, events)).collect())
}

/// Runs the case `job` (its first point given) under the power-loss fault
/// model.
pub(super) fn run_case(job: CaseJob<'_>) -> Result<CaseOutcome, RunnerError> {
    let CaseJob {
        target,
        reference,
        plan,
        points,
        case_dir,
        runs,
    } = job;
    let start = Instant::now();
    let (sandbox, files) = prepare(reference.layout, case_dir).map_err(sandbox_error)?;
    let initial = power::scan(sandbox.root()).map_err(sandbox_error)?;
    let mut driver = Driver::new(target, reference, sandbox, files)
        .with_runs(runs.case(plan, case_dir))
        .record_power();
    let first = points.first().copied();
    let crashed = matches!(driver.run(first)?, Some(o) if o.exit == Exit::Crashed);
    let Some(first) = first.filter(|_| crashed) else {
        // The crash point was not reached (or the sandbox was disturbed):
        // there is no power cut to model.
        let (obs, sandbox) = driver.finish();
        return Ok(judge_case(
            target, reference, plan, &obs, &sandbox, case_dir, start,
        ));
    };
    let ops = driver.take_power_ops();
    if ops.is_empty() && !crate::trace::tracing_available() {
        return Err(power_error(power::PowerError::NotRecorded));
    }
    let killed_at = match first {
        CrashPoint::Syscall(k) => Some(k),
        _ => None,
    };
    let seed = power::seed_for(target.seed, &first.to_string());
    let states = power::states(&initial, &ops, killed_at, &target.fault, seed)
        .map_err(power_error)?
        .states;
    let events = std::fs::read(&driver.files().events).unwrap_or_default();
    let total = states.len();
    let mut states = states.into_iter();
    let Some(pessimistic) = states.next() else {
        unreachable!("the most pessimistic state is always there")
    };
    power::install(&pessimistic, driver.sandbox().root()).map_err(power_error)?;
    driver.crash_state_replaced(state_id(&pessimistic, &events));
    if driver.prepare_next() {
        driver.drive(&points[1..])?;
    }
    let (obs, sandbox) = driver.finish();
    let mut out = judge_case(target, reference, plan, &obs, &sandbox, case_dir, start);
    noted(&mut out, 1, total, &pessimistic);
    out.power_states = total;
    drop(sandbox);
    for (j, state) in states.enumerate() {
        // The same sandbox path, so absolute links in the state stay right.
        for d in ["sandbox", "harness"] {
            crate::workspace::remove_tree(&case_dir.join(d)).map_err(sandbox_error)?;
        }
        let (sandbox, files) = prepare(reference.layout, case_dir).map_err(sandbox_error)?;
        power::install(&state, sandbox.root()).map_err(power_error)?;
        std::fs::write(&files.events, &events).map_err(sandbox_error)?;
        let mut d =
            Driver::new(target, reference, sandbox, files).with_runs(runs.case(plan, case_dir));
        d.state_installed(state_id(&state, &events));
        if d.crashed_elsewhere(first) {
            d.drive(&points[1..])?;
        }
        let (obs, sandbox) = d.finish();
        let mut o = judge_case(target, reference, plan, &obs, &sandbox, case_dir, start);
        noted(&mut o, j + 2, total, &state);
        merge(&mut out, o);
    }
    out.duration = start.elapsed();
    Ok(out)
}

/// Adds to each finding of `o` which power-loss state it comes from and
/// what that state dropped.
fn noted(o: &mut CaseOutcome, i: usize, total: usize, state: &CrashState) {
    let note = if total > 1 {
        let which = if i == 1 { " (most pessimistic)" } else { "" };
        format!(
            "power-loss state {i} of {total}{which}: {}",
            power::explain(state)
        )
    } else {
        format!(
            "power loss (most pessimistic state): {}",
            power::explain(state)
        )
    };
    for f in &mut o.findings {
        f.detail = format!("{} [{note}]", f.detail);
    }
}

/// `other` (a later state of the same case) folded into `out`: one finding
/// per kind, the earliest state's; the runs made for it (its first run is
/// the killed run, already counted); its warnings once.
fn merge(out: &mut CaseOutcome, other: CaseOutcome) {
    for f in other.findings {
        if !out.findings.iter().any(|g| g.kind == f.kind) {
            out.findings.push(f);
        }
    }
    for w in other.warnings {
        if !out.warnings.contains(&w) {
            out.warnings.push(w);
        }
    }
    out.runs += other.runs.saturating_sub(1);
    if out.harness_error.is_none() {
        out.harness_error = other.harness_error;
    }
}
