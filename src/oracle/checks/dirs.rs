//! `dir-mismatch`: the checkpoints at the end of a case against the
//! reference's, at any depth: checkpoint files and links (names, and where
//! links resolve), checkpoint directories (which exist; inside them file
//! names, and sizes where the reference runs agree), and `latest` pointers
//! (what they resolve to).
//!
//! A checkpoint directory the reference does not have is a failure when it
//! is complete (one checkpoint too many), a warning when it is incomplete
//! and nothing is missing (a leftover of a killed save or deletion, as a
//! leftover temporary file is); a missing one is always a failure, and its
//! detail says when a completed, announced checkpoint was lost while a broken
//! one was kept. Other files the reference does not have are leftovers
//! (warnings), unless the reference has one named alike but for its
//! numbers (a log directory named by the time of the run).

use crate::observe::DirSnapshot;
use crate::verdict::{FailureKind, Finding};

use super::shape::{generalise, Announced, CkptPath, RefShape, Shape};

/// Compares the final tree `got` with the reference's `want`; `saves` are
/// the case's announced saves, `run` the last run.
pub fn compare(
    want: &DirSnapshot,
    shape: &RefShape,
    got: &DirSnapshot,
    saves: &[Announced],
    run: usize,
) -> (Vec<Finding>, Vec<String>) {
    let (w, h) = (
        Shape::of(want, &shape.patterns),
        Shape::of(got, &shape.patterns),
    );
    let mut findings = Vec::new();
    let mut warnings = Vec::new();
    if w.files != h.files {
        let missing: Vec<&str> = w.files.difference(&h.files).map(String::as_str).collect();
        let extra: Vec<&str> = h.files.difference(&w.files).map(String::as_str).collect();
        findings.push(Finding {
            kind: FailureKind::DirMismatch,
            run,
            detail: format!(
                "final checkpoint files differ from the reference: missing [{}], extra [{}]",
                missing.join(", "),
                extra.join(", ")
            ),
        });
    }
    let mut lost = Vec::new();
    let mut differ = Vec::new();
    for name in w.dirs.keys() {
        if h.dirs.contains_key(name) {
            if let Err(why) = shape.dir_complete(got, name) {
                differ.push(format!("{name}/ ({why})"));
            }
        } else {
            lost.push(name.clone());
        }
    }
    let mut extra = Vec::new();
    let mut broken = Vec::new();
    for name in h.dirs.keys().filter(|n| !w.dirs.contains_key(*n)) {
        match shape.dir_complete(got, name) {
            Ok(()) => extra.push(format!("{name}/")),
            Err(why) => broken.push(format!("{name}/ ({why})")),
        }
    }
    if !lost.is_empty() || !extra.is_empty() || !differ.is_empty() {
        let announced: Vec<String> = lost
            .iter()
            .filter_map(|n| {
                saves
                    .iter()
                    .find(|a| a.at == CkptPath::InDir(n.clone()))
                    .map(|a| format!("{n}/ (saved at step {})", a.step))
            })
            .collect();
        let mut detail = format!(
            "final checkpoint directories differ from the reference: missing [{}], extra [{}]",
            lost.iter()
                .map(|n| format!("{n}/"))
                .collect::<Vec<_>>()
                .join(", "),
            extra.join(", ")
        );
        if !differ.is_empty() {
            detail += &format!(", not as in the reference [{}]", differ.join(", "));
        }
        if !broken.is_empty() {
            detail += &format!(", incomplete kept [{}]", broken.join(", "));
        }
        if !announced.is_empty() && !broken.is_empty() {
            detail += &format!(
                "; a completed checkpoint was deleted ({}) while a broken one was kept",
                announced.join(", ")
            );
        }
        findings.push(Finding {
            kind: FailureKind::DirMismatch,
            run,
            detail,
        });
    } else {
        for b in broken {
            warnings.push(format!(
                "leftover incomplete checkpoint directory: {b}; the reference has none"
            ));
        }
    }
    if w.pointers != h.pointers {
        let show = |s: &Shape| {
            s.pointers
                .iter()
                .map(|(n, to)| format!("{n} -> {to}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        findings.push(Finding {
            kind: FailureKind::DirMismatch,
            run,
            detail: format!(
                "final pointers differ from the reference: [{}], the reference has [{}]",
                show(&h),
                show(&w)
            ),
        });
    }
    // A file the uninterrupted run also leaves, under other numbers
    // (mmengine's log directory `20261204_211705/`, one a run), is none.
    let usual: std::collections::BTreeSet<String> =
        w.others.iter().map(|e| generalise(e)).collect();
    for e in h.others.difference(&w.others) {
        if !usual.contains(&generalise(e)) {
            warnings.push(format!("leftover file in the checkpoint directory: {e}"));
        }
    }
    (findings, warnings)
}

#[cfg(test)]
mod tests {
    use super::super::shape::tests::{saved, snap};
    use super::*;

    fn hf(dirs: &[(&str, bool)]) -> DirSnapshot {
        let mut items = Vec::new();
        for (d, complete) in dirs {
            items.push(format!("{d}/"));
            items.push(format!("{d}/model.bin#100"));
            if *complete {
                items.push(format!("{d}/trainer_state.json#20"));
            }
        }
        snap(&items.iter().map(String::as_str).collect::<Vec<_>>())
    }

    #[test]
    fn a_deleted_good_checkpoint_with_a_broken_one_kept_is_a_failure() {
        let want = hf(&[("checkpoint-6", true), ("checkpoint-8", true)]);
        let shape = RefShape::learn(&want, &want, &[]);
        let got = hf(&[("checkpoint-2", false), ("checkpoint-8", true)]);
        let saves = [saved(2, "checkpoint-2", 1), saved(6, "checkpoint-6", 2)];
        let (f, _) = compare(&want, &shape, &got, &saves, 2);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, FailureKind::DirMismatch);
        assert_eq!(
            f[0].detail,
            "final checkpoint directories differ from the reference: missing [checkpoint-6/], extra [], incomplete kept [checkpoint-2/ (trainer_state.json missing)]; a completed checkpoint was deleted (checkpoint-6/ (saved at step 6)) while a broken one was kept"
        );
    }

    #[test]
    fn a_leftover_incomplete_directory_alone_is_a_warning() {
        let want = hf(&[("checkpoint-6", true), ("checkpoint-8", true)]);
        let shape = RefShape::learn(&want, &want, &[]);
        let got = hf(&[
            ("checkpoint-4", false),
            ("checkpoint-6", true),
            ("checkpoint-8", true),
        ]);
        let (f, w) = compare(&want, &shape, &got, &[], 2);
        assert!(f.is_empty(), "{f:?}");
        assert_eq!(
            w,
            ["leftover incomplete checkpoint directory: checkpoint-4/ (trainer_state.json missing); the reference has none"]
        );
        // A complete extra one is one checkpoint too many.
        let got = hf(&[
            ("checkpoint-4", true),
            ("checkpoint-6", true),
            ("checkpoint-8", true),
        ]);
        let (f, _) = compare(&want, &shape, &got, &[], 2);
        assert!(f[0].detail.contains("extra [checkpoint-4/]"), "{f:?}");
    }

    #[test]
    fn a_file_named_like_one_the_reference_leaves_is_no_leftover() {
        // mmengine: a log directory and a config named by the run's start
        // time, one set for every run; a temporary file is a leftover.
        let want = snap(&["iter_1.pth#9", "20261204_211705/", "20261204_211705.py#5"]);
        let shape = RefShape::learn(&want, &want, &[saved(1, "iter_1.pth", 1)]);
        let got = snap(&[
            "iter_1.pth#9",
            "20261204_211709/",
            "20261204_211709.py#5",
            "20261204_211712/",
            "20261204_211712.py#5",
            ".iter_1.pth.tmp#3",
        ]);
        let (f, w) = compare(&want, &shape, &got, &[], 2);
        assert!(f.is_empty(), "{f:?}");
        assert_eq!(
            w,
            ["leftover file in the checkpoint directory: .iter_1.pth.tmp"]
        );
    }

    #[test]
    fn files_at_any_depth_and_pointers_are_compared() {
        let want = snap(&[
            "checkpoints/",
            "checkpoints/a.ckpt",
            "checkpoints/last.ckpt->checkpoints/a.ckpt",
        ]);
        let shape = RefShape::learn(&want, &want, &[]);
        let got = snap(&[
            "checkpoints/",
            "checkpoints/a.ckpt",
            "checkpoints/last-v1.ckpt->checkpoints/a.ckpt",
        ]);
        let (f, _) = compare(&want, &shape, &got, &[], 1);
        assert!(f[0].detail.contains("missing [checkpoints/last.ckpt -> (checkpoints/a.ckpt)], extra [checkpoints/last-v1.ckpt -> (checkpoints/a.ckpt)]"), "{f:?}");
        let want = snap(&["g1/", "g1/x", "g2/", "g2/x", "latest:g2"]);
        let got = snap(&["g1/", "g1/x", "g2/", "g2/x", "latest:g1"]);
        let p = super::super::shape::Patterns::learn(&[saved(1, "g1", 0)], &want);
        let shape = RefShape {
            patterns: p,
            ..RefShape::learn(&want, &want, &[saved(1, "g1", 0)])
        };
        let (f, _) = compare(&want, &shape, &got, &[], 1);
        assert_eq!(f[0].detail, "final pointers differ from the reference: [latest -> g1], the reference has [latest -> g2]");
        assert!(compare(&want, &shape, &want, &[], 1).0.is_empty());
    }
}
