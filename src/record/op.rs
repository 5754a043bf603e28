//! Recording `op` points of the simulated trainer: one run with its I/O
//! layer pausing at every crash point ([`crate::protocol::OP_PAUSE`]); it
//! names the paths each operation changed, and at the points the plans use
//! the capturer looks at those again and stores the state. A `mid` point is
//! half of the write's bytes written, as a kill there leaves it. Under the
//! power-loss fault model the same pauses give the operation log the
//! power-loss states are built from ([`super::op_power`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::op_power::OpLog;
use super::{PointRecord, RecordError, Recording};
use crate::inject::CrashPoint;
use crate::oracle::{self, Reference, Target};
use crate::protocol::{OpCrash, When};
use crate::runner::{self, Exit, RunRequest, RunResult, RunnerError, Subject};
use crate::store::{Capturer, Node, Store, StoreError};

/// A path the trainer names (relative to its working directory `cwd`), as
/// the capturer knows it: canonical up to its last component.
fn resolve(cwd: &Path, p: &str) -> PathBuf {
    let full = cwd.join(p);
    match (
        full.parent().and_then(|d| d.canonicalize().ok()),
        full.file_name(),
    ) {
        (Some(d), Some(n)) => d.join(n),
        _ => full,
    }
}

/// One pause line: `INDEX WHEN CALL[\tPATH]...` (see
/// [`crate::protocol::OP_PAUSE`]).
fn parse(line: &str) -> Option<(OpCrash, &str, Vec<&str>)> {
    let mut fields = line.split('\t');
    let mut head = fields.next()?.split(' ');
    let crash = OpCrash {
        index: head.next()?.parse().ok()?,
        when: head.next()?.parse().ok()?,
    };
    Some((crash, head.next().unwrap_or_default(), fields.collect()))
}

/// Records the states at `points` in a fresh sandbox under `case_dir`.
pub fn record(
    target: &Target,
    reference: &Reference,
    points: &[OpCrash],
    case_dir: &Path,
    store: &Store,
) -> Result<Recording, RecordError> {
    let (sandbox, files) = oracle::prepare(reference.layout, case_dir)?;
    let place = sandbox.place();
    let req = oracle::request(target, &sandbox, &place, &files, None, reference.timeout);
    // Under power loss the run also gives the operations the model replays.
    let mut log = target
        .fault
        .is_power_loss()
        .then(|| OpLog::new(sandbox.root(), &place.cwd));
    let (res, recorded) = paused(
        &target.subject,
        &req,
        &files.events,
        points,
        store,
        log.as_mut(),
    )?;
    if res.exit != Exit::Code(0) {
        return Err(RecordError::Diverged(format!(
            "it ended with {:?}",
            res.exit
        )));
    }
    let mut rec = super::finish(
        case_dir,
        recorded,
        points.iter().map(|p| CrashPoint::Op(*p)),
    )?;
    if let Some(log) = log {
        let (ops, mid) = log.finish().map_err(|e| RecordError::PowerLog(e.0))?;
        rec.power = ops;
        rec.power_mid = mid;
    }
    Ok(rec)
}

/// Makes the simulated trainer's run `req` (in the sandbox it names, with
/// its events in `events`) to its end with its I/O layer pausing, and
/// captures the state at each of `points` it reaches. A `mid` point of an
/// operation that is not a write is where a kill there lands: before the
/// operation. How the run ended is the caller's to judge: a point it never
/// reached is simply not in the map.
pub fn record_run(
    subject: &Subject,
    req: &RunRequest<'_>,
    events: &Path,
    points: &[OpCrash],
    store: &Store,
) -> Result<(RunResult, BTreeMap<CrashPoint, PointRecord>), RecordError> {
    paused(subject, req, events, points, store, None)
}

