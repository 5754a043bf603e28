//! Which cases see what another case sees. For a deterministic subject, two
//! cases of one crash point each whose points have the same crash state
//! (the same tree and events so far) and wrote the same paths outside the
//! sandbox make the same runs from there: the first of them is run and the
//! others are judged from what it saw ([`crate::oracle::Runs::same_case`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use super::Recording;
use crate::inject::CrashPlan;
use crate::oracle::{Room, SeenSlot};
use crate::store::StateId;

/// What the cases that see the same share.
type Key = (StateId, Vec<PathBuf>);

/// For each key two plans or more share, where the first of their cases
/// leaves what it saw, and how many of them are yet to ask for it.
///
/// An entry goes when the last of its plans has asked, so what the first
/// case saw is freed once the last of them is judged; and what the slots
/// keep at once is at most [`SameCases::ROOM`] (a case finding no room
/// keeps nothing, and the cases of its slot are run as it was): what is
/// held does not grow with the campaign.
#[derive(Debug)]
pub struct SameCases {
    slots: Mutex<HashMap<Key, (SeenSlot, usize)>>,
    room: std::sync::Arc<Room>,
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
    /// How many bytes the slots of one layout keep at most at once.
    pub const ROOM: usize = 2 << 20;

    /// The slots of `plans`, whose first points are in `recording`.
    pub fn of(recording: &Recording, plans: &[CrashPlan]) -> SameCases {
        Self::with_room(recording, plans, Self::ROOM)
    }

    /// [`SameCases::of`], the slots keeping at most `room` bytes at once.
    pub fn with_room(recording: &Recording, plans: &[CrashPlan], room: usize) -> SameCases {
        let room = Room::new(room);
        let mut counts: HashMap<Key, usize> = HashMap::new();
        for k in plans.iter().filter_map(|p| key(recording, p)) {
            *counts.entry(k).or_default() += 1;
        }
        let slots = counts
            .into_iter()
            .filter(|(_, n)| *n >= 2)
            .map(|(k, n)| (k, (SeenSlot::new(&room), n)))
            .collect();
        SameCases {
            slots: Mutex::new(slots),
            room,
        }
    }

    /// The slot of `plan`'s case (each plan asks once), when another plan's
    /// case sees the same.
    pub fn take(&self, recording: &Recording, plan: &CrashPlan) -> Option<SeenSlot> {
        let key = key(recording, plan)?;
        let mut m = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let (slot, left) = m.get_mut(&key)?;
        let slot = slot.clone();
        *left -= 1;
        if *left == 0 {
            m.remove(&key);
            slot.close();
        }
        Some(slot)
    }

    /// The bytes the slots may still keep.
    pub fn room_left(&self) -> usize {
        self.room.left()
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
        assert!(SeenSlot::ptr_eq(&a, &b));
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

    use crate::oracle::Took;

    fn seen() -> crate::oracle::Seen {
        crate::oracle::Seen {
            obs: Default::default(),
            leftovers: Vec::new(),
            root: "/w/case-000001/sandbox".into(),
            case_dir: "/w/case-000001".into(),
        }
    }

    #[test]
    fn what_the_slots_keep_is_bounded_and_given_back_when_the_last_has_asked() {
        let r = rec(&[(11, 1, ""), (12, 1, ""), (13, 2, ""), (14, 2, "")]);
        let plans = [plan(&[11]), plan(&[12]), plan(&[13]), plan(&[14])];
        // Room for one kept observation, not two.
        let one = seen().approx_bytes();
        let same = SameCases::with_room(&r, &plans, one + one / 2);
        let a = same.take(&r, &plans[0]).expect("shared");
        assert!(matches!(
            a.get_or_make(|| Ok(seen())),
            Took::Kept {
                made_here: true,
                ..
            }
        ));
        let c = same.take(&r, &plans[2]).expect("shared");
        assert!(
            matches!(c.get_or_make(|| Ok(seen())), Took::Made(Ok(_))),
            "no room left: nothing kept, what was made given back"
        );
        let before = same.room_left();
        let b = same.take(&r, &plans[1]).expect("shared");
        assert!(matches!(
            b.get_or_make(|| unreachable!()),
            Took::Kept {
                made_here: false,
                ..
            }
        ));
        assert!(same.room_left() > before, "given back once the last asked");
        // The slot kept nothing: its other case is run (made) as it was.
        let d = same.take(&r, &plans[3]).expect("shared");
        assert!(matches!(d.get_or_make(|| unreachable!()), Took::Nothing));
        assert_eq!(same.room_left(), one + one / 2);
    }
}
