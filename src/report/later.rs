//! Later crash states in reports: for each case whose later crashes
//! (`--crashes 2` or more) were materialised from recorded resume runs,
//! which state each one was, and per layout how many such points and
//! distinct states there were and which points shared one. Both are made
//! from the case records alone, so a report merged from partitions says
//! what the single machine's does.
//!
//! A later crash state belongs to one recorded resume run: the run from the
//! crash states the case went through before, which a record names by the
//! case's earlier crash points (`from`), each replaced by the earliest
//! point of its own run with the same state, so that every case that went
//! through the same states names them alike. Within that run, a point
//! whose state equals an earlier point's names it (`same_state_as`).

use std::collections::BTreeSet;

use crate::inject::CrashPoint;

use super::CaseRecord;

/// One later crash of a case, as materialised from a recorded resume run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LaterStateRecord {
    /// Which crash of the plan (2 or later).
    pub crash: usize,
    /// Its point, in the resume run's own numbering.
    pub point: CrashPoint,
    /// The crash states the resume run started from, first crash first,
    /// each named by the earliest point with the same state in its run.
    pub from: Vec<CrashPoint>,
    /// The earliest point of the same resume run with the same state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_state_as: Option<CrashPoint>,
}

impl From<&crate::record::later::LaterState> for LaterStateRecord {
    fn from(s: &crate::record::later::LaterState) -> LaterStateRecord {
        LaterStateRecord {
            crash: s.crash,
            point: s.point,
            from: s.from.clone(),
            same_state_as: s.same_as,
        }
    }
}

/// A layout's later crash states, counted from its case records.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LaterStatesRow {
    /// Distinct later crash points whose states were recorded (a point of
    /// one resume run counts once, however many cases crashed there).
    pub points: usize,
    /// Distinct states among them (states are told apart within one
    /// recorded resume run).
    pub distinct: usize,
    /// `crash 2 from op:12:before: op:5:after same state as op:5:before`,
    /// for each of those points that shares an earlier point's state.
    pub same_as: Vec<String>,
}

/// `points` as `a,b,c`.
fn joined(points: &[CrashPoint]) -> String {
    let names: Vec<String> = points.iter().map(|p| p.to_string()).collect();
    names.join(",")
}

impl LaterStatesRow {
    /// The row of `cases` (`None`: no later crash state was recorded).
    pub fn of<'c>(cases: impl IntoIterator<Item = &'c CaseRecord>) -> Option<LaterStatesRow> {
        let mut points = LaterPoints::default();
        for c in cases {
            points.add(c);
        }
        points.row()
    }
}

/// The distinct later crash points of cases, counted one case at a time
/// (what [`LaterStatesRow::of`] counts).
#[derive(Debug, Clone, Default)]
pub struct LaterPoints {
    points: BTreeSet<(usize, Vec<CrashPoint>, CrashPoint, Option<CrashPoint>)>,
}

impl LaterPoints {
    /// Counts the later crash states of `c`.
    pub fn add(&mut self, c: &CaseRecord) {
        for s in &c.later_states {
            self.points
                .insert((s.crash, s.from.clone(), s.point, s.same_state_as));
        }
    }

    /// The row of the cases counted (`None`: no later crash state).
    pub fn row(&self) -> Option<LaterStatesRow> {
        let points = &self.points;
        if points.is_empty() {
            return None;
        }
        let distinct: BTreeSet<_> = points
            .iter()
            .map(|(k, from, p, same)| (k, from, same.unwrap_or(*p)))
            .collect();
        let same_as = points
            .iter()
            .filter_map(|(k, from, p, same)| {
                let s = same.as_ref()?;
                Some(format!(
                    "crash {k} from {}: {p} same state as {s}",
                    joined(from)
                ))
            })
            .collect();
        Some(LaterStatesRow {
            points: points.len(),
            distinct: distinct.len(),
            same_as,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> CrashPoint {
        s.parse().expect("a crash point")
    }

    fn later(crash: usize, point: &str, from: &[&str], same: Option<&str>) -> LaterStateRecord {
        LaterStateRecord {
            crash,
            point: p(point),
            from: from.iter().map(|s| p(s)).collect(),
            same_state_as: same.map(p),
        }
    }

    #[test]
    fn points_of_one_run_are_counted_once_and_shared_states_named() {
        let json = r#"{"layout":"relative","index":0,"point":"op:3:before,op:2:after",
            "name":"n","site":"s","verdict":"passed"}"#;
        let mut a: CaseRecord = serde_json::from_str(json).expect("a case record");
        assert!(a.later_states.is_empty(), "optional: absent is empty");
        assert_eq!(LaterStatesRow::of([&a]), None);
        let mut b = a.clone();
        let mut c = a.clone();
        a.later_states = vec![later(2, "op:2:after", &["op:3:before"], None)];
        // The same point of the same run, from another case.
        b.later_states = a.later_states.clone();
        b.index = 1;
        // Another point of that run with the same state, and a third crash.
        c.index = 2;
        c.later_states = vec![
            later(2, "op:3:before", &["op:3:before"], Some("op:2:after")),
            later(3, "op:1:before", &["op:3:before", "op:2:after"], None),
        ];
        let row = LaterStatesRow::of([&a, &b, &c]).expect("later states");
        assert_eq!(row.points, 3);
        assert_eq!(row.distinct, 2);
        assert_eq!(
            row.same_as,
            vec!["crash 2 from op:3:before: op:3:before same state as op:2:after".to_string()]
        );
        let text = serde_json::to_string(&c.later_states[1]).expect("json");
        assert_eq!(
            text,
            r#"{"crash":3,"point":"op:1:before","from":["op:3:before","op:2:after"]}"#
        );
    }
}
