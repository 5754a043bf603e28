//! # crashpoint
//!
//! Certifies that a training program can be killed at any moment while it
//! saves, relinks or resumes a checkpoint, and still finishes with exactly the
//! state an uninterrupted run reaches, bit for bit.
//!
//! (The full guide is written below, once the harness modules exist.)

pub mod campaign;
pub mod ckpt;
pub mod cli;
pub mod codec;
pub mod inject;
pub mod layout;
pub mod observe;
pub mod oracle;
pub mod protocol;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod sim;
pub mod sys;
pub mod zoo;
