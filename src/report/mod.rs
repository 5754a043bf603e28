//! Reports: the human verdict table, JSON, JUnit XML, and for every failure
//! one command that replays exactly that case. Nothing in a report depends on
//! timing except the `time` column of the table, so the same seed gives the
//! same JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::campaign::LayoutResult;
use crate::inject::CrashPlan;
use crate::layout::Layout;
use crate::verdict::{Expect, FailureKind};

mod junit;
mod shell;
mod table;

pub use junit::junit;
pub use shell::shell_join;
pub use table::{
    certify_table, failure_list, harness_error_list, kinds_cell, render, run_table, ScenarioRow,
};

/// A case whose sandbox was disturbed from outside: a harness error, which
/// says nothing about the subject and makes the report untrustworthy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HarnessError {
    /// The layout.
    pub layout: String,
    /// The case's crash plan.
    pub crash: String,
    /// What went missing.
    pub detail: String,
    /// The command that runs exactly this case again.
    pub replay: String,
}

/// One failure, with what reproduces it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    /// The layout.
    pub layout: String,
    /// The kind, as PROTOCOL.md names it.
    pub kind: FailureKind,
    /// Where the case was killed (its crash plan; `none` for the reference).
    pub crash: String,
    /// What exactly was seen.
    pub detail: String,
    /// One command that reproduces exactly this case.
    pub replay: String,
}

/// One layout's line of the table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayoutRow {
    /// The layout.
    pub layout: String,
    /// Cases run.
    pub cases: usize,
    /// Cases that passed.
    pub passed: usize,
    /// Failing cases by kind.
    pub failures: BTreeMap<String, usize>,
    /// Size of the census the crash points came from.
    pub census: usize,
    /// The reference digest.
    pub reference_digest: String,
    /// First crash points the census offers (time mode: kill times planned).
    pub points: usize,
    /// Of those, the ones a case ran.
    pub points_run: usize,
    /// Sites of the census: call and path pattern (none in time mode).
    pub sites: usize,
    /// Sites a case ran a point of.
    pub sites_covered: usize,
    /// The sites no case ran (windows-first order).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uncovered: Vec<String>,
    /// Cases whose first kill landed after a completed save.
    pub after_save: usize,
    /// Wall time (not in JSON, so reports stay deterministic).
    #[serde(skip)]
    pub duration: Duration,
    /// The crash states the record-once engine recorded, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub states: Option<StatesRow>,
}

/// What the record-once engine recorded for a layout.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
}

impl StatesRow {
    /// One line for the text report.
    pub fn line(&self, layout: &str) -> String {
        format!(
            "{layout}: {} crash points recorded once, {} distinct states; {} subject runs for the cases",
            self.points, self.distinct, self.runs_made
        )
    }
}

/// One case, for JUnit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseLine {
    /// The layout.
    pub layout: String,
    /// The crash plan.
    pub crash: String,
    /// Indexes into [`Report::failures`].
    pub failures: Vec<usize>,
    /// The case's harness error, if its sandbox was disturbed.
    pub harness_error: Option<String>,
}

/// The report of one campaign (one scenario, or one `certify`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// Scenario name or command.
    pub name: String,
    /// The fault model covered.
    pub fault: String,
    /// True when no case failed, every point (and probe) of every layout
    /// ran, and the cases prove something (see [`Report::not_covered`]).
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
    /// Per-layout summary.
    pub layouts: Vec<LayoutRow>,
    /// Every failure.
    pub failures: Vec<Failure>,
    /// Things worth a look that are not failures.
    pub warnings: Vec<String>,
    /// Cases disturbed from outside (not in JSON when there is none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub harness_errors: Vec<HarnessError>,
    /// The environment variables recorded for the replays (`PYTHONPATH`,
    /// `VIRTUAL_ENV`, `LD_LIBRARY_PATH` when set, and each `--env NAME`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Every case (for JUnit).
    #[serde(skip)]
    pub case_lines: Vec<CaseLine>,
}

/// Makes the replay command of a case.
pub type Replay<'a> = &'a dyn Fn(Layout, Option<&CrashPlan>) -> String;

