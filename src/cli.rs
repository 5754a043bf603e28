//! The command line: parses the arguments, calls the command in
//! [`crate::commands`], and returns its exit status; errors the user can fix
//! come back as [`CommandError`] with status 2.

use clap::{Parser, Subcommand};

use crate::commands::certify::CertifyArgs;
use crate::commands::run::RunArgs;
use crate::commands::tools::{CensusArgs, MergeArgs, ReportArgs};
use crate::commands::zoo::ZooArgs;
pub use crate::commands::CommandError;
use crate::commands::{self, tools};
use crate::sim::SimSettings;

/// Certifies that a training program survives being killed at any moment
/// while it saves, relinks or resumes a checkpoint.
#[derive(Debug, Parser)]
#[command(name = "crashpoint", version, about)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run scenario files (default: every scenarios/*.toml) and print the verdict table.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Certify any training program through the subject protocol.
    Certify(CertifyArgs),
    /// Print the numbered census of crash points of a subject, with their sites.
    #[command(after_help = CENSUS_EXAMPLES)]
    Census(CensusArgs),
    /// Read a JSON report back: its text, its HTML page, JUnit.
    #[command(after_help = REPORT_EXAMPLES)]
    Report(ReportArgs),
    /// Join the JSON reports of the partitions of one run (--partition I/N) into one.
    #[command(after_help = MERGE_EXAMPLES)]
    Merge(MergeArgs),
    /// The simulated trainer, as a subject speaking the protocol (started by the harness).
    #[command(after_help = SIM_EXAMPLES)]
    Sim(SimSettings),
    /// The simulated trainer's warm-start server (started by the harness).
    #[command(hide = true)]
    SimServer,
    /// The bug zoo.
    #[command(after_help = ZOO_EXAMPLES)]
    Zoo(ZooArgs),
}

const RUN_EXAMPLES: &str = "Examples:
  crashpoint run                                   every scenario in ./scenarios
  crashpoint run scenarios/relative.toml --mutant no-rng-state --html windows.html
  crashpoint run --partition 2/4 --json part2.json  this machine's quarter of the sweep";
const CENSUS_EXAMPLES: &str = "Examples:
  crashpoint census -- python3 train.py             the traced system calls, numbered
  crashpoint census --layouts relative,nested -- python3 train.py
  crashpoint census --scenario scenarios/relative.toml   the simulated trainer's op census";
const REPORT_EXAMPLES: &str = "Examples:
  crashpoint report out.json                       the table and failures again
  crashpoint report out.json --html windows.html   the page of the crash windows";
const MERGE_EXAMPLES: &str = "Examples:
  crashpoint merge p1.json p2.json p3.json --json all.json --html all.html
  crashpoint merge part*.json --junit all.xml      exit status: that of the joined verdict";
const SIM_EXAMPLES: &str = "Examples (the harness starts it; by hand, with the protocol's variables):
  CRASHPOINT_CKPT_DIR=ckpt CRASHPOINT_MAX_STEPS=10 CRASHPOINT_SEED=0 CRASHPOINT_STATE_OUT=$PWD/state.json crashpoint sim
  crashpoint sim --help";
const ZOO_EXAMPLES: &str = "Examples:
  crashpoint zoo --list                            the mutants, one line each
  crashpoint zoo --json zoo.json                   every mutant on its scenario, shrunk";

/// Runs the command line; returns the exit status.
///
/// Every command but `sim` (which is itself a subject) runs as the harness:
/// a child subreaper that stops cleanly on SIGINT, SIGTERM or SIGHUP, and
/// kills whatever its subjects left before it returns.
pub fn main(cli: Cli) -> Result<i32, CommandError> {
    let harness = !matches!(cli.command, Command::Sim(_) | Command::SimServer);
    let cancel = if harness {
        crate::sys::bound_malloc_arenas();
        crate::pool::install_interrupt_handler()
    } else {
        crate::pool::Cancel::new()
    };
    let out = match cli.command {
        Command::Run(a) => commands::run::run(a, &cancel),
        Command::Certify(a) => commands::certify::certify(a, &cancel),
        Command::Sim(s) => Ok(commands::sim(&s)),
        Command::SimServer => Ok(commands::sim_server()),
        Command::Census(a) => commands::census(&a),
        Command::Report(a) => Ok(tools::show(&a)?),
        Command::Merge(a) => Ok(tools::merge(&a)?),
        Command::Zoo(a) => commands::zoo::zoo(a, &cancel),
    };
    if harness {
        crate::runner::warm::shutdown();
        crate::sys::kill_descendants();
    }
    out
}
