//! Power loss from the recording: a power-loss case whose first crash point
//! was recorded builds its disk states from the recording's operations
//! before that point, instead of tracing a killed run of its own. The
//! operations name paths relative to the sandbox, so only what the subject
//! wrote is recorded under the recording's case directory (the bytes of a
//! write, the text of a symbolic link): it is rewritten to the case's
//! directory as materialised states are ([`Relocation`]).

use std::collections::BTreeMap;
use std::path::Path;

use super::Recording;
use crate::inject::CrashPoint;
use crate::layout::Layout;
use crate::oracle::{self, Target};
use crate::power::{Op, Rope};
use crate::store::{Manifest, Relocation, StateId, Store};
use crate::trace::TracedOp;

/// Which recorded points are judged in the same power-loss states: the
/// number of distinct states over every point, and for each point whose
/// states (and events file) equal an earlier point's, that point. `None`
/// when a state could not be made (the cases then say why).
pub fn shared_states(
    target: &Target,
    layout: Layout,
    store: &Store,
    rec: &Recording,
    scratch: &Path,
) -> Option<(usize, BTreeMap<CrashPoint, CrashPoint>)> {
    let dir = scratch.join("power-initial");
    let initial = oracle::initial_tree(layout, &dir);
    let _ = crate::workspace::remove_tree(&dir);
    let initial = initial.ok()?;
    let mut first: BTreeMap<Vec<StateId>, CrashPoint> = BTreeMap::new();
    let mut same = BTreeMap::new();
    let mut distinct: Vec<StateId> = Vec::new();
    for (p, r) in &rec.points {
        let ops = rec.power_ops(*p)?;
        let text = store.get(&r.state).ok()?;
        let manifest = Manifest::from_text(&String::from_utf8_lossy(&text)).ok()?;
        let events = match &manifest.events {
            Some(c) => store.read_content(c).ok()?,
            None => Vec::new(),
        };
        let ids = oracle::state_ids(target, &initial, &ops, *p, &events).ok()?;
        distinct.extend(ids.iter().copied());
        match first.get(&ids) {
            Some(f) => {
                same.insert(*p, *f);
            }
            None => {
                first.insert(ids, *p);
            }
        }
    }
    distinct.sort();
    distinct.dedup();
    Some((distinct.len(), same))
}

/// `ops` as the case at the other end of `reloc` would have made them.
pub fn relocated(ops: &[TracedOp], reloc: Option<&Relocation>) -> Vec<TracedOp> {
    let Some(reloc) = reloc else {
        return ops.to_vec();
    };
    ops.iter()
        .map(|t| TracedOp {
            call: t.call,
            op: relocate_op(&t.op, reloc),
        })
        .collect()
}

fn relocate_op(op: &Op, reloc: &Relocation) -> Op {
    match op {
        Op::Write { file, offset, data } => {
            let moved = data.to_vec().and_then(|bytes| reloc.apply(&bytes));
            match moved {
                Some(bytes) => Op::Write {
                    file: file.clone(),
                    offset: *offset,
                    data: Rope::from_bytes(bytes),
                },
                None => op.clone(),
            }
        }
        Op::Symlink { target, path } => match reloc.apply(target.as_bytes()) {
            Some(bytes) => Op::Symlink {
                target: String::from_utf8_lossy(&bytes).into_owned(),
                path: path.clone(),
            },
            None => op.clone(),
        },
        _ => op.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::power::FileRef;
    use std::path::Path;

    #[test]
    fn written_bytes_and_link_texts_are_moved_to_the_case_directory() {
        let ops = vec![
            TracedOp {
                call: 1,
                op: Op::Symlink {
                    target: "/w/case-r00000/sandbox/work/a".into(),
                    path: "work/last".into(),
                },
            },
            TracedOp {
                call: 2,
                op: Op::write(1, 0, b"at /w/case-r00000/sandbox\n"),
            },
            TracedOp {
                call: 3,
                op: Op::Fsync(FileRef::Path("work/a".into())),
            },
        ];
        let reloc = Relocation::between(Path::new("/w/case-r00000"), Path::new("/w/case-000007"));
        let got = relocated(&ops, reloc.as_ref());
        assert_eq!(
            got[0].op,
            Op::Symlink {
                target: "/w/case-000007/sandbox/work/a".into(),
                path: "work/last".into(),
            }
        );
        assert_eq!(got[1].op, Op::write(1, 0, b"at /w/case-000007/sandbox\n"));
        assert_eq!(got[2], ops[2]);
        assert_eq!(relocated(&ops, None), ops);
    }
}
