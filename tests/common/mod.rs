//! Helpers the integration tests share: the project root, the built
//! binary run from it, its output as text, and the failure kinds of a JSON
//! report. Each test file takes what it needs (`mod common;`).

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The project directory (scenarios, fixtures and examples are below it).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The built `crashpoint`, to be run from the project directory.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_crashpoint"));
    c.current_dir(root());
    c
}

/// Runs `crashpoint ARGS` from the project directory.
pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("crashpoint starts")
}

/// What a run printed, stdout then stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The failure kinds of a JSON report, sorted, each once.
pub fn kinds(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v["failures"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["kind"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    k.sort();
    k.dedup();
    k
}

/// Runs `crashpoint certify --json FILE ARGS` from the project directory;
/// returns its output, the report (`Null` when none was written) and the
/// report's text.
pub fn certify_raw(args: &[&str]) -> (Output, serde_json::Value, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("report.json");
    let o = bin()
        .arg("certify")
        .arg("--json")
        .arg(&json)
        .args(args)
        .output()
        .expect("crashpoint starts");
    let raw = std::fs::read_to_string(&json).unwrap_or_default();
    let v = serde_json::from_str(&raw).unwrap_or(serde_json::Value::Null);
    (o, v, raw)
}

/// [`certify_raw`] without the report's text.
pub fn certify(args: &[&str]) -> (Output, serde_json::Value) {
    let (o, v, _) = certify_raw(args);
    (o, v)
}

/// Runs `campaign` to its end in a fresh temporary directory, reporting
/// nothing, never cancelled.
pub fn run_campaign(
    campaign: &crashpoint::campaign::Campaign,
) -> Result<Vec<crashpoint::campaign::LayoutResult>, crashpoint::campaign::CampaignError> {
    let work = tempfile::tempdir().expect("tempdir");
    campaign.run(
        work.path(),
        &crashpoint::events::Silent,
        &crashpoint::pool::Cancel::new(),
    )
}
