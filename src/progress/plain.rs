//! Plain progress lines for a log that is not a terminal (CI): one when a
//! layout's reference runs start and end, then a line at most every 10 s
//! of progress or every tenth of the cases, and a last one per layout:
//!
//! ```text
//! relative: reference runs (layout 1 of 7)
//! relative: census of 38 points, 41 cases
//! relative: 40/91 cases, 2 failing, ETA 3m10s
//! relative: 91/91 cases, 2 failing, took 3m05s
//! ```
//!
//! Time comes from a [`Clock`], so tests drive it without sleeping.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{eta, short_duration, who};
use crate::events::{Event, Reporter};

/// Time since some fixed start.
pub trait Clock: Send + Sync {
    /// How long since the start.
    fn now(&self) -> Duration;
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock(Instant);

impl SystemClock {
    /// A clock that starts now.
    pub fn start() -> SystemClock {
        SystemClock(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// At most this long between two lines while cases finish.
pub const EVERY: Duration = Duration::from_secs(10);

/// What the lines are computed from.
#[derive(Debug, Default)]
struct State {
    /// When the current layout's cases started.
    cases_start: Duration,
    /// When the last line was printed.
    last_line: Duration,
    /// The tenth of the cases the last line was printed at.
    last_tenth: usize,
    failing: usize,
}

/// Writes plain progress lines to `W`.
#[derive(Debug)]
pub struct Plain<W, C> {
    out: Mutex<(W, State)>,
    clock: C,
    label: String,
}

impl<W: Write + Send, C: Clock> Plain<W, C> {
    /// A reporter writing to `out`, timed by `clock`.
    pub fn new(out: W, clock: C) -> Self {
        Plain {
            out: Mutex::new((out, State::default())),
            clock,
            label: String::new(),
        }
    }

    /// Puts `label` (a scenario's name) before the layout in every line.
    pub fn label(mut self, label: &str) -> Self {
        self.label = label.to_string();
        self
    }

    /// The writer back (tests read what was written).
    pub fn into_inner(self) -> W {
        match self.out.into_inner() {
            Ok((w, _)) => w,
            Err(p) => p.into_inner().0,
        }
    }
}

impl<W: Write + Send, C: Clock> Reporter for Plain<W, C> {
    fn event(&self, e: &Event<'_>) {
        let now = self.clock.now();
        let Ok(mut guard) = self.out.lock() else {
            return;
        };
        let (w, st) = &mut *guard;
        let label = &self.label;
        let line = match e {
            Event::ReferenceStarted {
                layout,
                position,
                layouts,
            } => Some(format!(
                "{}: reference runs (layout {position} of {layouts})",
                who(label, *layout)
            )),
            Event::ReferenceFinished {
                layout,
                reference,
                cases,
            } => {
                *st = State {
                    cases_start: now,
                    last_line: now,
                    ..State::default()
                };
                Some(if reference.findings.is_empty() {
                    format!(
                        "{}: census of {} points, {cases} cases",
                        who(label, *layout),
                        reference.census.len()
                    )
                } else {
                    let kinds: Vec<&str> =
                        reference.findings.iter().map(|f| f.kind.name()).collect();
                    format!(
                        "{}: the uninterrupted run fails ({}), no cases",
                        who(label, *layout),
                        kinds.join(", ")
                    )
                })
            }
            Event::CaseFinished {
                layout,
                outcome,
                done,
                total,
                ..
            } => {
                if !outcome.passed() {
                    st.failing += 1;
                }
                let (done, total) = (*done, *total);
                let tenth = done * 10 / total.max(1);
                let elapsed = now.saturating_sub(st.cases_start);
                if done >= total {
                    Some(format!(
                        "{}: {done}/{total} cases, {} failing, took {}",
                        who(label, *layout),
                        st.failing,
                        short_duration(elapsed)
                    ))
                } else if tenth > st.last_tenth || now.saturating_sub(st.last_line) >= EVERY {
                    st.last_tenth = tenth;
                    let left = eta(elapsed, done, total)
                        .map(|d| format!(", ETA {}", short_duration(d)))
                        .unwrap_or_default();
                    Some(format!(
                        "{}: {done}/{total} cases, {} failing{left}",
                        who(label, *layout),
                        st.failing
                    ))
                } else {
                    None
                }
            }
            Event::LayoutFinished { .. } => None,
        };
        if let Some(l) = line {
            st.last_line = now;
            let _ = writeln!(w, "{l}");
            let _ = w.flush();
        }
    }
}
