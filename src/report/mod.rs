//! Reports: the human verdict table, JSON (with every case) and the JSON
//! Lines streamed as cases finish, JUnit XML, the HTML page of the crash
//! windows, and for every failure one command that replays exactly that
//! case. Nothing in the JSON depends on timing, so the same seed gives the
//! same JSON; a report is assembled from its layouts' reference facts and
//! its case records alone, which is what lets `merge` rebuild the report
//! of a whole run from its partitions. The verdict says how much of the
//! census ran: CERTIFIED only when every point of every layout ran and no
//! case failed ([`Report::verdict`]).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::fault::Fault;
use crate::inject::{Coverage, CrashPlan};
use crate::layout::Layout;
use crate::partition::Partition;
use crate::verdict::{Expect, FailureKind, KindCounts};

mod assemble;
pub mod case;
pub mod cases;
mod coverage;
pub mod html;
pub mod json;
pub mod junit;
pub mod later;
pub mod merge;
pub mod name;
mod table;
mod text_file;

pub use crate::replay::{shell_join, ReplayCommand};
pub use assemble::{SpooledCases, Tally};
pub use case::{CaseRecord, CaseVerdict, FindingRecord, PointRecord, PowerStatesRow};
pub use cases::{CaseList, SpoolError};
pub use junit::junit;
pub use later::{LaterStateRecord, LaterStatesRow};
pub use table::{
    census, certify_table, failure_list, harness_error_list, kinds_cell, render, run_table,
    summary, warning_lines, ScenarioRow,
};

/// A case whose sandbox was disturbed from outside: a harness error, which
/// says nothing about the subject and makes the report untrustworthy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HarnessError {
    /// The layout.
    pub layout: Layout,
    /// The case's crash plan.
    pub crash: CrashPlan,
    /// What went missing.
    pub detail: String,
    /// The command that runs exactly this case again.
    pub replay: String,
}

/// One failure, with what reproduces it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    /// The layout.
    pub layout: Layout,
    /// The kind, as PROTOCOL.md names it.
    pub kind: FailureKind,
    /// Where the case was killed (its crash plan; `none` for the reference).
    pub crash: CrashPlan,
    /// The crash point named: its call, path and phase.
    pub name: String,
    /// What exactly was seen.
    pub detail: String,
    /// One command that reproduces exactly this case.
    pub replay: String,
}

/// One layout: its reference facts, and the counts of its cases.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayoutRow {
    /// The layout.
    pub layout: Layout,
    /// Cases run.
    pub cases: usize,
    /// Cases that passed.
    pub passed: usize,
    /// Findings by kind.
    pub failures: KindCounts,
    /// Size of the census the crash points came from.
    pub census: usize,
    /// The reference digest.
    pub reference_digest: String,
    /// Cases the layout has in all partitions together.
    pub planned: usize,
    /// What its cases covered of the census: points and sites offered and
    /// run, the sites never hit, probes, kills after a completed save.
    #[serde(flatten)]
    pub coverage: Coverage,
    /// Every first crash point the census offers, run or not, with its site.
    #[serde(default)]
    pub census_points: Vec<PointRecord>,
    /// What the uninterrupted run already shows (no case runs then).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_findings: Vec<FindingRecord>,
    /// Warnings of the uninterrupted run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_warnings: Vec<String>,
    /// Wall time (not in JSON, so reports stay deterministic).
    #[serde(skip)]
    pub duration: Duration,
    /// The crash states the record-once engine recorded, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states: Option<StatesRow>,
    /// Under the power-loss fault model, the disk states its cases were
    /// judged in (absent under process kills).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_states: Option<PowerStatesRow>,
    /// The later crash states (`--crashes 2` or more) its cases
    /// materialised from recorded resume runs, counted from the case
    /// records (absent when there was none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub later_states: Option<LaterStatesRow>,
}

/// What the record-once engine recorded for a layout.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatesRow {
    /// Crash points recorded.
    pub points: usize,
    /// Distinct crash states among them (one resume each).
    pub distinct: usize,
    /// `syscall:12 same state as syscall:11`, for each point that shares
    /// an earlier point's state.
    pub same_as: Vec<String>,
    /// Subject runs the cases made (not in JSON).
    #[serde(skip)]
    pub runs_made: usize,
    /// Later crash points recorded in resume runs (not in JSON: a
    /// partition records only those its share needs).
    #[serde(skip)]
    pub later_points: usize,
    /// Were the points recorded by the census run itself, not by a run of
    /// their own (not in JSON)?
    #[serde(skip)]
    pub by_census_run: bool,
}

impl StatesRow {
    /// One line for the text report.
    pub fn line(&self, layout: &str) -> String {
        let later = match self.later_points {
            0 => String::new(),
            n => format!(", {n} later crash points recorded in resume runs"),
        };
        let by = if self.by_census_run {
            " by the census run"
        } else {
            ""
        };
        format!(
            "{layout}: {} crash points recorded once{by}, {} distinct states{later}; {} subject runs for the cases",
            self.points, self.distinct, self.runs_made
        )
    }
}

