//! `--keep-failed DIR`: the directory of each failing case (its `sandbox/`
//! as the case left it after its last run, and its `harness/` files: state,
//! events, logs) is moved to `DIR/<layout>/<point>` before the campaign
//! removes it. A move within one file system is a rename; across file
//! systems the tree is copied without following any link (a link is copied
//! as a link) and the original removed. Nothing is written outside `DIR`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::events::{Event, Reporter};

/// Keeps failing cases' directories.
#[derive(Debug)]
pub struct KeepFailed {
    dir: PathBuf,
    kept: Mutex<Vec<PathBuf>>,
    errors: Mutex<Vec<String>>,
}

impl KeepFailed {
    /// Keeps failing cases in `dir`, which is created if missing.
    pub fn new(dir: &Path) -> std::io::Result<KeepFailed> {
        std::fs::create_dir_all(dir)?;
        Ok(KeepFailed {
            dir: dir.to_path_buf(),
            kept: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
        })
    }

    /// Where the cases went, in the order they finished.
    pub fn kept(&self) -> Vec<PathBuf> {
        self.kept.lock().map(|k| k.clone()).unwrap_or_default()
    }

    /// What could not be kept, and why.
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().map(|k| k.clone()).unwrap_or_default()
    }

    fn keep(&self, layout: &str, plan: &str, from: &Path) -> std::io::Result<PathBuf> {
        let parent = self.dir.join(layout);
        std::fs::create_dir_all(&parent)?;
        let base = plan.replace([':', '/'], "-");
        let mut to = parent.join(&base);
        let mut n = 2;
        while to.symlink_metadata().is_ok() {
            to = parent.join(format!("{base}.{n}"));
            n += 1;
        }
        match std::fs::rename(from, &to) {
            Ok(()) => Ok(to),
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                copy_tree(from, &to)?;
                crate::workspace::remove_tree(from)?;
                Ok(to)
            }
            Err(e) => Err(e),
        }
    }
}

/// Copies `from` to `to` (which must not exist), links as links, never
/// following one.
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = from.symlink_metadata()?;
    let t = meta.file_type();
    if t.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)
    } else if t.is_dir() {
        std::fs::create_dir(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
        std::fs::set_permissions(to, meta.permissions())
    } else if t.is_file() {
        std::fs::copy(from, to).map(|_| ())
    } else {
        // Sockets, fifos, devices: nothing a checkpoint is; skipped.
        Ok(())
    }
}

impl Reporter for KeepFailed {
    fn event(&self, e: &Event<'_>) {
        let Event::CaseFinished {
            layout,
            plan,
            outcome,
            dir,
            ..
        } = e
        else {
            return;
        };
        if outcome.passed() {
            return;
        }
        match self.keep(layout.name(), &plan.to_string(), dir) {
            Ok(p) => {
                if let Ok(mut k) = self.kept.lock() {
                    k.push(p);
                }
            }
            Err(err) => {
                if let Ok(mut k) = self.errors.lock() {
                    k.push(format!("{layout} {plan}: {err}"));
                }
            }
        }
    }
}
