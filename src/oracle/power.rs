//! Power-loss cases: after the kill, the sandbox is rolled back to a state
//! the disk could hold. The log of the killed run's operations (recorded by
//! the tracer, see [`crate::trace::TracedOp`]) is replayed on the durable
//! tree the run started from ([`Log::with_initial`]); the most pessimistic
//! state, and up to `states` more (every legal state when the window is
//! that small, else drawn from the seed, deduplicated), are each judged by
//! the normal resume loop.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::fault::FaultModel;
use crate::power::{self, CrashState, DroppedKind, Entry, Log, LogError, Rope};
use crate::trace::TracedOp;

/// The power-loss states of one crash point.
#[derive(Debug, Clone)]
pub struct PowerStates {
    /// The states to judge, the most pessimistic first, all distinct.
    pub states: Vec<CrashState>,
}

/// Why the power-loss states of a crash point could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    /// The sandbox could not be read or written.
    #[error("power loss: {0}")]
    Io(#[from] io::Error),
    /// The tree the run started from is not one the model can hold.
    #[error("power loss: {0}")]
    Log(#[from] LogError),
    /// A state could not be written into the sandbox.
    #[error("power loss: {0}")]
    Materialise(#[from] power::MaterialiseError),
    /// The crashing run was not traced for the model.
    #[error("power loss: the crashing run recorded no operations (system-call tracing is needed)")]
    NotRecorded,
}

/// The tree below `root` as the model's durable starting point: every
/// directory, regular file (its content) and symbolic link, parents first.
pub fn scan(root: &Path) -> io::Result<BTreeMap<String, Entry>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![String::new()];
    while let Some(rel) = todo.pop() {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = std::fs::symlink_metadata(e.path())?;
            let ft = meta.file_type();
            if ft.is_dir() {
                out.insert(path.clone(), Entry::Dir);
                todo.push(path);
            } else if ft.is_symlink() {
                let t = std::fs::read_link(e.path())?;
                if let Some(t) = t.to_str() {
                    out.insert(path, Entry::Symlink(t.to_string()));
                }
            } else if ft.is_file() && meta.nlink() >= 1 {
                let data = std::fs::read(e.path())?;
                out.insert(path, Entry::File(Rope::from_bytes(data)));
            }
        }
    }
    Ok(out)
}

/// The states of the crash point a run was killed at: `ops` are the run's
/// recorded operations, `killed_at` the census number of the call it was
/// killed at the entry of (`None`: every recorded operation happened).
pub fn states(
    initial: &BTreeMap<String, Entry>,
    ops: &[TracedOp],
    killed_at: Option<u64>,
    model: &FaultModel,
    seed: u64,
) -> Result<PowerStates, PowerError> {
    let mut log = Log::with_initial(initial)?;
    for t in ops {
        if killed_at.is_some_and(|k| t.call >= k) {
            break;
        }
        // A call the model refuses is one that failed (a `mkdir` of an
        // existing directory): it changed nothing.
        let _ = log.push(t.op.clone());
    }
    let first = power::most_pessimistic(&log);
    let mut states = vec![first];
    if model.states > 0 {
        let all = power::enumerate(&log, model.states + 1).filter(|v| v.len() <= model.states + 1);
        let more = match all {
            Some(all) => all,
            None => power::sample(&log, seed, model.states),
        };
        let mut seen: HashSet<[u8; 32]> = states.iter().map(CrashState::fingerprint).collect();
        for s in more {
            if seen.insert(s.fingerprint()) && states.len() <= model.states {
                states.push(s);
            }
        }
    }
    Ok(PowerStates { states })
}

/// Replaces everything below `root` with `state`.
pub fn install(state: &CrashState, root: &Path) -> Result<(), PowerError> {
    for e in std::fs::read_dir(root)? {
        let p = e?.path();
        if std::fs::symlink_metadata(&p)?.is_dir() {
            std::fs::remove_dir_all(&p)?;
        } else {
            std::fs::remove_file(&p)?;
        }
    }
    power::materialise(state, root, |h| {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no store holds blob {}", h.to_hex()),
        ))
    })?;
    Ok(())
}

/// What a state dropped, in a few words for a finding: the entry changes
/// first (where the checkpoints went), then the data, each outside the
/// sandbox's `tmp` and `home` (TMPDIR and HOME) before inside; pairs that
/// cancel out (a scratch file created and removed) only in the count.
pub fn explain(state: &CrashState) -> String {
    if state.dropped.is_empty() {
        return "nothing unsynced was dropped".into();
    }
    let scratch = |place: &str| {
        let top = place.split('/').next().unwrap_or("");
        top == "tmp" || top == "home"
    };
    let telling = |kind, in_scratch| {
        state
            .dropped
            .iter()
            .filter(move |d| d.kind == kind && !d.cancelled && scratch(&d.place) == in_scratch)
    };
    let mut shown: Vec<&str> = telling(DroppedKind::Entry, false)
        .chain(telling(DroppedKind::Data, false))
        .chain(telling(DroppedKind::Entry, true))
        .chain(telling(DroppedKind::Data, true))
        .map(|d| d.message.as_str())
        .take(2)
        .collect();
    if shown.is_empty() {
        return format!(
            "only {} unsynced changes that cancel out were dropped \
             (names created and removed again)",
            state.dropped.len()
        );
    }
    shown.dedup();
    let more = state.dropped.len() - shown.len();
    let mut text = shown.join("; ");
    if more > 0 {
        text.push_str(&format!(" (and {more} more unsynced changes)"));
    }
    text
}

