//! How a report is put together from its layouts' reference facts and its
//! case records: each record is counted into a [`Tally`] (per layout: cases,
//! passed, the power-loss states, the few cases that failed, the distinct
//! warnings), and the report follows from the layout rows and the tally
//! alone. [`Report::build`] and [`Report::assemble`] hold their records in
//! memory; [`SpooledCases`] takes a campaign's cases as its layouts finish,
//! spools their records to a file and keeps only the tally, so a long
//! campaign's report does not grow in memory with its cases.

use std::collections::BTreeMap;
use std::path::Path;

use crate::campaign::{CaseSink, LayoutDone, LayoutResult};
use crate::fault::Fault;
use crate::inject::{CrashPlan, CrashPoint, Mode};
use crate::layout::Layout;
use crate::oracle::CaseOutcome;
use crate::verdict::KindCounts;

use super::cases::{CaseList, SpoolError, Spooler};
use super::later::LaterPoints;
use super::{
    case, coverage, CaseRecord, Failure, FindingRecord, HarnessError, LaterStateRecord, LayoutRow,
    PowerStatesRow, ReplayCommand, Report, StatesRow,
};

/// What a report needs of its case records besides the records: counted
/// one record at a time.
#[derive(Debug, Default)]
pub struct Tally {
    cases: usize,
    layouts: BTreeMap<Layout, LayoutTally>,
}

/// One layout's share of a [`Tally`].
#[derive(Debug, Default)]
struct LayoutTally {
    cases: usize,
    passed: usize,
    power: Option<PowerStatesRow>,
    later: LaterPoints,
    /// The cases with a finding or a harness error, in order.
    notable: Vec<CaseRecord>,
    /// The distinct warnings of its cases, in order.
    warnings: Vec<String>,
}

impl Tally {
    /// Counts one case.
    pub fn add(&mut self, c: &CaseRecord) {
        self.cases += 1;
        let t = self.layouts.entry(c.layout).or_default();
        t.cases += 1;
        t.passed += usize::from(c.passed());
        t.power = PowerStatesRow::count(t.power.take(), c.power_states);
        t.later.add(c);
        if !c.findings.is_empty() || c.harness_error.is_some() {
            t.notable.push(c.clone());
        }
        for w in &c.warnings {
            push_new(&mut t.warnings, w.clone());
        }
    }
}

impl Report {
    /// Builds the report of a campaign's results (every case kept in
    /// them, as [`crate::campaign::Campaign::run_partial`] keeps them).
    pub fn build(
        name: &str,
        fault: Fault,
        mode: Mode,
        results: &[LayoutResult],
        replay: &ReplayCommand,
    ) -> Report {
        let mut cases = Vec::new();
        for r in results {
            let same = same_states(r.recorded.as_ref());
            let done = LayoutDone {
                reference: &r.reference,
                recorded: r.recorded.as_ref(),
            };
            for (&i, o) in r.indexes.iter().zip(&r.outcomes) {
                cases.push(record(&done, &same, i, o));
            }
        }
        Report::assemble(
            name,
            fault,
            replay.clone(),
            layout_rows(mode, results),
            cases,
        )
    }

    /// The report of `layouts` (their reference facts and coverage; counts
    /// are recomputed) and `cases` (in any order): failures, warnings,
    /// counts and the verdict follow from them alone.
    pub fn assemble(
        name: &str,
        fault: Fault,
        replay: ReplayCommand,
        layouts: Vec<LayoutRow>,
        mut cases: Vec<CaseRecord>,
    ) -> Report {
        let order: BTreeMap<Layout, usize> = layouts
            .iter()
            .enumerate()
            .map(|(i, l)| (l.layout, i))
            .collect();
        let rank = |c: &CaseRecord| order.get(&c.layout).copied().unwrap_or(usize::MAX);
        cases.sort_by_key(|c| (rank(c), c.index));
        let mut tally = Tally::default();
        for c in &cases {
            tally.add(c);
        }
        Report::tallied(name, fault, replay, layouts, tally, CaseList::Held(cases))
    }

    /// The report of `layouts` and the cases `cases`, counted in `tally`
    /// (in report order: by layout as `layouts` lists them, then by plan
    /// number).
    pub fn tallied(
        name: &str,
        fault: Fault,
        replay: ReplayCommand,
        mut layouts: Vec<LayoutRow>,
        tally: Tally,
        cases: CaseList,
    ) -> Report {
        let mut failures = Vec::new();
        let mut warnings: Vec<String> = Vec::new();
        let mut harness_errors = Vec::new();
        let none = LayoutTally::default();
        for l in &mut layouts {
            let t = tally.layouts.get(&l.layout).unwrap_or(&none);
            l.cases = t.cases;
            l.passed = t.passed;
            l.power_states = t.power.clone();
            l.later_states = t.later.row();
            l.failures = KindCounts::default();
            for f in &l.reference_findings {
                l.failures.add(f.kind);
                failures.push(Failure {
                    layout: l.layout,
                    kind: f.kind,
                    crash: CrashPlan::default(),
                    name: "none (the uninterrupted run)".into(),
                    detail: f.detail.clone(),
                    replay: replay.command(l.layout.name(), "none"),
                });
            }
            for w in &l.reference_warnings {
                push_new(&mut warnings, format!("{}: {w}", l.layout));
            }
            for c in &t.notable {
                if let Some(detail) = &c.harness_error {
                    harness_errors.push(HarnessError {
                        layout: l.layout,
                        crash: c.point.clone(),
                        detail: detail.clone(),
                        replay: replay.command(l.layout.name(), &c.point),
                    });
                }
                for f in &c.findings {
                    l.failures.add(f.kind);
                    failures.push(Failure {
                        layout: l.layout,
                        kind: f.kind,
                        crash: c.point.clone(),
                        name: c.name.clone(),
                        detail: f.detail.clone(),
                        replay: replay.command(l.layout.name(), &c.point),
                    });
                }
            }
            for w in &t.warnings {
                push_new(&mut warnings, format!("{}: {w}", l.layout));
            }
        }
        let not_covered = coverage::not_covered(&layouts, None);
        let sum = |f: fn(&LayoutRow) -> usize| layouts.iter().map(f).sum::<usize>();
        Report {
            name: name.to_string(),
            fault,
            certified: failures.is_empty() && harness_errors.is_empty() && not_covered.is_empty(),
            points: sum(|l| l.coverage.points),
            points_run: sum(|l| l.coverage.points_run),
            sites: sum(|l| l.coverage.sites),
            sites_covered: sum(|l| l.coverage.sites_covered),
            not_covered,
            interrupted: false,
            cases: tally.cases,
            partition: None,
            expect: None,
            layouts,
            failures,
            warnings,
            harness_errors,
            env: replay.env.iter().cloned().collect(),
            replay,
            case_results: cases,
        }
    }
}

