//! The simulated trainer: a small but complete training loop ([`model`]) and
//! the program that runs it under the subject protocol ([`trainer`]), with
//! `op` crash points and the bug zoo's mutants.

pub mod model;
pub mod trainer;

pub use model::{Dataset, SimConfig, SimState, PARTS};
pub use trainer::SimSettings;
