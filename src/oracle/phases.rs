//! Phases for a traced census. The simulated trainer names what each of
//! its operations is for; a traced subject does not, so the phases of its
//! system calls are read off the checkpoints it announced: the calls from
//! the first one that touches a saved checkpoint to the last one are that
//! save (`save of step 8`); later calls on a `last` checkpoint (a name
//! with the word `last`: `last.ckpt`, `checkpoint_last.pt`), a
//! `best*.ckpt` or a `latest` / `last_checkpoint` pointer are its copy,
//! relink or pointer update, removals of other
//! checkpoints its rotation, anything else still belongs to it (the fsync
//! of the directory after the rename). Calls before the first save are the
//! start. Only calls without a phase are named.

use crate::census::{Call, CensusEntry, Phase, PhaseKind};

use super::checks::shape::{base_name, mentions_last, Announced, CkptPath};
use crate::observe::is_pointer_name;

/// Does the census path `path` name the checkpoint `name` (relative to the
/// checkpoint directory), or a file inside it?
fn touches(path: &str, name: &str) -> bool {
    let tail = |p: &str| p == name || p.ends_with(&format!("/{name}"));
    match path.find(&format!("/{name}/")) {
        Some(_) => true,
        None => tail(path) || path.starts_with(&format!("{name}/")),
    }
}

/// What a call after a save's checkpoint was written does for that save.
fn after_save(e: &CensusEntry) -> PhaseKind {
    let last = e.paths.last().map(String::as_str).unwrap_or("");
    let base = base_name(last);
    let pointer = |prefix: &str| base.starts_with(prefix) && base.contains(".ckpt");
    if is_pointer_name(base) || base.starts_with(".latest") {
        return PhaseKind::Pointer;
    }
    if mentions_last(base) {
        return match e.call {
            Call::Create | Call::Write | Call::Truncate => PhaseKind::SaveLast,
            _ => PhaseKind::RelinkLast,
        };
    }
    if pointer("best") || pointer(".best") {
        return PhaseKind::RelinkBest;
    }
    match e.call {
        Call::Unlink | Call::Rmdir => PhaseKind::Rotate,
        _ => PhaseKind::Save,
    }
}

