//! The HTML page of the crash windows: one self-contained file (inline CSS
//! and script, no network, no external asset). Per report and layout, a
//! timeline of the census grouped by phase, every crash point one cell
//! coloured by its case's outcome (passed, each failure kind, not run, same
//! crash state as another point); its call and path on hover or keyboard
//! focus, with the replay command to copy; above, a summary of the unsafe
//! windows: per site, how many of its points fail and how.
//!
//! [`write()`] writes the page to its file as it is made: it holds a few
//! [`Facts`] per case and reads each case's record back when its cell is
//! drawn, so neither the records nor the page are ever all in memory;
//! [`page`] makes the same bytes as a string.

use std::collections::{BTreeMap, HashMap};

use super::cases::CaseReader;
use super::{CaseRecord, LayoutRow, PointRecord, Report};
use crate::inject::CrashPoint;
use crate::layout::Layout;
use crate::verdict::FailureKind;

const CSS: &str = include_str!("html/page.css");
const JS: &str = include_str!("html/page.js");

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What a failing point does to training, as the summary says it.
pub fn verb(k: FailureKind) -> &'static str {
    match k {
        FailureKind::DigestMismatch => "resume to a different state",
        FailureKind::ResumeFailed => "fail to resume",
        FailureKind::DanglingLast => "leave last.ckpt dangling",
        FailureKind::EscapedDir => "leave a link out of the checkpoint directory",
        FailureKind::ProgressLost => "lose progress",
        FailureKind::NoCheckpoint => "leave no loadable checkpoint",
        FailureKind::Hang => "hang",
        FailureKind::DirMismatch => "end with other checkpoint files",
        FailureKind::BadResumeAccepted => "accept a bad resume path",
        FailureKind::WroteOutside => "write outside the sandbox",
        FailureKind::Nondeterministic => "are nondeterministic",
        FailureKind::RestartFailed => "fail to start afresh",
        FailureKind::Overshoot => "train past the last step",
    }
}

/// The CSS class of a cell: `k-passed`, `k-not-run`, `k-same-state`, or
/// `k-<kind>` of the case's foremost failure kind (in [`FailureKind::ALL`]
/// order, the order the summary and the legend use too).
pub fn class_of(case: Option<&CaseRecord>) -> String {
    match case {
        None => "k-not-run".into(),
        Some(c) if c.verdict == super::CaseVerdict::HarnessError => "k-harness-error".into(),
        Some(c) => match (c.kinds.iter().min(), &c.same_state_as) {
            (None, Some(_)) => "k-same-state".into(),
            (None, None) => "k-passed".into(),
            (Some(k), Some(_)) => format!("k-{k} same"),
            (Some(k), None) => format!("k-{k}"),
        },
    }
}

fn outcome_text(case: Option<&CaseRecord>) -> String {
    let Some(c) = case else {
        return "not run".into();
    };
    let verdict = if c.kinds.is_empty() {
        "passed".to_string()
    } else {
        let k: Vec<&str> = c.kinds.iter().map(|k| k.name()).collect();
        format!("failed: {}", k.join(", "))
    };
    match &c.same_state_as {
        Some(p) => format!("{verdict} (same crash state as {p})"),
        None => verdict,
    }
}

/// What the page needs of a case before its cell is drawn: one is held per
/// case, the record itself is read back when its cell is.
#[derive(Debug, Clone)]
pub struct Facts {
    layout: Layout,
    site: String,
    first: Option<CrashPoint>,
    passed: bool,
    kinds: Vec<FailureKind>,
    same_state: bool,
    /// Its place in the report's case list.
    at: usize,
}

impl Facts {
    /// The facts of `c`, the case at place `at` of its list.
    pub fn of(c: &CaseRecord, at: usize) -> Facts {
        Facts {
            layout: c.layout,
            site: c.site.clone(),
            first: c.first_point(),
            passed: c.passed(),
            kinds: c.kinds.clone(),
            same_state: c.same_state_as.is_some(),
            at,
        }
    }
}

/// One line per unsafe window of a layout: a site with failing points.
pub fn unsafe_windows(l: &LayoutRow, cases: &[&Facts]) -> Vec<String> {
    let mut sites: Vec<(&str, Vec<&Facts>)> = Vec::new();
    for c in cases {
        match sites.iter_mut().find(|(s, _)| *s == c.site) {
            Some((_, v)) => v.push(c),
            None => sites.push((&c.site, vec![c])),
        }
    }
    let mut out = Vec::new();
    for (site, run) in sites {
        let failing: Vec<&&Facts> = run.iter().filter(|c| !c.passed).collect();
        if failing.is_empty() {
            continue;
        }
        let common = FailureKind::ALL
            .into_iter()
            .find(|k| failing.iter().all(|c| c.kinds.contains(k)));
        let what = match common {
            Some(k) => {
                let others: Vec<&str> = FailureKind::ALL
                    .into_iter()
                    .filter(|o| *o != k && failing.iter().any(|c| c.kinds.contains(o)))
                    .map(|o| o.name())
                    .collect();
                let also = if others.is_empty() {
                    String::new()
                } else {
                    format!(" (also {})", others.join(", "))
                };
                format!("{}{also}", verb(k))
            }
            None => {
                let mut n: BTreeMap<FailureKind, usize> = BTreeMap::new();
                for c in &failing {
                    for k in &c.kinds {
                        *n.entry(*k).or_default() += 1;
                    }
                }
                let parts: Vec<String> = n.iter().map(|(k, n)| format!("{k}×{n}")).collect();
                format!("fail: {}", parts.join(" "))
            }
        };
        out.push(format!(
            "{}: {site}: {} of {} points {what}",
            l.layout,
            failing.len(),
            run.len()
        ));
    }
    out
}

