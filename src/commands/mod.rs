//! What each command does, with its flags as plain data: `run`
//! ([`run`]), `certify` ([`certify`]), `zoo` ([`zoo`]), `census`, `report`
//! and `merge` ([`tools`]) and `sim`. clap derives the flag structs, but
//! nothing here reads the process's arguments: the command line (module `cli`)
//! parses them, calls one of these, and exits with the status it returns.
//! Each prints its result on stdout (progress goes to stderr as it runs);
//! errors the user can fix come back as [`CommandError`] with status 2.
//!
//! ```
//! use crashpoint::commands::{parse_plan, EXIT_USAGE};
//! assert!(parse_plan(&Some("op:17:mid".into())).unwrap().is_some());
//! let bad = parse_plan(&Some("op:x".into())).unwrap_err();
//! assert_eq!(bad.exit_code(), EXIT_USAGE);
//! ```

use crate::campaign::CampaignError;
use crate::inject::CrashPlan;
use crate::report;
use crate::sim::SimSettings;
use crate::workspace::Workspace;

pub mod certify;
pub mod outputs;
pub mod run;
pub mod tools;
pub mod zoo;

/// Exit status: everything as expected / certified.
pub const EXIT_OK: i32 = 0;
/// Exit status: failures found (or a verdict other than expected).
pub const EXIT_FAIL: i32 = 1;
/// Exit status: unusable input.
pub const EXIT_USAGE: i32 = 2;
/// Exit status: the harness was disturbed (a sandbox changed from outside):
/// the report cannot be trusted, whatever it says.
pub const EXIT_UNTRUSTED: i32 = 3;

/// A mistake the user can fix: printed as `error: ...`, exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A scenario file is malformed or unreadable.
    #[error(transparent)]
    Scenario(#[from] crate::scenario::ScenarioError),
    /// The scenarios directory is missing or empty.
    #[error("no scenario files: {0}")]
    NoScenarios(String),
    /// A flag value is wrong.
    #[error("{0}")]
    Flag(String),
    /// The subject cannot be certified (not found, nondeterministic, unusable).
    #[error(transparent)]
    Campaign(#[from] CampaignError),
    /// A report could not be serialised.
    #[error(transparent)]
    Report(#[from] report::ReportError),
    /// `census`, `report` or `merge` could not do its job.
    #[error(transparent)]
    Tool(#[from] crate::commands::tools::ToolError),
    /// A report file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The system's error.
        source: std::io::Error,
    },
}

impl CommandError {
    /// The exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CommandError::Campaign(CampaignError::Interrupted(sig)) => 128 + sig.unwrap_or(2),
            CommandError::Campaign(CampaignError::Reference(
                crate::oracle::ReferenceError::Disturbed { .. },
            )) => EXIT_UNTRUSTED,
            _ => EXIT_USAGE,
        }
    }

    /// A line of advice to print under the error, when there is one.
    pub fn hint(&self) -> Option<String> {
        enospc_hint(&self.to_string(), &crate::workspace::default_base())
    }
}

/// When `text` says a disk is full: where the sandboxes live (`base`, the
/// workspaces' directory) and how much room is left there.
pub fn enospc_hint(text: &str, base: &std::path::Path) -> Option<String> {
    if !text.contains("No space left on device") && !text.contains("ENOSPC") {
        return None;
    }
    let free = nix::sys::statvfs::statvfs(base)
        .map(|s| {
            let bytes = s.blocks_available() as u128 * s.fragment_size() as u128;
            format!("{} MiB free", bytes / (1024 * 1024))
        })
        .unwrap_or_else(|_| "free space unknown".into());
    let named = if std::env::var_os("TMPDIR").is_some_and(|v| !v.is_empty()) {
        format!("TMPDIR={}", base.display())
    } else {
        base.display().to_string()
    };
    Some(format!(
        "a disk is full (ENOSPC). The sandboxes live under {named} ({free}): free some space there, or set TMPDIR (for certify: --sandbox-dir) to a larger file system"
    ))
}

/// How this program was invoked, for replay commands: the path as typed
/// when it has a `/` (pastes from the same directory), else `crashpoint`.
pub(crate) fn self_name() -> String {
    std::env::args()
        .next()
        .filter(|a| a.contains('/'))
        .unwrap_or_else(|| "crashpoint".to_string())
}

/// The number of workers: `j`, else the number of cores.
pub(crate) fn jobs(j: Option<usize>) -> usize {
    j.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
    .max(1)
}

/// Parses `--crash` (`none`: no crash).
pub fn parse_plan(s: &Option<String>) -> Result<Option<CrashPlan>, CommandError> {
    match s.as_deref() {
        None => Ok(None),
        Some("none") => Ok(Some(CrashPlan { points: Vec::new() })),
        Some(p) => p
            .parse()
            .map(Some)
            .map_err(|e| CommandError::Flag(format!("--crash: {e}"))),
    }
}

/// The exit status of a harness stopped by `sig`, after a partial report.
pub(crate) fn interrupted_exit(sig: i32, cases: usize) -> i32 {
    eprintln!(
        "crashpoint: interrupted by {}: the report above covers the {cases} cases that finished; nothing is certified",
        crate::pool::signal_name(sig)
    );
    128 + sig
}

/// Runs `crashpoint census`; returns the exit status.
pub fn census(a: &crate::commands::tools::CensusArgs) -> Result<i32, CommandError> {
    let exe = std::env::current_exe()
        .map_err(|e| CommandError::Flag(format!("cannot find this program: {e}")))?;
    let ws = Workspace::create().map_err(|e| CommandError::Campaign(e.into()))?;
    Ok(crate::commands::tools::census(a, &exe, ws.path())?)
}

/// Runs `crashpoint sim`, the simulated trainer; returns the exit status.
pub fn sim(settings: &SimSettings) -> i32 {
    // Started by a harness: die with it (see `protocol::SIM_PARENT`).
    if let Some(parent) = std::env::var(crate::protocol::SIM_PARENT)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        crate::sys::die_with_parent(parent);
    }
    crate::sim::trainer::main(settings, |k| std::env::var(k).ok())
}

/// Runs `crashpoint sim-server`, the simulated trainer's warm-start server
/// (see [`crate::sim::serve`]); returns its exit status.
pub fn sim_server() -> i32 {
    let stdin = std::io::stdin();
    crate::sim::serve::serve(stdin.lock(), std::io::stdout())
}
