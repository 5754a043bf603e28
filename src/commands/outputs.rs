//! The flags `run` and `certify` share (workers, engine, report files,
//! partitions, `--keep-failed`, `--quiet`) and what they do around a
//! campaign: report paths checked before anything runs, the reporters fed
//! while it runs, the files written after.

use std::path::{Path, PathBuf};

use clap::Args;

use super::tools::ReportFiles;
use super::CommandError;
use crate::report::Report;

/// Flags `run` and `certify` share: parallel workers and report files.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// How the runs of a case are carried out: `kill-each` kills one run per
    /// case at its crash point; `record` records the crash states once, in
    /// one run paused at each point, then materialises each and resumes
    /// (system-call points; other points are killed one by one). For `run`,
    /// overrides the scenarios' `engine`.
    #[arg(long, value_enum)]
    pub engine: Option<crate::record::Engine>,
    /// Parallel workers (default: the number of cores).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub jobs: Option<usize>,
    /// The report files.
    #[command(flatten)]
    pub files: ReportFiles,
    /// Run only share I of N of every layout's cases (N machines split a sweep; see `merge`).
    #[arg(long, value_name = "I/N", default_value = "1/1")]
    pub partition: crate::partition::Partition,
    /// Keep the directory of each failing case in DIR/<layout>/<point> (created if missing).
    #[arg(long, value_name = "DIR")]
    pub keep_failed: Option<PathBuf>,
    /// No progress on stderr (by default a bar on a terminal, else a line every 10 s or 10 %).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Writes the report files the flags ask for.
pub fn write_reports(out: &OutputArgs, reports: &[&Report]) -> Result<(), CommandError> {
    Ok(out.files.write(reports)?)
}

/// The reporters beside a campaign, for these flags.
pub fn live(out: &OutputArgs) -> Result<crate::live::Live, CommandError> {
    for (flag, p) in [
        ("--json", &out.files.json),
        ("--junit", &out.files.junit),
        ("--html", &out.files.html),
    ] {
        check_report_path(flag, p)?;
    }
    crate::live::Live::new(
        out.quiet,
        out.files.json.as_deref(),
        out.keep_failed.as_deref(),
    )
    .map_err(|source| CommandError::Write {
        path: out
            .keep_failed
            .as_ref()
            .or(out.files.json.as_ref())
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        source,
    })
}

/// Says where `--keep-failed` put the failing cases.
pub fn print_kept(live: &crate::live::Live) {
    if let Some(k) = &live.keep {
        let kept = k.kept();
        if let Some(first) = kept.first() {
            println!(
                "kept {} failing cases, e.g. {}",
                kept.len(),
                first.display()
            );
        }
        for e in k.errors() {
            println!("warning: --keep-failed: {e}");
        }
    }
}

/// Refuses a report path that cannot be written, before anything runs.
/// Refuses a report path that cannot be written, before anything runs.
pub fn check_report_path(flag: &str, path: &Option<PathBuf>) -> Result<(), CommandError> {
    let Some(p) = path else { return Ok(()) };
    let bad = |why: &str| Err(CommandError::Flag(format!("{flag} {}: {why}", p.display())));
    if p.is_dir() {
        return bad("is a directory");
    }
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return bad("its directory does not exist");
    }
    Ok(())
}
