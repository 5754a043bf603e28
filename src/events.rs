//! What a campaign tells as it runs: typed events (a layout's reference runs
//! started or finished, a case finished with its outcome, a layout finished)
//! handed to a [`Reporter`], as nextest's reporter events are. Progress bars,
//! plain log lines, the streamed JSON Lines file and `--keep-failed` are all
//! reporters; the campaign knows none of them.

use std::path::Path;
use std::time::Duration;

use crate::inject::CrashPlan;
use crate::layout::Layout;
use crate::oracle::{CaseOutcome, Reference};

/// One thing that happened in a campaign.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A layout's reference runs start.
    ReferenceStarted {
        /// The layout.
        layout: Layout,
        /// Its place among the campaign's layouts (1-based).
        position: usize,
        /// How many layouts the campaign has.
        layouts: usize,
    },
    /// A layout's reference runs finished; `cases` cases follow (none when
    /// the uninterrupted run already fails).
    ReferenceFinished {
        /// The layout.
        layout: Layout,
        /// The reference, census included.
        reference: &'a Reference,
        /// Cases this run will try in the layout (its partition's share).
        cases: usize,
    },
    /// One case finished. Its directory still exists while reporters see
    /// this event, and is removed after.
    CaseFinished {
        /// The layout.
        layout: Layout,
        /// The case's place in the layout's plan list (0-based, whole list).
        index: usize,
        /// Its crash plan.
        plan: &'a CrashPlan,
        /// What the oracle said.
        outcome: &'a CaseOutcome,
        /// The case's directory: `sandbox/` and `harness/`.
        dir: &'a Path,
        /// Cases of this layout finished so far, this one included.
        done: usize,
        /// Cases of this layout this run tries.
        total: usize,
    },
    /// A layout's every case finished (or the harness was stopped).
    LayoutFinished {
        /// The layout.
        layout: Layout,
        /// Wall time, reference included.
        duration: Duration,
    },
}

/// Receives a campaign's events, from several worker threads at once.
pub trait Reporter: Sync {
    /// One event; must not block for long (workers wait for it).
    fn event(&self, e: &Event<'_>);
}

/// Tells nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _: &Event<'_>) {}
}

/// Hands each event to every reporter, in order.
pub struct Tee<'a>(pub Vec<&'a dyn Reporter>);

impl Reporter for Tee<'_> {
    fn event(&self, e: &Event<'_>) {
        for r in &self.0 {
            r.event(e);
        }
    }
}

impl<F: Fn(&Event<'_>) + Sync> Reporter for F {
    fn event(&self, e: &Event<'_>) {
        self(e)
    }
}
