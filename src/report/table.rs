//! The human tables: `run`'s verdict table, `certify`'s, and the failure list.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::Report;
use crate::verdict::{FailureKind, KindCounts};

/// Formats "dangling-last×3 resume-failed×3", or "-".
pub fn kinds_cell(kinds: &KindCounts) -> String {
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
        "fault".into(),
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
                row.report.fault.name().into(),
                l.layout.name().into(),
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
        "fault".into(),
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
            l.layout.name().into(),
            report.fault.name().into(),
            l.census.to_string(),
            format!("{}/{}", l.coverage.points_run, l.coverage.points),
            if l.coverage.sites == 0 {
                "-".into()
            } else {
                format!("{}/{}", l.coverage.sites_covered, l.coverage.sites)
            },
            l.cases.to_string(),
            l.passed.to_string(),
            kinds_cell(&l.failures),
            if l.duration.is_zero() {
                "-".into()
            } else {
                format!("{:.1}s", l.duration.as_secs_f64())
            },
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

/// The failures of a report: the replay command once, with `<layout>` and
/// `<point>` to fill in, then one line per failure (at most `per_kind` per
/// layout and kind) naming its layout, kind, crash point and what was seen;
/// the rest are counted.
///
/// ```text
/// replay with: crashpoint certify --layouts <layout> --crash <point> --mode syscall ... -- python3 train.py
/// FAIL [relative] dangling-last at syscall:9 symlink work/checkpoints/last.ckpt: last.ckpt -> ... does not resolve
///      … 14 more failures, see --json
/// ```
pub fn failure_list(report: &Report, per_kind: usize) -> String {
    if report.failures.is_empty() {
        return String::new();
    }
    let mut out = format!("replay with: {}\n", report.replay.template());
    let mut shown: BTreeMap<(crate::layout::Layout, FailureKind), usize> = BTreeMap::new();
    let mut hidden = 0;
    for f in &report.failures {
        let n = shown.entry((f.layout, f.kind)).or_default();
        *n += 1;
        if *n > per_kind {
            hidden += 1;
            continue;
        }
        let _ = writeln!(
            out,
            "FAIL [{}] {} at {}: {}",
            f.layout,
            f.kind,
            f.name,
            f.detail.replace('\n', " ")
        );
    }
    if hidden > 0 {
        let _ = writeln!(
            out,
            "     … {hidden} more failures of the same kinds, see --json"
        );
    }
    out
}

/// The cases disturbed from outside, each with its replay command.
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

/// At most `max` warning lines, each after `prefix`, and a count of the rest.
pub fn warning_lines(report: &Report, max: usize, prefix: &str) -> String {
    let mut out = String::new();
    for w in report.warnings.iter().take(max) {
        let _ = writeln!(out, "warning: {prefix}{w}");
    }
    if report.warnings.len() > max {
        let _ = writeln!(
            out,
            "     … {} more warnings, see --json",
            report.warnings.len() - max
        );
    }
    out
}

/// The text of a report read back from JSON (`report`, `merge`): its
/// table, failures, warnings and verdict line.
pub fn summary(r: &Report) -> String {
    let mut out = String::new();
    if !r.name.is_empty() {
        let _ = writeln!(out, "{}", r.name);
    }
    out += &certify_table(r);
    out += &failure_list(r, 3);
    out += &warning_lines(r, 10, "");
    for line in &r.not_covered {
        let _ = writeln!(out, "not covered: {line}");
    }
    let _ = writeln!(
        out,
        "{} cases, fault model: {}: {}",
        r.cases,
        r.fault,
        r.verdict()
    );
    out
}

/// The numbered census of a layout, then its sites with how many calls
/// each has: what `crashpoint census` prints.
///
/// Where the census knows a call's descriptor, offset and length (the
/// tracer's writes, truncations and syncs), they get columns of their own.
pub fn census(layout: &str, census: &[crate::inject::CensusEntry]) -> String {
    let mut lines = vec![[
        "#".to_string(),
        "call".into(),
        "path".into(),
        "fd".into(),
        "offset".into(),
        "len".into(),
        "phase".into(),
    ]];
    let show = |v: Option<String>| v.unwrap_or_default();
    let mut sites: Vec<(String, usize, u64)> = Vec::new();
    for e in census {
        lines.push([
            e.index.to_string(),
            e.call.name().into(),
            e.path(),
            show(e.fd.map(|v| v.to_string())),
            show(e.offset.map(|v| v.to_string())),
            show(e.len.map(|v| v.to_string())),
            super::case::phase_text(e),
        ]);
        let site = super::name::site_of(e);
        match sites.iter_mut().find(|(s, _, _)| *s == site) {
            Some((_, n, _)) => *n += 1,
            None => sites.push((site, 1, e.index)),
        }
    }
    let mut out = format!("{layout}: census of {} calls\n", census.len());
    let extents = census
        .iter()
        .any(|e| e.fd.is_some() || e.offset.is_some() || e.len.is_some());
    if extents {
        out += &render(&lines);
    } else {
        let plain: Vec<[String; 4]> = lines
            .into_iter()
            .map(|[i, c, p, _, _, _, ph]| [i, c, p, ph])
            .collect();
        out += &render(&plain);
    }
    let _ = writeln!(out, "{layout}: {} sites", sites.len());
    let mut rows = vec![["site".to_string(), "calls".into(), "first".into()]];
    for (s, n, first) in sites {
        rows.push([s, n.to_string(), format!("#{first}")]);
    }
    out += &render(&rows);
    out
}
