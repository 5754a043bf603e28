//! Recording `syscall` points: one traced run of the subject, as the first
//! reference run is made, paused at the entry of every call a plan crashes
//! at; at each pause the capturer looks again at the paths the calls since
//! the previous pause touched, and stores the state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{PointRecord, RecordError, Recording};
use crate::inject::CrashPoint;
use crate::oracle::{self, Reference, Target};
use crate::runner::{self, Exit, RunRequest, RunResult, RunnerError, Subject};
use crate::store::{Capturer, Node, Store, StoreError};
use crate::trace::{Pause, PauseAt};

/// Records the states at the entry of calls `points` of the reference's
/// census, in a fresh sandbox under `case_dir`.
pub fn record(
    target: &Target,
    reference: &Reference,
    points: &[u64],
    case_dir: &Path,
    store: &Store,
) -> Result<Recording, RecordError> {
    let (sandbox, files) = oracle::prepare(reference.layout, case_dir)?;
    let place = sandbox.place();
    let mut req = oracle::request(target, &sandbox, &place, &files, None, reference.timeout);
    // Under power loss the run also keeps the operations the model replays.
    req.power = target.fault.is_power_loss();
    let (res, recorded) = record_run(&target.subject, &req, &files.events, points, store)?;
    if res.exit != Exit::Code(0) {
        return Err(RecordError::Diverged(format!(
            "it ended with {:?}",
            res.exit
        )));
    }
    // Names of temporary files may differ (a pid in them): the calls must not.
    let same = |a: &crate::census::CensusEntry, b: &crate::census::CensusEntry| a.name == b.name;
    let upto = points.iter().copied().max().unwrap_or(0) as usize;
    for (i, want) in reference.census.iter().take(upto).enumerate() {
        if !res.census.get(i).is_some_and(|got| same(got, want)) {
            return Err(RecordError::Diverged(format!(
                "call {} is not {} as in the reference",
                i + 1,
                want.name
            )));
        }
    }
    let mut rec = super::finish(
        case_dir,
        recorded,
        points.iter().map(|n| CrashPoint::Syscall(*n)),
    )?;
    rec.power = res.power;
    Ok(rec)
}

/// Makes the run `req` (in the sandbox it names, with its events in
/// `events`) traced to its end, paused at the entry of calls `points` of
/// its own numbering, and captures the state at each pause it reaches.
/// How the run ended is the caller's to judge: a point it never reached is
/// simply not in the map.
pub fn record_run(
    subject: &Subject,
    req: &RunRequest<'_>,
    events: &Path,
    points: &[u64],
    store: &Store,
) -> Result<(RunResult, BTreeMap<CrashPoint, PointRecord>), RecordError> {
    let run = record_at(
        subject,
        req,
        events,
        PauseAt::Calls(points.to_vec()),
        None,
        store,
    )?;
    if let Some(e) = run.failed {
        return Err(e.into());
    }
    Ok((run.result, run.recorded))
}

/// A recorded run: how it ended, what it captured, and whether it stopped
/// capturing early.
pub struct RecordedRun {
    /// The run.
    pub result: RunResult,
    /// Every point captured.
    pub recorded: BTreeMap<CrashPoint, PointRecord>,
    /// The first point it paused at but no longer captured (the cap was
    /// reached), if any.
    pub stopped_at: Option<u64>,
    /// Why the captures failed, if they did (the run itself went on).
    pub failed: Option<StoreError>,
}

/// [`record_run`] pausing at `at`; with `cap`, the captures stop once they
/// have handled that many bytes ([`Capturer::bytes_handled`]): the later
/// points are then not in the map, and `stopped_at` says where it stopped. A store error
/// stops the captures too; the run always goes on to its end.
pub fn record_at(
    subject: &Subject,
    req: &RunRequest<'_>,
    events: &Path,
    at: PauseAt,
    cap: Option<u64>,
    store: &Store,
) -> Result<RecordedRun, RunnerError> {
    let root = req.sandbox.to_path_buf();
    let mut capturer = Capturer::new(store, &root, Some(events));
    let mut recorded: BTreeMap<CrashPoint, PointRecord> = BTreeMap::new();
    let mut failed: Option<StoreError> = None;
    let mut stopped_at: Option<u64> = None;
    let mut prev: Option<u64> = None;
    let mut sink = |p: &Pause<'_>| {
        if failed.is_some() || stopped_at.is_some() {
            return;
        }
        if cap.is_some_and(|c| capturer.bytes_handled() > c) {
            stopped_at = Some(p.index);
            return;
        }
        match capture(&mut capturer, &root, prev, p) {
            Ok(rec) => {
                recorded.insert(rec.point, rec);
            }
            Err(e) => failed = Some(e),
        }
        prev = Some(p.index);
    };
    let result = runner::run_paused(subject, req, at, &mut sink)?;
    Ok(RecordedRun {
        result,
        recorded,
        stopped_at,
        failed,
    })
}

fn capture(
    cap: &mut Capturer<'_>,
    root: &Path,
    prev: Option<u64>,
    p: &Pause<'_>,
) -> Result<PointRecord, StoreError> {
    let (calls, touched): (std::ops::Range<u64>, Vec<PathBuf>) = match prev {
        None => {
            cap.scan_all()?;
            (p.index..p.index, Vec::new())
        }
        Some(prev) => {
            let since = &p.calls[(prev - 1) as usize..(p.index - 1) as usize];
            let mut paths: Vec<PathBuf> = Vec::new();
            for c in since {
                for path in &c.paths {
                    if path.starts_with(root) && !paths.contains(path) {
                        paths.push(path.clone());
                    }
                }
            }
            cap.update(&paths)?;
            (prev..p.index, paths)
        }
    };
    let state = cap.capture()?;
    let changed = touched
        .into_iter()
        .filter_map(|abs| abs.strip_prefix(root).ok().map(Path::to_path_buf))
        .map(|rel| {
            let hash = match cap.manifest().entries.get(&rel).map(|e| &e.node) {
                Some(Node::File(c)) => Some(c.hash),
                _ => None,
            };
            (rel, hash)
        })
        .collect();
    Ok(PointRecord {
        point: CrashPoint::Syscall(p.index),
        state,
        calls,
        changed,
        outside: p.outside.to_vec(),
    })
}
