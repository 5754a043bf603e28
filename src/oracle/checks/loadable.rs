//! What is loadable after a crash, and the invariants of pointers at any
//! depth of the checkpoint tree: `dangling-last` (a `last*` link, or a
//! `latest` file, that names nothing), `escaped-dir` (a link or `latest`
//! file that resolves outside the checkpoint directory), and `no-checkpoint`
//! (a save had completed, but no announced checkpoint survives complete, no
//! hard link of one survives and no pointer resolves).

use crate::observe::{resolution_text, DirSnapshot, EntryKind, Resolution};
use crate::verdict::{FailureKind, Finding};

use super::shape::{names_last, Announced, CkptPath, RefShape};

/// Is `base` the name of a `last*.ckpt` pointer?
fn is_last(base: &str) -> bool {
    base.starts_with("last") && base.ends_with(".ckpt")
}

/// Is `base` the name of a `last*.ckpt` or `best*.ckpt` pointer?
fn is_pointer(base: &str) -> bool {
    is_last(base) || (base.starts_with("best") && base.ends_with(".ckpt"))
}

/// `dangling-last` and `escaped-dir` in `snap`, found in run `run`; `when`
/// says when ("after crash 1 at syscall:9", "at the end").
pub fn pointer_findings(snap: &DirSnapshot, run: usize, when: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for e in &snap.entries {
        let EntryKind::Link { target, resolves } = &e.kind else {
            continue;
        };
        match resolves {
            // A link named `last*` (`last.ckpt`, `last.pt`, `last`) or as
            // the last checkpoint (`checkpoint_last.pt`, Composer's
            // `latest-rank0.pt`) is a pointer.
            Resolution::Dangling if e.base().starts_with("last") || names_last(e.base()) => out
                .push(Finding {
                    kind: FailureKind::DanglingLast,
                    run,
                    detail: format!("{when}: {} -> {target} does not resolve", e.name),
                }),
            Resolution::InSandbox(p) | Resolution::Outside(p) => out.push(Finding {
                kind: FailureKind::EscapedDir,
                run,
                detail: format!(
                    "{when}: {} -> {target} resolves outside the checkpoint directory, to {p}",
                    e.name
                ),
            }),
            _ => {}
        }
    }
    for p in &snap.pointers {
        match &p.resolves {
            Resolution::Dangling if p.names.is_empty() => out.push(Finding {
                kind: FailureKind::DanglingLast,
                run,
                detail: format!("{when}: {} is empty: it names no checkpoint", p.name),
            }),
            Resolution::Dangling => out.push(Finding {
                kind: FailureKind::DanglingLast,
                run,
                detail: format!("{when}: {} names {}, which does not exist", p.name, p.names),
            }),
            Resolution::InSandbox(_) | Resolution::Outside(_) => out.push(Finding {
                kind: FailureKind::EscapedDir,
                run,
                detail: format!(
                    "{when}: {} names {}, outside the checkpoint directory ({})",
                    p.name,
                    p.names,
                    resolution_text(&p.resolves)
                ),
            }),
            Resolution::InDir(_) => {}
        }
    }
    out
}

/// The pointers of `snap` that resolve to something: `last*.ckpt` /
/// `best*.ckpt` links to a file or to a complete checkpoint directory (as
/// `shape` judges it), copies of them (non-empty files), and `latest` files
/// naming something that exists.
pub fn resolving_pointers(shape: &RefShape, snap: &DirSnapshot) -> Vec<String> {
    let mut out: Vec<String> = snap
        .entries
        .iter()
        .filter(|e| is_pointer(e.base()))
        .filter(|e| match &e.kind {
            EntryKind::File { size } => *size > 0,
            EntryKind::Link {
                resolves: Resolution::InDir(to),
                ..
            } if matches!(snap.get(to).map(|t| &t.kind), Some(EntryKind::Dir)) => {
                shape.dir_complete(snap, to).is_ok()
            }
            EntryKind::Link { .. } => snap.loadable(&e.name),
            EntryKind::Dir => false,
        })
        .map(|e| e.name.clone())
        .collect();
    out.extend(
        snap.pointers
            .iter()
            .filter(|p| matches!(p.resolves, Resolution::InDir(_)))
            .map(|p| p.name.clone()),
    );
    out
}

/// The announced saves that are still there and complete in `snap`.
pub fn surviving<'a>(
    shape: &RefShape,
    snap: &DirSnapshot,
    saves: &'a [Announced],
) -> Vec<&'a Announced> {
    saves
        .iter()
        .filter(|a| shape.survives(snap, a) == Ok(true))
        .collect()
}

