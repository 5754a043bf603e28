//! The simulated trainer as a program speaking the subject protocol v1:
//! environment in, `saved` events and a state file out. The harness drives it
//! as a separate process, exactly as it drives an external trainer; on top of
//! the protocol it takes an `op` crash point (`CRASHPOINT_OP_CRASH`) and
//! writes its operation census (`CRASHPOINT_OP_LOG`).

use std::io::Write;
use std::path::Path;

use crate::census::{Phase, PhaseKind};
use crate::protocol::{self, StateFile, SubjectEnv};
use crate::sim::ckpt::io::{Io, OpCrash};
use crate::sim::ckpt::policy::{Mode, ModelCheckpoint, Pointer, PolicyConfig, SaveLast, Shape};
use crate::sim::ckpt::resume::{self, ResumeArg};
use crate::sim::ckpt::CkptError;
use crate::sim::{Mutant, Mutants};

use super::model::{Dataset, SimConfig, SimState};

/// The simulated trainer's settings: model size and checkpoint policy, and
/// the mutants switched on. The same struct is the `crashpoint sim` command
/// line and the `[trainer]` table of a scenario file.
///
/// ```
/// let s = crashpoint::sim::SimSettings::default();
/// assert_eq!(s.to_args(), Vec::<String>::new());
/// ```
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimSettings {
    /// Number of f32 parameters.
    #[arg(long, default_value_t = 1024)]
    pub params: usize,
    /// Samples in the synthetic dataset.
    #[arg(long, default_value_t = 64)]
    pub dataset: usize,
    /// Samples per step.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Save every n global steps (0: never by steps).
    #[arg(long, default_value_t = 5)]
    pub every_n_steps: u64,
    /// Save at the end of every n-th epoch (0: never by epochs).
    #[arg(long, default_value_t = 0)]
    pub every_n_epochs: u64,
    /// Checkpoints to keep: -1 all, 0 none, k the best k.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub save_top_k: i64,
    /// Rank checkpoints by the training loss (min or max); absent: by recency.
    #[arg(long)]
    pub monitor: Option<Mode>,
    /// How last.ckpt is kept: link, copy or off (`pointer` says the same and more).
    #[arg(long, value_enum, default_value_t = SaveLast::Link)]
    pub save_last: SaveLast,
    /// One file per checkpoint, or a directory checkpoint-<step>/ of part files.
    #[arg(long, value_enum, default_value_t = Shape::File)]
    pub layout: Shape,
    /// What points at the newest checkpoint: link or copy (last.ckpt), latest
    /// (a file naming it) or none (resume scans); default: from save_last.
    #[arg(long, value_enum)]
    pub pointer: Option<Pointer>,
    /// Keep only the newest N checkpoint directories by step (0: all).
    #[arg(long, default_value_t = 0)]
    pub save_total_limit: u64,
    /// File name template: {epoch}, {step}, {loss}, {loss:.4f}.
    #[arg(long, default_value = "{step}")]
    pub filename: String,
    /// Do not insert `name=` before placeholder values.
    #[arg(long)]
    pub no_auto_insert_metric_name: bool,
    /// Switch on a bug of the zoo (repeatable).
    #[arg(long = "mutant")]
    pub mutants: Vec<Mutant>,
}

impl Default for SimSettings {
    fn default() -> Self {
        let cfg = SimConfig::default();
        let pol = PolicyConfig::default();
        SimSettings {
            params: cfg.params,
            dataset: cfg.dataset,
            batch: cfg.batch,
            every_n_steps: pol.every_n_steps,
            every_n_epochs: pol.every_n_epochs,
            save_top_k: pol.save_top_k,
            monitor: pol.monitor,
            save_last: SaveLast::Link,
            layout: pol.shape,
            pointer: None,
            save_total_limit: pol.save_total_limit,
            filename: pol.filename,
            no_auto_insert_metric_name: !pol.auto_insert_metric_name,
            mutants: Vec::new(),
        }
    }
}

impl SimSettings {
    /// The model configuration.
    pub fn model(&self) -> SimConfig {
        SimConfig {
            params: self.params,
            dataset: self.dataset,
            batch: self.batch,
            ..SimConfig::default()
        }
    }

    /// The checkpoint policy.
    pub fn policy(&self) -> PolicyConfig {
        PolicyConfig {
            every_n_steps: self.every_n_steps,
            every_n_epochs: self.every_n_epochs,
            save_top_k: self.save_top_k,
            monitor: self.monitor,
            pointer: self.pointer(),
            shape: self.layout,
            save_total_limit: self.save_total_limit,
            filename: self.filename.clone(),
            auto_insert_metric_name: !self.no_auto_insert_metric_name,
        }
    }

    /// What points at the newest checkpoint: `pointer`, else what `save_last` says.
    pub fn pointer(&self) -> Pointer {
        self.pointer.unwrap_or(self.save_last.into())
    }

