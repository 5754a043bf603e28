//! `--partition I/N`: a deterministic share of a campaign's cases, so that N
//! machines split one sweep (as nextest's `count:` partitions do). Case `i`
//! of a layout (0-based, in plan order) belongs to partition `i % N + 1`;
//! every partition runs every layout's reference, since the census comes
//! from it. `crashpoint merge` joins the partitions' reports.
//!
//! ```
//! use crashpoint::partition::Partition;
//! let p: Partition = "2/3".parse().unwrap();
//! assert!(p.includes(1) && p.includes(4) && !p.includes(0));
//! assert!("0/3".parse::<Partition>().is_err());
//! assert!("4/3".parse::<Partition>().is_err());
//! assert_eq!(Partition::WHOLE.to_string(), "1/1");
//! ```

use std::fmt;
use std::str::FromStr;

/// Partition `index` of `count` (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Partition {
    /// Which share (1..=count).
    pub index: usize,
    /// How many shares.
    pub count: usize,
}

impl Partition {
    /// Every case.
    pub const WHOLE: Partition = Partition { index: 1, count: 1 };

    /// Does case `i` (0-based within its layout) belong to this share?
    pub fn includes(&self, i: usize) -> bool {
        i % self.count.max(1) + 1 == self.index
    }

    /// Is this the whole campaign?
    pub fn is_whole(&self) -> bool {
        self.count <= 1
    }
}

impl Default for Partition {
    fn default() -> Self {
        Partition::WHOLE
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Partition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a partition: I/N with 1 <= I <= N, e.g. 2/4");
        let s2 = s.strip_prefix("count:").unwrap_or(s);
        let (i, n) = s2.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || count == 0 || index > count {
            return Err(bad());
        }
        Ok(Partition { index, count })
    }
}
