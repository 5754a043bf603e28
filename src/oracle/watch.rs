//! What happened to a sandbox that its subject did not do. Before each run
//! the harness notes what exists; after it, anything gone that the subject
//! did not remove means someone outside disturbed the case (another job
//! deleting files in a shared `TMPDIR`, say), and the case says nothing about
//! the subject: it is a harness error, never the subject's failure.
//!
//! * A traced run is checked exactly: every path under the sandbox that
//!   existed before the run and is gone after it must lie at or under a path
//!   the subject unlinked, removed or renamed away (the tracer saw each).
//! * An untraced run is checked against what the subject has any business
//!   removing: the case directory, the harness's directory, the sandbox, its
//!   `home` and `tmp`, and the run's working directory must all still be
//!   there.
//!
//! At the end of a case, the files left in the sandbox's `TMPDIR` and `HOME`
//! are listed as warnings.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::layout::Sandbox;
use crate::runner::RunResult;

/// How many missing paths a harness error names.
const SHOWN: usize = 3;

/// What existed before one run.
#[derive(Debug)]
pub(super) struct Watch {
    /// Paths the subject has no business removing.
    skeleton: Vec<PathBuf>,
    /// Everything under the sandbox (links not followed), for traced runs.
    tree: Option<BTreeSet<PathBuf>>,
}

impl Watch {
    /// Notes what exists before a run in `sandbox` (of the case in
    /// `case_dir`); with `traced`, the whole tree.
    pub(super) fn before(case_dir: &Path, sandbox: &Sandbox, traced: bool) -> Watch {
        let root = sandbox.root();
        let skeleton = vec![
            case_dir.to_path_buf(),
            case_dir.join("harness"),
            root.to_path_buf(),
            root.join("home"),
            root.join("tmp"),
            sandbox.place().cwd,
        ];
        Watch {
            skeleton,
            tree: traced.then(|| walk(root)),
        }
    }

    /// Why the sandbox was disturbed from outside during the run that gave
    /// `res` (`None` when the run could not even start), if it was.
    pub(super) fn disturbed(&self, res: Option<&RunResult>) -> Option<String> {
        let gone: Vec<&PathBuf> = self
            .skeleton
            .iter()
            .filter(|p| p.symlink_metadata().is_err())
            .collect();
        if let Some(first) = gone.first() {
            return Some(format!(
                "the sandbox was disturbed from outside: {} is gone, which the subject has no business removing",
                first.display()
            ));
        }
        let (Some(tree), Some(res)) = (&self.tree, res) else {
            return None;
        };
        if !res.traced {
            return None;
        }
        let root = self.skeleton.get(2)?;
        let now = walk(root);
        let unexplained: Vec<&PathBuf> = tree
            .difference(&now)
            .filter(|p| !res.removed.iter().any(|r| p.starts_with(r)))
            .collect();
        // A directory gone with its contents: name the directory.
        let tops: Vec<&PathBuf> = unexplained
            .iter()
            .filter(|p| !unexplained.iter().any(|q| q != *p && p.starts_with(q)))
            .copied()
            .collect();
        if tops.is_empty() {
            return None;
        }
        let names: Vec<String> = tops
            .iter()
            .take(SHOWN)
            .map(|p| p.display().to_string())
            .collect();
        let more = match tops.len().saturating_sub(SHOWN) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        Some(format!(
            "the sandbox was disturbed from outside: {}{more} went missing, which the subject did not remove",
            names.join(", ")
        ))
    }
}

/// Every path under `root` (not `root` itself), links not followed.
fn walk(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(read) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in read.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p.clone());
            }
            out.insert(p);
        }
    }
    out
}

/// What the subject left in its sandbox's `TMPDIR` and `HOME`: each entry
/// as `tmp/NAME` or `home/NAME` (a directory with a trailing `/`), sorted.
pub(super) fn left(sandbox: &Sandbox) -> Vec<String> {
    let mut out = Vec::new();
    for dir in ["tmp", "home"] {
        let Ok(read) = std::fs::read_dir(sandbox.root().join(dir)) else {
            continue;
        };
        for e in read.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let slash = if e.file_type().is_ok_and(|t| t.is_dir()) {
                "/"
            } else {
                ""
            };
            out.push(format!("{dir}/{n}{slash}"));
        }
    }
    out.sort();
    out
}

/// Entries as [`left`] gives them, said per directory: `TMPDIR: a, b/`,
/// then `HOME: ...`, each only when it has some.
fn by_dir<'a>(entries: impl Iterator<Item = &'a String> + Clone) -> Vec<String> {
    [("tmp/", "TMPDIR"), ("home/", "HOME")]
        .into_iter()
        .filter_map(|(dir, what)| {
            let names: Vec<&str> = entries
                .clone()
                .filter_map(|p| p.strip_prefix(dir))
                .collect();
            (!names.is_empty()).then(|| format!("{what}: {}", names.join(", ")))
        })
        .collect()
}

/// The warning for what an uninterrupted run leaves in `TMPDIR` and `HOME`
/// (as [`left`] gives it; `None` when nothing), said once for the layout
/// instead of for every case.
pub(super) fn usual_leftovers(usual: &[String]) -> Option<String> {
    let parts = by_dir(usual.iter());
    (!parts.is_empty()).then(|| {
        format!(
            "the uninterrupted run leaves in the sandbox's {} (not repeated for each case)",
            parts.join("; ")
        )
    })
}

