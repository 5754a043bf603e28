//! Tests of the checkpoint shapes, and the hand-made snapshots the other
//! checks' tests share.

use super::*;
use crate::census::{Call, CensusEntry};
use crate::observe::{Entry, TextPointer};

/// A hand-made snapshot: `name` (file, size 10), `name/` (directory),
/// `name#size`, `name->target` (a link resolving in the directory, or
/// dangling when the target is `!`), `latest:text`.
pub fn snap(items: &[&str]) -> DirSnapshot {
    let mut s = DirSnapshot {
        exists: true,
        ..DirSnapshot::default()
    };
    for i in items {
        let (name, kind) = if let Some(d) = i.strip_suffix('/') {
            (d.to_string(), EntryKind::Dir)
        } else if let Some((n, t)) = i.split_once("->") {
            let resolves = if t == "!" {
                Resolution::Dangling
            } else {
                Resolution::InDir(t.to_string())
            };
            (
                n.to_string(),
                EntryKind::Link {
                    target: t.to_string(),
                    resolves,
                },
            )
        } else if let Some((n, text)) = i.split_once(':') {
            let resolves = if items.iter().any(|x| x.trim_end_matches('/') == text) {
                Resolution::InDir(text.to_string())
            } else {
                Resolution::Dangling
            };
            s.pointers.push(TextPointer {
                name: n.to_string(),
                names: text.to_string(),
                resolves,
            });
            (n.to_string(), EntryKind::File { size: 4 })
        } else if let Some((n, size)) = i.split_once('#') {
            (
                n.to_string(),
                EntryKind::File {
                    size: size.parse().unwrap(),
                },
            )
        } else {
            (i.to_string(), EntryKind::File { size: 10 })
        };
        s.entries.push(Entry { name, kind });
    }
    s.entries.sort();
    s
}

/// A `saved` event of `step` at `path` in the checkpoint directory.
pub fn saved(step: u64, path: &str, run: usize) -> Announced {
    Announced {
        step,
        at: CkptPath::InDir(path.into()),
        run,
    }
}

const HF: [&str; 4] = [
    "model.bin#100",
    "optim.bin#200",
    "rng.json#5",
    "trainer_state.json",
];

fn hf_dir(name: &str, files: &[&str]) -> Vec<String> {
    let mut v = vec![format!("{name}/")];
    v.extend(files.iter().map(|f| format!("{name}/{f}")));
    v
}