/// Names the phase of every call of `census` that has none, from the
/// reference's announced `saves` (in order).
///
/// Save `i` starts at the first call that touches its checkpoint; the
/// calls between the previous save's last touch and that one (its relink,
/// the fsync of the directory, the rotation) still follow the previous
/// save when they are pointer updates, removals or syncs of a directory
/// that holds it, and belong to save `i` otherwise (its temporary file).
pub fn name_phases(census: &mut [CensusEntry], saves: &[Announced]) {
    let names: Vec<(u64, &str)> = saves
        .iter()
        .filter_map(|a| match &a.at {
            CkptPath::InDir(n) => Some((a.step, n.as_str())),
            CkptPath::Elsewhere(_) => None,
        })
        .collect();
    let touching = |i: usize, name: &str| census[i].paths.iter().any(|p| touches(p, name));
    // Does call `i` make `name` itself anew: open it for writing, rename or
    // link onto it, make it as a directory?
    let remakes = |i: usize, name: &str| {
        let e = &census[i];
        matches!(
            e.call,
            Call::Create | Call::Rename | Call::Link | Call::Symlink | Call::Mkdir
        ) && e
            .paths
            .last()
            .is_some_and(|p| p == name || p.ends_with(&format!("/{name}")))
    };
    // The first call touching each save's checkpoint, in order. A save
    // under the name of the one before (`torch.save` over `last.pt` every
    // time) begins where that name is made anew, not at the previous
    // save's next write.
    // The creates that open a save (h5py opens the file twice before its
    // first write) are one save: the next one is looked for after the
    // previous save's first write.
    let mut firsts: Vec<(u64, &str, usize)> = Vec::new();
    for (step, name) in names {
        let again = firsts.last().is_some_and(|f| f.1 == name);
        let from = match firsts.last() {
            None => 0,
            Some(&(_, prev, at)) if again => {
                (at..census.len())
                    .find(|&i| census[i].call == Call::Write && touching(i, prev))
                    .unwrap_or(at)
                    + 1
            }
            Some(f) => f.2 + 1,
        };
        if let Some(i) =
            (from..census.len()).find(|&i| touching(i, name) && (!again || remakes(i, name)))
        {
            firsts.push((step, name, i));
        }
    }
    let Some(&(_, first_name, start)) = firsts.first() else {
        return;
    };
    // Where the checkpoint directory is, in census terms: the first save's
    // path without the announced name ("work/checkpoints/").
    let ckpt_prefix: Option<String> = census[start].paths.iter().find_map(|p| {
        p.strip_suffix(first_name)
            .filter(|d| d.is_empty() || d.ends_with('/'))
            .map(str::to_string)
    });
    // A call before the first save, on paths outside that directory that
    // no later call uses (not a temporary file moved into place).
    let outside = |e: &CensusEntry| {
        ckpt_prefix.as_deref().is_some_and(|d| {
            !d.is_empty()
                && !e.paths.is_empty()
                && e.paths.iter().all(|p| !p.starts_with(d))
                && census[start..]
                    .iter()
                    .all(|l| l.paths.iter().all(|q| !e.paths.contains(q)))
        })
    };
    // The directory, what is in it, and the directories above it (a sync
    // of `work/` makes the checkpoint directory durable).
    let in_dir = |p: &str| {
        ckpt_prefix
            .as_deref()
            .is_some_and(|d| p.starts_with(d) || d.starts_with(&format!("{p}/")))
    };
    let inside: std::collections::BTreeSet<&str> = census
        .iter()
        .filter(|l| l.paths.iter().any(|q| in_dir(q)))
        .flat_map(|l| l.paths.iter().map(String::as_str))
        .collect();
    // A call on paths outside that directory that no call inside it uses
    // (not a temporary file renamed into it) is no part of a save: torch's
    // temporary files in TMPDIR at shutdown are no rotation.
    let elsewhere = |e: &CensusEntry| {
        ckpt_prefix.as_deref().is_some_and(|d| !d.is_empty())
            && !e.paths.is_empty()
            && e.paths
                .iter()
                .all(|p| !in_dir(p) && !inside.contains(p.as_str()))
    };
    // Files made and removed before the first save (Python's `tempfile`
    // probing its directory at import) are scratch of the start, not of
    // the first save.
    let removed: Vec<&str> = census[..start]
        .iter()
        .filter(|e| matches!(e.call, Call::Unlink | Call::Rmdir))
        .filter_map(|e| e.paths.first().map(String::as_str))
        .collect();
    let mut named = Vec::with_capacity(census.len());
    for i in 0..census.len() {
        let e = &census[i];
        if e.phase.kind != PhaseKind::Unknown {
            named.push(e.phase);
            continue;
        }
        if i < start {
            // Making the directories and scratch files removed again are
            // the start; anything else (the first save's temporary file) is
            // that save.
            let start = Phase {
                kind: PhaseKind::Start,
                step: None,
            };
            let sync = matches!(
                e.call,
                Call::Fsync | Call::FsyncDir | Call::Fdatasync | Call::Sync
            );
            let scratch = e.paths.iter().all(|p| removed.contains(&p.as_str()));
            named.push(match e.call {
                Call::Mkdir => start,
                _ if scratch && !e.paths.is_empty() => start,
                // A file of the start outside the checkpoint directory
                // (Keras writes ~/.keras/keras.json at import) that the
                // saves never use.
                _ if outside(e) => start,
                _ if sync && named.last() == Some(&start) => start,
                _ => Phase::at(PhaseKind::Save, firsts[0].0),
            });
            continue;
        }
        // The save whose first touch is at or before this call, and the
        // next one's first touch.
        let k = firsts.iter().rposition(|f| f.2 <= i).unwrap_or(0);
        let (step, name, _) = firsts[k];
        if elsewhere(e) {
            named.push(Phase::at(PhaseKind::Outside, step));
            continue;
        }
        // Removing the save's own checkpoint itself (to keep one, at the
        // end of a run) is no part of writing it; a temporary file inside
        // it is.
        let removes = matches!(e.call, Call::Unlink | Call::Rmdir)
            && e.paths
                .first()
                .is_some_and(|p| p == name || p.ends_with(&format!("/{name}")));
        let kind = if touching(i, name) && !removes {
            PhaseKind::Save
        } else {
            after_save(e)
        };
        let next = firsts.get(k + 1);
        // Before the next save's first touch, a pointer update, a removal
        // or a sync of a directory holding this save's checkpoint follows
        // this save; other calls (a temporary file) begin the next one.
        let holds = |p: &str| {
            (0..census.len()).filter(|&j| touching(j, name)).any(|j| {
                census[j]
                    .paths
                    .iter()
                    .any(|q| q.starts_with(&format!("{p}/")))
            })
        };
        // A file the next save never moves into its checkpoint (Keras's
        // training_metadata.json, rewritten after its weights) is this
        // save's companion, not the next one's temporary file.
        // A directory made (again) for the next save's checkpoint
        // (mmengine's `makedirs(out_dir, exist_ok=True)`) is no companion.
        let companion = next.is_some_and(|&(_, next_name, first)| {
            let used = |q: &String| {
                e.paths.contains(q)
                    || (e.call == Call::Mkdir
                        && e.paths.iter().any(|p| q.starts_with(&format!("{p}/"))))
            };
            !e.paths.is_empty()
                && !census[first..]
                    .iter()
                    .enumerate()
                    .any(|(j, l)| touching(first + j, next_name) && l.paths.iter().any(used))
        });
        let follows = kind != PhaseKind::Save
            || matches!(
                e.call,
                Call::Fsync | Call::FsyncDir | Call::Fdatasync | Call::Sync
            ) && e.paths.iter().any(|p| holds(p))
            || touching(i, name)
            || companion;
        let dir_sync = kind == PhaseKind::Save
            && !touching(i, name)
            && matches!(
                e.call,
                Call::Fsync | Call::FsyncDir | Call::Fdatasync | Call::Sync
            );
        named.push(match (next, named.last()) {
            (Some(&(next_step, _, _)), _) if !follows => Phase::at(kind, next_step),
            // A directory sync right after a pointer update or a removal
            // makes that change durable: it is part of it.
            (_, Some(prev)) if dir_sync && prev.step == Some(step) => *prev,
            _ => Phase::at(kind, step),
        });
    }
    for (e, p) in census.iter_mut().zip(named) {
        e.phase = p;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(index: u64, call: Call, paths: &[&str]) -> CensusEntry {
        CensusEntry {
            index,
            call,
            name: call.name().into(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            phase: Phase::default(),
            fd: None,
            offset: None,
            len: None,
        }
    }

    fn saved(step: u64, name: &str) -> Announced {
        Announced {
            step,
            at: CkptPath::InDir(name.into()),
            run: 0,
        }
    }

    #[test]
    fn a_lightning_census_is_cut_at_its_saves() {
        let mut c = vec![
            call(1, Call::Mkdir, &["work/checkpoints"]),
            call(2, Call::Create, &["work/checkpoints/.step=4.ckpt.tmp-9"]),
            call(
                3,
                Call::Rename,
                &[
                    "work/checkpoints/.step=4.ckpt.tmp-9",
                    "work/checkpoints/step=4.ckpt",
                ],
            ),
            call(4, Call::Symlink, &["work/checkpoints/last.ckpt"]),
            call(5, Call::FsyncDir, &["work/checkpoints"]),
            call(6, Call::Create, &["work/checkpoints/.step=8.ckpt.tmp-9"]),
            call(
                6,
                Call::Rename,
                &[
                    "work/checkpoints/.step=8.ckpt.tmp-9",
                    "work/checkpoints/step=8.ckpt",
                ],
            ),
            call(7, Call::FsyncDir, &["work/checkpoints"]),
            call(8, Call::Unlink, &["work/checkpoints/last.ckpt"]),
            call(9, Call::Symlink, &["work/checkpoints/last.ckpt"]),
            call(10, Call::Unlink, &["work/checkpoints/step=4.ckpt"]),
        ];
        name_phases(&mut c, &[saved(4, "step=4.ckpt"), saved(8, "step=8.ckpt")]);
        let shown: Vec<String> = c.iter().map(|e| e.phase.to_string()).collect();
        assert_eq!(
            shown,
            [
                "start",
                "save of step 4",
                "save of step 4",
                "relink last after the save of step 4",
                "relink last after the save of step 4",
                "save of step 8",
                "save of step 8",
                "save of step 8",
                "relink last after the save of step 8",
                "relink last after the save of step 8",
                "top-k after the save of step 8",
            ]
            .map(|s| s.replace("top-k", PhaseKind::Rotate.name()))
        );
    }

    #[test]
    fn copies_to_a_last_name_and_pointer_files_follow_their_save() {
        // fairseq: checkpoint<N>.pt, then a copy over checkpoint_last.pt;
        // detectron2: model_<N>.pth, then `last_checkpoint` naming it.
        let mut c = vec![
            call(1, Call::Create, &["w/c/checkpoint1.pt"]),
            call(2, Call::Create, &["w/c/checkpoint_last.pt"]),
            call(3, Call::Write, &["w/c/checkpoint_last.pt"]),
            call(4, Call::Create, &["w/c/last_checkpoint"]),
            call(5, Call::Create, &["w/c/checkpoint2.pt"]),
        ];
        name_phases(
            &mut c,
            &[saved(1, "checkpoint1.pt"), saved(2, "checkpoint2.pt")],
        );
        let shown: Vec<String> = c.iter().map(|e| e.phase.to_string()).collect();
        assert_eq!(
            shown,
            [
                "save of step 1",
                "save last after the save of step 1",
                "save last after the save of step 1",
                "pointer after the save of step 1",
                "save of step 2",
            ]
        );
    }

    #[test]
    fn a_keras_backup_is_cut_where_it_is_opened_again_and_keeps_its_metadata() {
        // keras.json in HOME at import; each backup: h5py opens the weights
        // file twice, writes it, then rewrites training_metadata.json.
        let mut c = vec![
            call(1, Call::Create, &["home/.keras/keras.json"]),
            call(2, Call::Mkdir, &["work/c"]),
            call(3, Call::Create, &["work/c/latest.weights.h5"]),
            call(4, Call::Create, &["work/c/latest.weights.h5"]),
            call(5, Call::Write, &["work/c/latest.weights.h5"]),
            call(6, Call::Create, &["work/c/training_metadata.json"]),
            call(7, Call::Create, &["work/c/latest.weights.h5"]),
            call(8, Call::Create, &["work/c/latest.weights.h5"]),
            call(9, Call::Write, &["work/c/latest.weights.h5"]),
            call(10, Call::Create, &["work/c/training_metadata.json"]),
        ];
        let saves = [saved(2, "latest.weights.h5"), saved(4, "latest.weights.h5")];
        name_phases(&mut c, &saves);
        let shown: Vec<String> = c.iter().map(|e| e.phase.to_string()).collect();
        let (s2, s4) = ("save of step 2", "save of step 4");
        assert_eq!(shown, ["start", "start", s2, s2, s2, s2, s4, s4, s4, s4]);
    }

    #[test]
    fn files_outside_the_directory_that_no_save_uses_are_outside_not_rotation() {
        // Composer: torch's temporary module file in TMPDIR, made and
        // removed between saves and at shutdown; the second save comes
        // through a temporary file in TMPDIR renamed into the directory.
        let mut c = vec![
            call(1, Call::Mkdir, &["work/c"]),
            call(2, Call::Create, &["work/c/ba1.pt"]),
            call(3, Call::Create, &["tmp/tmpa/_remote_module.py"]),
            call(4, Call::Unlink, &["tmp/tmpa/_remote_module.py"]),
            call(5, Call::Create, &["tmp/x7"]),
            call(6, Call::Rename, &["tmp/x7", "work/c/ba2.pt"]),
            call(7, Call::Unlink, &["work/c/ba1.pt"]),
            call(8, Call::Unlink, &["tmp/tmpa/_remote_module.py"]),
        ];
        name_phases(&mut c, &[saved(1, "ba1.pt"), saved(2, "ba2.pt")]);
        let shown: Vec<String> = c.iter().map(|e| e.phase.to_string()).collect();
        let out = |s: u64| format!("outside the checkpoint directory after the save of step {s}");
        assert_eq!(
            shown,
            [
                "start".to_string(),
                "save of step 1".into(),
                out(1),
                out(1),
                "save of step 2".into(),
                "save of step 2".into(),
                "rotate after the save of step 2".into(),
                out(2),
            ]
        );
    }

    #[test]
    fn the_directory_made_again_before_a_save_is_that_save() {
        // mmengine with max_keep_ckpts=1: remove the old checkpoint, make
        // the directory (exist_ok), write the new one, rewrite the pointer.
        let mut c = vec![
            call(1, Call::Mkdir, &["work/c"]),
            call(2, Call::Create, &["work/c/iter_1.pth"]),
            call(3, Call::Create, &["work/c/last_checkpoint"]),
            call(4, Call::Unlink, &["work/c/iter_1.pth"]),
            call(5, Call::Mkdir, &["work/c"]),
            call(6, Call::Create, &["work/c/iter_2.pth"]),
            call(7, Call::Create, &["work/c/last_checkpoint"]),
        ];
        name_phases(&mut c, &[saved(1, "iter_1.pth"), saved(2, "iter_2.pth")]);
        let shown: Vec<String> = c.iter().map(|e| e.phase.to_string()).collect();
        assert_eq!(
            shown,
            [
                "start",
                "save of step 1",
                "pointer after the save of step 1",
                "rotate after the save of step 1",
                "save of step 2",
                "save of step 2",
                "pointer after the save of step 2",
            ]
        );
    }

    #[test]
    fn scratch_files_removed_before_the_first_save_are_the_start() {
        // Python's `tempfile` probes TMPDIR at import: create, write and
        // remove a random name; then the trainer's own temporary file.
        let mut c = vec![
            call(1, Call::Create, &["tmp/l42k9v_u"]),
            call(2, Call::Write, &["tmp/l42k9v_u"]),
            call(3, Call::Unlink, &["tmp/l42k9v_u"]),
            call(4, Call::Mkdir, &["work/checkpoints"]),
            call(5, Call::Create, &["tmp/tmpp72e16v9"]),
            call(6, Call::Write, &["tmp/tmpp72e16v9"]),
            call(
                7,
                Call::Rename,
                &["tmp/tmpp72e16v9", "work/checkpoints/step=1.ckpt"],
            ),
        ];
        name_phases(&mut c, &[saved(1, "step=1.ckpt")]);
        let shown: Vec<String> = c.iter().map(|e| e.phase.to_string()).collect();
        assert_eq!(
            shown,
            [
                "start",
                "start",
                "start",
                "start",
                "save of step 1",
                "save of step 1",
                "save of step 1",
            ]
        );
    }

    #[test]
    fn saves_rewritten_under_one_name_begin_where_it_is_opened_again() {
        // A hand-written loop: torch.save(state, "checkpoints/last.pt")
        // at every save, each in several writes.
        let mut c = vec![call(1, Call::Mkdir, &["work/checkpoints"])];
        for _ in 0..3 {
            let n = c.len() as u64;
            c.push(call(n + 1, Call::Create, &["work/checkpoints/last.pt"]));
            c.push(call(n + 2, Call::Write, &["work/checkpoints/last.pt"]));
            c.push(call(n + 3, Call::Write, &["work/checkpoints/last.pt"]));
        }
        let saves = [4, 8, 12].map(|s| saved(s, "last.pt"));
        name_phases(&mut c, &saves);
        let shown: Vec<String> = c.iter().map(|e| e.phase.to_string()).collect();
        let mut want = vec!["start".to_string()];
        for s in [4, 8, 12] {
            want.extend(std::iter::repeat(format!("save of step {s}")).take(3));
        }
        assert_eq!(shown, want);
    }

    #[test]
    fn checkpoint_directories_and_phases_already_named_are_kept() {
        let mut c = vec![
            call(1, Call::Mkdir, &["work/out/checkpoint-2"]),
            call(2, Call::Write, &["work/out/checkpoint-2/model.bin"]),
            call(3, Call::Mkdir, &["work/out/checkpoint-4"]),
            call(4, Call::Write, &["work/out/checkpoint-4/model.bin"]),
            call(5, Call::Unlink, &["work/out/checkpoint-2/model.bin"]),
        ];
        c[0].phase = Phase::at(PhaseKind::Start, 0);
        name_phases(
            &mut c,
            &[saved(2, "checkpoint-2"), saved(4, "checkpoint-4")],
        );
        assert_eq!(c[0].phase, Phase::at(PhaseKind::Start, 0));
        assert_eq!(c[1].phase, Phase::at(PhaseKind::Save, 2));
        assert_eq!(c[3].phase, Phase::at(PhaseKind::Save, 4));
        // The removal of checkpoint-2 after the save of 4 touches
        // checkpoint-2, but comes after that save was complete.
        assert_eq!(c[4].phase, Phase::at(PhaseKind::Rotate, 4));
        // No announced save: nothing is named.
        let mut bare = vec![call(1, Call::Write, &["work/x"])];
        name_phases(&mut bare, &[]);
        assert_eq!(bare[0].phase.kind, PhaseKind::Unknown);
    }
}
