//! What runs beside a campaign, fed by its events: progress on stderr, the
//! JSON Lines stream of finished cases, and `--keep-failed`.

use std::path::Path;

use crate::events::{Event, Reporter};
use crate::keep::KeepFailed;
use crate::report::json::JsonLines;

/// The reporters of one command.
pub struct Live {
    /// Progress on stderr (a bar, plain lines, or nothing).
    pub progress: Box<dyn Reporter>,
    /// The JSON Lines file, when `--json` is given.
    pub lines: Option<JsonLines>,
    /// `--keep-failed`.
    pub keep: Option<KeepFailed>,
}

impl Live {
    /// Progress unless `quiet`; JSON Lines beside `json`; failing cases kept in `keep`.
    pub fn new(quiet: bool, json: Option<&Path>, keep: Option<&Path>) -> std::io::Result<Live> {
        Ok(Live {
            progress: crate::progress::for_stderr(quiet, ""),
            lines: json
                .map(|p| JsonLines::create(&crate::report::json::lines_path(p)))
                .transpose()?,
            keep: keep.map(KeepFailed::new).transpose()?,
        })
    }

    /// Events that follow belong to the report (scenario) `name`; progress
    /// lines carry `label` (empty for `certify`).
    pub fn start_report(&mut self, name: &str, label: &str, quiet: bool) {
        if let Some(l) = &self.lines {
            l.set_report(name);
        }
        if !label.is_empty() {
            self.progress = crate::progress::for_stderr(quiet, label);
        }
    }
}

impl Reporter for Live {
    fn event(&self, e: &Event<'_>) {
        self.progress.event(e);
        if let Some(l) = &self.lines {
            l.event(e);
        }
        if let Some(k) = &self.keep {
            k.event(e);
        }
    }
}