impl Report {
    /// Builds the report of a campaign's results.
    pub fn build(name: &str, fault: &str, results: &[LayoutResult], replay: Replay<'_>) -> Report {
        let mut failures = Vec::new();
        let mut layouts = Vec::new();
        let mut case_lines = Vec::new();
        let mut warnings: Vec<String> = Vec::new();
        let mut harness_errors = Vec::new();
        let mut not_covered = Vec::new();
        for r in results {
            let c = &r.coverage;
            if r.reference.findings.is_empty() {
                if c.points_run < c.points {
                    let what = if c.timed { "kill times" } else { "points" };
                    let mut line = format!(
                        "{}: {} of {} {what} not run",
                        r.layout,
                        c.points - c.points_run,
                        c.points
                    );
                    if !c.uncovered.is_empty() {
                        let shown: Vec<&str> =
                            c.uncovered.iter().take(5).map(String::as_str).collect();
                        line += &format!(
                            "; {} of {} sites never hit: {}{}",
                            c.uncovered.len(),
                            c.sites,
                            shown.join(", "),
                            if c.uncovered.len() > 5 { ", ..." } else { "" }
                        );
                    }
                    if let Some(cut) = &c.budget_cut {
                        line += &format!(" ({cut})");
                    }
                    not_covered.push(line);
                }
                if c.probes.1 < c.probes.0 {
                    not_covered.push(format!(
                        "{}: {} of {} misuse probes not run",
                        r.layout,
                        c.probes.0 - c.probes.1,
                        c.probes.0
                    ));
                }
                if let Some(why) = c.inconclusive() {
                    not_covered.push(format!("{}: {why}", r.layout));
                }
            }
            let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
            let mut passed = 0;
            for f in &r.reference.findings {
                *kinds.entry(f.kind.name().into()).or_default() += 1;
                failures.push(Failure {
                    layout: r.layout.name().into(),
                    kind: f.kind,
                    crash: "none".into(),
                    detail: f.detail.clone(),
                    replay: replay(r.layout, None),
                });
            }
            for p in &r.reference.outside {
                warnings.push(format!("{}: wrote-outside: {p}", r.layout));
            }
            for o in &r.outcomes {
                let mut line = CaseLine {
                    layout: r.layout.name().into(),
                    crash: o.plan.to_string(),
                    failures: Vec::new(),
                    harness_error: o.harness_error.clone(),
                };
                if let Some(detail) = &o.harness_error {
                    harness_errors.push(HarnessError {
                        layout: r.layout.name().into(),
                        crash: o.plan.to_string(),
                        detail: detail.clone(),
                        replay: replay(r.layout, Some(&o.plan)),
                    });
                }
                if o.passed() {
                    passed += 1;
                }
                for f in &o.findings {
                    *kinds.entry(f.kind.name().into()).or_default() += 1;
                    line.failures.push(failures.len());
                    failures.push(Failure {
                        layout: r.layout.name().into(),
                        kind: f.kind,
                        crash: o.plan.to_string(),
                        detail: f.detail.clone(),
                        replay: replay(r.layout, Some(&o.plan)),
                    });
                }
                for w in &o.warnings {
                    let w = format!("{}: {w}", r.layout);
                    if !warnings.contains(&w) {
                        warnings.push(w);
                    }
                }
                case_lines.push(line);
            }
            layouts.push(LayoutRow {
                layout: r.layout.name().into(),
                cases: r.outcomes.len(),
                passed,
                failures: kinds,
                census: r.reference.census.len(),
                reference_digest: r.reference.state.digest.clone(),
                points: c.points,
                points_run: c.points_run,
                sites: c.sites,
                sites_covered: c.sites_covered,
                uncovered: c.uncovered.clone(),
                after_save: c.after_save,
                duration: r.duration,
                states: r.recorded.as_ref().map(|s| StatesRow {
                    points: s.points,
                    distinct: s.distinct_states,
                    same_as: s
                        .same_as
                        .iter()
                        .map(|(p, f)| format!("{p} same state as {f}"))
                        .collect(),
                    runs_made: s.runs_made,
                }),
            });
        }
        let sum = |f: fn(&LayoutRow) -> usize| layouts.iter().map(f).sum::<usize>();
        Report {
            name: name.to_string(),
            fault: fault.to_string(),
            certified: failures.is_empty() && harness_errors.is_empty() && not_covered.is_empty(),
            points: sum(|l| l.points),
            points_run: sum(|l| l.points_run),
            sites: sum(|l| l.sites),
            sites_covered: sum(|l| l.sites_covered),
            not_covered,
            interrupted: false,
            cases: layouts.iter().map(|l| l.cases).sum(),
            layouts,
            failures,
            warnings,
            harness_errors,
            env: BTreeMap::new(),
            case_lines,
        }
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

    /// Is this report the verdict `expect` asks for? A scenario's `pass`
    /// asks that no case it ran failed (a scenario may sample on purpose).
    pub fn meets(&self, expect: &Expect) -> bool {
        expect.matches(self.failures.is_empty(), &self.kinds())
    }

    /// The verdict in words: `CERTIFIED` only when no case failed, every
    /// point (and probe) of every layout ran and the result is conclusive;
    /// otherwise what was seen, as "no failure in N of M points (S of T
    /// sites)" and why that is not a certification.
    ///
    /// ```
    /// use crashpoint::report::Report;
    /// let r = Report::build("demo", "kill", &[], &|_, _| String::new());
    /// assert_eq!(r.verdict(), "no failure in 0 of 0 points (0 of 0 sites): CERTIFIED");
    /// ```
    pub fn verdict(&self) -> String {
        let timed = self.sites == 0 && self.points > 0;
        let seen = if timed {
            format!(
                "{} of {} kill times in the save window ({} after a completed save)",
                self.points_run,
                self.points,
                self.layouts.iter().map(|l| l.after_save).sum::<usize>()
            )
        } else {
            format!(
                "{} of {} points ({} of {} sites)",
                self.points_run, self.points, self.sites_covered, self.sites
            )
        };
        if self.interrupted {
            return format!("{seen} before the interruption: INTERRUPTED, NOT certified");
        }
        if !self.trustworthy() {
            return format!(
                "{seen}: NOT TRUSTWORTHY (a sandbox was disturbed from outside), NOT certified"
            );
        }
        if !self.failures.is_empty() {
            let cases: std::collections::BTreeSet<(&str, &str)> = self
                .failures
                .iter()
                .map(|f| (f.layout.as_str(), f.crash.as_str()))
                .collect();
            let n = cases.len();
            return format!(
                "{n} failing case{} in {seen}: NOT certified",
                if n == 1 { "" } else { "s" }
            );
        }
        if self.certified {
            return format!("no failure in {seen}: CERTIFIED");
        }
        let inconclusive = self.not_covered.iter().any(|l| l.contains("inconclusive"));
        format!(
            "no failure in {seen}: NOT certified ({})",
            if inconclusive {
                "inconclusive: no kill landed after a completed save"
            } else {
                "not every point ran"
            }
        )
    }
}

/// A report could not be serialised: nothing is written then, and the
/// command fails, rather than leaving a `null` or empty file behind.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// JSON serialisation failed.
    #[error("cannot serialise the JSON report: {0}")]
    Json(#[from] serde_json::Error),
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
