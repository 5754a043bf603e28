//! Which cases see what another case sees. For a deterministic subject, two
//! cases of one crash point each whose points have the same crash state
//! (the same tree and events so far) and wrote the same paths outside the
//! sandbox make the same runs from there: the first of them is run and the
//! others are judged from what it saw ([`crate::oracle::Runs::same_case`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::Recording;
use crate::inject::CrashPlan;
use crate::oracle::SeenSlot;
use crate::store::StateId;

/// What the cases that see the same share.
type Key = (StateId, Vec<PathBuf>);

/// For each key two plans or more share, where the first of their cases
/// leaves what it saw, and how many of them are yet to ask for it.
///
/// An entry goes when the last of its plans has asked, so what the first
/// case saw is freed once the last of them is judged: what is held grows
/// with the cases in flight, not with the campaign.
#[derive(Debug, Default)]
pub struct SameCases {
    slots: Mutex<HashMap<Key, (SeenSlot, usize)>>,
}

/// The key of the case of `plan`: plans of one recorded crash point.
fn key(recording: &Recording, plan: &CrashPlan) -> Option<Key> {
    let [point] = plan.points.as_slice() else {
        return None;
    };
    let r = recording.points.get(point)?;
    Some((r.state, r.outside.clone()))
}

impl SameCases {
    /// The slots of `plans`, whose first points are in `recording`.
    pub fn of(recording: &Recording, plans: &[CrashPlan]) -> SameCases {
        let mut counts: HashMap<Key, usize> = HashMap::new();
        for k in plans.iter().filter_map(|p| key(recording, p)) {
            *counts.entry(k).or_default() += 1;
        }
        let slots = counts
            .into_iter()
            .filter(|(_, n)| *n >= 2)
            .map(|(k, n)| (k, (SeenSlot::default(), n)))
            .collect();
        SameCases {
            slots: Mutex::new(slots),
        }
    }

    /// The slot of `plan`'s case (each plan asks once), when another plan's
    /// case sees the same.
    pub fn take(&self, recording: &Recording, plan: &CrashPlan) -> Option<SeenSlot> {
        let key = key(recording, plan)?;
        let mut m = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let (slot, left) = m.get_mut(&key)?;
        let slot = Arc::clone(slot);
        *left -= 1;
        if *left == 0 {
            m.remove(&key);
        }
        Some(slot)
    }

    /// Keys some plan is yet to ask for.
    pub fn pending(&self) -> usize {
        self.slots.lock().map(|m| m.len()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::CrashPoint;
    use crate::record::PointRecord;
    use crate::store::Hash;
    use std::collections::BTreeMap;

    fn rec(states: &[(u64, u8, &str)]) -> Recording {
        Recording {
            case_dir: "/r".into(),
            points: states
                .iter()
                .map(|(n, s, outside)| {
                    let p = CrashPoint::Syscall(*n);
                    let r = PointRecord {
                        point: p,
                        state: Hash([*s; 32]),
                        calls: 0..0,
                        changed: Vec::new(),
                        outside: outside.split_whitespace().map(PathBuf::from).collect(),
                    };
                    (p, r)
                })
                .collect(),
            power: Vec::new(),
            power_mid: BTreeMap::new(),
        }
    }

    fn plan(points: &[u64]) -> CrashPlan {
        CrashPlan {
            points: points.iter().map(|n| CrashPoint::Syscall(*n)).collect(),
        }
    }

    #[test]
    fn plans_of_one_state_share_a_slot_until_the_last_has_asked() {
        // 11 and 12 share a state; 13 has its own; 14 the state of 11 but
        // wrote outside the sandbox.
        let r = rec(&[(11, 1, ""), (12, 1, ""), (13, 2, ""), (14, 1, "/etc/x")]);
        let plans = [plan(&[11]), plan(&[12]), plan(&[13]), plan(&[14])];
        let same = SameCases::of(&r, &plans);
        assert_eq!(same.pending(), 1);
        assert!(same.take(&r, &plans[2]).is_none());
        assert!(same.take(&r, &plans[3]).is_none());
        let a = same.take(&r, &plans[0]).expect("shared");
        let b = same.take(&r, &plans[1]).expect("shared");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(same.pending(), 0, "freed once the last has asked");
    }

    #[test]
    fn plans_of_several_crashes_or_unrecorded_points_share_nothing() {
        let r = rec(&[(11, 1, ""), (12, 1, "")]);
        let plans = [plan(&[11, 3]), plan(&[12, 3]), plan(&[40]), plan(&[40])];
        let same = SameCases::of(&r, &plans);
        assert_eq!(same.pending(), 0);
        assert!(plans.iter().all(|p| same.take(&r, p).is_none()));
    }
}