fn items(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn files_named_like_the_announced_ones_are_checkpoints() {
    // A hand-written loop: torch.save into last.pt and step-N.pt.
    let s = snap(&[
        "last.pt",
        "step-8.pt",
        "step-12.pt",
        "train.log",
        "a/step-3.pt",
    ]);
    let saves = [saved(8, "step-8.pt", 0), saved(12, "last.pt", 0)];
    let pats = Patterns::learn(&saves, &s);
    assert!(pats.is_checkpoint_file("step-100.pt") && pats.is_checkpoint_file("x.ckpt"));
    assert!(!pats.is_checkpoint_file("train.log") && !pats.is_checkpoint_dir("step-8.pt"));
    let shape = Shape::of(&s, &pats);
    assert_eq!(
        shape.files.iter().collect::<Vec<_>>(),
        ["a/step-3.pt", "last.pt", "step-12.pt", "step-8.pt"]
    );
    assert_eq!(shape.others.iter().collect::<Vec<_>>(), ["train.log"]);
    // Announced names that are gone teach nothing.
    let gone = Patterns::learn(&[saved(4, "step-4.pt", 0)], &snap(&["train.log"]));
    assert!(!gone.is_checkpoint_file("step-4.pt"));
}

#[test]
fn announced_names_the_census_made_are_checkpoints_when_gone() {
    let made = |call: Call, path: &str| CensusEntry {
        index: 1,
        call,
        name: call.name().into(),
        paths: vec![path.into()],
        phase: Default::default(),
        fd: None,
        offset: None,
        len: None,
    };
    let saves = [
        saved(2, "latest.weights.h5", 0),
        saved(4, "global_step4", 0),
    ];
    let mut p = Patterns::learn(&saves, &snap(&[]));
    assert!(!p.is_checkpoint_file("latest.weights.h5"));
    p.learn_made(
        &saves,
        &[
            made(Call::Create, "work/c/latest.weights.h5"),
            made(Call::Mkdir, "work/c/global_step4"),
            made(Call::Create, "work/c/other.h5"),
        ],
    );
    assert!(p.is_checkpoint_file("latest.weights.h5"));
    assert!(p.is_checkpoint_dir("global_step8"));
    assert!(!p.is_checkpoint_file("other.h5"));
}

#[test]
fn directories_and_files_at_any_depth_are_classified() {
    let s = snap(&[
        "checkpoints/",
        "checkpoints/epoch=0-step=4.ckpt",
        "checkpoints/last.ckpt->checkpoints/epoch=0-step=4.ckpt",
        "checkpoint-2/",
        "checkpoint-2/model.bin",
        "global_step4/",
        "global_step4/a.pt",
        "latest:global_step4",
        "notes.txt",
    ]);
    let pats = Patterns::learn(&[saved(4, "global_step4", 1)], &s);
    let shape = Shape::of(&s, &pats);
    assert_eq!(
        shape.files.iter().collect::<Vec<_>>(),
        [
            "checkpoints/epoch=0-step=4.ckpt",
            "checkpoints/last.ckpt -> (checkpoints/epoch=0-step=4.ckpt)"
        ]
    );
    assert_eq!(
        shape.dirs.keys().collect::<Vec<_>>(),
        ["checkpoint-2", "global_step4"]
    );
    assert_eq!(shape.pointers["latest"], "global_step4");
    assert_eq!(
        shape.others.iter().collect::<Vec<_>>(),
        ["checkpoints/", "notes.txt"]
    );
}

#[test]
fn a_directory_is_complete_when_it_matches_the_reference() {
    let mut full = hf_dir("checkpoint-4", &HF);
    full.extend(hf_dir("checkpoint-8", &HF));
    let reference = snap(&items(&full));
    let r = RefShape::learn(&reference, &reference, &[]);
    assert_eq!(r.common.len(), 4);
    // Same name as in the reference: names and sizes.
    let torn = snap(&items(&hf_dir(
        "checkpoint-8",
        &[
            "model.bin#50",
            "optim.bin#200",
            "rng.json#5",
            "trainer_state.json",
        ],
    )));
    assert_eq!(
        r.dir_complete(&torn, "checkpoint-8"),
        Err("model.bin has 50 bytes, 100 in the reference".into())
    );
    // Rotated away in the reference: the common file names.
    let partial = snap(&items(&hf_dir("checkpoint-2", &HF[..3])));
    assert_eq!(
        r.dir_complete(&partial, "checkpoint-2"),
        Err("trainer_state.json missing".into())
    );
    let whole = snap(&items(&hf_dir("checkpoint-2", &HF)));
    assert_eq!(r.survives(&whole, &saved(2, "checkpoint-2", 1)), Ok(true));
    assert_eq!(r.survives(&whole, &saved(6, "checkpoint-6", 1)), Ok(false));
}

#[test]
fn sizes_the_reference_runs_disagree_on_are_not_compared() {
    let a = snap(&items(&hf_dir(
        "checkpoint-8",
        &["model.bin#100", "log.json#7"],
    )));
    let b = snap(&items(&hf_dir(
        "checkpoint-8",
        &["model.bin#100", "log.json#9"],
    )));
    let r = RefShape::learn(&a, &b, &[]);
    let got = snap(&items(&hf_dir(
        "checkpoint-8",
        &["model.bin#100", "log.json#3"],
    )));
    assert_eq!(r.dir_complete(&got, "checkpoint-8"), Ok(()));
}
