//! A campaign: every case of one target across its layouts. Per layout, the
//! reference runs first, its census gives the crash plans, and the cases run
//! on parallel workers, each in its own sandbox, each an independent unit of
//! work. Results come back in case order, so the same seed gives the same
//! report whatever the scheduling.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::inject::{self, CrashPlan, PlanSpec, Selection};
use crate::layout::Layout;
use crate::oracle::{self, CaseOutcome, Reference, ReferenceError, Target};

/// What to run.
#[derive(Debug, Clone)]
pub struct Campaign {
    /// The subject and its protocol settings.
    pub target: Target,
    /// The layouts, in report order.
    pub layouts: Vec<Layout>,
    /// Which first crash points.
    pub selection: Selection,
    /// Crashes per case.
    pub crashes: u32,
    /// The seed that draws crash points.
    pub crash_seed: u64,
    /// Run only this plan (a replay), instead of the census's.
    pub only: Option<CrashPlan>,
    /// Parallel workers.
    pub jobs: usize,
}

/// The results of one layout.
#[derive(Debug, Clone)]
pub struct LayoutResult {
    /// The layout.
    pub layout: Layout,
    /// Its reference.
    pub reference: Reference,
    /// Every case, in plan order.
    pub outcomes: Vec<CaseOutcome>,
    /// Wall time, reference included.
    pub duration: Duration,
}

/// Why a campaign could not run.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// The reference failed (nondeterministic or unusable subject).
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A case could not be started.
    #[error(transparent)]
    Runner(#[from] crate::runner::RunnerError),
    /// The work directory could not be made.
    #[error("cannot create a work directory: {0}")]
    Io(#[from] std::io::Error),
    /// The campaign was interrupted (SIGINT/SIGTERM).
    #[error("interrupted")]
    Interrupted,
}

/// The marker that says a directory is a crashpoint workspace: it holds the
/// owner's pid and the owner's start time (field 22 of `/proc/<pid>/stat`),
/// so a recycled pid is not taken for the owner.
pub const MARKER: &str = ".crashpoint-workspace";

/// A workspace: a directory under the system temporary directory (`TMPDIR`)
/// that holds every sandbox of one harness process, marked as its own and
/// removed when dropped, without following links out of it.
#[derive(Debug)]
pub struct Workspace {
    dir: PathBuf,
}

impl Workspace {
    /// Creates a new marked workspace, after removing workspaces left behind
    /// by harness processes that no longer exist.
    pub fn create() -> std::io::Result<Workspace> {
        let base = std::env::temp_dir();
        remove_stale(&base);
        let dir = tempfile::Builder::new()
            .prefix("crashpoint-")
            .tempdir_in(&base)?
            .keep();
        let ws = Workspace { dir };
        let me = std::process::id();
        let marker = match start_time(me) {
            Some(t) => format!("{me} {t}"),
            None => me.to_string(),
        };
        std::fs::write(ws.dir.join(MARKER), marker)?;
        Ok(ws)
    }

    /// The workspace directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = remove_tree(&self.dir);
    }
}

/// The start time of process `pid` in clock ticks since boot, if it exists.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    // Fields from 3 (state) on; the start time is field 22.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// Is the harness that wrote this marker gone?
fn owner_gone(marker: &str) -> Option<bool> {
    let mut words = marker.split_ascii_whitespace();
    let pid: u32 = words.next()?.parse().ok()?;
    let alive = match (words.next().map(str::parse::<u64>), start_time(pid)) {
        (_, None) => false,
        (Some(Ok(t)), Some(now)) => t == now,
        (_, Some(_)) => true,
    };
    Some(!alive)
}

/// Removes `crashpoint-*` directories in `base` that carry the workspace
/// marker, belong to this user, and whose harness process is gone; first
/// kills the processes still tagged as that harness's runs (descendants that
/// outlived it when it was SIGKILLed). Anything else (no marker, another
/// user's, a link, an owner still alive) is left alone.
pub fn remove_stale(base: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(read) = std::fs::read_dir(base) else {
        return;
    };
    let uid = crate::sys::uid();
    for e in read.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // `symlink_metadata`: a link named crashpoint-* is not followed.
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        if !name.starts_with("crashpoint-") || !meta.is_dir() || meta.uid() != uid {
            continue;
        }
        let marker = e.path().join(MARKER);
        if !marker.symlink_metadata().is_ok_and(|m| m.is_file()) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&marker) else {
            continue;
        };
        if owner_gone(&text) == Some(true) {
            crate::sys::kill_tagged_under(&e.path());
            let _ = remove_tree(&e.path());
        }
    }
}

/// Removes the directory tree `dir`, never following a symbolic link (a
/// link to `/` or to the user's home inside it loses nothing but the link).
/// A directory a subject made unwritable or unreadable is given its owner's
/// permissions back first.
pub fn remove_tree(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            open_up(dir);
            std::fs::remove_dir_all(dir)
        }
    }
}

/// Gives every directory under `dir` (links not followed) `u+rwx`.
fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = dir.symlink_metadata() else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(read) = std::fs::read_dir(dir) {
        for e in read.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                open_up(&e.path());
            }
        }
    }
}

/// Set when the harness is asked to stop; workers finish their case and quit.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// The signal that stopped the harness (0: none).
static STOPPED_BY: AtomicI32 = AtomicI32::new(0);

