//! Checkpoints under names of the subject's own (`last.pt`), as hand-written
//! loops save them with `torch.save(state, "last.pt")`: the fixture
//! `tests/fixtures/rewrites-last-pt.sh` rewrites `last.pt` in place after
//! every step. The harness must know `last.pt` for a checkpoint, run the
//! rewrite's torn moment first, and refuse a resume argument the subject
//! never makes instead of failing every case. And hard links of a
//! checkpoint (`tests/fixtures/links-like-timm.sh`, timm's
//! `checkpoint-<N>.pth.tar` of `last.pth.tar`) are copies that survive; a
//! `last` copy under another name (`tests/fixtures/copies-last-like-fairseq.py`,
//! fairseq's `checkpoint_last.pt`) is what `last` reads and what the
//! corrupt probe damages; and detectron2's `last_checkpoint` text file
//! (`tests/fixtures/tags-last-checkpoint.sh`) is a pointer.

mod common;
use common::{certify, kinds, text};

const FIXTURE: &str = "tests/fixtures/rewrites-last-pt.sh";

fn run(extra: &[&str]) -> (std::process::Output, serde_json::Value) {
    let mut args = vec!["--layouts", "relative", "--max-steps", "3", "--jobs", "2"];
    args.extend(extra);
    args.extend(["--", "sh", FIXTURE]);
    certify(&args)
}

