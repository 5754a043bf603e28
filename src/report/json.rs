//! The JSON report (pretty, deterministic for a seed) and reading it back
//! (for `report` and `merge`); the JSON Lines file streamed beside it as
//! cases finish (`out.json` → `out.jsonl`), one line per reference and per
//! case, with the case's duration, flushed line by line, so a long run's
//! results are on disk while it goes and nothing is held back for them.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::events::{Event, Reporter};
use crate::inject::CensusEntry;
use crate::layout::Layout;

use super::{CaseRecord, Report};

/// The JSON of one report (an object) or several (an array), as written.
pub fn to_string(reports: &[&Report]) -> Result<String, super::ReportError> {
    if reports.len() == 1 {
        super::to_json(reports[0])
    } else {
        super::to_json(reports)
    }
}

/// Writes the JSON of `reports` (as [`to_string`] has it) to `path`,
/// streamed: spooled case records are read back one at a time, so the
/// text is never whole in memory. It is serialised once into nothing
/// first: if that fails (a record cannot be read back), nothing is
/// written; then `path` is created or truncated, as `std::fs::write` does.
pub fn write(path: &Path, reports: &[&Report]) -> Result<(), super::ReportError> {
    fn pretty<W: Write>(out: W, reports: &[&Report]) -> serde_json::Result<()> {
        match reports {
            [one] => serde_json::to_writer_pretty(out, one),
            _ => serde_json::to_writer_pretty(out, reports),
        }
    }
    let io = |source| super::ReportError::Write {
        path: path.display().to_string(),
        source,
    };
    pretty(std::io::sink(), reports)?;
    let file = std::fs::File::create(path).map_err(io)?;
    let mut out = std::io::BufWriter::new(file);
    match pretty(&mut out, reports) {
        Err(e) if e.is_io() => return Err(io(e.into())),
        r => r?,
    }
    out.write_all(b"\n").map_err(io)?;
    out.flush().map_err(io)?;
    Ok(())
}

/// Why a JSON report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// It is not a crashpoint JSON report.
    #[error("{path} is not a crashpoint JSON report: {source}")]
    Format {
        /// The file.
        path: String,
        /// What did not parse.
        source: serde_json::Error,
    },
}

/// Reads the reports of a JSON file written by `--json` (one object, or an
/// array for several scenarios).
pub fn read(path: &Path) -> Result<Vec<Report>, ReadError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let format = |source| ReadError::Format {
        path: path.display().to_string(),
        source,
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(format)?;
    if value.is_array() {
        serde_json::from_value(value).map_err(format)
    } else {
        serde_json::from_value(value)
            .map(|r| vec![r])
            .map_err(format)
    }
}

/// Where the JSON Lines of `json` go: the same name with `.jsonl`.
pub fn lines_path(json: &Path) -> PathBuf {
    if json.extension().is_some_and(|e| e == "jsonl") {
        let mut s = json.as_os_str().to_os_string();
        s.push(".cases.jsonl");
        return PathBuf::from(s);
    }
    json.with_extension("jsonl")
}

/// One line of the JSON Lines file.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Line {
    /// A layout's reference runs finished.
    Reference {
        /// The report (scenario or command) it belongs to.
        report: String,
        /// The layout.
        layout: String,
        /// The reference digest.
        digest: String,
        /// Size of the census.
        census: usize,
        /// Cases that follow in this run.
        cases: usize,
    },
    /// A case finished.
    Case {
        /// The report (scenario or command) it belongs to.
        report: String,
        /// The case.
        #[serde(flatten)]
        case: CaseRecord,
    },
}

/// A reporter that appends a line per reference and per case to a file.
#[derive(Debug)]
pub struct JsonLines {
    out: Mutex<std::io::BufWriter<std::fs::File>>,
    report: Mutex<String>,
    census: Mutex<HashMap<Layout, Vec<CensusEntry>>>,
}

impl JsonLines {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> std::io::Result<JsonLines> {
        let f = std::fs::File::create(path)?;
        Ok(JsonLines {
            out: Mutex::new(std::io::BufWriter::new(f)),
            report: Mutex::new(String::new()),
            census: Mutex::new(HashMap::new()),
        })
    }

    /// Lines that follow belong to the report named `name`.
    pub fn set_report(&self, name: &str) {
        if let Ok(mut r) = self.report.lock() {
            *r = name.to_string();
        }
    }

    fn write(&self, line: &Line) {
        if let (Ok(mut out), Ok(text)) = (self.out.lock(), serde_json::to_string(line)) {
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }

    fn report(&self) -> String {
        self.report.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Reporter for JsonLines {
    fn event(&self, e: &Event<'_>) {
        match e {
            Event::ReferenceFinished {
                layout,
                reference,
                cases,
            } => {
                if let Ok(mut c) = self.census.lock() {
                    c.insert(*layout, reference.census.clone());
                }
                self.write(&Line::Reference {
                    report: self.report(),
                    layout: layout.name().into(),
                    digest: reference.state.digest.clone(),
                    census: reference.census.len(),
                    cases: *cases,
                });
            }
            Event::CaseFinished {
                layout,
                index,
                outcome,
                ..
            } => {
                let mut case = match self.census.lock() {
                    Ok(c) => CaseRecord::of(*index, outcome, c.get(layout).map_or(&[], |v| v)),
                    Err(_) => CaseRecord::of(*index, outcome, &[]),
                };
                case.duration_ms = Some(outcome.duration.as_millis() as u64);
                self.write(&Line::Case {
                    report: self.report(),
                    case,
                });
            }
            _ => {}
        }
    }
}
