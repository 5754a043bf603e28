//! Earlier crash points to try in place of one: the same operation of an
//! earlier save, then operations nearby.

use std::collections::HashSet;

use crate::census::{Call, CensusEntry, PhaseKind};
use crate::inject::CrashPoint;
use crate::protocol::{OpCrash, When};

/// How many candidates one scan over earlier points may spend.
const SCAN: usize = 8;

/// What an operation does, whatever the step: its kind and its phase with
/// the step number taken out (`rename` in `relink last`).
fn op_class(e: &CensusEntry) -> (Call, PhaseKind) {
    (e.call, e.phase.kind)
}

/// Earlier candidates for a first crash point, in the order they are
/// tried: the same operation at earlier saves (earliest first), the same
/// operation at an earlier moment, then the operations just before it
/// (nearest first; a kill after one operation is the moment before the next).
pub(super) fn first_op_candidates(c: OpCrash, census: &[CensusEntry]) -> Vec<CrashPoint> {
    let Some(here) = census.iter().find(|e| e.index == c.index) else {
        return Vec::new();
    };
    let class = op_class(here);
    let same_op = census
        .iter()
        .filter(|e| e.index < c.index && op_class(e) == class)
        .map(|e| OpCrash {
            index: e.index,
            when: c.when,
        });
    let nearby = census
        .iter()
        .rev()
        .filter(|e| e.index < c.index)
        .flat_map(|e| {
            let mut whens = vec![When::After, When::Before];
            if e.call == Call::Write {
                whens.insert(1, When::Mid);
            }
            whens.into_iter().map(move |when| OpCrash {
                index: e.index,
                when,
            })
        })
        .take(SCAN);
    let earlier_when = [When::Before, When::Mid]
        .into_iter()
        .filter(|w| *w < c.when && (here.call == Call::Write || *w != When::Mid))
        .map(|when| OpCrash {
            index: c.index,
            when,
        });
    let mut seen = HashSet::new();
    same_op
        .chain(earlier_when)
        .chain(nearby)
        .filter(|p| seen.insert(*p))
        .map(CrashPoint::Op)
        .collect()
}

/// Earlier candidates for a system-call crash point: the same call (kind
/// and phase, when the census says) earlier, then the calls just before it.
pub(super) fn syscall_candidates(n: u64, census: &[CensusEntry]) -> Vec<CrashPoint> {
    let class = census.iter().find(|e| e.index == n).map(op_class);
    let same = census
        .iter()
        .filter(|e| e.index < n && Some(op_class(e)) == class)
        .map(|e| e.index);
    let nearby = (1..n).rev().take(SCAN);
    let mut seen = HashSet::new();
    same.chain(nearby)
        .filter(|i| seen.insert(*i))
        .map(CrashPoint::Syscall)
        .collect()
}

/// Earlier candidates for a crash in a resume run (no census there): the
/// first operations of the run, where it loads, then the ones just before.
pub(super) fn later_op_candidates(c: OpCrash) -> Vec<CrashPoint> {
    let mut out: Vec<OpCrash> = (1..c.index.min(4))
        .map(|index| OpCrash {
            index,
            when: c.when,
        })
        .collect();
    out.extend((1..c.index).rev().take(SCAN).map(|index| OpCrash {
        index,
        when: c.when,
    }));
    let mut seen = HashSet::new();
    out.into_iter()
        .filter(|p| seen.insert(*p))
        .map(CrashPoint::Op)
        .collect()
}