#[test]
fn a_resume_file_the_subject_never_makes_is_refused_before_any_case() {
    // The default resume argument is <dir>/last.ckpt; this subject saves
    // last.pt. Every resume would fail: exit 2, no report, advice.
    let (o, v) = run(&["--cases", "3"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(v.is_null(), "no report for a run that could not start: {v}");
    assert!(
        t.contains("resume mode `path` passes <checkpoint directory>/last.ckpt to every resume, but the uninterrupted run in layout relative never made it (it announced every save as last.pt)"),
        "{t}"
    );
    assert!(
        t.contains("--resume-arg last.pt (that file in the checkpoint directory), newest"),
        "{t}"
    );
    // A file name that is there is accepted, and so are the keywords.
    for arg in ["last.pt", "newest", "last"] {
        let (o, _) = run(&["--cases", "1", "--resume-arg", arg]);
        assert_eq!(o.status.code(), Some(1), "{arg}: {}", text(&o));
    }
}

#[test]
fn the_torn_moment_of_an_in_place_rewrite_is_the_first_case() {
    let (o, v) = run(&["--cases", "1", "--resume-arg", "last.pt"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert_eq!(kinds(&v), ["resume-failed"], "{t}");
    let name = v["failures"][0]["name"].as_str().unwrap_or_default();
    assert_eq!(
        name, "syscall:6 write work/checkpoints/last.pt (save of step 2)",
        "{t}"
    );
}

#[test]
fn every_write_of_the_rewrite_fails_and_last_pt_is_a_checkpoint() {
    // Kills at the opens leave the old file whole; a kill at any write of
    // a save, the first one's too, leaves last.pt empty or torn, and the
    // restart given `last` reads it.
    let (o, v) = run(&["--exhaustive", "--resume-arg", "last"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let points: Vec<&str> = v["failures"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["crash"].as_str()).collect())
        .unwrap_or_default();
    let mut points: Vec<String> = points.iter().map(|p| p.to_string()).collect();
    points.sort();
    points.dedup();
    assert_eq!(
        points,
        [
            "syscall:10",
            "syscall:3",
            "syscall:4",
            "syscall:6",
            "syscall:7",
            "syscall:9"
        ],
        "{t}"
    );
    let w = v["warnings"].to_string();
    assert!(!w.contains("no checkpoint of a known shape"), "{w}");
    assert!(!w.contains("probe corrupt skipped"), "{w}");
}

#[test]
fn a_hard_link_of_the_checkpoint_is_a_copy_that_survives_its_name() {
    // Killed between `rm last.pth.tar` and `mv tmp.pth.tar last.pth.tar`:
    // the restart given `last` fails, but checkpoint-<N>.pth.tar, a hard
    // link of the last save, is still there: no `no-checkpoint`.
    let mut args = vec!["--layouts", "relative", "--max-steps", "3", "--jobs", "2"];
    args.extend(["--exhaustive", "--resume-arg", "last"]);
    args.extend(["--", "sh", "tests/fixtures/links-like-timm.sh"]);
    let (o, v) = certify(&args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let rename = |n: u32, step: u32| {
        format!("syscall:{n} rename work/checkpoints/tmp.pth.tar -> work/checkpoints/last.pth.tar (save of step {step})")
    };
    let want: Vec<(String, String)> = [(10, 2), (16, 3)]
        .iter()
        .flat_map(|&(n, s)| {
            ["dir-mismatch", "resume-failed"].map(|k| (rename(n, s), k.to_string()))
        })
        .collect();
    assert_eq!(failing(&v), want, "{t}");
}

/// The failures of a report as sorted (name, kind) pairs.
fn failing(v: &serde_json::Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = v["failures"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
                    (s("name"), s("kind"))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn a_last_copy_under_another_name_is_what_last_reads_and_what_the_probe_damages() {
    // Each save: checkpoint<N>.pt atomically, then shutil.copyfile over
    // checkpoint_last.pt, in place. A kill before the copy's first write
    // leaves checkpoint_last.pt empty, and the restart given `last` refuses
    // it. The corrupt probe must damage checkpoint_last.pt, which the
    // subject reads (truncating checkpoint3.pt, the newest announced, made
    // it resume from the intact copy: a false bad-resume-accepted).
    let mut args = vec!["--layouts", "relative", "--max-steps", "3", "--jobs", "2"];
    args.extend(["--exhaustive", "--resume-arg", "last"]);
    args.extend([
        "--",
        "python3",
        "tests/fixtures/copies-last-like-fairseq.py",
    ]);
    let (o, v) = certify(&args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let write = |n: u32, step: u32| {
        format!("syscall:{n} write work/checkpoints/checkpoint_last.pt (save last after the save of step {step})")
    };
    let mut want = vec![
        (write(12, 2), "dir-mismatch".to_string()),
        (write(12, 2), "resume-failed".to_string()),
        (write(18, 3), "resume-failed".to_string()),
        (write(6, 1), "dir-mismatch".to_string()),
        (write(6, 1), "resume-failed".to_string()),
    ];
    want.sort();
    assert_eq!(failing(&v), want, "{t}");
    let w = v["warnings"].to_string();
    assert!(!w.contains("probe corrupt"), "{w}");
    // The copy over a file that held a checkpoint is the first case.
    let (o, v) = certify(&[
        "--layouts",
        "relative",
        "--max-steps",
        "3",
        "--cases",
        "1",
        "--resume-arg",
        "last",
        "--",
        "python3",
        "tests/fixtures/copies-last-like-fairseq.py",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(
        failing(&v),
        [
            (write(12, 2), "dir-mismatch".to_string()),
            (write(12, 2), "resume-failed".to_string())
        ]
    );
}

#[test]
fn a_last_checkpoint_file_rewritten_in_place_is_a_pointer_that_dangles() {
    // fvcore's tag_last_checkpoint: `open("last_checkpoint", "w")` then one
    // write of the newest file's name. A kill at that write leaves it
    // empty: the pointer names nothing and the restart fails on it.
    let run = |extra: &[&str]| {
        let mut args = vec!["--layouts", "relative", "--max-steps", "3", "--jobs", "2"];
        args.extend(extra);
        args.extend(["--resume-arg", "last", "--"]);
        args.extend(["sh", "tests/fixtures/tags-last-checkpoint.sh"]);
        certify(&args)
    };
    let (o, v) = run(&["--exhaustive"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let mut want = Vec::new();
    for (n, step) in [(5, 1), (9, 2), (13, 3)] {
        let name = format!(
            "syscall:{n} write work/checkpoints/last_checkpoint (pointer after the save of step {step})"
        );
        for kind in ["dangling-last", "dir-mismatch", "resume-failed"] {
            want.push((name.clone(), kind.to_string()));
        }
    }
    want.sort();
    let mut got = failing(&v);
    got.dedup();
    assert_eq!(got, want, "{t}");
    assert!(
        t.contains("last_checkpoint is empty: it names no checkpoint"),
        "{t}"
    );
    // The rewrite of a pointer that held a name is the first case.
    let (o, v) = run(&["--cases", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let first = failing(&v);
    assert!(
        !first.is_empty()
            && first
                .iter()
                .all(|(name, _)| name.starts_with("syscall:9 write")),
        "{}",
        text(&o)
    );
}

#[test]
fn megatrons_iteration_tracker_is_a_pointer_and_exit_0_without_training_is_no_refusal() {
    // Megatron-LM: model_optim_rng.pt under iter_<7 digits>/, then the
    // tracker latest_checkpointed_iteration.txt rewritten in place with
    // the iteration's number. Killed at that write, the tracker is empty,
    // and the restart prints an error and calls `sys.exit()`: exit 0, no
    // training, no state file. The same happens on every bad resume.
    let (o, v) = certify(&[
        "--layouts",
        "relative",
        "--max-steps",
        "3",
        "--jobs",
        "2",
        "--exhaustive",
        "--resume-arg",
        "last",
        "--",
        "python3",
        "tests/fixtures/tracks-iteration-like-megatron.py",
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let mut want = Vec::new();
    for (n, step) in [(7, 1), (13, 2), (19, 3)] {
        let name = format!(
            "syscall:{n} write work/checkpoints/latest_checkpointed_iteration.txt (pointer after the save of step {step})"
        );
        for kind in ["dangling-last", "dir-mismatch", "resume-failed"] {
            want.push((name.clone(), kind.to_string()));
        }
    }
    for (probe, what) in [
        ("corrupt", "resume from a truncated checkpoint"),
        ("directory", "resume from the checkpoint directory itself"),
        ("missing", "resume from a missing file"),
    ] {
        want.push((
            format!("probe:{probe} ({what})"),
            "bad-resume-accepted".into(),
        ));
    }
    want.sort();
    assert_eq!(failing(&v), want, "{t}");
    assert!(
        t.contains("latest_checkpointed_iteration.txt is empty: it names no checkpoint"),
        "{t}"
    );
    // The tracker's number names iter_0000003/ in the reference.
    assert!(
        !t.contains("latest_checkpointed_iteration.txt names"),
        "a tracker that holds a number names the iteration's directory: {t}"
    );
    // Given `last`, the subject read the damaged checkpoint and gave up
    // with exit 0: not "passed over the damaged checkpoint and started
    // fresh".
    assert!(t.contains("probe corrupt: resume path `last` (checkpoint iter_0000003/ with its largest file mp_rank_00/model_optim_rng.pt truncated to half its size): run 2 exited 0 but wrote no state file to CRASHPOINT_STATE_OUT: it neither resumed nor refused"), "{t}");
    assert!(!t.contains("passed over"), "{t}");
}

#[test]
fn composers_latest_link_is_a_pointer_that_can_vanish_and_dangle() {
    // Composer: ep0-ba<N>-rank0.pt, then `os.remove("latest-rank0.pt")`
    // and `os.symlink`. Killed in between, autoresume finds no link and
    // starts over: progress-lost, and nothing else.
    let run = |layout: &str, extra: &[&str]| {
        let mut args = vec!["--layouts", layout, "--max-steps", "3", "--jobs", "2"];
        args.extend(["--exhaustive", "--resume-arg", "last", "--"]);
        args.extend(["sh", "tests/fixtures/relinks-latest-like-composer.sh"]);
        args.extend(extra);
        certify(&args)
    };
    let (o, v) = run("relative", &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let mut want: Vec<(String, String)> = [(9, 2), (13, 3)]
        .iter()
        .map(|(n, step)| {
            let name = format!(
                "syscall:{n} symlink work/checkpoints/latest-rank0.pt (relink last after the save of step {step})"
            );
            (name, "progress-lost".to_string())
        })
        .collect();
    want.sort();
    assert_eq!(failing(&v), want, "{t}");
    // An absolute link dangles once the working directory moves: a
    // pointer that names nothing, compared as a pointer at the end.
    let (o, v) = run("relocated", &["--absolute"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains(
            "latest-rank0.pt -> <sandbox>/work/checkpoints/ep0-ba1-rank0.pt does not resolve"
        ),
        "{t}"
    );
    assert!(kinds(&v).contains(&"dangling-last".to_string()), "{t}");
    assert!(!t.contains("leftover file"), "the link is a pointer: {t}");
}
