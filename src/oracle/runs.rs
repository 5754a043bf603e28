//! How the runs of a case are carried out: the oracle's run loop asks a
//! [`Runs`] for each run, so that an engine can put a run's known effect in
//! place instead of starting the subject.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::obs::Observations;
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

/// What one case saw, kept so that the cases known to see the same are
/// judged from it (see [`Runs::same_case`]).
#[derive(Debug)]
pub struct Seen {
    /// Everything the driver saw (its first run's crash point is the
    /// point of the case that was run).
    pub obs: Observations,
    /// The leftovers its sandbox held after the last run.
    pub leftovers: Vec<String>,
    /// The sandbox's root, as the case saw it.
    pub root: PathBuf,
    /// The case directory.
    pub case_dir: PathBuf,
}

/// Where the first of the cases that see the same leaves what it saw, for
/// the others: empty until it is done; holding nothing when it could not
/// be kept (a run failed to start, the sandbox was disturbed from outside,
/// or there was no [`Room`] for it: the others are then run as it was).
/// Cloning it gives another handle to the same slot.
#[derive(Debug, Clone)]
pub struct SeenSlot {
    inner: Arc<SlotInner>,
}

#[derive(Debug)]
struct SlotInner {
    cell: OnceLock<Option<Arc<Seen>>>,
    room: Arc<Room>,
    /// The bytes it holds of its room, and whether every case that
    /// shares it has asked for it already (then it holds none).
    held: Mutex<(usize, bool)>,
}

impl SeenSlot {
    /// An empty slot whose keeping takes its bytes from `room`.
    pub fn new(room: &Arc<Room>) -> SeenSlot {
        SeenSlot {
            inner: Arc::new(SlotInner {
                cell: OnceLock::new(),
                room: Arc::clone(room),
                held: Mutex::new((0, false)),
            }),
        }
    }

    /// What the first case left, making it with `make` when no case did
    /// yet (blocking while another case makes it).
    pub fn get_or_make(&self, make: impl FnOnce() -> Option<Seen>) -> Took<'_> {
        let mut made_here = false;
        let mut made: Option<Option<Box<Seen>>> = None;
        let got = self.inner.cell.get_or_init(|| {
            made_here = true;
            match make() {
                Some(s) => match self.keep(s) {
                    Ok(kept) => Some(kept),
                    Err(s) => {
                        made = Some(Some(s));
                        None
                    }
                },
                None => {
                    made = Some(None);
                    None
                }
            }
        });
        match (got, made) {
            (Some(seen), _) => Took::Kept { seen, made_here },
            (None, Some(m)) => Took::Made(m),
            (None, None) => Took::Nothing,
        }
    }

    /// Keeps `seen` if there is room for it; gives it back otherwise.
    fn keep(&self, seen: Seen) -> Result<Arc<Seen>, Box<Seen>> {
        let mut held = self.inner.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.1 {
            // Only the cases in flight are left to judge from it: it goes
            // with them, and takes no room.
            return Ok(Arc::new(seen));
        }
        let bytes = seen.obs.approx_bytes() + seen.leftovers.len() * 64 + 256;
        if !self.inner.room.take(bytes) {
            return Err(Box::new(seen));
        }
        held.0 = bytes;
        Ok(Arc::new(seen))
    }

    /// Every case that shares the slot has asked for it: what it holds
    /// goes once those in flight are judged, and its room is given back.
    pub fn close(&self) {
        let mut held = self.inner.held.lock().unwrap_or_else(|e| e.into_inner());
        self.inner.room.give(held.0);
        *held = (0, true);
    }

    /// Are `a` and `b` the same slot?
    pub fn ptr_eq(a: &SeenSlot, b: &SeenSlot) -> bool {
        Arc::ptr_eq(&a.inner, &b.inner)
    }
}

/// What [`SeenSlot::get_or_make`] found.
#[derive(Debug)]
pub enum Took<'a> {
    /// What the first case saw, kept (`made_here`: by this call's `make`).
    Kept {
        /// What it saw.
        seen: &'a Arc<Seen>,
        /// Was it made here?
        made_here: bool,
    },
    /// Made here and not kept: what `make` gave, for this case alone.
    Made(Option<Box<Seen>>),
    /// Made by another case, which kept nothing.
    Nothing,
}

/// How many bytes the slots of one layout may keep at once: what the
/// cases that share states hold is bounded, whatever the campaign's size.
#[derive(Debug)]
pub struct Room {
    left: Mutex<usize>,
}

impl Room {
    /// Room for `bytes`.
    pub fn new(bytes: usize) -> Arc<Room> {
        Arc::new(Room {
            left: Mutex::new(bytes),
        })
    }

    /// Takes `bytes` when that many are left.
    fn take(&self, bytes: usize) -> bool {
        let mut left = self.left.lock().unwrap_or_else(|e| e.into_inner());
        match left.checked_sub(bytes) {
            Some(l) => {
                *left = l;
                true
            }
            None => false,
        }
    }

    fn give(&self, bytes: usize) {
        *self.left.lock().unwrap_or_else(|e| e.into_inner()) += bytes;
    }

    /// The bytes left.
    pub fn left(&self) -> usize {
        *self.left.lock().unwrap_or_else(|e| e.into_inner())
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