/// A campaign's cases, spooled to a file as its layouts finish
/// ([`crate::campaign::Campaign::run_into`]): what is held is the tally and
/// the cases that failed (given back to the campaign's results, for
/// shrinking), not one record per case.
#[derive(Debug)]
pub struct SpooledCases {
    spool: Spooler,
    tally: Tally,
    /// The layout whose same-state map `same` is.
    layout: Option<Layout>,
    same: BTreeMap<CrashPoint, CrashPoint>,
    /// Text written otherwise in the cases' warnings (`certify` hides its
    /// workspace's path).
    hide: Option<(String, String)>,
    error: Option<SpoolError>,
}

impl SpooledCases {
    /// Spools to `path` (created, or truncated).
    pub fn create(path: &Path) -> Result<SpooledCases, SpoolError> {
        Ok(SpooledCases {
            spool: Spooler::create(path)?,
            tally: Tally::default(),
            layout: None,
            same: BTreeMap::new(),
            hide: None,
            error: None,
        })
    }

    /// Writes `from` as `to` in every case's warnings.
    pub fn hiding(mut self, from: &str, to: &str) -> SpooledCases {
        self.hide = Some((from.to_string(), to.to_string()));
        self
    }

    /// The report of the campaign's `results` and the cases spooled.
    pub fn finish(
        self,
        name: &str,
        fault: Fault,
        mode: Mode,
        results: &[LayoutResult],
        replay: &ReplayCommand,
    ) -> Result<Report, SpoolError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let cases = self.spool.finish()?;
        let layouts = layout_rows(mode, results);
        Ok(Report::tallied(
            name,
            fault,
            replay.clone(),
            layouts,
            self.tally,
            cases,
        ))
    }
}

impl CaseSink for SpooledCases {
    fn case(
        &mut self,
        done: &LayoutDone<'_>,
        index: usize,
        mut outcome: CaseOutcome,
    ) -> Option<CaseOutcome> {
        if self.layout != Some(done.reference.layout) {
            self.layout = Some(done.reference.layout);
            self.same = same_states(done.recorded);
        }
        if let Some((from, to)) = &self.hide {
            for w in &mut outcome.warnings {
                *w = w.replace(from.as_str(), to);
            }
        }
        let c = record(done, &self.same, index, &outcome);
        if self.error.is_none() {
            self.error = self.spool.push(&c).err();
        }
        self.tally.add(&c);
        (!outcome.findings.is_empty()).then_some(outcome)
    }
}

/// Each recorded point that shares an earlier point's crash state, with
/// that point.
fn same_states(
    recorded: Option<&crate::campaign::RecordSummary>,
) -> BTreeMap<CrashPoint, CrashPoint> {
    recorded
        .iter()
        .flat_map(|s| &s.same_as)
        .map(|(p, f)| (*p, *f))
        .collect()
}

/// The record of case `index` of the layout `done` (`same`: its
/// [`same_states`]).
fn record(
    done: &LayoutDone<'_>,
    same: &BTreeMap<CrashPoint, CrashPoint>,
    index: usize,
    o: &CaseOutcome,
) -> CaseRecord {
    let mut c = CaseRecord::of(index, o, &done.reference.census);
    c.same_state_as = c.first_point().and_then(|p| same.get(&p).copied());
    if let Some(s) = done.recorded {
        c.later_states = s
            .later_states
            .get(&o.plan)
            .map(|v| v.iter().map(LaterStateRecord::from).collect())
            .unwrap_or_default();
    }
    c
}

/// The rows of a campaign's layouts: reference facts, coverage, what was
/// recorded (the counts of cases come from the tally).
fn layout_rows(mode: Mode, results: &[LayoutResult]) -> Vec<LayoutRow> {
    results
        .iter()
        .map(|r| {
            let census = &r.reference.census;
            LayoutRow {
                layout: r.layout,
                cases: 0,
                passed: 0,
                failures: KindCounts::default(),
                census: census.len(),
                reference_digest: r.reference.state.digest.clone(),
                planned: r.planned,
                coverage: r.coverage.clone(),
                census_points: case::points(mode, census),
                reference_findings: r
                    .reference
                    .findings
                    .iter()
                    .map(FindingRecord::from)
                    .collect(),
                reference_warnings: r
                    .reference
                    .outside
                    .iter()
                    .map(|p| format!("wrote-outside: {p}"))
                    .collect(),
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
                    later_points: s.later_points,
                    by_census_run: s.by_census_run,
                }),
                power_states: None,
                later_states: None,
            }
        })
        .collect()
}

fn push_new(list: &mut Vec<String>, s: String) {
    if !list.contains(&s) {
        list.push(s);
    }
}
