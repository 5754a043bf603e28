//! The zoo hunt: the harness side of the bug zoo. [`hunt`] runs every mutant
//! of the simulated trainer ([`crate::sim::mutant`]) on its scenario
//! (`scenarios/zoo-<mutant>.toml`), shrinks what it finds, and checks that
//! the clean trainer passes; [`table`] prints the result.

pub mod hunt;
pub mod table;
