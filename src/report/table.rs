//! The human tables: `run`'s verdict table, `certify`'s, and the failure list.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::Report;
use crate::verdict::FailureKind;

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
        "points".into(),
        "sites".into(),
        "cases".into(),
        "passed".into(),
        "failures".into(),
        "time".into(),
    ]];
    for l in &report.layouts {
        lines.push([
            l.layout.clone(),
            l.census.to_string(),
            format!("{}/{}", l.points_run, l.points),
            if l.sites == 0 {
                "-".into()
            } else {
                format!("{}/{}", l.sites_covered, l.sites)
            },
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

/// The harness errors of a report, each with its replay command, and what
/// they mean.
pub fn harness_error_list(report: &Report) -> String {
    let mut out = String::new();
    for e in &report.harness_errors {
        let _ = writeln!(
            out,
            "HARNESS ERROR {} [{}] at {}\n     {}\n     replay: {}",
            report.name, e.layout, e.crash, e.detail, e.replay
        );
    }
    if !report.harness_errors.is_empty() {
        let _ = writeln!(
            out,
            "     {} case(s) disturbed from outside (another process removed files in a sandbox): they say nothing about the subject, and this report cannot be trusted",
            report.harness_errors.len()
        );
    }
    out
}