/// [`record_run`], each pause also handed to `log`.
fn paused(
    subject: &Subject,
    req: &RunRequest<'_>,
    events: &Path,
    points: &[OpCrash],
    store: &Store,
    log: Option<&mut OpLog>,
) -> Result<(RunResult, BTreeMap<CrashPoint, PointRecord>), RecordError> {
    let wanted: BTreeSet<OpCrash> = points.iter().copied().collect();
    let (res, recorded, failed) = record_wanted(subject, req, events, Some(&wanted), store, log)?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    Ok((res, recorded))
}

/// [`record_run`] capturing at every point the run pauses at (a recording
/// made as the census is taken: which points will be wanted is not known
/// yet), each pause also handed to `log` when there is one. A store error
/// stops the captures and is returned beside the run, which goes on to its
/// end.
pub fn record_every(
    subject: &Subject,
    req: &RunRequest<'_>,
    events: &Path,
    store: &Store,
    log: Option<&mut OpLog>,
) -> Result<Recorded, RunnerError> {
    record_wanted(subject, req, events, None, store, log)
}

/// A recorded run, what it captured, and why the captures failed if they did.
pub type Recorded = (
    RunResult,
    BTreeMap<CrashPoint, PointRecord>,
    Option<StoreError>,
);

/// Captures at the points in `wanted` (`None`: every point), each pause
/// also handed to `log`.
fn record_wanted(
    subject: &Subject,
    req: &RunRequest<'_>,
    events: &Path,
    wanted: Option<&BTreeSet<OpCrash>>,
    store: &Store,
    mut log: Option<&mut OpLog>,
) -> Result<Recorded, RunnerError> {
    let root = req.sandbox.to_path_buf();
    let cwd = req.place.cwd.clone();
    let wants = |p: &OpCrash| wanted.map_or(true, |w| w.contains(p));
    let mut cap = Capturer::new(store, &root, Some(events));
    let mut recorded: BTreeMap<CrashPoint, PointRecord> = BTreeMap::new();
    let mut failed: Option<StoreError> = None;
    let mut dirty: Vec<PathBuf> = Vec::new();
    let mut prev: Option<u64> = None;
    let mut on_pause = |line: &str| {
        let Some((at, call, paths)) = parse(line) else {
            return;
        };
        if let Some(log) = log.as_deref_mut() {
            log.pause(at, call, &paths);
        }
        if at.when != When::Before {
            for p in paths {
                let r = resolve(&cwd, p);
                if !dirty.contains(&r) {
                    dirty.push(r);
                }
            }
        }
        // The points this pause stands for: itself, and before an
        // operation its `mid` too (a write pauses at `mid` again and
        // replaces it; any other operation is killed before it).
        let mid = OpCrash {
            when: When::Mid,
            ..at
        };
        let mut here: Vec<OpCrash> = Vec::new();
        if wants(&at) {
            here.push(at);
        }
        if at.when == When::Before && wants(&mid) {
            here.push(mid);
        }
        if here.is_empty() || failed.is_some() {
            return;
        }
        let first = prev.is_none();
        let r = (|| {
            if first {
                cap.scan_all()?;
            } else {
                cap.update(&dirty)?;
            }
            cap.capture()
        })();
        let state = match r {
            Ok(s) => s,
            Err(e) => {
                failed = Some(e);
                return;
            }
        };
        let changed: Vec<(PathBuf, Option<crate::store::Hash>)> = dirty
            .drain(..)
            .filter_map(|abs| abs.strip_prefix(&root).ok().map(Path::to_path_buf))
            .map(|rel| {
                let hash = match cap.manifest().entries.get(&rel).map(|e| &e.node) {
                    Some(Node::File(c)) => Some(c.hash),
                    _ => None,
                };
                (rel, hash)
            })
            .collect();
        let from = prev.unwrap_or(at.index);
        prev = Some(at.index);
        for point in here {
            let point = CrashPoint::Op(point);
            recorded.insert(
                point,
                PointRecord {
                    point,
                    state,
                    calls: from..at.index,
                    changed: if first { Vec::new() } else { changed.clone() },
                    outside: Vec::new(),
                },
            );
        }
    };
    let res = runner::run_op_paused(subject, req, &mut on_pause)?;
    Ok((res, recorded, failed))
}
