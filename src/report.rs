//! Reports: the human verdict table, JSON, JUnit XML, and for every failure
//! one command that replays exactly that case. Nothing in a report depends on
//! timing except the `time` column of the table, so the same seed gives the
//! same JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::campaign::LayoutResult;
use crate::inject::CrashPlan;
use crate::layout::Layout;
use crate::verdict::{Expect, FailureKind};

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
    /// Wall time (not in JSON, so reports stay deterministic).
    #[serde(skip)]
    pub duration: Duration,
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
}

/// The report of one campaign (one scenario, or one `certify`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// Scenario name or command.
    pub name: String,
    /// The fault model covered.
    pub fault: String,
    /// True when every case of every layout passed.
    pub certified: bool,
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
        for r in results {
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
                };
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
                duration: r.duration,
            });
        }
        Report {
            name: name.to_string(),
            fault: fault.to_string(),
            certified: failures.is_empty(),
            interrupted: false,
            cases: layouts.iter().map(|l| l.cases).sum(),
            layouts,
            failures,
            warnings,
            case_lines,
        }
    }

    /// The kinds of failure seen anywhere.
    pub fn kinds(&self) -> Vec<FailureKind> {
        let mut k: Vec<FailureKind> = self.failures.iter().map(|f| f.kind).collect();
        k.sort();
        k.dedup();
        k
    }

    /// Is this report the verdict `expect` asks for?
    pub fn meets(&self, expect: &Expect) -> bool {
        expect.matches(self.certified, &self.kinds())
    }
}

/// Formats "dangling-last×3 resume-failed×3", or "-".
pub fn kinds_cell(kinds: &BTreeMap<String, usize>) -> String {
    if kinds.is_empty() {
        return "-".into();
    }
    kinds
        .iter()
        .map(|(k, n)| format!("{k}×{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A row of the `run` table: a scenario's report and what it expected.
#[derive(Debug, Clone)]
pub struct ScenarioRow<'a> {
    /// The report.
    pub report: &'a Report,
    /// What was expected ("pass", "fail: dangling-last").
    pub expected: String,
    /// Did the verdict match the expectation?
    pub as_expected: bool,
}

/// The verdict table of `crashpoint run`.
pub fn run_table(rows: &[ScenarioRow<'_>]) -> String {
    let mut lines = vec![[
        "scenario".to_string(),
        "layout".into(),
        "cases".into(),
        "passed".into(),
        "failures".into(),
        "time".into(),
        "expected".into(),
        "verdict".into(),
    ]];
    for row in rows {
        for l in &row.report.layouts {
            lines.push([
                row.report.name.clone(),
                l.layout.clone(),
                l.cases.to_string(),
                l.passed.to_string(),
                kinds_cell(&l.failures),
                format!("{:.1}s", l.duration.as_secs_f64()),
                row.expected.clone(),
                if row.as_expected {
                    "ok".into()
                } else {
                    "UNEXPECTED".into()
                },
            ]);
        }
    }
    render(&lines)
}

/// The table of `crashpoint certify`.
pub fn certify_table(report: &Report) -> String {
    let mut lines = vec![[
        "layout".to_string(),
        "census".into(),
        "cases".into(),
        "passed".into(),
        "failures".into(),
        "time".into(),
    ]];
    for l in &report.layouts {
        lines.push([
            l.layout.clone(),
            l.census.to_string(),
            l.cases.to_string(),
            l.passed.to_string(),
            kinds_cell(&l.failures),
            format!("{:.1}s", l.duration.as_secs_f64()),
        ]);
    }
    render(&lines)
}

/// Aligns rows of cells into columns, two spaces apart.
pub fn render<const N: usize>(lines: &[[String; N]]) -> String {
    let mut width = [0usize; N];
    for l in lines {
        for (i, c) in l.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for l in lines {
        let cells: Vec<String> = l
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c}{}", " ".repeat(width[i] - c.chars().count())))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// The failures of a report, at most `per_kind` per layout and kind, each
/// with its replay command; the rest are counted.
pub fn failure_list(report: &Report, per_kind: usize) -> String {
    let mut out = String::new();
    let mut shown: BTreeMap<(String, FailureKind), usize> = BTreeMap::new();
    let mut hidden = 0;
    for f in &report.failures {
        let n = shown.entry((f.layout.clone(), f.kind)).or_default();
        *n += 1;
        if *n > per_kind {
            hidden += 1;
            continue;
        }
        let _ = writeln!(
            out,
            "FAIL {} [{}] {} at {}\n     {}\n     replay: {}",
            report.name, f.layout, f.kind, f.crash, f.detail, f.replay
        );
    }
    if hidden > 0 {
        let _ = writeln!(
            out,
            "     ... and {hidden} more failures of the same kinds (see --json)"
        );
    }
    out
}

/// JUnit XML: one test suite per report, one test case per layout × crash plan.
pub fn junit(reports: &[&Report]) -> String {
    use quick_junit::{NonSuccessKind, Report as JReport, TestCase, TestCaseStatus, TestSuite};
    let mut j = JReport::new("crashpoint");
    for r in reports {
        let mut suite = TestSuite::new(r.name.as_str());
        for f in r.failures.iter().filter(|f| f.crash == "none") {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_message(f.kind.name());
            status.set_type(f.kind.name());
            status.set_description(format!("{}\nreplay: {}", f.detail, f.replay));
            suite.add_test_case(TestCase::new(format!("{} reference", f.layout), status));
        }
        for c in &r.case_lines {
            let status = match c.failures.first() {
                None => TestCaseStatus::success(),
                Some(&i) => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    let kinds: Vec<&str> = c
                        .failures
                        .iter()
                        .map(|&i| r.failures[i].kind.name())
                        .collect();
                    s.set_message(kinds.join(", "));
                    s.set_type(r.failures[i].kind.name());
                    let text: Vec<String> = c
                        .failures
                        .iter()
                        .map(|&i| format!("{}: {}", r.failures[i].kind, r.failures[i].detail))
                        .collect();
                    s.set_description(format!(
                        "{}\nreplay: {}",
                        text.join("\n"),
                        r.failures[i].replay
                    ));
                    s
                }
            };
            let mut case = TestCase::new(format!("{} {}", c.layout, c.crash), status);
            case.set_classname(format!("{}.{}", r.name, c.layout));
            suite.add_test_case(case);
        }
        j.add_test_suite(suite);
    }
    j.to_string().unwrap_or_default()
}

/// Quotes words for a POSIX shell, so a replay command pastes as it is.
pub fn shell_join<I, S>(words: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    words
        .into_iter()
        .map(|w| {
            let w = w.as_ref();
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                w.to_string()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
