//! The single I/O layer through which every checkpoint file operation of the
//! simulated trainer passes. It numbers the operations; the `op` crash point
//! kills the process at the N-th one, before it, after it, or half-way
//! through a write. With a log path it also records the census of operations.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub use crate::protocol::{OpCrash, When};

use crate::census::{Call, CensusEntry, Phase};

/// The numbered I/O layer.
#[derive(Debug, Default)]
pub struct Io {
    count: u64,
    crash: Option<OpCrash>,
    phase: Phase,
    log: Option<Vec<CensusEntry>>,
    /// Pause at every point for the harness (`CRASHPOINT_OP_PAUSE`).
    pause: bool,
    /// A second path the current operation changes (a rename's source).
    also: Option<PathBuf>,
    /// The current operation's name on pause lines (see [`Io::pause_at`]).
    label: &'static str,
}

impl Io {
    /// An I/O layer that kills at `crash` and records a census when `log` is true.
    pub fn new(crash: Option<OpCrash>, log: bool) -> Io {
        Io {
            count: 0,
            crash,
            phase: Phase::default(),
            log: log.then(Vec::new),
            pause: false,
            also: None,
            label: "",
        }
    }

    /// Makes every crash point a pause (see [`crate::protocol::OP_PAUSE`]).
    pub fn pausing(mut self) -> Io {
        self.pause = true;
        self
    }

    /// Tells the harness this point is reached, with the operation's name
    /// and paths, and waits until it has captured the state: `INDEX WHEN
    /// CALL`, then tab-separated paths, those the operation names on a
    /// `before` line (a rename's source first), those it changed on `mid`
    /// and `after` lines. CALL is the census name of the call, except that
    /// the creation of a directory with its missing parents, each made
    /// durable in its parent, is `mkdir-all`. A harness that is gone ends
    /// the pauses.
    fn pause_at(&mut self, when: When, changed: &[&Path]) {
        if !self.pause {
            return;
        }
        let mut line = format!("{} {} {}", self.count, when, self.label);
        for p in changed {
            line.push('\t');
            line.push_str(&p.to_string_lossy());
        }
        line.push('\n');
        let mut out = std::io::stdout().lock();
        let mut byte = [0u8; 1];
        let ok = out
            .write_all(line.as_bytes())
            .and_then(|_| out.flush())
            .is_ok()
            && matches!(std::io::stdin().lock().read(&mut byte), Ok(1));
        if !ok {
            self.pause = false;
        }
    }

