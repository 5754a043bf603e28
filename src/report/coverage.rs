//! How much of the census a report's cases ran, in words: the lines of what
//! was not covered, and the verdict ("no failure in N of M points (S of T
//! sites)"), CERTIFIED only when every point ran. Both follow from the
//! layouts' rows alone, so a merged report says the same as a whole run.

use super::{LayoutRow, Report};
use crate::partition::Partition;

/// The sites named in a line before `...`.
const SITES_SHOWN: usize = 5;

/// What the layouts' cases did not cover, or why they prove nothing. For
/// partition `p` of a run, the points outside its share are not counted:
/// what is missing is the cases of its share that did not run.
pub fn not_covered(layouts: &[LayoutRow], p: Option<Partition>) -> Vec<String> {
    let mut out = Vec::new();
    for l in layouts.iter().filter(|l| l.reference_findings.is_empty()) {
        let c = &l.coverage;
        match p {
            Some(p) => {
                let share = (0..l.planned).filter(|&i| p.includes(i)).count();
                if l.cases < share {
                    let mut line = format!(
                        "{}: {} of the {share} cases of partition {p} not run",
                        l.layout,
                        share - l.cases
                    );
                    if let Some(cut) = &c.budget_cut {
                        line += &format!(" ({cut})");
                    }
                    out.push(line);
                }
            }
            None => {
                if c.points_run < c.points {
                    out.push(points_line(l));
                }
                if c.probes.1 < c.probes.0 {
                    out.push(format!(
                        "{}: {} of {} misuse probes not run",
                        l.layout,
                        c.probes.0 - c.probes.1,
                        c.probes.0
                    ));
                }
            }
        }
        if let Some(why) = c.inconclusive().or_else(|| c.sampled_times()) {
            out.push(format!("{}: {why}", l.layout));
        }
    }
    out
}

/// `relative: 3 of 40 points not run; 2 of 12 sites never hit: ...`.
fn points_line(l: &LayoutRow) -> String {
    let c = &l.coverage;
    let what = if c.timed { "kill times" } else { "points" };
    let mut line = format!(
        "{}: {} of {} {what} not run",
        l.layout,
        c.points - c.points_run,
        c.points
    );
    if !c.uncovered.is_empty() {
        let shown: Vec<&str> = c
            .uncovered
            .iter()
            .take(SITES_SHOWN)
            .map(String::as_str)
            .collect();
        line += &format!(
            "; {} of {} sites never hit: {}{}",
            c.uncovered.len(),
            c.sites,
            shown.join(", "),
            if c.uncovered.len() > SITES_SHOWN {
                ", ..."
            } else {
                ""
            }
        );
    }
    if let Some(cut) = &c.budget_cut {
        line += &format!(" ({cut})");
    }
    line
}

/// See [`Report::verdict`].
pub fn verdict(r: &Report) -> String {
    let timed = r.sites == 0 && r.points > 0;
    let mut seen = if timed {
        format!(
            "{} of {} kill times in the save window ({} after a completed save)",
            r.points_run,
            r.points,
            r.layouts
                .iter()
                .map(|l| l.coverage.after_save)
                .sum::<usize>()
        )
    } else {
        format!(
            "{} of {} points ({} of {} sites)",
            r.points_run, r.points, r.sites_covered, r.sites
        )
    };
    if let Some(p) = r.partition {
        seen += &format!(", partition {p}");
    }
    if r.interrupted {
        return format!("{seen} before the interruption: INTERRUPTED, NOT certified");
    }
    if !r.trustworthy() {
        return format!(
            "{seen}: NOT TRUSTWORTHY (a sandbox was disturbed from outside), NOT certified"
        );
    }
    if !r.failures.is_empty() {
        let cases: std::collections::BTreeSet<(&str, &crate::inject::CrashPlan)> = r
            .failures
            .iter()
            .map(|f| (f.layout.name(), &f.crash))
            .collect();
        let n = cases.len();
        return format!(
            "{n} failing case{} in {seen}: NOT certified",
            if n == 1 { "" } else { "s" }
        );
    }
    let inconclusive = r.not_covered.iter().any(|l| l.contains("inconclusive"));
    match (r.partition, r.certified) {
        (Some(_), true) => format!(
            "no failure in {seen}: the partition passed (every case of its share ran); the run is certified once `crashpoint merge` joins every partition"
        ),
        (None, true) => format!("no failure in {seen}: CERTIFIED"),
        (_, false) => format!(
            "no failure in {seen}: NOT certified ({})",
            if inconclusive {
                "inconclusive: no kill landed after a completed save"
            } else if timed {
                "time mode samples kill times"
            } else if r.partition.is_some() {
                "not every case of the partition ran"
            } else {
                "not every point ran"
            }
        ),
    }
}
