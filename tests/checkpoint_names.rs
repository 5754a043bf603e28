//! Checkpoints under names of the subject's own (`last.pt`), as hand-written
//! loops save them with `torch.save(state, "last.pt")`: the fixture
//! `tests/fixtures/rewrites-last-pt.sh` rewrites `last.pt` in place after
//! every step. The harness must know `last.pt` for a checkpoint, run the
//! rewrite's torn moment first, and refuse a resume argument the subject
//! never makes instead of failing every case. And hard links of a
//! checkpoint (`tests/fixtures/links-like-timm.sh`, timm's
//! `checkpoint-<N>.pth.tar` of `last.pth.tar`) are copies that survive.

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
    let mut failing: Vec<(String, String)> = v["failures"]
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
    failing.sort();
    let rename = |n: u32, step: u32| {
        format!("syscall:{n} rename work/checkpoints/tmp.pth.tar -> work/checkpoints/last.pth.tar (save of step {step})")
    };
    let want: Vec<(String, String)> = [(10, 2), (16, 3)]
        .iter()
        .flat_map(|&(n, s)| {
            ["dir-mismatch", "resume-failed"].map(|k| (rename(n, s), k.to_string()))
        })
        .collect();
    assert_eq!(failing, want, "{t}");
}