/// The signal (SIGINT, SIGTERM, SIGHUP) that interrupted this harness, if any.
pub fn interrupted() -> Option<i32> {
    match STOPPED_BY.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Makes this process the harness: a child subreaper (orphans of subjects
/// come back to it to be killed and reaped), and on SIGINT, SIGTERM or
/// SIGHUP it sets [`STOP`] and kills every live run, so that campaigns
/// return the cases that finished and the command line can print them,
/// remove its workspace and exit `128 + signal`. A second signal does not
/// wait for that: every subject and descendant is killed and the process
/// exits at once (the next run removes the workspace left behind).
///
/// Call it first thing in `main`, before any other thread starts.
pub fn install_interrupt_handler() {
    crate::sys::become_subreaper();
    let installed = crate::sys::on_termination_signals(|sig| {
        let first = STOPPED_BY
            .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        STOP.store(true, Ordering::SeqCst);
        crate::sys::stop_all();
        if first {
            eprintln!(
                "crashpoint: {}: stopping every run, removing the sandboxes (again to quit at once)",
                signal_name(sig)
            );
        } else {
            crate::sys::kill_descendants();
            std::process::exit(128 + sig);
        }
    });
    if let Err(e) = installed {
        eprintln!("warning: cannot handle SIGINT/SIGTERM ({e}); an interrupt leaves sandboxes behind until the next run");
    }
}

/// `SIGINT` for 2, and so on.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// Progress callback: (layout, cases done, cases in this layout).
pub type Progress<'a> = &'a (dyn Fn(Layout, usize, usize) + Sync);

impl Campaign {
    /// The plans of one layout: from its reference's census, then the
    /// three misuse probes (a replay runs only its own plan).
    pub fn plans(&self, reference: &Reference) -> Vec<CrashPlan> {
        if let Some(only) = &self.only {
            return vec![only.clone()];
        }
        let spec = PlanSpec {
            mode: self.target.mode,
            selection: self.selection,
            crashes: self.crashes,
            seed: self.crash_seed,
            duration_ms: reference.duration.as_millis() as u64,
        };
        let mut plans = inject::plans(&spec, &reference.census);
        plans.extend(inject::Probe::ALL.map(inject::Probe::plan));
        plans
    }

    /// Runs every layout; `work` is an empty directory for the sandboxes.
    /// When the harness is stopped (see [`STOP`]) this is
    /// [`CampaignError::Interrupted`]; [`Campaign::run_partial`] returns
    /// what finished instead.
    pub fn run(
        &self,
        work: &Path,
        progress: Progress<'_>,
    ) -> Result<Vec<LayoutResult>, CampaignError> {
        let out = self.run_partial(work, progress)?;
        if stopped() {
            return Err(CampaignError::Interrupted);
        }
        Ok(out)
    }

    /// [`Campaign::run`], except that once the harness is stopped it returns
    /// the layouts whose reference finished, each with the cases that
    /// finished (the last one may have fewer than its plans, or none).
    pub fn run_partial(
        &self,
        work: &Path,
        progress: Progress<'_>,
    ) -> Result<Vec<LayoutResult>, CampaignError> {
        let mut out = Vec::new();
        for &layout in &self.layouts {
            if stopped() {
                break;
            }
            let start = Instant::now();
            let scratch = work.join(layout.name());
            std::fs::create_dir_all(&scratch)?;
            let reference = match oracle::reference(&self.target, layout, &scratch) {
                Err(_) if stopped() => break,
                r => r?,
            };
            let plans = if reference.findings.is_empty() {
                self.plans(&reference)
            } else {
                Vec::new()
            };
            let outcomes = self.run_cases(&reference, &plans, &scratch, progress)?;
            let _ = remove_tree(&scratch);
            out.push(LayoutResult {
                layout,
                reference,
                outcomes,
                duration: start.elapsed(),
            });
        }
        Ok(out)
    }

    fn run_cases(
        &self,
        reference: &Reference,
        plans: &[CrashPlan],
        scratch: &Path,
        progress: Progress<'_>,
    ) -> Result<Vec<CaseOutcome>, CampaignError> {
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let slots: Mutex<Vec<Option<Result<CaseOutcome, crate::runner::RunnerError>>>> =
            Mutex::new((0..plans.len()).map(|_| None).collect());
        let workers = self.jobs.clamp(1, plans.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    if stopped() {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(plan) = plans.get(i) else { return };
                    let case_dir: PathBuf = scratch.join(format!("case-{i}"));
                    let r = match plan.probe() {
                        Some(p) => oracle::run_probe(&self.target, reference, p, &case_dir),
                        None => oracle::run_case(&self.target, reference, plan, &case_dir),
                    };
                    let _ = remove_tree(&case_dir);
                    if let Ok(mut slots) = slots.lock() {
                        slots[i] = Some(r);
                    }
                    progress(
                        reference.layout,
                        done.fetch_add(1, Ordering::SeqCst) + 1,
                        plans.len(),
                    );
                });
            }
        });
        let slots = slots.into_inner().unwrap_or_default();
        let mut outcomes = Vec::new();
        for slot in slots {
            match slot {
                Some(Ok(o)) => outcomes.push(o),
                // Cases cut short by a stop are left out of a partial report.
                Some(Err(_)) | None if stopped() => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err(CampaignError::Interrupted),
            }
        }
        Ok(outcomes)
    }
}

/// Has the harness been asked to stop?
fn stopped() -> bool {
    STOP.load(Ordering::SeqCst) || crate::sys::stopping()
}
