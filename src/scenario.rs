//! Scenario files: TOML that names the layouts, the simulated trainer's
//! settings, the crash plan and the verdict expected. A malformed file gets an
//! error naming file, line and field, and nothing runs.
//!
//! ```
//! use crashpoint::scenario::Scenario;
//! use crashpoint::verdict::Expect;
//! let s = Scenario::parse("demo.toml", r#"
//! layouts = ["relative", "nested"]
//! max_steps = 10
//! [trainer]
//! every_n_steps = 2
//! [crash]
//! points = 8
//! budget = "30s"
//! "#).unwrap();
//! assert_eq!(s.layouts.len(), 2);
//! assert_eq!(s.budget, Some(std::time::Duration::from_secs(30)));
//! assert_eq!(s.expect, Expect::Pass);
//!
//! let err = Scenario::parse("bad.toml", "layouts = [\"sideways\"]\n").unwrap_err();
//! assert!(err.to_string().starts_with("bad.toml:1:"), "{err}");
//! assert!(err.to_string().contains("unknown layout `sideways`"));
//! ```

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::campaign::Campaign;
use crate::fault::{Fault, FaultModel};
use crate::inject::{CrashPlan, Mode, Selection};
use crate::layout::Layout;
use crate::oracle::ResumeMode;
use crate::oracle::{Target, Tracing};
use crate::record::Engine;
use crate::runner::Subject;
use crate::sim::Mutant;
use crate::sim::SimSettings;
use crate::verdict::{Expect, FailureKind};
use std::ffi::OsString;
use std::time::Duration;

/// Every `*.toml` file in `dir`, sorted by name.
pub fn files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// A parsed, validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The file it came from.
    pub path: PathBuf,
    /// Its name (the file stem).
    pub name: String,
    /// One line saying what it checks.
    pub description: String,
    /// The layouts it runs in.
    pub layouts: Vec<Layout>,
    /// `CRASHPOINT_MAX_STEPS`.
    pub max_steps: u64,
    /// `CRASHPOINT_SEED`.
    pub seed: u64,
    /// What resume runs are given.
    pub resume: ResumeMode,
    /// The simulated trainer's settings (mutants included).
    pub trainer: SimSettings,
    /// How crashes are placed.
    pub mode: Mode,
    /// Which first crash points.
    pub selection: Selection,
    /// Crashes per case.
    pub crashes: u32,
    /// The seed that draws crash points.
    pub crash_seed: u64,
    /// How the runs of a case are carried out (`engine = "kill-each"`).
    pub engine: Engine,
    /// Per-run time limit in seconds, if set.
    pub timeout_secs: Option<u64>,
    /// A time budget for the cases (`budget = "10m"`), if set.
    pub budget: Option<Duration>,
    /// The fault models it runs under, each a campaign of its own (`fault =
    /// "power-loss"` or `fault = ["kill", "power-loss"]`; default kill).
    pub faults: Vec<FaultModel>,
    /// The verdict expected.
    pub expect: Expect,
}

/// A scenario file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// The file is malformed.
    #[error("{path}:{line}:{column}: field `{field}`: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The field (dotted path), or `-` when the error is not about one.
        field: String,
        /// What is wrong and what was expected.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    description: Option<String>,
    layouts: Option<Spanned<Vec<Spanned<String>>>>,
    max_steps: Option<Spanned<u64>>,
    seed: Option<u64>,
    resume: Option<Spanned<String>>,
    mutant: Option<Spanned<String>>,
    timeout_secs: Option<Spanned<u64>>,
    budget: Option<Spanned<String>>,
    trainer: Option<Spanned<SimSettings>>,
    crash: Option<RawCrash>,
    fault: Option<Spanned<toml::Value>>,
    states: Option<Spanned<u64>>,
    expect: Option<RawExpect>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCrash {
    mode: Option<Mode>,
    engine: Option<Engine>,
    points: Option<Spanned<toml::Value>>,
    crashes: Option<Spanned<u32>>,
    seed: Option<u64>,
    budget: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    verdict: Spanned<String>,
    #[serde(default)]
    kinds: Vec<Spanned<String>>,
}

/// Byte offset to 1-based (line, column).
fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

/// The dotted name of the key written on `line` (1-based), with its table.
fn field_at(src: &str, line: usize) -> String {
    let mut table = String::new();
    for (i, l) in src.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') && !t.starts_with("[[") {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
        if i + 1 == line {
            if let Some((key, _)) = t.split_once('=') {
                let key = key.trim().trim_matches('"');
                return if table.is_empty() {
                    key.to_string()
                } else {
                    format!("{table}.{key}")
                };
            }
            return if table.is_empty() { "-".into() } else { table };
        }
    }
    "-".into()
}