    /// What is wrong with these settings, if anything: (field, problem).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.pointer.is_some() && self.save_last != SaveLast::Link {
            return Some((
                "pointer",
                "give either pointer or save_last, not both".into(),
            ));
        }
        if self.save_top_k == 0 && !matches!(self.pointer(), Pointer::Link | Pointer::Copy) {
            return Some((
                "save_top_k",
                "0 keeps nothing but last.ckpt; it needs pointer link or copy".into(),
            ));
        }
        if self.save_total_limit > 0 {
            if self.layout != Shape::Dir {
                return Some((
                    "save_total_limit",
                    "rotates checkpoint directories: it needs layout = \"dir\"".into(),
                ));
            }
            if self.save_top_k != -1 || self.monitor.is_some() {
                return Some((
                    "save_total_limit",
                    "give either save_total_limit or save_top_k/monitor, not both".into(),
                ));
            }
        }
        if self.layout == Shape::Dir && self.filename != SimSettings::default().filename {
            return Some((
                "filename",
                "directory checkpoints are named checkpoint-<step>; the template is for files"
                    .into(),
            ));
        }
        if self.params == 0 {
            return Some(("params", "must be at least 1".into()));
        }
        if self.dataset == 0 {
            return Some(("dataset", "must be at least 1".into()));
        }
        if self.batch == 0 || self.batch > self.dataset {
            return Some((
                "batch",
                format!("must be between 1 and dataset ({})", self.dataset),
            ));
        }
        if self.save_top_k < -1 {
            return Some(("save_top_k", "must be -1, 0 or a positive number".into()));
        }
        if self.filename.is_empty() || self.filename.contains('/') {
            return Some(("filename", "must be a non-empty name without `/`".into()));
        }
        None
    }

    /// The `crashpoint sim` arguments that give these settings; defaults are left out.
    pub fn to_args(&self) -> Vec<String> {
        let d = SimSettings::default();
        let mut a = Vec::new();
        let mut push = |flag: &str, v: String| {
            a.push(format!("--{flag}"));
            a.push(v);
        };
        if self.params != d.params {
            push("params", self.params.to_string());
        }
        if self.dataset != d.dataset {
            push("dataset", self.dataset.to_string());
        }
        if self.batch != d.batch {
            push("batch", self.batch.to_string());
        }
        if self.every_n_steps != d.every_n_steps {
            push("every-n-steps", self.every_n_steps.to_string());
        }
        if self.every_n_epochs != d.every_n_epochs {
            push("every-n-epochs", self.every_n_epochs.to_string());
        }
        if self.save_top_k != d.save_top_k {
            push("save-top-k", self.save_top_k.to_string());
        }
        if let Some(m) = self.monitor {
            push("monitor", value_name(m));
        }
        if self.save_last != d.save_last {
            push("save-last", value_name(self.save_last));
        }
        if self.layout != d.layout {
            push("layout", value_name(self.layout));
        }
        if let Some(p) = self.pointer {
            push("pointer", value_name(p));
        }
        if self.save_total_limit != d.save_total_limit {
            push("save-total-limit", self.save_total_limit.to_string());
        }
        if self.filename != d.filename {
            push("filename", self.filename.clone());
        }
        for m in &self.mutants {
            push("mutant", m.name().to_string());
        }
        if self.no_auto_insert_metric_name {
            a.push("--no-auto-insert-metric-name".into());
        }
        a
    }
}

fn value_name<T: clap::ValueEnum>(v: T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

/// How a run of the simulated trainer ended badly.
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    /// The protocol environment is missing or malformed.
    #[error(transparent)]
    Env(#[from] protocol::EnvError),
    /// Resuming was refused or a save failed.
    #[error(transparent)]
    Ckpt(#[from] CkptError),
    /// The state or events file could not be written.
    #[error("cannot write {0}: {1}")]
    Output(String, std::io::Error),
}

impl TrainerError {
    /// The exit status: 2 for a misconfigured run, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            TrainerError::Env(_) => 2,
            _ => 1,
        }
    }
}

