//! Recording as the census is taken. Under the record engine the first
//! reference run of a layout, the one that takes the census, also pauses at
//! every crash point it makes and captures the state there, so that no
//! second traced run is needed to record the points the plans then choose.
//! For a trainer that takes seconds to start, that run was most of a
//! layout's fixed cost.
//!
//! The captures are capped by the bytes they handle ([`CAP_BYTES`]): a run
//! that rewrites large files call after call would otherwise have them read
//! once per call. Past the cap the run goes on uncaptured, and if the plans
//! want a point it did not capture, they are recorded by a run of their own
//! ([`super::syscall::record`], [`super::op::record`]), as without this.
//!
//! ```no_run
//! # fn demo(target: &crashpoint::oracle::Target, scratch: &std::path::Path)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use crashpoint::inject::CrashPoint;
//! use crashpoint::layout::Layout;
//! use crashpoint::record::early::Recorder;
//!
//! let mut recorder = Recorder::new(target, &scratch.join("store")).expect("recordable");
//! let mut first = |req: &crashpoint::runner::RunRequest<'_>,
//!                  files: &crashpoint::observe::HarnessFiles,
//!                  dir: &std::path::Path| recorder.run(&target.subject, req, files, dir);
//! let runs = crashpoint::oracle::ReferenceRuns {
//!     // A case directory named as long as the cases' (absolute paths in
//!     // the states are rewritten in place).
//!     first: Some(("case-r00000", &mut first)),
//!     side_by_side: true,
//! };
//! let reference = crashpoint::oracle::reference_with(target, Layout::Relative, scratch, runs)?;
//! let (store, early) = recorder.finish();
//! let recording = early.and_then(|e| e.recording(&[CrashPoint::Syscall(3)]));
//! # let _ = (reference, store, recording); Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::op_power::OpLog;
use super::{op, syscall, PointRecord, Recording};
use crate::inject::{CrashPoint, Mode};
use crate::observe::HarnessFiles;
use crate::oracle::Target;
use crate::runner::{self, RunRequest, RunResult, RunnerError, Subject};
use crate::store::{Hash, Store};
use crate::trace::{PauseAt, TracedOp};

/// The most bytes of file content, events and manifests the captures of
/// one first reference run may handle before they stop (256 MiB).
pub const CAP_BYTES: u64 = 256 << 20;

/// Makes a layout's first reference run, recording it.
#[derive(Debug)]
pub struct Recorder {
    store: Store,
    mode: Mode,
    power: bool,
    cap: u64,
    early: Option<Early>,
}

/// What a first reference run captured: the state at each crash point it
/// reached before the captures stopped.
#[derive(Debug)]
pub struct Early {
    case_dir: PathBuf,
    points: BTreeMap<CrashPoint, PointRecord>,
    power: Vec<TracedOp>,
    /// For `op` points, the first half of each write (see
    /// [`Recording::power_mid`]).
    power_mid: BTreeMap<u64, TracedOp>,
    /// The first census call no longer captured, if the cap was reached.
    stopped_at: Option<u64>,
}

impl Recorder {
    /// A recorder for `target`'s first reference runs, with its store
    /// created at `store` (a directory that does not exist yet); `None`
    /// when those runs cannot be recorded (time mode, `op` points of a
    /// subject that is not the simulated trainer) or the store cannot be
    /// made.
    pub fn new(target: &Target, store: &Path) -> Option<Recorder> {
        let recordable = match target.mode {
            Mode::Syscall => true,
            Mode::Op => target.subject.sim,
            Mode::Time => false,
        };
        if !recordable {
            return None;
        }
        Some(Recorder {
            store: Store::create(store).ok()?,
            mode: target.mode,
            power: target.fault.is_power_loss(),
            cap: CAP_BYTES,
            early: None,
        })
    }

    /// The same recorder with its captures capped at `bytes` instead of
    /// [`CAP_BYTES`].
    pub fn with_cap(self, bytes: u64) -> Recorder {
        Recorder { cap: bytes, ..self }
    }

    /// Makes the first reference run `req` (its harness files `files`, in
    /// the case directory `case_dir`), recording it; the run's result is
    /// what [`runner::run`] would give. A run that cannot be paused (an
    /// `op` census taken by a traced run) is made as it is, unrecorded.
    pub fn run(
        &mut self,
        subject: &Subject,
        req: &RunRequest<'_>,
        files: &HarnessFiles,
        case_dir: &Path,
    ) -> Result<RunResult, RunnerError> {
        self.early = None;
        match self.mode {
            Mode::Syscall => {
                let mut req = req.clone();
                // Under power loss the run also keeps the operations the
                // model replays (the census is the same either way).
                req.power |= self.power;
                let run = syscall::record_at(
                    subject,
                    &req,
                    &files.events,
                    PauseAt::Every,
                    Some(self.cap),
                    &self.store,
                )?;
                if run.failed.is_none() {
                    self.early = Some(Early {
                        case_dir: case_dir.to_path_buf(),
                        points: run.recorded,
                        power: run.result.power.clone(),
                        power_mid: BTreeMap::new(),
                        stopped_at: run.stopped_at,
                    });
                }
                Ok(run.result)
            }
            Mode::Op if !req.traced => {
                // Under power loss the pauses also give the operation log.
                let mut log = self.power.then(|| OpLog::new(req.sandbox, &req.place.cwd));
                let (result, points, failed) =
                    op::record_every(subject, req, &files.events, &self.store, log.as_mut())?;
                let power = match log.map(OpLog::finish) {
                    None => Some((Vec::new(), BTreeMap::new())),
                    Some(Ok(log)) => Some(log),
                    // Left to a recording run of its own, which says why.
                    Some(Err(_)) => None,
                };
                if let (None, Some((power, power_mid))) = (failed, power) {
                    self.early = Some(Early {
                        case_dir: case_dir.to_path_buf(),
                        points,
                        power,
                        power_mid,
                        stopped_at: None,
                    });
                }
                Ok(result)
            }
            _ => runner::run(subject, req),
        }
    }

