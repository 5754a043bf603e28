//! # crashpoint
//!
//! Certifies that a training program can be killed at any moment while it
//! saves, relinks or resumes a checkpoint, and still finishes with exactly the
//! state an uninterrupted run reaches, bit for bit.
//!
//! ## The flow
//!
//! Data goes one way, one module per stage:
//!
//! ```text
//! scenario ──► campaign: per layout, reference ──► census ──► crash plans (inject)
//!                                  │
//!        case: Sandbox (layout) ──► runner ──spawn──► subject (crashpoint sim, or any command)
//!                                  │                      ▲ killed at an op / syscall / time point
//!                                  ▼
//!                     observe (exit, state file, events, checkpoint directory)
//!                                  ▼
//!                     oracle (invariants, digest vs reference) ──► report (table, JSON, JUnit, replay)
//! ```
//!
//! * [`scenario`] parses TOML scenario files (errors name file, line and field).
//! * [`layout`] builds one path layout in a fresh sandbox.
//! * [`sim`] is the simulated trainer: its model, its checkpoints
//!   ([`sim::ckpt`]: format, numbered I/O layer, `ModelCheckpoint`-like policy,
//!   resume-path resolution) and the bugs it can be switched into
//!   ([`sim::mutant`]); [`zoo`] is the hunt that must catch every one of them.
//! * [`protocol`] is the subject protocol v1 both sides speak (pure: parse and
//!   print); [`verdict`] the failure kinds, findings and expected verdicts.
//! * [`census`] is the typed list of numbered operations where crashes can
//!   land, from the sim's I/O layer or the tracer; [`inject`] turns a census into crash plans; [`runner`] runs one process
//!   in its own process group with a watchdog ([`runner::warm`]: or forks it from a
//!   Python that imported the subject's framework once, or, for the simulated
//!   trainer, from `crashpoint sim-server`); [`observe`] reads
//!   what it left.
//! * [`oracle`] runs references and cases ([`oracle::driver`]: spawn, crash,
//!   resume until a run exits 0) and judges them ([`oracle::checks`]: pure
//!   checks on observations: invariants, what is loadable, digest, directory
//!   comparison, step accounting); [`campaign`] runs
//!   every case of a target on parallel workers (crash cases, then three
//!   misuse probes per layout); [`pool`] is the worker pool campaigns and
//!   the zoo hunt share, results in item order whatever the number of
//!   workers, and the [`pool::Cancel`] token that the termination signals
//!   cancel and every caller passes down; [`shrink`] turns a failing case into a
//!   minimal one; [`report`] prints; [`replay`] makes the shell line that
//!   reproduces a case, with the environment that selected what ran.
//! * [`power`] is the power-loss persistence model: from an ordered log of
//!   file operations, the crash states a power cut could leave.
//! * [`sys`] fences the process-control system calls; [`trace`] the
//!   seccomp and ptrace supervisor behind `syscall` crash points;
//!   [`workspace`] the directory of one harness run, locked for its whole
//!   life, and the removal of those left by dead runs.
//! * [`commands`] is what each command does, its flags as plain data:
//!   `run`, `certify`, `zoo`, `census`, `report`, `merge` and `sim` check their
//!   input, run, print and return the exit status; [`cli`] only parses the
//!   arguments and calls one of them, and `main.rs` maps errors to exit
//!   statuses.
//!
//! ## A case, by hand
//!
//! The simulated trainer is driven as a separate process, exactly like an
//! external trainer. Here it is killed half-way through the write of its
//! second checkpoint (operation 12), resumed, and compared with the
//! reference:
//!
//! ```no_run
//! use crashpoint::inject::{CrashPlan, Mode};
//! use crashpoint::layout::Layout;
//! use crashpoint::oracle::{self, ResumeMode, Target, Tracing};
//! use crashpoint::runner::Subject;
//!
//! let target = Target {
//!     subject: Subject { program: "crashpoint".into(), args: vec!["sim".into()], sim: true, preload: vec![] },
//!     mode: Mode::Op,
//!     max_steps: 20,
//!     seed: 0,
//!     resume: ResumeMode::Path,
//!     timeout: None,
//!     tracing: Tracing::Needed,
//!     fault: crashpoint::fault::FaultModel::KILL,
//! };
//! let work = tempfile::tempdir()?;
//! let reference = oracle::reference(&target, Layout::Relative, work.path())?;
//! let plan: CrashPlan = "op:12:mid".parse()?;
//! let case = oracle::run_case(&target, &reference, &plan, &work.path().join("case"))?;
//! assert!(case.passed(), "{:?}", case.findings);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! (`no_run` because a doctest has no `crashpoint` binary on its `PATH`; the
//! same case runs in `tests/properties.rs` against the built binary.)
//!
//! ## Determinism
//!
//! Training is `f32` arithmetic in a fixed order driven by one ChaCha seed, so
//! equal inputs give equal bits, and a digest over the canonical encoding of
//! the state ([`codec`]) compares whole states. Crash plans are drawn from a
//! seed too: the same seed gives the same report, and every failure carries
//! a replay command for exactly its case.
//!
//! ```
//! use crashpoint::sim::{Dataset, SimConfig, SimState};
//! let cfg = SimConfig { params: 64, ..SimConfig::default() };
//! let data = Dataset::generate(&cfg, 7);
//! let mut a = SimState::init(&cfg, 7);
//! let mut b = a.clone();
//! for _ in 0..5 { a.train_step(&cfg, &data); }
//! for _ in 0..5 { b.train_step(&cfg, &data); }
//! assert_eq!(a.digest(), b.digest());
//! ```

#![warn(missing_docs)]
// System calls that need `unsafe` are fenced in `sys` and `trace`.
#![deny(unsafe_code)]

pub mod campaign;
pub mod census;
pub mod cli;
pub mod codec;
pub mod commands;
pub mod events;
pub mod fault;
pub mod inject;
pub mod keep;
pub mod layout;
pub mod live;
pub mod observe;
pub mod oracle;
pub mod partition;
pub mod pool;
pub mod power;
pub mod progress;
pub mod protocol;
pub mod record;
pub mod replay;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod shrink;
pub mod sim;
pub mod store;
#[allow(unsafe_code)]
pub mod sys;
#[allow(unsafe_code)]
pub mod trace;
pub mod verdict;
pub mod workspace;
pub mod zoo;