/// `crashpoint sim`: checks `settings`, runs the trainer as [`run`] does and
/// returns the exit status (0 when the state file was written, 2 for
/// settings or an environment that cannot be used, 1 otherwise), its
/// error printed on stderr.
pub fn main(settings: &SimSettings, get: impl Fn(&str) -> Option<String>) -> i32 {
    if let Some((field, problem)) = settings.problem() {
        eprintln!("error: --{}: {problem}", field.replace('_', "-"));
        return 2;
    }
    match run(settings, get) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// Runs the simulated trainer under the protocol, reading the environment
/// through `get`. Returns normally only when the state file was written.
pub fn run(
    settings: &SimSettings,
    get: impl Fn(&str) -> Option<String>,
) -> Result<(), TrainerError> {
    let env = SubjectEnv::read(&get)?;
    let crash = match get(protocol::OP_CRASH) {
        Some(v) => Some(v.parse::<OpCrash>().map_err(|problem| protocol::EnvError {
            var: protocol::OP_CRASH,
            problem,
        })?),
        None => None,
    };
    let op_log = get(protocol::OP_LOG);
    let mut io = Io::new(crash, op_log.is_some());
    if get(protocol::OP_PAUSE).as_deref() == Some("1") {
        io = io.pausing();
    }
    let result = train(settings, &env, &mut io);
    if let Some(log) = op_log {
        let lines: String = io.records().iter().map(|r| r.to_line() + "\n").collect();
        std::fs::write(&log, lines).map_err(|e| TrainerError::Output(log.clone(), e))?;
    }
    result
}

fn train(settings: &SimSettings, env: &SubjectEnv, io: &mut Io) -> Result<(), TrainerError> {
    let mutants = Mutants::new(settings.mutants.iter().copied());
    let cfg = settings.model();
    let data = Dataset::generate(&cfg, env.seed);
    let fresh = SimState::init(&cfg, env.seed);
    let mut state = fresh.clone();
    let mut policy = ModelCheckpoint::new(settings.policy(), env.ckpt_dir.clone(), mutants.clone());
    let mut resumed_from = 0;
    io.set_phase(Phase::of(PhaseKind::Start));
    policy.clean_stale(io)?;
    if let Some(arg) = &env.resume {
        io.set_phase(Phase::of(PhaseKind::Resume));
        match resume::resolve(io, &ResumeArg::parse(arg), &env.ckpt_dir, &mutants) {
            Err(CkptError::IsDirectory(_)) if mutants.has(Mutant::DirAsResumePath) => {}
            Err(e) => return Err(e.into()),
            Ok(found) => {
                let ck = resume::load(io, &found.checkpoint)?;
                resumed_from = ck.state.global_step;
                state = restore(ck.state, &fresh, &mutants);
                policy.resume(io, ck.topk, found.named.as_deref(), &found.checkpoint)?;
                append_event(env, &format!("resumed {resumed_from}"))?;
                append_event(env, &state_event(&state))?;
            }
        }
    }
    // The trainer's own loop counter; it equals the global step unless the
    // optimizer is stepped behind the framework's back.
    let mut steps = state.global_step;
    // `overshoot-at-end`: a run resumed at the limit takes one step before
    // it looks at the limit.
    let mut overshoot =
        mutants.has(Mutant::OvershootAtEnd) && resumed_from > 0 && steps >= env.max_steps;
    while steps < env.max_steps || std::mem::take(&mut overshoot) {
        let epoch_ended = state.train_step(&cfg, &data);
        steps += 1;
        if mutants.has(Mutant::ManualStepNoCount) {
            state.global_step -= 1;
        }
        append_event(env, &state_event(&state))?;
        if let Some(path) = policy.on_step_end(io, &state, epoch_ended)? {
            append_event(
                env,
                &format!("saved {} {}", state.global_step, path.display()),
            )?;
        }
    }
    let out = StateFile {
        step: steps,
        digest: state.digest(),
        resumed_from_step: Some(resumed_from),
        fields: state
            .part_digests()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    };
    let json = serde_json::to_string(&out).unwrap_or_default();
    std::fs::write(&env.state_out, json + "\n")
        .map_err(|e| TrainerError::Output(env.state_out.display().to_string(), e))
}

/// The state a resumed run continues from: the checkpoint's, except for
/// what a mutant forgets to restore.
fn restore(saved: SimState, fresh: &SimState, mutants: &Mutants) -> SimState {
    let mut s = saved;
    if mutants.has(Mutant::LoadNotApplied) {
        s.params = fresh.params.clone();
        s.optimizer = fresh.optimizer.clone();
        s.scheduler = fresh.scheduler.clone();
        s.rng = fresh.rng.clone();
    }
    if mutants.has(Mutant::NoOptimizerState) {
        s.optimizer = fresh.optimizer.clone();
    }
    if mutants.has(Mutant::NoRngState) {
        s.rng = fresh.rng.clone();
    }
    if mutants.has(Mutant::NoDataPosition) {
        s.data.pos = 0;
    }
    if mutants.has(Mutant::NoSchedulerState) {
        s.scheduler = fresh.scheduler.clone();
    }
    if mutants.has(Mutant::StepOffByOne) {
        s.global_step += 1;
    }
    s
}

/// The `state` event: per-part digests of `state` at its step.
fn state_event(state: &SimState) -> String {
    let parts: Vec<String> = state
        .part_digests()
        .into_iter()
        .map(|(k, v)| format!("{k}={}", &v[..16]))
        .collect();
    format!("state {} {}", state.global_step, parts.join(" "))
}

fn append_event(env: &SubjectEnv, line: &str) -> Result<(), TrainerError> {
    let Some(path) = &env.events else {
        return Ok(());
    };
    let write = |p: &Path| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)?;
        f.write_all(format!("{line}\n").as_bytes())
    };
    write(path).map_err(|e| TrainerError::Output(path.display().to_string(), e))
}
