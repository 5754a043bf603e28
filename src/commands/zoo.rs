//! `crashpoint zoo`: every mutant of the simulated trainer hunted on its
//! scenario, shrunk, and the clean sim on all of them.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;

use super::{jobs, self_name, CommandError, EXIT_FAIL, EXIT_OK};
use crate::campaign::CampaignError;
use crate::pool::Cancel;
use crate::report;
use crate::sim::Mutant;
use crate::workspace::Workspace;
use crate::zoo::hunt;

/// Flags of `crashpoint zoo`.
#[derive(Debug, Args)]
pub struct ZooArgs {
    /// List the mutants with a one-line description, and run nothing.
    #[arg(long)]
    pub list: bool,
    /// The scenarios directory: the zoo's are its zoo-<mutant>.toml files.
    #[arg(long, default_value = "scenarios")]
    pub scenarios: PathBuf,
    /// Candidates each shrinking may run.
    #[arg(long, default_value_t = 40)]
    pub attempts: usize,
    /// Parallel workers (default: the number of cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Write the zoo report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs `crashpoint zoo`; returns the exit status.
/// `cancel` is the harness's token (see [`crate::pool::install_interrupt_handler`]).
pub fn zoo(a: ZooArgs, cancel: &Cancel) -> Result<i32, CommandError> {
    if a.list {
        let width = Mutant::ALL
            .iter()
            .map(|m| m.name().len())
            .max()
            .unwrap_or(0);
        for m in Mutant::ALL {
            println!("{:width$}  {}", m.name(), m.description());
        }
        return Ok(EXIT_OK);
    }
    let exe = std::env::current_exe()
        .map_err(|e| CommandError::Flag(format!("cannot find this program: {e}")))?;
    let opts = hunt::Options {
        dir: a.scenarios.clone(),
        exe,
        program: self_name(),
        jobs: jobs(a.jobs),
        clean: hunt::CleanSet::All,
        shrink_attempts: a.attempts,
    };
    let ws = Workspace::create().map_err(|e| CommandError::Campaign(e.into()))?;
    let tell = |line: &str| {
        if std::io::stderr().is_terminal() {
            eprintln!("  {line}");
        }
    };
    let report = hunt::hunt(&opts, ws.path(), &tell, cancel).map_err(|e| match e {
        hunt::HuntError::Campaign(c) => CommandError::Campaign(c),
        hunt::HuntError::Interrupted(sig) => {
            CommandError::Campaign(CampaignError::Interrupted(sig))
        }
        other => CommandError::Flag(other.to_string()),
    })?;
    print!("{}", crate::zoo::table::render(&report));
    if let Some(p) = &a.json {
        let text = report::to_json(&report)?;
        std::fs::write(p, text).map_err(|source| CommandError::Write {
            path: p.display().to_string(),
            source,
        })?;
    }
    Ok(if report.ok { EXIT_OK } else { EXIT_FAIL })
}