/// The newest (highest step) of the announced saves that are still there
/// and complete in `snap`: what resume mode `newest` names.
pub fn newest_surviving<'a>(
    shape: &RefShape,
    snap: &DirSnapshot,
    saves: &'a [Announced],
) -> Option<&'a Announced> {
    surviving(shape, snap, saves)
        .into_iter()
        .max_by_key(|a| a.step)
}

/// The checkpoint directories of `snap` (by the reference's names) that are
/// complete, announced or not: a kill between a save and its `saved` event
/// (inside the rotation that follows it, say) leaves one a resume finds.
pub fn complete_dirs<'a>(shape: &RefShape, snap: &'a DirSnapshot) -> Vec<&'a str> {
    snap.entries
        .iter()
        .filter(|e| e.kind == EntryKind::Dir && shape.patterns.is_checkpoint_dir(e.base()))
        .filter(|e| shape.dir_complete(snap, &e.name).is_ok())
        .map(|e| e.name.as_str())
        .collect()
}

/// The files of `snap` named like the hard links the uninterrupted run made
/// of checkpoint files (timm's `checkpoint-<epoch>.pth.tar` of
/// `last.pth.tar`): complete copies of a checkpoint, announced or not.
pub fn linked_copies<'a>(shape: &RefShape, snap: &'a DirSnapshot) -> Vec<&'a str> {
    snap.entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::File { size } if size > 0))
        .filter(|e| shape.patterns.is_checkpoint_link(e.base()))
        .map(|e| e.name.as_str())
        .collect()
}

/// `no-checkpoint` after a crash: `saves` (every save announced before and
/// during the crashed run) is not empty, none of them survives complete in
/// `snap`, no hard link of a checkpoint file, no complete checkpoint
/// directory is there and no pointer resolves. Without announced saves
/// nothing is claimed (the protocol asks for a completed save first).
pub fn no_checkpoint(
    shape: &RefShape,
    snap: &DirSnapshot,
    saves: &[Announced],
    run: usize,
    when: &str,
) -> Option<Finding> {
    if saves.is_empty()
        || !surviving(shape, snap, saves).is_empty()
        || !resolving_pointers(shape, snap).is_empty()
        || !complete_dirs(shape, snap).is_empty()
        || !linked_copies(shape, snap).is_empty()
    {
        return None;
    }
    let mut fates: Vec<String> = Vec::new();
    let mut newest: Vec<&Announced> = saves.iter().collect();
    newest.sort_by_key(|a| std::cmp::Reverse(a.step));
    newest.dedup_by(|a, b| a.at == b.at);
    for a in newest.iter().take(3) {
        let fate = match shape.survives(snap, a) {
            Ok(_) => "is gone".to_string(),
            Err(why) => why,
        };
        fates.push(format!("{} (step {}) {fate}", a.show(snap), a.step));
    }
    let steps: Vec<String> = newest.iter().map(|a| a.step.to_string()).collect();
    let mut detail = format!(
        "{when}: the saves of step {} had completed, but nothing loadable is left: {}; no last*.ckpt, best*.ckpt or latest pointer resolves",
        steps.join(", "),
        fates.join(", ")
    );
    let unannounced = unannounced(shape, snap, saves);
    if !unannounced.is_empty() {
        detail += &format!(
            "; on disk but never announced in a `saved` event (not counted as loadable): {}",
            unannounced.join(", ")
        );
    }
    detail += &format!("; {}", snap.listing());
    Some(Finding {
        kind: FailureKind::NoCheckpoint,
        run,
        detail,
    })
}

/// The checkpoints in `snap` that no save in `saves` announced: checkpoint
/// files that are not pointers, and checkpoint directories (with what they
/// lack when incomplete), as reports show them; at most five.
fn unannounced(shape: &RefShape, snap: &DirSnapshot, saves: &[Announced]) -> Vec<String> {
    let announced = |name: &str| {
        saves
            .iter()
            .any(|a| a.at == CkptPath::InDir(name.to_string()))
    };
    let mut out: Vec<String> = Vec::new();
    for e in &snap.entries {
        if announced(&e.name) {
            continue;
        }
        match e.kind {
            EntryKind::File { .. }
                if shape.patterns.is_checkpoint_file(e.base()) && !is_pointer(e.base()) =>
            {
                out.push(e.name.clone())
            }
            EntryKind::Dir if shape.patterns.is_checkpoint_dir(e.base()) => {
                match shape.dir_complete(snap, &e.name) {
                    Ok(()) => out.push(format!("{}/", e.name)),
                    Err(why) => out.push(format!("{}/ (incomplete: {why})", e.name)),
                }
            }
            _ => {}
        }
    }
    out.truncate(5);
    out
}

#[cfg(test)]
mod tests {
    use super::super::shape::tests::{saved, snap};
    use super::*;

