//! Every case of a report, one record each (what the JSON's `case_results`
//! and the streamed JSON Lines hold), and every crash point a layout's census
//! offers (what the HTML page draws, run or not).

use crate::inject::{self, CensusEntry, CrashPlan, CrashPoint, Mode};
use crate::layout::Layout;
use crate::oracle::CaseOutcome;
use crate::verdict::FailureKind;

use super::name;

/// Passed or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaseVerdict {
    /// Ended with the reference digest and broke no invariant.
    Passed,
    /// At least one finding.
    Failed,
    /// The sandbox was disturbed from outside: says nothing about the subject.
    HarnessError,
}

/// One finding of a case.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FindingRecord {
    /// The kind.
    pub kind: FailureKind,
    /// What was seen.
    pub detail: String,
}

impl From<&crate::verdict::Finding> for FindingRecord {
    fn from(f: &crate::verdict::Finding) -> FindingRecord {
        FindingRecord {
            kind: f.kind,
            detail: f.detail.clone(),
        }
    }
}

/// One case, as reports keep it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CaseRecord {
    /// The layout.
    pub layout: Layout,
    /// Its place in the layout's plan list (0-based; partitions split by it).
    pub index: usize,
    /// The crash plan (written as `--crash` takes it).
    pub point: CrashPlan,
    /// The plan named: call, path, phase of its first point.
    pub name: String,
    /// The site of its first point (call and path, numbers as `#`).
    pub site: String,
    /// Passed or failed.
    pub verdict: CaseVerdict,
    /// The kinds of its findings, in order, without repeats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<FailureKind>,
    /// What it found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<FindingRecord>,
    /// Things worth a look that are not failures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Why the harness could not judge the case (its sandbox was disturbed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness_error: Option<String>,
    /// Under the power-loss fault model, the disk states its first crash
    /// was judged in (absent: a process kill, or the point was not reached).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub power_states: usize,
    /// The crash point whose recorded crash state this case shared (when
    /// crash states are recorded once and resumed for every equal state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_state_as: Option<CrashPoint>,
    /// Its later crashes (`--crashes 2` or more) whose states were
    /// materialised from recorded resume runs, in crash order (see
    /// [`super::LaterStateRecord`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub later_states: Vec<super::LaterStateRecord>,
    /// Wall time in milliseconds: only in the streamed JSON Lines, so that
    /// the final JSON stays the same for the same seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

impl CaseRecord {
    /// The record of `outcome`, case `index` of its layout, named from `census`.
    pub fn of(index: usize, outcome: &CaseOutcome, census: &[CensusEntry]) -> CaseRecord {
        let mut kinds: Vec<FailureKind> = Vec::new();
        for f in &outcome.findings {
            if !kinds.contains(&f.kind) {
                kinds.push(f.kind);
            }
        }
        CaseRecord {
            layout: outcome.layout,
            index,
            point: outcome.plan.clone(),
            name: name::plan(&outcome.plan, census),
            site: name::plan_site(&outcome.plan, census),
            verdict: match (&outcome.harness_error, outcome.findings.is_empty()) {
                (Some(_), true) => CaseVerdict::HarnessError,
                (_, true) => CaseVerdict::Passed,
                (_, false) => CaseVerdict::Failed,
            },
            kinds,
            findings: outcome.findings.iter().map(FindingRecord::from).collect(),
            warnings: outcome.warnings.clone(),
            harness_error: outcome.harness_error.clone(),
            power_states: outcome.power_states,
            same_state_as: None,
            later_states: Vec::new(),
            duration_ms: None,
        }
    }

    /// Did it pass?
    pub fn passed(&self) -> bool {
        self.verdict == CaseVerdict::Passed
    }

    /// The first crash point of its plan (`syscall:45` of `syscall:45,syscall:3`;
    /// none for a plan without crashes).
    pub fn first_point(&self) -> Option<CrashPoint> {
        self.point.points.first().copied()
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Under the power-loss fault model, how many disk states a layout's cases
/// judged their first crashes in (counted from its case records, so a
/// merged report counts what the single machine's does).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PowerStatesRow {
    /// Disk states judged, over every case.
    pub judged: usize,
    /// Cases whose first crash was a power cut (crash points judged).
    pub points: usize,
    /// The fewest states one point was judged in.
    pub min_per_point: usize,
    /// The most states one point was judged in.
    pub max_per_point: usize,
}

impl PowerStatesRow {
    /// The count of `cases` (`None`: no case was a power cut).
    pub fn of<'c>(cases: impl IntoIterator<Item = &'c CaseRecord>) -> Option<PowerStatesRow> {
        cases
            .into_iter()
            .fold(None, |row, c| PowerStatesRow::count(row, c.power_states))
    }

    /// `row` with one more case, judged in `states` disk states (0: not a
    /// power cut, which counts for nothing).
    pub fn count(row: Option<PowerStatesRow>, states: usize) -> Option<PowerStatesRow> {
        if states == 0 {
            return row;
        }
        Some(match row {
            None => PowerStatesRow {
                judged: states,
                points: 1,
                min_per_point: states,
                max_per_point: states,
            },
            Some(r) => PowerStatesRow {
                judged: r.judged + states,
                points: r.points + 1,
                min_per_point: r.min_per_point.min(states),
                max_per_point: r.max_per_point.max(states),
            },
        })
    }

    /// One line for the text report.
    pub fn line(&self, layout: &str) -> String {
        format!(
            "{layout}: power loss: {} disk states judged at {} crash points ({} to {} per point)",
            self.judged, self.points, self.min_per_point, self.max_per_point
        )
    }
}

/// A crash point the census offers, run or not.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PointRecord {
    /// The point (written as `--crash` takes it).
    pub point: CrashPoint,
    /// The call (`symlink`, `write`, ...).
    pub call: String,
    /// Its path(s), relative to the sandbox.
    pub path: String,
    /// What the subject was doing, when it says.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phase: String,
    /// Its site (call and path, numbers as `#`).
    pub site: String,
}

/// Every first crash point of `census` in `mode`, in census order.
pub fn points(mode: Mode, census: &[CensusEntry]) -> Vec<PointRecord> {
    inject::census_points(mode, census)
        .iter()
        .filter_map(|p| {
            let e = name::entry(p, census)?;
            Some(PointRecord {
                point: *p,
                call: e.call.name().into(),
                path: e.path(),
                phase: phase_text(e),
                site: name::site(p, census),
            })
        })
        .collect()
}

/// The phase of an entry as reports show it (empty when unknown).
pub fn phase_text(e: &CensusEntry) -> String {
    if e.phase.kind == crate::census::PhaseKind::Unknown {
        String::new()
    } else {
        e.phase.to_string()
    }
}