/// The page for `reports` (one per scenario, or one `certify`); their
/// case records are read back when spooled.
pub fn page(reports: &[&Report]) -> Result<String, super::ReportError> {
    let mut h = String::new();
    write_page(&mut h, reports)?;
    Ok(h)
}

/// Writes the page for `reports` to `path` as it is made (the bytes
/// [`page`] makes): a report's case records are read back one at a time,
/// and the page is never all in memory.
pub fn write(path: &std::path::Path, reports: &[&Report]) -> Result<(), super::ReportError> {
    super::text_file::write_text(path, |h| write_page(h, reports))
}

fn write_page(h: &mut impl std::fmt::Write, reports: &[&Report]) -> Result<(), super::ReportError> {
    let title = match reports {
        [r] => format!("crashpoint: {}", r.name),
        _ => format!("crashpoint: {} reports", reports.len()),
    };
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n",
        esc(&title)
    );
    for r in reports {
        report_section(h, r)?;
    }
    let _ = h.write_str(
        "<aside id=\"detail\" aria-live=\"polite\">\n<div class=\"name\">Point at a cell, or \
         move to one with Tab, to see its call, path and outcome.</div>\n\
         <div class=\"outcome muted\"></div>\n<div class=\"what mono\"></div>\n\
         <div class=\"row\"><label for=\"replay\">replay</label>\
         <input id=\"replay\" readonly value=\"\"><button type=\"button\" disabled>Copy</button></div>\n</aside>\n",
    );
    let _ = write!(h, "<script>\n{JS}</script>\n</body>\n</html>\n");
    Ok(())
}

fn report_section(h: &mut impl std::fmt::Write, r: &Report) -> Result<(), super::SpoolError> {
    let mut all = Vec::with_capacity(r.case_results.len());
    r.case_results.each(|c| all.push(Facts::of(c, all.len())))?;
    let mut records = r.case_results.reader()?;
    // The words of the text report's verdict line ("no failure in N of M
    // points (S of T sites): ..."), green only for a certified whole run.
    let class = if r.certified && !r.interrupted && r.partition.is_none() {
        "ok"
    } else {
        "bad"
    };
    let _ = write!(
        h,
        "<section class=\"report\">\n<h1>{}</h1>\n<p><span class=\"verdict {class}\">{}</span> \
         <span class=\"muted\">fault model: {}, {} cases</span></p>\n",
        esc(&r.name),
        esc(&r.verdict()),
        esc(r.fault.name()),
        r.cases
    );
    if !r.not_covered.is_empty() {
        let _ = h.write_str("<p class=\"muted\">Not covered:</p>\n<ul class=\"windows\">\n");
        for line in &r.not_covered {
            let _ = writeln!(h, "<li>{}</li>", esc(line));
        }
        let _ = h.write_str("</ul>\n");
    }
    legend(h, &all);
    let by_layout: Vec<(&LayoutRow, Vec<&Facts>)> = r
        .layouts
        .iter()
        .map(|l| {
            let cases = all.iter().filter(|c| c.layout == l.layout).collect();
            (l, cases)
        })
        .collect();
    let windows: Vec<String> = by_layout
        .iter()
        .flat_map(|(l, c)| unsafe_windows(l, c))
        .collect();
    let _ = h.write_str("<h2>Unsafe windows</h2>\n");
    if windows.is_empty() {
        let _ = h.write_str("<p class=\"muted\">No crash point failed.</p>\n");
    } else {
        let _ = h.write_str("<ul class=\"windows\">\n");
        for w in &windows {
            let _ = writeln!(h, "<li>{}</li>", esc(w));
        }
        let _ = h.write_str("</ul>\n");
    }
    for (l, cases) in &by_layout {
        layout_section(h, r, l, cases, &mut records)?;
    }
    let _ = h.write_str("</section>\n");
    Ok(())
}

fn legend(h: &mut impl std::fmt::Write, cases: &[Facts]) {
    let mut classes: Vec<(String, String)> = vec![
        ("k-passed".into(), "passed".into()),
        ("k-not-run".into(), "not run".into()),
    ];
    if cases.iter().any(|c| c.same_state) {
        classes.push((
            "k-same-state".into(),
            "passed, same crash state as another point".into(),
        ));
    }
    // A cell shows its foremost kind: the legend lists those that show.
    let mut shown: Vec<FailureKind> = cases
        .iter()
        .filter_map(|c| c.kinds.iter().min().copied())
        .collect();
    shown.sort();
    shown.dedup();
    for k in shown {
        classes.push((format!("k-{k}"), k.name().into()));
    }
    let _ = h.write_str("<ul class=\"legend\">\n");
    for (c, label) in classes {
        let _ = writeln!(
            h,
            "<li><span class=\"swatch {c}\"></span>{}</li>",
            esc(&label)
        );
    }
    let _ = h.write_str("</ul>\n");
}

