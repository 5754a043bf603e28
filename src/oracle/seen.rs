//! What one case saw, kept for the cases known to see the same (see
//! [`super::Runs::same_case`]): a slot per shared state, filled by the first
//! of its cases, and the bounded room the slots of a layout keep it in.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use super::obs::Observations;
use crate::runner::RunnerError;

/// What one case saw, kept so that the cases known to see the same are
/// judged from it (see [`super::Runs::same_case`]).
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

impl Seen {
    /// Roughly how many bytes keeping it costs.
    pub fn approx_bytes(&self) -> usize {
        self.obs.approx_bytes() + self.leftovers.len() * 64 + 256
    }
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
    pub fn get_or_make(&self, make: impl FnOnce() -> Result<Seen, RunnerError>) -> Took<'_> {
        let mut made = None;
        let got = self
            .inner
            .cell
            .get_or_init(|| match make().map(|s| self.keep(s)) {
                Ok(Ok(kept)) => {
                    made = Some(Ok(None));
                    Some(kept)
                }
                Ok(Err(s)) => {
                    made = Some(Ok(Some(s)));
                    None
                }
                Err(e) => {
                    made = Some(Err(e));
                    None
                }
            });
        match (got, made) {
            (Some(seen), m) => Took::Kept {
                seen,
                made_here: m.is_some(),
            },
            (None, Some(Ok(Some(s)))) => Took::Made(Ok(s)),
            (None, Some(Err(e))) => Took::Made(Err(e)),
            (None, _) => Took::Nothing,
        }
    }

    /// Keeps `seen` if it may be judged from and there is room for it;
    /// gives it back otherwise.
    fn keep(&self, seen: Seen) -> Result<Arc<Seen>, Box<Seen>> {
        // A case whose sandbox was disturbed says nothing of the others.
        if seen.obs.harness_error.is_some() {
            return Err(Box::new(seen));
        }
        let mut held = self.inner.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.1 {
            // Only the cases in flight are left to judge from it: it goes
            // with them, and takes no room.
            return Ok(Arc::new(seen));
        }
        let bytes = seen.approx_bytes();
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
    Made(Result<Box<Seen>, RunnerError>),
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