    /// Names what the following operations are for (shown in censuses).
    pub fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
    }

    /// Operations performed so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The recorded census, if recording.
    pub fn records(&self) -> &[CensusEntry] {
        self.log.as_deref().unwrap_or(&[])
    }

    /// Numbers the next operation; dies if the crash point says "before".
    fn begin(&mut self, kind: Call, path: &Path) -> Option<When> {
        self.count += 1;
        if self.label.is_empty() {
            self.label = kind.name();
        }
        match self.also.clone() {
            Some(from) => self.pause_at(When::Before, &[&from, path]),
            None => self.pause_at(When::Before, &[path]),
        }
        if let Some(log) = &mut self.log {
            // A rename names both paths, `from` first, as a traced census does.
            let mut paths: Vec<String> =
                self.also.iter().map(|f| f.display().to_string()).collect();
            paths.push(path.display().to_string());
            log.push(CensusEntry {
                index: self.count,
                call: kind,
                name: kind.name().to_string(),
                paths,
                phase: self.phase,
                fd: None,
                offset: None,
                len: None,
            });
        }
        match self.crash {
            Some(c) if c.index == self.count => {
                if c.when == When::Before || (c.when == When::Mid && kind != Call::Write) {
                    crate::sys::kill_self();
                }
                Some(c.when)
            }
            _ => None,
        }
    }

    fn end(&mut self, armed: Option<When>, path: &Path) {
        if armed == Some(When::After) {
            crate::sys::kill_self();
        }
        match self.also.take() {
            Some(from) => self.pause_at(When::After, &[&from, path]),
            None => self.pause_at(When::After, &[path]),
        }
        self.label = "";
    }

    fn run<T>(
        &mut self,
        kind: Call,
        path: &Path,
        f: impl FnOnce() -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        let armed = self.begin(kind, path);
        let out = f();
        self.end(armed, path);
        out
    }

    /// Creates `dir` and its parents, durably: each directory it creates is
    /// made durable in its parent (an fsync of the parent), all in one
    /// operation.
    pub fn mkdir_all(&mut self, dir: &Path) -> std::io::Result<()> {
        self.label = "mkdir-all";
        self.run(Call::Mkdir, dir, || {
            let mut missing = Vec::new();
            let mut p = dir;
            while p.symlink_metadata().is_err() {
                missing.push(p);
                match p.parent() {
                    Some(parent) => p = parent,
                    None => break,
                }
            }
            std::fs::create_dir_all(dir)?;
            for d in missing.iter().rev() {
                let parent = match d.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                File::open(parent)?.sync_all()?;
            }
            Ok(())
        })
    }

    /// Creates the one directory `dir` (its parent must exist).
    pub fn mkdir(&mut self, dir: &Path) -> std::io::Result<()> {
        self.run(Call::Mkdir, dir, || std::fs::create_dir(dir))
    }

    /// Removes the empty directory `dir`.
    pub fn rmdir(&mut self, dir: &Path) -> std::io::Result<()> {
        self.run(Call::Rmdir, dir, || std::fs::remove_dir(dir))
    }

    /// Sets the modification time of the directory `dir` (counted as `other`).
    pub fn set_mtime(&mut self, dir: &Path, time: std::time::SystemTime) -> std::io::Result<()> {
        self.run(Call::Other, dir, || File::open(dir)?.set_modified(time))
    }

    /// Removes the directory `dir` and what is in it, one numbered
    /// operation per name.
    pub fn remove_tree(&mut self, dir: &Path) -> std::io::Result<()> {
        for name in self.list(dir)? {
            let path = dir.join(&name);
            if path.symlink_metadata()?.is_dir() {
                self.remove_tree(&path)?;
            } else {
                self.unlink(&path)?;
            }
        }
        self.rmdir(dir)
    }

    /// Opens `path` for writing, creating or truncating it.
    pub fn create(&mut self, path: &Path) -> std::io::Result<File> {
        self.run(Call::Create, path, || {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
        })
    }

    /// Writes all of `bytes`; a `mid` crash point writes half and dies.
    pub fn write(&mut self, file: &mut File, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let armed = self.begin(Call::Write, path);
        if let Some(last) = self.log.as_mut().and_then(|l| l.last_mut()) {
            last.len = Some(bytes.len() as u64);
        }
        if armed == Some(When::Mid) {
            let _ = file.write_all(&bytes[..bytes.len() / 2]);
            crate::sys::kill_self();
        }
        let out = if self.pause {
            let half = bytes.len() / 2;
            let first = file.write_all(&bytes[..half]);
            self.pause_at(When::Mid, &[path]);
            first.and_then(|_| file.write_all(&bytes[half..]))
        } else {
            file.write_all(bytes)
        };
        self.end(armed, path);
        out
    }

    /// fsyncs an open file.
    pub fn fsync(&mut self, file: &File, path: &Path) -> std::io::Result<()> {
        self.run(Call::Fsync, path, || file.sync_all())
    }

    /// fsyncs a directory, making the names in it durable.
    pub fn fsync_dir(&mut self, dir: &Path) -> std::io::Result<()> {
        self.run(Call::FsyncDir, dir, || File::open(dir)?.sync_all())
    }

    /// Renames `from` over `to`.
    pub fn rename(&mut self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.also = Some(from.to_path_buf());
        self.run(Call::Rename, to, || std::fs::rename(from, to))
    }

    /// Creates the symbolic link `link` pointing at `target`.
    pub fn symlink(&mut self, target: &Path, link: &Path) -> std::io::Result<()> {
        self.run(Call::Symlink, link, || {
            std::os::unix::fs::symlink(target, link)
        })
    }

    /// Removes the name `path` (a file or a link, never a directory's content).
    pub fn unlink(&mut self, path: &Path) -> std::io::Result<()> {
        self.run(Call::Unlink, path, || std::fs::remove_file(path))
    }

    /// Reads a whole file, following links.
    pub fn read(&mut self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.run(Call::Read, path, || {
            let mut buf = Vec::new();
            File::open(path)?.read_to_end(&mut buf)?;
            Ok(buf)
        })
    }

    /// Reads the target of a symbolic link.
    pub fn read_link(&mut self, path: &Path) -> std::io::Result<PathBuf> {
        self.run(Call::ReadLink, path, || std::fs::read_link(path))
    }

    /// Lists the names in a directory, sorted.
    pub fn list(&mut self, dir: &Path) -> std::io::Result<Vec<String>> {
        self.run(Call::List, dir, || {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(dir)? {
                names.push(entry?.file_name().to_string_lossy().into_owned());
            }
            names.sort();
            Ok(names)
        })
    }
}
