//! Path layouts: where the subject runs and how it names its checkpoint
//! directory. Each layout is built in a fresh sandbox directory, and every
//! trick it plays (symbolic links, odd characters, moving the working
//! directory between runs) stays inside that sandbox.
//!
//! ```
//! use crashpoint::layout::{Layout, Sandbox};
//! let dir = tempfile::tempdir().unwrap();
//! let sb = Sandbox::create(Layout::Nested, dir.path()).unwrap();
//! let place = sb.place();
//! assert_eq!(place.ckpt_dir, "runs/exp 1/ckpt=v1:a");
//! assert!(place.cwd.ends_with("work"));
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A path layout, as PROTOCOL.md names them (and reports spell them).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// cwd `work`, checkpoint dir `checkpoints`.
    Relative,
    /// cwd `work`, checkpoint dir absolute.
    Absolute,
    /// cwd `work`, checkpoint dir `runs/exp 1/ckpt=v1:a`.
    Nested,
    /// cwd entered through a link `link -> real/work`; `PWD` is the logical path.
    SymlinkedCwd,
    /// checkpoint dir `ckpt-link`, a link to `store/ckpts`.
    SymlinkedDir,
    /// like `relative`, but the working directory moves before each resume.
    Relocated,
    /// absolute checkpoint dir; resume runs start in another directory.
    OtherCwd,
}

impl Layout {
    /// Every layout, in report order.
    pub const ALL: [Layout; 7] = [
        Layout::Relative,
        Layout::Absolute,
        Layout::Nested,
        Layout::SymlinkedCwd,
        Layout::SymlinkedDir,
        Layout::Relocated,
        Layout::OtherCwd,
    ];

    /// The name used in scenario files, flags and reports.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Relative => "relative",
            Layout::Absolute => "absolute",
            Layout::Nested => "nested",
            Layout::SymlinkedCwd => "symlinked-cwd",
            Layout::SymlinkedDir => "symlinked-dir",
            Layout::Relocated => "relocated",
            Layout::OtherCwd => "other-cwd",
        }
    }

    /// Is the checkpoint directory written relative to the working directory?
    pub fn is_relative(self) -> bool {
        !matches!(self, Layout::Absolute | Layout::OtherCwd)
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown layout name; the message lists the valid ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown layout `{given}`; valid layouts: {}", Layout::ALL.map(|l| l.name()).join(", "))]
pub struct UnknownLayout {
    /// The name given.
    pub given: String,
}

impl FromStr for Layout {
    type Err = UnknownLayout;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Layout::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| UnknownLayout { given: s.into() })
    }
}

/// Where one run of the subject starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The working directory, as the harness enters it (for `symlinked-cwd`,
    /// through the link).
    pub cwd: PathBuf,
    /// The logical working directory, for `PWD`.
    pub pwd: String,
    /// `CRASHPOINT_CKPT_DIR`, exactly as a user would write it.
    pub ckpt_dir: String,
}

/// A fresh sandbox directory holding one layout.
#[derive(Debug)]
pub struct Sandbox {
    root: PathBuf,
    layout: Layout,
    /// Working directory of the next run (a path inside `root`).
    cwd: PathBuf,
    ckpt_dir: String,
    moves: u32,
}

impl Sandbox {
    /// Builds `layout` inside `root`, an existing empty directory owned by the
    /// harness. Nothing outside `root` is touched.
    pub fn create(layout: Layout, root: &Path) -> std::io::Result<Sandbox> {
        let root = root.canonicalize()?;
        for d in ["home", "tmp"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        let work = root.join("work");
        let (cwd, ckpt_dir) = match layout {
            Layout::Relative | Layout::Nested | Layout::Relocated => {
                std::fs::create_dir(&work)?;
                let dir = if layout == Layout::Nested {
                    "runs/exp 1/ckpt=v1:a"
                } else {
                    "checkpoints"
                };
                (work, dir.to_string())
            }
            Layout::Absolute | Layout::OtherCwd => {
                std::fs::create_dir(&work)?;
                let dir = work.join("checkpoints").display().to_string();
                (work, dir)
            }
            Layout::SymlinkedCwd => {
                std::fs::create_dir_all(root.join("real/work"))?;
                std::os::unix::fs::symlink("real/work", root.join("link"))?;
                (root.join("link"), "checkpoints".to_string())
            }
            Layout::SymlinkedDir => {
                std::fs::create_dir(&work)?;
                std::fs::create_dir_all(root.join("store/ckpts"))?;
                std::os::unix::fs::symlink("../store/ckpts", work.join("ckpt-link"))?;
                (work, "ckpt-link".to_string())
            }
        };
        Ok(Sandbox {
            root,
            layout,
            cwd,
            ckpt_dir,
            moves: 0,
        })
    }

    /// The sandbox directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The layout this sandbox holds.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Where the next run starts.
    pub fn place(&self) -> Place {
        Place {
            cwd: self.cwd.clone(),
            pwd: self.cwd.display().to_string(),
            ckpt_dir: self.ckpt_dir.clone(),
        }
    }

    /// `CRASHPOINT_RESUME` for resuming by path: `<dir>/last.ckpt`, with the
    /// directory's relativity.
    pub fn last_path_arg(&self) -> String {
        format!("{}/last.ckpt", self.ckpt_dir.trim_end_matches('/'))
    }

    /// The checkpoint directory as the harness inspects it: an absolute path
    /// (through links, where the layout has them).
    pub fn ckpt_dir(&self) -> PathBuf {
        self.cwd.join(&self.ckpt_dir)
    }

    /// Called between a killed run and the run after it: `relocated` moves
    /// the working directory to a new path, `other-cwd` starts the next run
    /// elsewhere. The other layouts do nothing.
    pub fn before_next_run(&mut self) -> std::io::Result<()> {
        match self.layout {
            Layout::Relocated => {
                self.moves += 1;
                let to = self.root.join(format!("moved-{}", self.moves));
                std::fs::rename(&self.cwd, &to)?;
                self.cwd = to;
            }
            Layout::OtherCwd => {
                let elsewhere = self.root.join("elsewhere");
                std::fs::create_dir_all(&elsewhere)?;
                self.cwd = elsewhere;
            }
            _ => {}
        }
        Ok(())
    }
}
