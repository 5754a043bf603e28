//! The progress bar on a terminal (indicatif): a spinner while a layout's
//! reference runs, then cases done of total, failures so far and an ETA;
//! one summary line per layout stays above it.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{short_duration, who};
use crate::events::{Event, Reporter};

/// An indicatif bar on stderr.
#[derive(Debug)]
pub struct Bar {
    bar: ProgressBar,
    label: String,
    failing: Mutex<usize>,
}

impl Bar {
    /// A bar drawn on stderr; `label` (a scenario's name, or empty) goes
    /// before the layout.
    pub fn new(label: &str) -> Bar {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        Bar {
            bar,
            label: label.to_string(),
            failing: Mutex::new(0),
        }
    }

    fn failing(&self) -> usize {
        self.failing.lock().map(|n| *n).unwrap_or(0)
    }
}

fn spinner() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix}: {msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn cases() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: [{bar:30}] {pos}/{len} cases, {msg}, ETA {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Reporter for Bar {
    fn event(&self, e: &Event<'_>) {
        match e {
            Event::ReferenceStarted {
                layout,
                position,
                layouts,
            } => {
                self.bar.reset();
                self.bar.set_style(spinner());
                self.bar.set_prefix(who(&self.label, *layout));
                self.bar.set_length(0);
                self.bar
                    .set_message(format!("reference runs (layout {position} of {layouts})"));
                self.bar.enable_steady_tick(Duration::from_millis(120));
                if let Ok(mut n) = self.failing.lock() {
                    *n = 0;
                }
            }
            Event::ReferenceFinished { cases: n, .. } => {
                self.bar.reset();
                self.bar.set_style(cases());
                self.bar.set_length(*n as u64);
                self.bar.set_message("0 failing");
            }
            Event::CaseFinished { outcome, .. } => {
                if !outcome.passed() {
                    if let Ok(mut n) = self.failing.lock() {
                        *n += 1;
                    }
                }
                self.bar.set_message(format!("{} failing", self.failing()));
                self.bar.inc(1);
            }
            Event::LayoutFinished { layout, duration } => {
                let line = format!(
                    "{}: {}/{} cases, {} failing, took {}",
                    who(&self.label, *layout),
                    self.bar.position(),
                    self.bar.length().unwrap_or(0),
                    self.failing(),
                    short_duration(*duration)
                );
                self.bar.disable_steady_tick();
                self.bar.finish_and_clear();
                self.bar.println(line);
            }
        }
    }
}