/// The seed a crash point's states are drawn from.
pub fn seed_for(seed: u64, point: &str) -> u64 {
    let h = blake3::hash(format!("power-loss {seed} {point}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::power::Op;

    fn traced(call: u64, op: Op) -> TracedOp {
        TracedOp { call, op }
    }

    /// A run that creates `a`, writes it, syncs (not counted: its number is
    /// the count of calls before it), then renames it: calls 1, 2, 3.
    fn run() -> (BTreeMap<String, Entry>, Vec<TracedOp>) {
        let mut initial = BTreeMap::new();
        initial.insert("ckpt".to_string(), Entry::Dir);
        let ops = vec![
            traced(1, Op::create("ckpt/a.tmp", 1)),
            traced(2, Op::write(1, 0, b"saved")),
            traced(2, Op::Sync),
            traced(3, Op::rename("ckpt/a.tmp", "ckpt/a")),
        ];
        (initial, ops)
    }

    #[test]
    fn a_kill_at_a_call_keeps_exactly_the_calls_before_it_and_the_syncs_between() {
        let (initial, ops) = run();
        // Killed at the entry of the rename: the sync before it happened.
        let s = states(&initial, &ops, Some(3), &FaultModel::power_loss(0), 0).expect("states");
        assert_eq!(s.states.len(), 1);
        let e = &s.states[0].entries;
        assert_eq!(
            e.get("ckpt/a.tmp"),
            Some(&Entry::File(Rope::from_bytes(b"saved".to_vec())))
        );
        assert!(!e.contains_key("ckpt/a"));
        assert_eq!(explain(&s.states[0]), "nothing unsynced was dropped");
        // Killed at the write: nothing was synced, the creation is undone.
        let s = states(&initial, &ops, Some(2), &FaultModel::power_loss(0), 0).expect("states");
        assert!(!s.states[0].entries.contains_key("ckpt/a.tmp"));
        assert!(explain(&s.states[0]).contains("not made durable"));
    }

    #[test]
    fn a_scratch_file_created_and_removed_is_not_what_the_explanation_leads_with() {
        let mut initial = BTreeMap::new();
        initial.insert("tmp".to_string(), Entry::Dir);
        initial.insert("work".to_string(), Entry::Dir);
        // Python's tempfile probe, then the checkpoint directory: nothing
        // is ever fsynced.
        let probe = vec![
            traced(1, Op::create("tmp/x3kq9z0a", 1)),
            traced(2, Op::write(1, 0, b"probe")),
            traced(3, Op::Unlink("tmp/x3kq9z0a".into())),
        ];
        let ckpt = traced(4, Op::create("work/step=1.ckpt", 2));
        let mut ops = probe.clone();
        ops.push(ckpt);
        let s = states(&initial, &ops, None, &FaultModel::power_loss(0), 0).expect("states");
        let text = explain(&s.states[0]);
        assert!(
            text.starts_with("creation of step=1.ckpt not made durable"),
            "{text}"
        );
        // A directory made in TMPDIR before it comes after it.
        let mut ops = vec![traced(1, Op::Mkdir("tmp/torchinductor_root".into()))];
        ops.extend(probe.clone());
        ops.push(traced(4, Op::create("work/step=1.ckpt", 2)));
        let s = states(&initial, &ops, None, &FaultModel::power_loss(0), 0).expect("states");
        let text = explain(&s.states[0]);
        assert!(
            text.starts_with("creation of step=1.ckpt not made durable: directory work"),
            "{text}"
        );
        assert!(text.contains("; mkdir of torchinductor_root"), "{text}");
        assert!(!text.contains("x3kq9z0a"), "{text}");
        assert!(text.ends_with("(and 2 more unsynced changes)"), "{text}");
        // Only the probe: its two changes cancel out, and it says so.
        let s = states(&initial, &probe, None, &FaultModel::power_loss(0), 0).expect("states");
        assert_eq!(
            explain(&s.states[0]),
            "only 2 unsynced changes that cancel out were dropped \
             (names created and removed again)"
        );
    }

    #[test]
    fn more_states_are_distinct_and_the_most_pessimistic_comes_first() {
        let (initial, ops) = run();
        // Every call done, the rename unsynced: keeps it or not.
        let s = states(&initial, &ops, None, &FaultModel::power_loss(5), 7).expect("states");
        assert_eq!(s.states.len(), 2, "{:#?}", s.states);
        assert!(s.states[0].entries.contains_key("ckpt/a.tmp"));
        assert!(s.states[1].entries.contains_key("ckpt/a"));
        let again = states(&initial, &ops, None, &FaultModel::power_loss(5), 7).expect("states");
        let prints = |v: &PowerStates| -> Vec<[u8; 32]> {
            v.states.iter().map(CrashState::fingerprint).collect()
        };
        assert_eq!(prints(&s), prints(&again));
        assert_ne!(seed_for(0, "syscall:3"), seed_for(0, "syscall:4"));
    }
}