impl Scenario {
    /// Reads and validates the scenario at `path`.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let src = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut s = Scenario::parse(&path.display().to_string(), &src)?;
        s.path = path.to_path_buf();
        Ok(s)
    }

    /// Parses and validates scenario text; `name` is used in messages and as
    /// the scenario's name (its file stem).
    pub fn parse(name: &str, src: &str) -> Result<Scenario, ScenarioError> {
        let err = |span: Range<usize>, field: &str, message: String| {
            let (line, column) = line_col(src, span.start);
            ScenarioError::Invalid {
                path: name.to_string(),
                line,
                column,
                field: field.to_string(),
                message,
            }
        };
        let raw: Raw = toml::from_str(src).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let (line, _) = line_col(src, span.start);
            err(span, &field_at(src, line), e.message().to_string())
        })?;
        let mut layouts = Vec::new();
        match &raw.layouts {
            None => layouts.extend(Layout::ALL),
            Some(list) => {
                if list.get_ref().is_empty() {
                    return Err(err(
                        list.span(),
                        "layouts",
                        "needs at least one layout".into(),
                    ));
                }
                for l in list.get_ref() {
                    let layout = l
                        .get_ref()
                        .parse::<Layout>()
                        .map_err(|e| err(l.span(), "layouts", e.to_string()))?;
                    if !layouts.contains(&layout) {
                        layouts.push(layout);
                    }
                }
            }
        }
        let max_steps = match &raw.max_steps {
            Some(m) if *m.get_ref() == 0 => {
                return Err(err(m.span(), "max_steps", "must be at least 1".into()))
            }
            Some(m) => *m.get_ref(),
            None => 20,
        };
        let resume = match &raw.resume {
            None => ResumeMode::Path,
            Some(r) => match r.get_ref().as_str() {
                "" => {
                    return Err(err(
                        r.span(),
                        "resume",
                        "expected path, last, best, newest or a file name".into(),
                    ))
                }
                f if f.contains('/') => {
                    return Err(err(
                        r.span(),
                        "resume",
                        "a file name inside the checkpoint directory, without `/`".into(),
                    ))
                }
                f => ResumeMode::parse(f),
            },
        };
        let mut trainer = match raw.trainer {
            Some(t) => {
                let span = t.span();
                let t = t.into_inner();
                if let Some((field, problem)) = t.problem() {
                    return Err(err(span, &format!("trainer.{field}"), problem));
                }
                t
            }
            None => SimSettings::default(),
        };
        if let Some(m) = &raw.mutant {
            let mutant: Mutant =
                m.get_ref()
                    .parse()
                    .map_err(|e: crate::sim::mutant::UnknownMutant| {
                        err(m.span(), "mutant", e.to_string())
                    })?;
            trainer.mutants.push(mutant);
        }
        let crash = raw.crash.unwrap_or(RawCrash {
            mode: None,
            engine: None,
            points: None,
            crashes: None,
            seed: None,
            budget: None,
        });
        let selection = match &crash.points {
            None => Selection::All,
            Some(p) => match p.get_ref() {
                toml::Value::String(s) if s == "all" => Selection::All,
                toml::Value::Integer(n) if *n > 0 => Selection::Sample(*n as usize),
                other => {
                    return Err(err(
                        p.span(),
                        "crash.points",
                        format!("expected \"all\" or a positive number of points, found {other}"),
                    ))
                }
            },
        };
        let crashes = match &crash.crashes {
            Some(c) if *c.get_ref() == 0 => {
                return Err(err(c.span(), "crash.crashes", "must be at least 1".into()))
            }
            Some(c) => *c.get_ref(),
            None => 1,
        };
        let timeout_secs = match &raw.timeout_secs {
            Some(t) if *t.get_ref() == 0 => {
                return Err(err(t.span(), "timeout_secs", "must be at least 1".into()))
            }
            t => t.as_ref().map(|t| *t.get_ref()),
        };
        let mut budget = None;
        for (field, b) in [("budget", &raw.budget), ("crash.budget", &crash.budget)] {
            if let Some(b) = b {
                if budget.is_some() {
                    return Err(err(
                        b.span(),
                        field,
                        "give the budget once, in [crash] or at the top".into(),
                    ));
                }
                budget = Some(
                    crate::inject::budget::parse_duration(b.get_ref())
                        .map_err(|m| err(b.span(), field, m))?,
                );
            }
        }
        let mode = crash.mode.unwrap_or(Mode::Op);
        let mut faults: Vec<FaultModel> = Vec::new();
        let states = raw.states.as_ref().map(|n| *n.get_ref() as usize);
        if let Some(f) = &raw.fault {
            let names: Vec<&toml::Value> = match f.get_ref() {
                toml::Value::Array(list) if !list.is_empty() => list.iter().collect(),
                toml::Value::String(_) => vec![f.get_ref()],
                other => {
                    return Err(err(
                        f.span(),
                        "fault",
                        format!(
                            "expected \"kill\", \"power-loss\" or a list of them, found {other}"
                        ),
                    ))
                }
            };
            for v in names {
                let fault = match v {
                    toml::Value::String(name) => name
                        .parse::<Fault>()
                        .map_err(|e| err(f.span(), "fault", e.to_string()))?,
                    other => {
                        return Err(err(
                            f.span(),
                            "fault",
                            format!("expected a fault model name, found {other}"),
                        ))
                    }
                };
                let model = match fault {
                    Fault::Kill => FaultModel::KILL,
                    Fault::PowerLoss => FaultModel::power_loss(states.unwrap_or(0)),
                };
                if !faults.contains(&model) {
                    faults.push(model);
                }
            }
        }
        if faults.is_empty() {
            faults.push(FaultModel::KILL);
        }
        let power = faults.iter().any(FaultModel::is_power_loss);
        if let (Some(n), false) = (&raw.states, power) {
            return Err(err(
                n.span(),
                "states",
                "states goes with fault = \"power-loss\"".into(),
            ));
        }
        if let (Some(f), true, Mode::Time) = (&raw.fault, power, mode) {
            return Err(err(
                f.span(),
                "fault",
                "power-loss needs crash.mode = \"op\" or \"syscall\": its states are built from the traced calls".into(),
            ));
        }
        let expect = match raw.expect {
            None => Expect::Pass,
            Some(e) => {
                let mut kinds = Vec::new();
                for k in &e.kinds {
                    kinds.push(
                        k.get_ref()
                            .parse::<FailureKind>()
                            .map_err(|m| err(k.span(), "expect.kinds", m))?,
                    );
                }
                match e.verdict.get_ref().as_str() {
                    "pass" if kinds.is_empty() => Expect::Pass,
                    "pass" => {
                        return Err(err(
                            e.verdict.span(),
                            "expect.kinds",
                            "kinds go with verdict = \"fail\"".into(),
                        ))
                    }
                    "fail" => Expect::Fail(kinds),
                    other => {
                        return Err(err(
                            e.verdict.span(),
                            "expect.verdict",
                            format!("expected \"pass\" or \"fail\", found \"{other}\""),
                        ))
                    }
                }
            }
        };
        let stem = Path::new(name)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.to_string());
        Ok(Scenario {
            path: PathBuf::from(name),
            name: stem,
            description: raw.description.unwrap_or_default(),
            layouts,
            max_steps,
            seed: raw.seed.unwrap_or(0),
            resume,
            trainer,
            mode,
            selection,
            crashes,
            crash_seed: crash.seed.unwrap_or(0),
            engine: crash.engine.unwrap_or_default(),
            timeout_secs,
            budget,
            faults,
            expect,
        })
    }
}