/// The report of one campaign (one scenario, or one `certify`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// Scenario name or command.
    pub name: String,
    /// The fault model covered.
    pub fault: Fault,
    /// True when no case failed, every point (and probe) of every layout
    /// ran, and the cases prove something (see [`Report::not_covered`]);
    /// for a partition: every case of its share ran and none failed.
    pub certified: bool,
    /// First crash points offered, over every layout.
    pub points: usize,
    /// Of those, the ones a case ran.
    pub points_run: usize,
    /// Sites, over every layout.
    pub sites: usize,
    /// Sites a case ran a point of, over every layout.
    pub sites_covered: usize,
    /// What was not covered, or why the cases prove nothing; empty when
    /// every point ran and the result is conclusive.
    pub not_covered: Vec<String>,
    /// True when the harness was stopped (SIGINT, SIGTERM) before the end:
    /// the report covers only the cases that finished.
    pub interrupted: bool,
    /// Cases run.
    pub cases: usize,
    /// The share of the cases this report covers, when it is one partition
    /// of a run (`--partition I/N`); absent for a whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<Partition>,
    /// What the scenario expects (`pass`, `fail: dangling-last`), for `run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// How each case's replay command is written.
    pub replay: ReplayCommand,
    /// Per-layout summary.
    pub layouts: Vec<LayoutRow>,
    /// Every failure.
    pub failures: Vec<Failure>,
    /// Things worth a look that are not failures.
    pub warnings: Vec<String>,
    /// Cases disturbed from outside (not in JSON when there is none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub harness_errors: Vec<HarnessError>,
    /// The environment variables recorded for the replays (`PYTHONPATH`,
    /// `VIRTUAL_ENV`, `LD_LIBRARY_PATH` when set, and each `--env NAME`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Every case, per layout in plan order (spooled to a file while a
    /// campaign runs, see [`CaseList`]).
    pub case_results: CaseList,
}

impl Report {
    /// Marks this report as partition `p` of a run: what is not covered is
    /// then what its share did not run, and it passes (`certified`) when
    /// its whole share ran and no case failed. Only the merged report of
    /// every partition can certify the run.
    pub fn set_partition(&mut self, p: Partition) {
        if p.is_whole() {
            return;
        }
        self.partition = Some(p);
        self.not_covered = coverage::not_covered(&self.layouts, Some(p));
        self.certified = self.failures.is_empty()
            && self.harness_errors.is_empty()
            && self.not_covered.is_empty();
    }

    /// The verdict in words: `CERTIFIED` only when no case failed, every
    /// point (and probe) of every layout ran and the result is conclusive;
    /// otherwise what was seen, as "no failure in N of M points (S of T
    /// sites)" and why that is not a certification.
    ///
    /// ```
    /// use crashpoint::fault::Fault;
    /// use crashpoint::report::{Report, ReplayCommand};
    /// let r = Report::assemble("demo", Fault::Kill, ReplayCommand::default(), vec![], vec![]);
    /// assert_eq!(r.verdict(), "no failure in 0 of 0 points (0 of 0 sites): CERTIFIED");
    /// ```
    pub fn verdict(&self) -> String {
        coverage::verdict(self)
    }

    /// Can the report be trusted: was no case disturbed from outside?
    pub fn trustworthy(&self) -> bool {
        self.harness_errors.is_empty()
    }

    /// The kinds of failure seen anywhere.
    pub fn kinds(&self) -> Vec<FailureKind> {
        let mut k: Vec<FailureKind> = self.failures.iter().map(|f| f.kind).collect();
        k.sort();
        k.dedup();
        k
    }

    /// Is this report the verdict it expects (certified, when it says nothing)?
    pub fn as_expected(&self) -> bool {
        match self.expect.as_deref().map(parse_expect) {
            Some(Some(e)) => self.meets(&e),
            _ => self.certified,
        }
    }

    /// Is this report the verdict `expect` asks for? A scenario's `pass`
    /// asks that no case it ran failed (a scenario may sample on purpose).
    pub fn meets(&self, expect: &Expect) -> bool {
        expect.matches(self.failures.is_empty(), &self.kinds())
    }
}

/// `pass`, `fail` or `fail: kind,kind` ([`Expect::text`]) back.
fn parse_expect(s: &str) -> Option<Expect> {
    match s.trim() {
        "pass" => Some(Expect::Pass),
        "fail" => Some(Expect::Fail(Vec::new())),
        other => {
            let kinds = other.strip_prefix("fail:")?;
            kinds
                .split(',')
                .map(|k| k.trim().parse().ok())
                .collect::<Option<Vec<FailureKind>>>()
                .map(Expect::Fail)
        }
    }
}

/// A report could not be serialised: nothing is written then, and the
/// command fails, rather than leaving a `null` or empty file behind.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// JSON serialisation failed.
    #[error("cannot serialise the JSON report: {0}")]
    Json(#[from] serde_json::Error),
    /// Spooled case records could not be read back.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The JSON report could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// JUnit XML serialisation failed.
    #[error("cannot serialise the JUnit report: {0}")]
    Junit(String),
}

/// `value` as pretty JSON with a final newline.
pub fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, ReportError> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

#[cfg(test)]
mod serialise_tests {
    use super::*;

    struct Unserialisable;
    impl serde::Serialize for Unserialisable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no JSON for this"))
        }
    }

    #[test]
    fn a_serialisation_error_is_an_error_not_null() {
        let err = to_json(&Unserialisable).unwrap_err();
        assert!(err.to_string().contains("no JSON for this"), "{err}");
        assert_eq!(to_json(&[1, 2]).unwrap(), "[\n  1,\n  2\n]\n");
    }
}