/// A cell: one crash point, its case if it ran.
fn cell(
    h: &mut impl std::fmt::Write,
    r: &Report,
    layout: &str,
    point: &str,
    name: &str,
    case: Option<&CaseRecord>,
) {
    let outcome = outcome_text(case);
    let detail: Vec<&str> = case
        .map(|c| c.findings.iter().map(|f| f.detail.as_str()).collect())
        .unwrap_or_default();
    let plan = case.map_or_else(|| point.to_string(), |c| c.point.to_string());
    let replay = r.replay.command(layout, &plan);
    let label = format!("{name}: {outcome}");
    let _ = writeln!(
        h,
        "<button type=\"button\" class=\"cell {}\" data-layout=\"{}\" data-point=\"{}\" data-name=\"{}\" \
         data-outcome=\"{}\" data-detail=\"{}\" data-replay=\"{}\" title=\"{}\" aria-label=\"{}\"></button>",
        class_of(case),
        esc(layout),
        esc(point),
        esc(name),
        esc(&outcome),
        esc(&detail.join(" | ")),
        esc(&replay),
        esc(&label),
        esc(&label)
    );
}

fn point_name(p: &PointRecord) -> String {
    let mut s = format!("{} {}", p.point, p.call);
    if !p.path.is_empty() {
        s.push(' ');
        s.push_str(&p.path);
    }
    if !p.phase.is_empty() {
        s.push_str(&format!(" ({})", p.phase));
    }
    s
}

fn layout_section(
    h: &mut impl std::fmt::Write,
    r: &Report,
    l: &LayoutRow,
    cases: &[&Facts],
    records: &mut CaseReader<'_>,
) -> Result<(), super::SpoolError> {
    let by_point: HashMap<CrashPoint, &Facts> = cases
        .iter()
        .rev()
        .filter_map(|c| Some((c.first?, *c)))
        .collect();
    let failing = cases.iter().filter(|c| !c.passed).count();
    let _ = write!(
        h,
        "<section class=\"layout\" id=\"layout-{}\">\n<h2>{}</h2>\n<p class=\"muted\">census of {} \
         calls, {} crash points, {} cases run of {}, {failing} failing</p>\n<div class=\"timeline\">\n",
        esc(l.layout.name()),
        esc(l.layout.name()),
        l.census,
        l.census_points.len(),
        cases.len(),
        l.planned
    );
    let mut i = 0;
    while i < l.census_points.len() {
        let phase = &l.census_points[i].phase;
        let mut j = i;
        while j < l.census_points.len() && &l.census_points[j].phase == phase {
            j += 1;
        }
        let label = if phase.is_empty() {
            format!(
                "calls {}–{}",
                l.census_points[i].point,
                l.census_points[j - 1].point
            )
        } else {
            phase.clone()
        };
        let _ = writeln!(
            h,
            "<div class=\"group\"><div class=\"glabel\" title=\"{}\">{}</div><div class=\"cells\">",
            esc(&label),
            esc(&label)
        );
        for p in &l.census_points[i..j] {
            let case = match by_point.get(&p.point) {
                Some(f) => Some(record(records, f.at)?),
                None => None,
            };
            let case = case.as_ref();
            let name = case.map_or_else(|| point_name(p), |c| c.name.clone());
            cell(h, r, l.layout.name(), &p.point.to_string(), &name, case);
        }
        let _ = h.write_str("</div></div>\n");
        i = j;
    }
    let known: std::collections::HashSet<CrashPoint> =
        l.census_points.iter().map(|p| p.point).collect();
    let others: Vec<&&Facts> = cases
        .iter()
        .filter(|c| !c.first.is_some_and(|f| known.contains(&f)))
        .collect();
    if !others.is_empty() {
        let label = if others.iter().all(|c| c.site == "probe") {
            "misuse probes"
        } else {
            "other cases"
        };
        let _ = writeln!(
            h,
            "<div class=\"group\"><div class=\"glabel\">{label}</div><div class=\"cells\">"
        );
        for f in others {
            let c = record(records, f.at)?;
            cell(
                h,
                r,
                l.layout.name(),
                &c.point.to_string(),
                &c.name,
                Some(&c),
            );
        }
        let _ = h.write_str("</div></div>\n");
    }
    let _ = h.write_str("</div>\n</section>\n");
    Ok(())
}

/// The record at place `at` of the list `records` reads.
fn record(records: &mut CaseReader<'_>, at: usize) -> Result<CaseRecord, super::SpoolError> {
    records
        .get(at)
        .unwrap_or_else(|| {
            Err(super::SpoolError::Io {
                path: "the case list".into(),
                source: std::io::Error::other(format!("no case at place {at}")),
            })
        })
        .map(std::borrow::Cow::into_owned)
}
