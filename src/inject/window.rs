//! The save window of time mode: the stretch of the reference run during
//! which its checkpoint directory changes, watched with inotify over the
//! whole sandbox (new directories are watched as they appear, so a
//! checkpoint tree made during the run is seen). Time crash points are
//! fractions of this window (`time:0.4172`), drawn from the seed, so the
//! same seed gives the same plan and report text; a kill lands
//! `fraction × (end - start)` after the run being killed first changes its
//! own checkpoint tree ([`AfterChange`], the same watch while that run
//! runs), so a start-up slower than the reference's does not move it out
//! of the saves.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

/// When, from the start of a run, its checkpoint directory changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaveWindow {
    /// The first change of a file in the checkpoint tree, in ms from the start.
    pub start_ms: u64,
    /// The last change, in ms from the start.
    pub end_ms: u64,
}

impl SaveWindow {
    /// The delay in ms for a point at `fraction` (in 1/10000) of the window.
    pub fn at(&self, fraction: u32) -> u64 {
        let span = self.end_ms.saturating_sub(self.start_ms);
        self.start_ms + span * u64::from(fraction.min(10_000)) / 10_000
    }
}

/// One change seen: when (from the watch's start), where, and whether it
/// made a directory.
type Change = (Duration, PathBuf, bool);

/// A running watch over a sandbox.
#[derive(Debug)]
pub struct Watch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Change>>,
}

const MASK: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_MODIFY)
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_ONLYDIR)
    .union(AddWatchFlags::IN_DONT_FOLLOW);

struct Tree {
    fd: Inotify,
    dirs: HashMap<WatchDescriptor, PathBuf>,
}

impl Tree {
    /// Watches `dir` and every directory below it (links not followed);
    /// files already there are changes seen now.
    fn add(&mut self, dir: &Path, t: Duration, seen: &mut Vec<Change>) {
        let Ok(wd) = self.fd.add_watch(dir, MASK) else {
            return;
        };
        self.dirs.insert(wd, dir.to_path_buf());
        let Ok(read) = std::fs::read_dir(dir) else {
            return;
        };
        for e in read.flatten() {
            let is_dir = e.file_type().is_ok_and(|f| f.is_dir());
            seen.push((t, e.path(), is_dir));
            if is_dir {
                self.add(&e.path(), t, seen);
            }
        }
    }

    fn drain(&mut self, start: Instant, seen: &mut Vec<Change>) -> bool {
        let Ok(events) = self.fd.read_events() else {
            return false;
        };
        let t = start.elapsed();
        for ev in events {
            let (Some(dir), Some(name)) = (self.dirs.get(&ev.wd), ev.name) else {
                continue;
            };
            let path = dir.join(name);
            let is_dir = ev.mask.contains(AddWatchFlags::IN_ISDIR);
            seen.push((t, path.clone(), is_dir));
            if is_dir
                && ev
                    .mask
                    .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
            {
                self.add(&path, t, seen);
            }
        }
        true
    }
}

/// Is `p` in the checkpoint tree at `ckpt_dir` (as the layout names it),
/// or in the directory it resolves to (`real`, once it exists)?
fn inside(p: &Path, ckpt_dir: &Path, real: &mut Option<PathBuf>) -> bool {
    if real.is_none() {
        *real = ckpt_dir.canonicalize().ok();
    }
    p.starts_with(ckpt_dir) || real.as_ref().is_some_and(|r| p.starts_with(r))
}

/// Tells when a file in a checkpoint tree first changed, while it runs.
type FirstSeen = (PathBuf, Arc<OnceLock<Instant>>);

impl Watch {
    /// Starts watching `root` (the sandbox); `None` where inotify is refused.
    pub fn start(root: &Path) -> Option<Watch> {
        Watch::start_with(root, None)
    }

