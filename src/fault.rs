//! The fault models a verdict covers: a process kill, or a power cut.
//!
//! ```
//! use crashpoint::fault::{Fault, FaultModel};
//! assert_eq!("power-loss".parse::<Fault>(), Ok(Fault::PowerLoss));
//! assert_eq!(
//!     "power".parse::<Fault>().unwrap_err().to_string(),
//!     "unknown fault model `power`: expected `kill` or `power-loss`"
//! );
//! assert_eq!(Fault::Kill.name(), "kill");
//! let m = FaultModel { fault: Fault::PowerLoss, states: 2 };
//! assert_eq!(m.to_string(), "power-loss");
//! assert!("power".parse::<Fault>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

/// What happens at a crash point.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// SIGKILL: everything the subject wrote stays (the page cache keeps it).
    #[default]
    Kill,
    /// A power cut: after the SIGKILL the sandbox is rolled back to a state
    /// the disk could hold (see [`crate::power`]).
    PowerLoss,
}

impl Fault {
    /// Every fault model, in report order.
    pub const ALL: [Fault; 2] = [Fault::Kill, Fault::PowerLoss];

    /// The name used in flags, scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::PowerLoss => "power-loss",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A fault model name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault model `{0}`: expected `kill` or `power-loss`")]
pub struct UnknownFault(pub String);

impl FromStr for Fault {
    type Err = UnknownFault;
    fn from_str(s: &str) -> Result<Fault, UnknownFault> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFault(s.to_string()))
    }
}

/// The fault model of a campaign, with its parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultModel {
    /// Kill or power loss.
    pub fault: Fault,
    /// With power loss: legal disk states drawn from the seed per crash
    /// point, beyond the most pessimistic one (deduplicated; every state is
    /// tried when the window has at most this many).
    pub states: usize,
}

impl FaultModel {
    /// A process kill.
    pub const KILL: FaultModel = FaultModel {
        fault: Fault::Kill,
        states: 0,
    };

    /// A power cut with `states` more drawn states.
    pub fn power_loss(states: usize) -> FaultModel {
        FaultModel {
            fault: Fault::PowerLoss,
            states,
        }
    }

    /// Is this the power-loss model?
    pub fn is_power_loss(&self) -> bool {
        self.fault == Fault::PowerLoss
    }
}

impl fmt::Display for FaultModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.fault.name())
    }
}
