//! Observations: what the run driver saw of a case, run by run. The driver
//! produces them; the checks judge them without touching any file, so a
//! check can be tested on observations made by hand.

use std::path::PathBuf;
use std::time::Duration;

use crate::inject::CrashPoint;
use crate::observe::{DirSnapshot, StateError};
use crate::protocol::{Event, StateFile};
use crate::runner::Exit;

use super::checks::shape::Announced;

/// One run of a case.
#[derive(Debug, Clone)]
pub struct RunObs {
    /// 1-based.
    pub run: usize,
    /// `CRASHPOINT_RESUME` it was given (`None`: a fresh run).
    pub resume: Option<String>,
    /// The crash point it was to be killed at.
    pub crash: Option<CrashPoint>,
    /// How it ended.
    pub exit: Exit,
    /// How it ended, in words (with the end of its stderr).
    pub how: String,
    /// The events it appended.
    pub events: Vec<Event>,
    /// Its `saved` events, placed in the checkpoint tree.
    pub saves: Vec<Announced>,
    /// The checkpoint tree right after it was killed (crashed runs only).
    pub after: Option<DirSnapshot>,
    /// Its state file (runs that exited 0 only).
    pub state: Option<Result<StateFile, StateError>>,
    /// Files it wrote outside its sandbox.
    pub outside: Vec<PathBuf>,
}

impl RunObs {
    /// The step this run said it resumed from (a `resumed` event).
    pub fn resumed_event(&self) -> Option<u64> {
        self.events.iter().find_map(|e| match e {
            Event::Resumed { step } => Some(*step),
            _ => None,
        })
    }
}

/// Everything the driver saw of one case.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    /// Every run, in order.
    pub runs: Vec<RunObs>,
    /// The checkpoint tree after the last run.
    pub end: DirSnapshot,
    /// The per-run time limit.
    pub timeout: Duration,
    /// Things the driver could not do (prepare the next run, ...).
    pub notes: Vec<String>,
    /// Set when the sandbox was disturbed from outside during a run: the
    /// case says nothing about the subject, and the driver stopped.
    pub harness_error: Option<String>,
}

impl Observations {
    /// Crash points that were reached.
    pub fn crashes_hit(&self) -> usize {
        self.runs.iter().filter(|r| r.exit == Exit::Crashed).count()
    }

    /// Every event of every run, in order.
    pub fn events(&self) -> Vec<Event> {
        self.runs.iter().flat_map(|r| r.events.clone()).collect()
    }

    /// Every announced save of every run, in order.
    pub fn saves(&self) -> Vec<Announced> {
        self.runs.iter().flat_map(|r| r.saves.clone()).collect()
    }
}

/// Roughly how many bytes a string, a map of strings, an event, a
/// snapshot hold on the heap (with what each allocation costs besides).
mod weigh {
    use super::*;
    use std::collections::BTreeMap;

    const ALLOC: usize = 32;

    pub(super) fn text(s: &str) -> usize {
        s.len() + ALLOC
    }

    pub(super) fn map(m: &BTreeMap<String, String>) -> usize {
        m.iter().map(|(k, v)| text(k) + text(v) + ALLOC).sum()
    }

    pub(super) fn event(e: &Event) -> usize {
        std::mem::size_of::<Event>()
            + match e {
                Event::Saved { path, .. } => text(path),
                Event::Resumed { .. } => 0,
                Event::State { parts, .. } => map(parts),
            }
    }

    pub(super) fn snapshot(s: &DirSnapshot) -> usize {
        let entries: usize = s
            .entries
            .iter()
            .map(|e| std::mem::size_of_val(e) + text(&e.name) + 2 * ALLOC)
            .sum();
        let pointers: usize = s
            .pointers
            .iter()
            .map(|p| std::mem::size_of_val(p) + text(&p.name) + text(&p.names) + ALLOC)
            .sum();
        std::mem::size_of::<DirSnapshot>() + entries + pointers
    }

    pub(super) fn run(r: &RunObs) -> usize {
        std::mem::size_of::<RunObs>()
            + r.resume.as_deref().map_or(0, text)
            + text(&r.how)
            + r.events.iter().map(event).sum::<usize>()
            + r.saves.len() * (std::mem::size_of::<Announced>() + ALLOC + 64)
            + r.after.as_ref().map_or(0, snapshot)
            + match &r.state {
                Some(Ok(s)) => text(&s.digest) + map(&s.fields),
                Some(Err(_)) => 256,
                None => 0,
            }
            + r.outside
                .iter()
                .map(|p| p.as_os_str().len() + ALLOC)
                .sum::<usize>()
    }
}

impl Observations {
    /// Roughly how many bytes they hold: what keeping a copy costs (see
    /// [`crate::oracle::SeenSlot`]).
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Observations>()
            + self.runs.iter().map(weigh::run).sum::<usize>()
            + weigh::snapshot(&self.end)
            + self.notes.iter().map(|n| weigh::text(n)).sum::<usize>()
            + self.harness_error.as_deref().map_or(0, weigh::text)
    }
}