    fn start_with(root: &Path, first: Option<FirstSeen>) -> Option<Watch> {
        let fd = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        let root = root.canonicalize().ok()?;
        let start = Instant::now();
        let mut tree = Tree {
            fd,
            dirs: HashMap::new(),
        };
        let mut seen = Vec::new();
        tree.add(&root, Duration::ZERO, &mut seen);
        // What was there before the run is no change of the run.
        seen.clear();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            use std::os::fd::AsFd;
            let mut real = None;
            let mut looked = 0;
            loop {
                let done = flag.load(Ordering::SeqCst);
                let ready = {
                    let mut fds = [PollFd::new(tree.fd.as_fd(), PollFlags::POLLIN)];
                    poll(&mut fds, PollTimeout::from(20u16)).unwrap_or(0)
                };
                if ready > 0 {
                    while tree.drain(start, &mut seen) {}
                }
                if let Some((ckpt_dir, at)) = &first {
                    if at.get().is_none()
                        && seen[looked..]
                            .iter()
                            .any(|(_, p, is_dir)| !is_dir && inside(p, ckpt_dir, &mut real))
                    {
                        let _ = at.set(Instant::now());
                    }
                    looked = seen.len();
                }
                if done {
                    while tree.drain(start, &mut seen) {}
                    return seen;
                }
            }
        });
        Some(Watch { stop, thread })
    }

    /// Stops the watch; the window of changes in the checkpoint tree at
    /// `ckpt_dir` (as the layout names it, links resolved), made by files
    /// (the creation of directories alone does not open it). `None` when
    /// nothing there changed.
    pub fn finish(self, ckpt_dir: &Path) -> Option<SaveWindow> {
        self.stop.store(true, Ordering::SeqCst);
        let seen = self.thread.join().ok()?;
        let mut real = None;
        let times: Vec<Duration> = seen
            .iter()
            .filter(|(_, p, is_dir)| !is_dir && inside(p, ckpt_dir, &mut real))
            .map(|(t, _, _)| *t)
            .collect();
        let ms = |d: &Duration| d.as_millis() as u64;
        Some(SaveWindow {
            start_ms: times.iter().min().map(ms)?,
            end_ms: times.iter().max().map(ms)?,
        })
    }
}

/// A kill due `delay` after a file in a run's checkpoint tree first
/// changes ([`crate::inject::CrashPoint::AfterChange`]): the sandbox is
/// watched from before the run starts until this is dropped.
#[derive(Debug)]
pub struct AfterChange {
    watch: Option<Watch>,
    first: Arc<OnceLock<Instant>>,
    delay: Duration,
}

impl AfterChange {
    /// Starts watching the sandbox `root` for changes in `ckpt_dir` (as the
    /// layout names it); `None` where inotify is refused.
    pub fn start(root: &Path, ckpt_dir: &Path, delay: Duration) -> Option<AfterChange> {
        let first = Arc::new(OnceLock::new());
        let watch = Watch::start_with(root, Some((ckpt_dir.to_path_buf(), first.clone())))?;
        Some(AfterChange {
            watch: Some(watch),
            first,
            delay,
        })
    }

    /// When the kill is due: `None` until the checkpoint tree has changed.
    pub fn due(&self) -> Option<Instant> {
        self.first.get().map(|t| *t + self.delay)
    }
}

impl Drop for AfterChange {
    fn drop(&mut self) {
        if let Some(w) = self.watch.take() {
            w.stop.store(true, Ordering::SeqCst);
            let _ = w.thread.join();
        }
    }
}

/// How a [`watchdog`] ended a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// At its time crash point.
    Crash,
    /// At its time limit.
    Timeout,
}

/// How often a watchdog looks whether the checkpoint tree has changed yet.
const LOOK: Duration = Duration::from_millis(1);

/// A run's watchdog: waits with `wait(d)` (true when the run ended within
/// `d`) until the run ends (`None`), the kill `at` is due (`Crash`; a fixed
/// instant or one `after` a change) or `timeout_at` passes (`Timeout`).
pub fn watchdog(
    at: Option<Instant>,
    after: Option<&AfterChange>,
    timeout_at: Instant,
    mut wait: impl FnMut(Duration) -> bool,
) -> Option<Fired> {
    loop {
        let now = Instant::now();
        let due = at.or_else(|| after.and_then(AfterChange::due));
        match due {
            Some(d) if d <= now && d < timeout_at => return Some(Fired::Crash),
            _ if now >= timeout_at => return Some(Fired::Timeout),
            _ => {}
        }
        let next = match (due, after) {
            (Some(d), _) => d,
            (None, Some(_)) => now + LOOK,
            (None, None) => timeout_at,
        }
        .min(timeout_at);
        if wait(next.saturating_duration_since(now)) {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_in_a_tree_made_during_the_watch_are_seen() {
        let d = tempfile::tempdir().unwrap();
        let w = Watch::start(d.path()).expect("inotify");
        let ckpt = d.path().join("work/runs/ckpt");
        std::fs::create_dir_all(&ckpt).unwrap();
        std::fs::write(d.path().join("work/outside.log"), "x").unwrap();
        std::fs::write(ckpt.join("a.ckpt"), "x").unwrap();
        let win = w.finish(&ckpt).expect("a change in the checkpoint tree");
        assert!(win.start_ms <= win.end_ms);
        let none = Watch::start(d.path()).unwrap().finish(&ckpt);
        assert_eq!(none, None, "nothing changed");
        let w = SaveWindow {
            start_ms: 100,
            end_ms: 300,
        };
        assert_eq!(w.at(0), 100);
        assert_eq!(w.at(5_000), 200);
        assert_eq!(w.at(10_000), 300);
    }
}