    /// The store, and what the last run captured (`None` when nothing
    /// usable was: the plans' points are then recorded by a run of their
    /// own, into the store).
    pub fn finish(self) -> (Store, Option<Early>) {
        (self.store, self.early)
    }
}

impl Early {
    /// How many points were captured.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// True when no point was captured.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Where the captures stopped at the cap (a census call number).
    pub fn stopped_at(&self) -> Option<u64> {
        self.stopped_at
    }

    /// The recording of the points `wanted` (in any order), when every one
    /// was captured: each point's calls and changed paths are those since
    /// the previous wanted point, as a recording of just those points has
    /// them.
    pub fn recording(&self, wanted: &[CrashPoint]) -> Option<Recording> {
        if wanted.iter().any(|p| !self.points.contains_key(p)) {
            return None;
        }
        let mut points = BTreeMap::new();
        // The changes since the previous wanted point, latest hash last.
        let mut changed: Vec<(PathBuf, Option<Hash>)> = Vec::new();
        let mut from: Option<u64> = None;
        for (p, r) in &self.points {
            for (path, hash) in &r.changed {
                match changed.iter_mut().find(|(q, _)| q == path) {
                    Some(slot) => slot.1 = *hash,
                    None => changed.push((path.clone(), *hash)),
                }
            }
            if !wanted.contains(p) {
                continue;
            }
            let end = r.calls.end;
            let (calls, changes) = match from {
                None => (end..end, Vec::new()),
                Some(start) => (start..end, std::mem::take(&mut changed)),
            };
            changed.clear();
            from = Some(end);
            points.insert(
                *p,
                PointRecord {
                    point: *p,
                    state: r.state,
                    calls,
                    changed: changes,
                    outside: r.outside.clone(),
                },
            );
        }
        Some(Recording {
            case_dir: self.case_dir.clone(),
            points,
            power: self.power.clone(),
            power_mid: self.power_mid.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StateId;

    fn record(
        store: &Store,
        point: u64,
        calls: std::ops::Range<u64>,
        changed: &[&str],
    ) -> PointRecord {
        let state: StateId = store.put(format!("state {point}").as_bytes()).expect("put");
        PointRecord {
            point: CrashPoint::Syscall(point),
            state,
            calls,
            changed: changed
                .iter()
                .map(|p| {
                    (
                        PathBuf::from(p),
                        Some(store.put(p.as_bytes()).expect("put")),
                    )
                })
                .collect(),
            outside: vec![PathBuf::from(format!("/outside/{point}"))],
        }
    }

    #[test]
    fn a_recording_of_some_points_has_the_changes_since_the_previous_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::create(dir.path().join("store")).expect("store");
        let points: BTreeMap<CrashPoint, PointRecord> = [
            record(&store, 1, 1..1, &[]),
            record(&store, 2, 1..2, &["a"]),
            record(&store, 3, 2..3, &["b"]),
            record(&store, 4, 3..4, &["a"]),
            record(&store, 5, 4..5, &["c"]),
        ]
        .into_iter()
        .map(|r| (r.point, r))
        .collect();
        let early = Early {
            case_dir: dir.path().join("case-r00000"),
            points: points.clone(),
            power: Vec::new(),
            power_mid: BTreeMap::new(),
            stopped_at: Some(6),
        };
        let want = [CrashPoint::Syscall(4), CrashPoint::Syscall(2)];
        let rec = early.recording(&want).expect("both were captured");
        assert_eq!(rec.points.len(), 2);
        let two = &rec.points[&CrashPoint::Syscall(2)];
        // The first wanted point stands alone, as a recording's first does.
        assert_eq!((two.calls.clone(), two.changed.len()), (2..2, 0));
        assert_eq!(two.state, points[&CrashPoint::Syscall(2)].state);
        let four = &rec.points[&CrashPoint::Syscall(4)];
        assert_eq!(four.calls, 2..4);
        let names: Vec<&Path> = four.changed.iter().map(|(p, _)| p.as_path()).collect();
        assert_eq!(names, [Path::new("b"), Path::new("a")]);
        assert_eq!(four.outside, [PathBuf::from("/outside/4")]);
        // A point past the cap, or never made, has no recording.
        assert!(early.recording(&[CrashPoint::Syscall(6)]).is_none());
        assert!(early
            .recording(&[CrashPoint::Syscall(2), CrashPoint::Syscall(9)])
            .is_none());
    }
}
