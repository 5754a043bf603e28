//! The simulated trainer: a small but complete training loop ([`model`]),
//! its checkpoints ([`ckpt`]: format, numbered I/O layer, `ModelCheckpoint`-like
//! policy, resume-path resolution), the bugs it can be switched into
//! ([`mutant`]), and the program that runs it under the subject protocol
//! ([`trainer`]), with `op` crash points, and its warm-start server
//! ([`serve`]).

pub mod ckpt;
pub mod model;
pub mod mutant;
pub mod serve;
pub mod trainer;

pub use model::{Dataset, SimConfig, SimState, PARTS};
pub use mutant::{Mutant, Mutants};
pub use trainer::SimSettings;