/// Warnings for what the subject left in its sandbox's `TMPDIR` and `HOME`
/// by the end of a case, but for what the uninterrupted run leaves too
/// (`usual`, as [`left`] gives it): one per directory, naming the entries
/// (a directory with a trailing `/`), sorted.
pub(super) fn leftovers(sandbox: &Sandbox, usual: &[String]) -> Vec<String> {
    let left = left(sandbox);
    by_dir(left.iter().filter(|p| !usual.contains(p)))
        .into_iter()
        .map(|part| format!("leftover in the sandbox's {part}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;
    use crate::runner::Exit;

    fn result(removed: Vec<PathBuf>) -> RunResult {
        RunResult {
            exit: Exit::Code(0),
            stderr_tail: String::new(),
            duration: Default::default(),
            census: Vec::new(),
            outside: Vec::new(),
            traced: true,
            removed,
            power: Vec::new(),
        }
    }

    fn case() -> (tempfile::TempDir, PathBuf, Sandbox) {
        let t = tempfile::tempdir().expect("tempdir");
        let case = t.path().canonicalize().expect("canonical");
        std::fs::create_dir_all(case.join("harness")).expect("mkdir");
        std::fs::create_dir_all(case.join("sandbox")).expect("mkdir");
        let sb = Sandbox::create(Layout::Relative, &case.join("sandbox")).expect("sandbox");
        std::fs::create_dir_all(sb.ckpt_dir()).expect("mkdir");
        std::fs::write(sb.ckpt_dir().join("a.ckpt"), "a").expect("write");
        std::fs::write(sb.ckpt_dir().join("b.ckpt"), "b").expect("write");
        (t, case, sb)
    }

    #[test]
    fn what_the_subject_removed_is_no_disturbance() {
        let (_t, case, sb) = case();
        let w = Watch::before(&case, &sb, true);
        let a = sb.ckpt_dir().join("a.ckpt");
        std::fs::remove_file(&a).expect("rm");
        assert_eq!(w.disturbed(Some(&result(vec![a]))), None);
    }

    #[test]
    fn a_file_gone_that_the_subject_did_not_remove_is_a_disturbance() {
        let (_t, case, sb) = case();
        let w = Watch::before(&case, &sb, true);
        let a = sb.ckpt_dir().join("a.ckpt");
        let b = sb.ckpt_dir().join("b.ckpt");
        std::fs::remove_file(&a).expect("rm");
        std::fs::remove_file(&b).expect("rm");
        let why = w.disturbed(Some(&result(vec![a]))).expect("disturbed");
        assert!(why.contains("b.ckpt went missing"), "{why}");
        assert!(!why.contains("a.ckpt"), "{why}");
    }

    #[test]
    fn untraced_runs_are_checked_against_the_skeleton() {
        let (_t, case, sb) = case();
        let w = Watch::before(&case, &sb, false);
        std::fs::remove_file(sb.ckpt_dir().join("a.ckpt")).expect("rm");
        // The subject may remove its checkpoints.
        assert_eq!(w.disturbed(None), None);
        std::fs::remove_dir_all(sb.root()).expect("rm");
        let why = w.disturbed(None).expect("disturbed");
        assert!(why.contains("is gone"), "{why}");
    }

    #[test]
    fn leftovers_in_tmp_and_home_are_listed() {
        let (_t, _case, sb) = case();
        assert!(leftovers(&sb, &[]).is_empty());
        std::fs::write(sb.root().join("tmp/tmpabc123.ckpt"), "x").expect("write");
        std::fs::create_dir(sb.root().join("home/.cache")).expect("mkdir");
        assert_eq!(
            leftovers(&sb, &[]),
            [
                "leftover in the sandbox's TMPDIR: tmpabc123.ckpt",
                "leftover in the sandbox's HOME: .cache/"
            ]
        );
    }

    #[test]
    fn what_the_uninterrupted_run_leaves_is_said_once_not_per_case() {
        let (_t, _case, sb) = case();
        std::fs::create_dir(sb.root().join("tmp/torchinductor_root")).expect("mkdir");
        let usual = left(&sb);
        assert_eq!(usual, ["tmp/torchinductor_root/"]);
        assert_eq!(
            usual_leftovers(&usual).as_deref(),
            Some(
                "the uninterrupted run leaves in the sandbox's TMPDIR: torchinductor_root/ \
                 (not repeated for each case)"
            )
        );
        assert!(leftovers(&sb, &usual).is_empty());
        // A crash's own leftover is still listed, beside the usual one.
        std::fs::write(sb.root().join("tmp/tmpabc123.ckpt"), "x").expect("write");
        assert_eq!(
            leftovers(&sb, &usual),
            ["leftover in the sandbox's TMPDIR: tmpabc123.ckpt"]
        );
        // A file of the same name is not the directory.
        std::fs::remove_dir(sb.root().join("tmp/torchinductor_root")).expect("rmdir");
        std::fs::write(sb.root().join("tmp/torchinductor_root"), "x").expect("write");
        assert_eq!(
            leftovers(&sb, &usual),
            ["leftover in the sandbox's TMPDIR: tmpabc123.ckpt, torchinductor_root"]
        );
        assert_eq!(usual_leftovers(&[]), None);
    }
}