impl Scenario {
    /// The campaign of this scenario: the simulated trainer `sim_exe sim ...`
    /// (the `crashpoint` binary) with the scenario's settings.
    pub fn campaign(&self, sim_exe: &Path, jobs: usize, only: Option<CrashPlan>) -> Campaign {
        let first = self.faults.first().copied().unwrap_or_default();
        self.campaign_for(first, sim_exe, jobs, only)
    }

    /// The campaign of this scenario under one of its fault models.
    pub fn campaign_for(
        &self,
        fault: FaultModel,
        sim_exe: &Path,
        jobs: usize,
        only: Option<CrashPlan>,
    ) -> Campaign {
        let s = self;
        let mut args: Vec<OsString> = vec!["sim".into()];
        args.extend(s.trainer.to_args().into_iter().map(OsString::from));
        Campaign {
            target: Target {
                subject: Subject {
                    program: sim_exe.as_os_str().to_os_string(),
                    args,
                    sim: true,
                    preload: Vec::new(),
                },
                mode: s.mode,
                max_steps: s.max_steps,
                seed: s.seed,
                resume: s.resume.clone(),
                timeout: s.timeout_secs.map(Duration::from_secs),
                // The simulated trainer is the harness's own program: traced
                // only where its crash points need it.
                tracing: Tracing::Needed,
                fault,
            },
            layouts: s.layouts.clone(),
            selection: s.selection,
            crashes: s.crashes,
            crash_seed: s.crash_seed,
            engine: s.engine,
            only,
            jobs,
            budget: s.budget,
            partition: crate::partition::Partition::WHOLE,
        }
    }
}
