//! `crashpoint merge`: joins the reports of the partitions of one run
//! (`--partition I/N` on N machines) into the report of the whole run,
//! equal to the one a single machine writes for the same seed: reports are
//! assembled from reference facts, coverage and case records alone (see
//! [`Report::assemble`]), so the same records give the same report. The
//! partitions' coverage is joined ([`crate::inject::Coverage::join`]): the
//! merged report is CERTIFIED only when every point ran in some partition.

use std::collections::BTreeMap;

use super::{CaseRecord, LayoutRow, Report};

/// Why reports cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Nothing to merge.
    #[error("no reports to merge")]
    Empty,
    /// The inputs hold different sets of reports (scenarios).
    #[error("the inputs hold different reports: {0}")]
    Mismatch(String),
    /// Two inputs disagree on what should be the same run.
    #[error("{report}: the inputs are not partitions of one run: {what}")]
    NotOneRun {
        /// The report.
        report: String,
        /// What differs.
        what: String,
    },
    /// A report's spooled case records could not be read back.
    #[error(transparent)]
    Spool(#[from] super::SpoolError),
    /// One case is in two inputs.
    #[error(
        "{report}: case {point} of layout {layout} is in two inputs (the same partition twice?)"
    )]
    Duplicate {
        /// The report.
        report: String,
        /// The layout.
        layout: String,
        /// The case's plan.
        point: String,
    },
}

/// Merges the contents of several JSON files (each a list of reports, one
/// per scenario, in the same order) into one list.
pub fn merge_files(files: Vec<Vec<Report>>) -> Result<Vec<Report>, MergeError> {
    let mut files = files.into_iter();
    let first = files.next().ok_or(MergeError::Empty)?;
    let mut groups: Vec<Vec<Report>> = first.into_iter().map(|r| vec![r]).collect();
    for f in files {
        if f.len() != groups.len() {
            return Err(MergeError::Mismatch(format!(
                "{} reports in one input, {} in another",
                groups.len(),
                f.len()
            )));
        }
        for (g, r) in groups.iter_mut().zip(f) {
            if g[0].name != r.name {
                return Err(MergeError::Mismatch(format!(
                    "`{}` and `{}`",
                    g[0].name, r.name
                )));
            }
            g.push(r);
        }
    }
    groups.into_iter().map(merge).collect()
}

/// Merges the partitions of one report.
pub fn merge(parts: Vec<Report>) -> Result<Report, MergeError> {
    let first = parts.first().ok_or(MergeError::Empty)?;
    let name = first.name.clone();
    let not_one = |what: String| MergeError::NotOneRun {
        report: name.clone(),
        what,
    };
    let mut layouts: Vec<LayoutRow> = Vec::new();
    // Cases in the campaign's order: by layout as the first report lists
    // them, then by plan number.
    let mut cases: BTreeMap<(usize, usize), CaseRecord> = BTreeMap::new();
    let mut interrupted = false;
    for p in &parts {
        if p.fault != first.fault {
            return Err(not_one(format!(
                "fault models {} and {}",
                first.fault, p.fault
            )));
        }
        if p.replay != first.replay {
            return Err(not_one(format!(
                "replay commands differ:\n  {}\n  {}",
                first.replay.template(),
                p.replay.template()
            )));
        }
        if let (Some(a), Some(b)) = (first.partition, p.partition) {
            if a.count != b.count {
                return Err(not_one(format!("partitions {a} and {b} split differently")));
            }
        }
        interrupted |= p.interrupted;
        for l in &p.layouts {
            match layouts.iter_mut().find(|k| k.layout == l.layout) {
                None => layouts.push(l.clone()),
                Some(k) => {
                    // Every partition records every point's crash state,
                    // so they agree; a report that does not is not trusted
                    // to say which points share a state.
                    if k.states != l.states {
                        k.states = None;
                    }
                    let same = k.reference_digest == l.reference_digest
                        && k.census == l.census
                        && k.planned == l.planned
                        && k.reference_findings == l.reference_findings;
                    if !same {
                        return Err(not_one(format!(
                            "layout {}: the references differ (digest {} and {}, census {} and {})",
                            l.layout, k.reference_digest, l.reference_digest, k.census, l.census
                        )));
                    }
                    // Each partition covered its share of the same points.
                    k.coverage = k.coverage.join(&l.coverage).ok_or_else(|| {
                        not_one(format!(
                            "layout {}: the crash points offered differ ({} points, {} sites and {} points, {} sites)",
                            l.layout,
                            k.coverage.points,
                            k.coverage.sites,
                            l.coverage.points,
                            l.coverage.sites
                        ))
                    })?;
                }
            }
        }
        for c in p.case_results.load()?.iter() {
            let at = layouts
                .iter()
                .position(|l| l.layout == c.layout)
                .unwrap_or(layouts.len());
            let key = (at, c.index);
            if cases.insert(key, c.clone()).is_some() {
                return Err(MergeError::Duplicate {
                    report: name.clone(),
                    layout: c.layout.name().into(),
                    point: c.point.to_string(),
                });
            }
        }
    }
    let mut r = Report::assemble(
        &name,
        first.fault,
        first.replay.clone(),
        layouts,
        cases.into_values().collect(),
    );
    if interrupted {
        r.interrupted = true;
        r.certified = false;
    }
    r.expect = first.expect.clone();
    Ok(r)
}

/// What the merged report lacks: per layout, cases of no input.
pub fn missing(r: &Report) -> Vec<String> {
    r.layouts
        .iter()
        .filter(|l| l.cases < l.planned)
        .map(|l| {
            format!(
                "{}: {} of {} cases are in no input (a partition missing?)",
                l.layout,
                l.planned - l.cases,
                l.planned
            )
        })
        .collect()
}
