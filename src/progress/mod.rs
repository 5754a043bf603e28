//! Progress of a campaign on stderr, fed by the campaign's typed events
//! ([`crate::events::Event`]): a bar on a terminal ([`bar`]), throttled
//! plain lines in a CI log ([`plain`]), nothing with `--quiet`.

pub mod bar;
pub mod plain;

use std::io::IsTerminal;
use std::time::Duration;

use crate::events::{Reporter, Silent};

/// The reporter for this process's stderr: a bar when it is a terminal,
/// plain lines when it is not, nothing when `quiet`. `label` (a scenario
/// name, or empty) goes before the layout's name.
pub fn for_stderr(quiet: bool, label: &str) -> Box<dyn Reporter> {
    if quiet {
        Box::new(Silent)
    } else if std::io::stderr().is_terminal() {
        Box::new(bar::Bar::new(label))
    } else {
        Box::new(plain::Plain::new(std::io::stderr(), plain::SystemClock::start()).label(label))
    }
}

/// `label layout`, or `layout` when there is no label.
fn who(label: &str, layout: crate::layout::Layout) -> String {
    if label.is_empty() {
        layout.name().to_string()
    } else {
        format!("{label} {layout}")
    }
}

/// A duration as a log reads it: `45s`, `3m10s`, `1h02m`.
///
/// ```
/// use std::time::Duration;
/// use crashpoint::progress::short_duration;
/// assert_eq!(short_duration(Duration::from_secs(190)), "3m10s");
/// assert_eq!(short_duration(Duration::from_secs(45)), "45s");
/// assert_eq!(short_duration(Duration::from_secs(3720)), "1h02m");
/// ```
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The time left, from the time `elapsed` that `done` of `total` took.
pub fn eta(elapsed: Duration, done: usize, total: usize) -> Option<Duration> {
    if done == 0 || done > total {
        return None;
    }
    let per = elapsed.as_secs_f64() / done as f64;
    Some(Duration::from_secs_f64(per * (total - done) as f64))
}