    fn kinds(f: &[Finding]) -> Vec<FailureKind> {
        f.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn a_dangling_last_link_at_any_depth_is_dangling_last() {
        // Lightning 2.1.3 with default_root_dir: the link target is relative
        // to the working directory, not to the link's directory.
        let s = snap(&[
            "checkpoints/",
            "checkpoints/epoch=0-step=4.ckpt",
            "checkpoints/last.ckpt->!",
        ]);
        let f = pointer_findings(&s, 1, "after crash 1");
        assert_eq!(kinds(&f), [FailureKind::DanglingLast]);
        assert!(f[0].detail.contains("checkpoints/last.ckpt"), "{f:?}");
        // ... but the announced checkpoint survives: that is not no-checkpoint.
        let shape = RefShape::learn(&s, &s, &[]);
        let saves = [saved(4, "checkpoints/epoch=0-step=4.ckpt", 1)];
        assert_eq!(no_checkpoint(&shape, &s, &saves, 1, "after crash 1"), None);
    }

    #[test]
    fn nothing_loadable_after_a_completed_save_is_no_checkpoint() {
        let s = snap(&["checkpoints/", "checkpoints/last.ckpt->!"]);
        let shape = RefShape::learn(&s, &s, &[]);
        let saves = [saved(4, "checkpoints/epoch=0-step=4.ckpt", 1)];
        let f = no_checkpoint(&shape, &s, &saves, 1, "after crash 1").unwrap();
        assert_eq!(f.kind, FailureKind::NoCheckpoint);
        assert!(
            f.detail
                .contains("checkpoints/epoch=0-step=4.ckpt (step 4) is gone"),
            "{f:?}"
        );
        assert!(
            f.detail.ends_with(
                "the checkpoint directory held: checkpoints/, checkpoints/last.ckpt -> ! (dangling)"
            ),
            "{f:?}"
        );
        // No save announced: nothing is claimed.
        assert_eq!(no_checkpoint(&shape, &s, &[], 1, "x"), None);
    }

    #[test]
    fn no_checkpoint_names_the_checkpoints_on_disk_that_were_never_announced() {
        // Lightning at a step save: the new file is written, top-k evicted
        // the announced one, and the kill came before the relink and the
        // event. Nothing the protocol can load is left, but the report must
        // not hide the file that is there.
        let s = snap(&[
            "checkpoints/",
            "checkpoints/epoch=0-step=8.ckpt",
            "checkpoints/last.ckpt->!",
        ]);
        let shape = RefShape::learn(&s, &s, &[]);
        let saves = [saved(4, "checkpoints/epoch=0-step=4.ckpt", 1)];
        let f = no_checkpoint(&shape, &s, &saves, 1, "after crash 1").unwrap();
        assert!(
            f.detail.contains("; on disk but never announced in a `saved` event (not counted as loadable): checkpoints/epoch=0-step=8.ckpt; the checkpoint directory held: "),
            "{}",
            f.detail
        );
        // Only the announced, evicted file: nothing more is said.
        let s = snap(&["checkpoints/", "checkpoints/last.ckpt->!"]);
        let f = no_checkpoint(&shape, &s, &saves, 1, "after crash 1").unwrap();
        assert!(!f.detail.contains("never announced"), "{}", f.detail);
    }

    #[test]
    fn a_hard_link_of_a_checkpoint_file_is_loadable() {
        // timm's CheckpointSaver: killed between `unlink last.pth.tar` and
        // `rename tmp.pth.tar -> last.pth.tar`; the announced file is gone
        // but checkpoint-0.pth.tar, a hard link made of it, is the same file.
        let reference = snap(&["last.pth.tar", "checkpoint-5.pth.tar"]);
        let saves = [saved(2, "last.pth.tar", 1)];
        let mut shape = RefShape::learn(&reference, &reference, &saves);
        let crashed = snap(&["checkpoint-0.pth.tar", "tmp.pth.tar#3"]);
        let f = no_checkpoint(&shape, &crashed, &saves, 1, "x");
        assert_eq!(f.map(|f| f.kind), Some(FailureKind::NoCheckpoint));
        let link = |from: &str, to: &str| crate::census::CensusEntry {
            index: 1,
            call: crate::census::Call::Link,
            name: "linkat".into(),
            paths: vec![from.into(), to.into()],
            phase: Default::default(),
            fd: None,
            offset: None,
            len: None,
        };
        // A link of something else (a temporary file) teaches nothing.
        shape
            .patterns
            .learn_links(&[link("work/c/tmp.pth.tar", "work/c/checkpoint-1.pth.tar")]);
        assert!(no_checkpoint(&shape, &crashed, &saves, 1, "x").is_some());
        shape
            .patterns
            .learn_links(&[link("work/c/last.pth.tar", "work/c/checkpoint-1.pth.tar")]);
        assert_eq!(linked_copies(&shape, &crashed), ["checkpoint-0.pth.tar"]);
        assert_eq!(no_checkpoint(&shape, &crashed, &saves, 1, "x"), None);
        // An empty file of that name is no copy.
        let empty = snap(&["checkpoint-0.pth.tar#0"]);
        assert!(no_checkpoint(&shape, &empty, &saves, 1, "x").is_some());
    }

    #[test]
    fn a_complete_directory_is_loadable_and_a_partial_one_is_not() {
        let reference = snap(&[
            "checkpoint-4/",
            "checkpoint-4/model.bin",
            "checkpoint-4/trainer_state.json",
        ]);
        let shape = RefShape::learn(&reference, &reference, &[]);
        let partial = snap(&["checkpoint-2/", "checkpoint-2/model.bin"]);
        let saves = [saved(2, "checkpoint-2", 1)];
        let f = no_checkpoint(&shape, &partial, &saves, 1, "after crash 1").unwrap();
        assert!(
            f.detail
                .contains("checkpoint-2/ (step 2) is incomplete (trainer_state.json missing)"),
            "{f:?}"
        );
        let whole = snap(&[
            "checkpoint-2/",
            "checkpoint-2/model.bin",
            "checkpoint-2/trainer_state.json",
            "checkpoint-4/",
            "checkpoint-4/model.bin",
        ]);
        assert_eq!(no_checkpoint(&shape, &whole, &saves, 1, "x"), None);
    }

    #[test]
    fn a_link_to_a_complete_checkpoint_directory_resolves() {
        // A kill inside the rotation after the save of step 6, before its
        // `saved` event: the announced checkpoint-3 was moved away, but
        // last.ckpt names the complete checkpoint-6.
        let reference = snap(&[
            "checkpoint-3/",
            "checkpoint-3/model.bin",
            "checkpoint-3/meta.bin",
        ]);
        let shape = RefShape::learn(&reference, &reference, &[]);
        let saves = [saved(3, "checkpoint-3", 1)];
        let linked = snap(&[
            ".checkpoint-3.trash/",
            ".checkpoint-3.trash/model.bin",
            "checkpoint-6/",
            "checkpoint-6/model.bin",
            "checkpoint-6/meta.bin",
            "last.ckpt->checkpoint-6",
        ]);
        assert_eq!(resolving_pointers(&shape, &linked), ["last.ckpt"]);
        assert_eq!(no_checkpoint(&shape, &linked, &saves, 1, "x"), None);
        // Without the link the complete directory is still found by a scan.
        let unlinked = snap(&[
            "checkpoint-6/",
            "checkpoint-6/model.bin",
            "checkpoint-6/meta.bin",
        ]);
        assert_eq!(complete_dirs(&shape, &unlinked), ["checkpoint-6"]);
        assert_eq!(no_checkpoint(&shape, &unlinked, &saves, 1, "x"), None);
        // The same link to a directory missing a file resolves to nothing.
        let partial = snap(&[
            "checkpoint-6/",
            "checkpoint-6/model.bin",
            "last.ckpt->checkpoint-6",
        ]);
        assert!(resolving_pointers(&shape, &partial).is_empty());
        let f = no_checkpoint(&shape, &partial, &saves, 1, "x").unwrap();
        assert_eq!(f.kind, FailureKind::NoCheckpoint);
    }

    #[test]
    fn latest_files_are_pointers() {
        let s = snap(&["global_step4/", "global_step4/a.pt", "latest:global_step4"]);
        assert!(pointer_findings(&s, 1, "x").is_empty());
        let shape = RefShape::learn(&s, &s, &[]);
        assert_eq!(resolving_pointers(&shape, &s), ["latest"]);
        let s = snap(&["latest:global_step8"]);
        let f = pointer_findings(&s, 1, "x");
        assert_eq!(kinds(&f), [FailureKind::DanglingLast]);
        assert!(f[0].detail.contains("names global_step8"), "{f:?}");
        let s = snap(&["latest:"]);
        assert!(pointer_findings(&s, 1, "x")[0].detail.contains("is empty"));
    }

    #[test]
    fn a_link_escaping_at_any_depth_is_escaped_dir() {
        let mut s = snap(&["a/", "a/b.ckpt"]);
        s.entries.push(crate::observe::Entry {
            name: "a/last.ckpt".into(),
            kind: EntryKind::Link {
                target: "../../x".into(),
                resolves: Resolution::InSandbox("x".into()),
            },
        });
        assert_eq!(
            kinds(&pointer_findings(&s, 1, "x")),
            [FailureKind::EscapedDir]
        );
    }
}
