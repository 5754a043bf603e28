//! Step accounting and the final state: where a resume started against the
//! saves completed before it (`progress-lost`), how far the last run
//! trained (`overshoot` past `MAX_STEPS`, `resume-failed` short of it), and
//! its digest against the reference (`digest-mismatch`, naming the parts
//! and the step where the run first diverged when the subject says).

use std::collections::BTreeMap;

use crate::protocol::{Event, StateFile};
use crate::verdict::{FailureKind, Finding};

/// A digest's first characters, for reports (never splits a character).
pub fn short(d: &str) -> &str {
    crate::protocol::short_digest(d)
}

/// `; differing at the end: a, b` for the parts whose digests differ.
pub fn differing_fields(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> String {
    let diff: Vec<&str> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, _)| k.as_str())
        .collect();
    if diff.is_empty() {
        String::new()
    } else {
        format!("; differing at the end: {}", diff.join(", "))
    }
}

/// Where the case's `state` events first leave the reference's trajectory.
pub fn first_divergence(
    reference: &BTreeMap<u64, BTreeMap<String, String>>,
    events: &[Event],
) -> String {
    for e in events {
        let Event::State { step, parts } = e else {
            continue;
        };
        let Some(want) = reference.get(step) else {
            continue;
        };
        let diff: Vec<&str> = want
            .iter()
            .filter(|(k, v)| parts.get(*k).is_some_and(|p| p != *v))
            .map(|(k, _)| k.as_str())
            .collect();
        if !diff.is_empty() {
            return format!("; first divergence at step {step}: {}", diff.join(", "));
        }
    }
    String::new()
}

/// `progress-lost`: run `run` started from step `from` although the save of
/// step `saved` had completed before it.
pub fn progress_lost(run: usize, from: u64, saved: Option<u64>) -> Option<Finding> {
    let saved = saved.filter(|s| from < *s)?;
    Some(Finding {
        kind: FailureKind::ProgressLost,
        run,
        detail: format!(
            "run {run} resumed from step {from}, but the save of step {saved} had completed"
        ),
    })
}

/// What the reference a final state is compared with holds.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// `CRASHPOINT_MAX_STEPS`.
    pub max_steps: u64,
    /// The reference's final state.
    pub state: &'a StateFile,
    /// The reference's per-part digests by step.
    pub trajectory: &'a BTreeMap<u64, BTreeMap<String, String>>,
}

/// The verdict on the state file of the last run (`run`), which exited 0:
/// `overshoot` past `MAX_STEPS`, `resume-failed` short of it, else
/// `digest-mismatch` when its digest differs from the reference's (then
/// `events` gives the case's events, to name where they first diverged).
pub fn final_state(
    want: Expected<'_>,
    got: &StateFile,
    events: impl FnOnce() -> Vec<Event>,
    run: usize,
) -> Option<Finding> {
    let max = want.max_steps;
    if got.step > max {
        let over = got.step - max;
        let from = match got.resumed_from_step {
            Some(s) if s > 0 => format!(" (resumed from step {s})"),
            _ => String::new(),
        };
        return Some(Finding {
            kind: FailureKind::Overshoot,
            run,
            detail: format!(
                "run {run}{from} exited 0 at step {}, past CRASHPOINT_MAX_STEPS={max}: it trained {over} step{} too far",
                got.step,
                if over == 1 { "" } else { "s" }
            ),
        });
    }
    if got.step < max {
        return Some(Finding {
            kind: FailureKind::ResumeFailed,
            run,
            detail: format!(
                "run {run} exited 0 at step {}, {} step{} short of CRASHPOINT_MAX_STEPS={max}",
                got.step,
                max - got.step,
                if max - got.step == 1 { "" } else { "s" }
            ),
        });
    }
    (got.digest != want.state.digest).then(|| Finding {
        kind: FailureKind::DigestMismatch,
        run,
        detail: format!(
            "final digest {} differs from the reference {}{}{}",
            short(&got.digest),
            short(&want.state.digest),
            first_divergence(want.trajectory, &events()),
            differing_fields(&want.state.fields, &got.fields)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: u64, digest: &str, from: Option<u64>) -> StateFile {
        StateFile {
            step,
            digest: digest.into(),
            resumed_from_step: from,
            fields: BTreeMap::new(),
        }
    }

    #[test]
    fn past_max_steps_is_overshoot_and_short_of_it_is_resume_failed() {
        let r = state(8, "abc", Some(0));
        let traj = BTreeMap::new();
        let want = Expected {
            max_steps: 8,
            state: &r,
            trajectory: &traj,
        };
        let f = final_state(want, &state(9, "zzz", Some(8)), Vec::new, 2).unwrap();
        assert_eq!(f.kind, FailureKind::Overshoot);
        assert_eq!(
            f.detail,
            "run 2 (resumed from step 8) exited 0 at step 9, past CRASHPOINT_MAX_STEPS=8: it trained 1 step too far"
        );
        let f = final_state(want, &state(5, "abc", None), Vec::new, 2).unwrap();
        assert_eq!(f.kind, FailureKind::ResumeFailed);
        assert!(f.detail.contains("3 steps short of"), "{f:?}");
        assert_eq!(final_state(want, &state(8, "abc", None), Vec::new, 2), None);
        let f = final_state(want, &state(8, "abd", None), Vec::new, 2).unwrap();
        assert_eq!(f.kind, FailureKind::DigestMismatch);
    }

    #[test]
    fn short_digests_never_split_a_character() {
        assert_eq!(short("xéééééééééééééé"), "xééééééééééé");
        assert_eq!(short("ab"), "ab");
    }

    #[test]
    fn a_resume_before_a_completed_save_is_progress_lost() {
        assert!(progress_lost(2, 0, Some(4)).is_some());
        assert!(progress_lost(2, 4, Some(4)).is_none());
        assert!(progress_lost(2, 0, None).is_none());
    }
}
