//! The commands around a run: `census` (the numbered crash points of a
//! subject, with their sites), `report` (a JSON report read back: text,
//! HTML, JUnit) and `merge` (the partitions of one run joined). The command
//! line's `cli` parses and calls these; they print and return an exit status.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::inject::Mode;
use crate::layout::Layout;
use crate::oracle::{ResumeMode, Target};
use crate::report::{self, json, merge, Report};
use crate::runner::Subject;
use crate::scenario::Scenario;

/// Why a tool could not do its job (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// A JSON report cannot be read.
    #[error(transparent)]
    Read(#[from] json::ReadError),
    /// Reports that are not partitions of one run.
    #[error(transparent)]
    Merge(#[from] merge::MergeError),
    /// A report could not be serialised.
    #[error(transparent)]
    Report(#[from] report::ReportError),
    /// A scenario file is malformed.
    #[error(transparent)]
    Scenario(#[from] crate::scenario::ScenarioError),
    /// The subject's reference runs failed.
    #[error(transparent)]
    Reference(#[from] crate::oracle::ReferenceError),
    /// A file could not be written, or a directory made.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// A flag is wrong.
    #[error("{0}")]
    Flag(String),
}

/// Flags of `crashpoint census`.
#[derive(Debug, Args)]
pub struct CensusArgs {
    /// Comma-separated layouts (default: relative, or the scenario's).
    #[arg(long, value_delimiter = ',')]
    pub layouts: Vec<Layout>,
    /// The simulated trainer as a scenario file sets it up: its `op` census.
    #[arg(long, conflicts_with = "command")]
    pub scenario: Option<PathBuf>,
    /// CRASHPOINT_MAX_STEPS (default 20, or the scenario's).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_steps: Option<u64>,
    /// CRASHPOINT_SEED.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The subject's command (traced: its file-mutating system calls).
    #[arg(last = true, num_args = 1..)]
    pub command: Vec<OsString>,
}

/// Flags of `crashpoint report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A JSON report written by `--json` (run, certify or merge).
    pub result: PathBuf,
    /// Write the HTML page of the crash windows here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Write JUnit XML here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
}

/// Flags of `crashpoint merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The JSON reports of the partitions (`--partition I/N --json FILE`).
    #[arg(required = true, num_args = 1..)]
    pub results: Vec<PathBuf>,
    /// The joined report's files.
    #[command(flatten)]
    pub files: ReportFiles,
}

/// The report files a command writes: `--json`, `--junit`, `--html`.
#[derive(Debug, Default, Args)]
pub struct ReportFiles {
    /// Write the JSON report here (`run` and `certify` also stream its cases
    /// as JSON Lines beside it).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a JUnit XML report here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write the HTML page of the crash windows here (one self-contained file).
    #[arg(long)]
    pub html: Option<PathBuf>,
}

impl ReportFiles {
    /// Writes the files asked for.
    pub fn write(&self, reports: &[&Report]) -> Result<(), ToolError> {
        write_files(
            self.json.as_deref(),
            self.junit.as_deref(),
            self.html.as_deref(),
            reports,
        )
    }
}

/// `w` made absolute when it names an existing file relative to the
/// current directory (a script path); any other word as it is.
pub fn absolute_if_exists(w: &OsString) -> OsString {
    let p = Path::new(w);
    if p.is_relative()
        && p.components().count() > 0
        && !w.to_string_lossy().starts_with('-')
        && p.is_file()
    {
        if let Ok(abs) = std::path::absolute(p) {
            return abs.into_os_string();
        }
    }
    w.clone()
}

/// The subject of an external command: each run starts inside its
/// sandbox, so words naming existing files relative to here are made
/// absolute first.
pub fn external_subject(command: &[OsString]) -> Subject {
    let resolved: Vec<OsString> = command.iter().map(absolute_if_exists).collect();
    Subject {
        program: resolved.first().cloned().unwrap_or_default(),
        args: resolved.get(1..).unwrap_or_default().to_vec(),
        sim: false,
        preload: Vec::new(),
    }
}

/// Writes the report files asked for.
pub fn write_files(
    json_path: Option<&Path>,
    junit: Option<&Path>,
    html: Option<&Path>,
    reports: &[&Report],
) -> Result<(), ToolError> {
    if let Some(p) = json_path {
        json::write(p, reports)?;
    }
    if let Some(p) = junit {
        report::junit::write(p, reports)?;
    }
    if let Some(p) = html {
        report::html::write(p, reports)?;
    }
    Ok(())
}

/// `crashpoint census`: the numbered census of each layout, with sites.
pub fn census(a: &CensusArgs, sim_exe: &Path, work: &Path) -> Result<i32, ToolError> {
    let (target, mut layouts) = match (&a.scenario, a.command.is_empty()) {
        (Some(f), _) => {
            let mut s = Scenario::load(f)?;
            if let Some(n) = a.max_steps {
                s.max_steps = n;
            }
            let c = s.campaign(sim_exe, 1, None);
            (c.target, s.layouts.clone())
        }
        (None, true) => {
            return Err(ToolError::Flag(
                "census of what? give a scenario (--scenario FILE) or a command after --".into(),
            ))
        }
        (None, false) => {
            if !crate::trace::tracing_available() {
                return Err(ToolError::Flag(
                    "a census of a command needs system-call tracing (seccomp + ptrace), refused on this machine".into(),
                ));
            }
            let target = Target {
                subject: external_subject(&a.command),
                mode: Mode::Syscall,
                max_steps: a.max_steps.unwrap_or(20),
                seed: a.seed,
                // The census resumes nothing: a keyword, which names no file
                // the reference would have to find.
                resume: ResumeMode::Last,
                timeout: None,
                tracing: crate::oracle::Tracing::Needed,
                fault: crate::fault::FaultModel::KILL,
            };
            (target, vec![Layout::Relative])
        }
    };
    if !a.layouts.is_empty() {
        layouts = a.layouts.clone();
    }
    for layout in layouts {
        let scratch = work.join(layout.name());
        std::fs::create_dir_all(&scratch).map_err(|source| ToolError::Write {
            path: scratch.display().to_string(),
            source,
        })?;
        let r = crate::oracle::reference(&target, layout, &scratch)?;
        print!("{}", report::census(layout.name(), &r.census));
        let _ = crate::workspace::remove_tree(&scratch);
    }
    Ok(0)
}

/// `crashpoint report`: a JSON report's text, and the files asked for.
/// Exit status 0 when every report in it is as expected, else 1.
pub fn show(a: &ReportArgs) -> Result<i32, ToolError> {
    let reports = json::read(&a.result)?;
    let refs: Vec<&Report> = reports.iter().collect();
    for r in &refs {
        print!("{}", report::summary(r));
    }
    write_files(None, a.junit.as_deref(), a.html.as_deref(), &refs)?;
    Ok(if refs.iter().all(|r| r.as_expected()) {
        0
    } else {
        1
    })
}

/// `crashpoint merge`: the partitions joined; its exit status is that of
/// the joined verdict: 0 when every report is as expected and no case is
/// missing (a partition not given), else 1.
pub fn merge(a: &MergeArgs) -> Result<i32, ToolError> {
    let files = a
        .results
        .iter()
        .map(|p| json::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let merged = merge::merge_files(files)?;
    let refs: Vec<&Report> = merged.iter().collect();
    let mut complete = true;
    for r in &refs {
        print!("{}", report::summary(r));
        for m in merge::missing(r) {
            println!("warning: {m}");
            complete = false;
        }
    }
    a.files.write(&refs)?;
    let ok = complete && refs.iter().all(|r| r.as_expected());
    Ok(if ok { 0 } else { 1 })
}
