//! Sites: the census grouped by what a call does and where, whatever the
//! step. A site is the call's family (`rename`, `write`, ...) and its path
//! inside the sandbox with every volatile part replaced by `#`: numbers
//! (`step=#.ckpt`), process ids (`.last.ckpt.tmp-#`) and random temporary
//! names (`tmpab12cd_` becomes `tmp#`). `symlink checkpoints/last.ckpt` after
//! every save is one site; so is every write of every checkpoint file. For
//! the simulated trainer's `op` points the moment (`before`, `mid`, `after`)
//! is part of the site.
//!
//! ```
//! use crashpoint::inject::sites::path_pattern;
//! assert_eq!(path_pattern("work/checkpoints/.step=10.ckpt.tmp-4242"), "work/checkpoints/.step=#.ckpt.tmp-#");
//! assert_eq!(path_pattern("tmp/tmpab1x_9zq/epoch=0-step=12.ckpt"), "tmp/tmp#/epoch=#-step=#.ckpt");
//! assert_eq!(path_pattern("tmp/tmpabcdefgh"), "tmp/tmp#");
//! assert_eq!(path_pattern("a/.x.tmp -> a/last.ckpt"), "a/.x.tmp -> a/last.ckpt");
//! ```

use std::collections::HashMap;
use std::fmt;

use super::{census_points, CensusEntry, CrashPoint, Mode};
use crate::census::Call;
use crate::protocol::When;

/// One site: a call family on a path pattern (and, for `op` points, the moment).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Site {
    /// The call's family (see [`call_family`]).
    pub call: String,
    /// The path pattern (see [`path_pattern`]); two paths as `old -> new`.
    pub path: String,
    /// For `op` points: before, mid or after the operation.
    pub when: Option<When>,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.call, self.path)?;
        if let Some(w) = self.when {
            write!(f, " ({w})")?;
        }
        Ok(())
    }
}

impl Site {
    /// Does this site change the namespace (rename, link, symlink, unlink,
    /// rmdir, mkdir), where ordering and atomicity bugs live?
    pub fn is_namespace(&self) -> bool {
        is_namespace(&self.call)
    }
}

/// Is `family` a namespace operation?
pub fn is_namespace(family: &str) -> bool {
    matches!(
        family,
        "rename" | "link" | "symlink" | "unlink" | "rmdir" | "mkdir"
    )
}

/// The family of a call, as sites group them: the three kinds of sync
/// (`fsync`, `fdatasync`, a directory's `fsync`, `sync`) are one, `fsync`;
/// every other call is its own ([`Call::name`]).
///
/// ```
/// use crashpoint::census::Call;
/// use crashpoint::inject::sites::call_family;
/// assert_eq!(call_family(Call::FsyncDir), "fsync");
/// assert_eq!(call_family(Call::Rename), "rename");
/// ```
pub fn call_family(call: Call) -> &'static str {
    match call {
        Call::Fsync | Call::Fdatasync | Call::FsyncDir | Call::Sync => "fsync",
        c => c.name(),
    }
}

/// A census path with its volatile parts replaced by `#` (`a -> b` for two
/// paths, each normalised).
pub fn path_pattern(path: &str) -> String {
    path.split(" -> ")
        .map(pattern_one)
        .collect::<Vec<_>>()
        .join(" -> ")
}

fn pattern_one(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut token = String::new();
    for c in path.chars() {
        if c.is_alphanumeric() || c == '_' {
            token.push(c);
        } else {
            flush(&mut out, &mut token);
            out.push(c);
        }
    }
    flush(&mut out, &mut token);
    out
}

/// Appends `token`, or `#` (`tmp#`) when it is volatile: it holds a digit,
/// it is a random temporary name (`tmp` and six or more characters, as
/// Python's `tempfile` makes them), or eight or more hexadecimal letters.
fn flush(out: &mut String, token: &mut String) {
    if token.is_empty() {
        return;
    }
    let tmp = token.len() > 3 && token.starts_with("tmp");
    let volatile = token.chars().any(|c| c.is_ascii_digit())
        || (tmp && token.len() >= 9)
        || (token.len() >= 8 && token.chars().all(|c| c.is_ascii_hexdigit()));
    if !volatile {
        out.push_str(token);
    } else if tmp {
        out.push_str("tmp#");
    } else {
        out.push('#');
    }
    token.clear();
}

/// The site of census entry `e`, for a point at moment `when` (op points).
pub fn site_of(e: &CensusEntry, when: Option<When>) -> Site {
    Site {
        call: call_family(e.call).to_string(),
        path: path_pattern(&e.path()),
        when,
    }
}

/// A first crash point with the census entry it stops at and its site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitedPoint {
    /// The crash point.
    pub point: CrashPoint,
    /// The census index of the operation or call it stops at.
    pub index: u64,
    /// Its site.
    pub site: Site,
}

/// Every first crash point the census offers in `mode` (as
/// [`census_points`]), each with its site. Empty for `time`.
pub fn sited_points(mode: Mode, census: &[CensusEntry]) -> Vec<SitedPoint> {
    let by_index: HashMap<u64, &CensusEntry> = census.iter().map(|e| (e.index, e)).collect();
    census_points(mode, census)
        .into_iter()
        .filter_map(|point| {
            let (index, when) = match point {
                CrashPoint::Op(c) => (c.index, Some(c.when)),
                CrashPoint::Syscall(n) => (n, None),
                _ => return None,
            };
            let e = by_index.get(&index)?;
            Some(SitedPoint {
                point,
                index,
                site: site_of(e, when),
            })
        })
        .collect()
}

/// Does `path` name `base` as a whole word: `base` appears in one of its
/// components with no digit right before or after it (`step=10.ckpt` is in
/// `.step=10.ckpt.tmp-7`, not in `step=100.ckpt`)?
fn names(path: &str, base: &str) -> bool {
    if base.is_empty() {
        return false;
    }
    path.split(['/', ' ']).any(|comp| {
        comp.match_indices(base).any(|(i, _)| {
            let before = comp[..i].chars().next_back();
            let after = comp[i + base.len()..].chars().next();
            !before.is_some_and(|c| c.is_ascii_digit())
                && !after.is_some_and(|c| c.is_ascii_digit())
        })
    })
}

/// Where "after the first completed save" begins in a census: the index of
/// the second occurrence of the site that starts a save. With `saved` (the
/// paths of the subject's `saved` events, in order) that site is the one of
/// the first call that names the first saved checkpoint (its temporary
/// file, the file itself or its directory). When the second saved
/// checkpoint has another name, the boundary is that site's first call
/// naming it: a framework that calls `mkdir -p checkpoint-4` several times
/// while it writes one save, as the Hugging Face `Trainer` does, is still
/// in its first save. Without events, the first `create` site that recurs. `None` when no
/// such site recurs (one save, or none): then every site's first
/// occurrence stands for it.
///
/// ```
/// use crashpoint::census::{Call, CensusEntry, Phase};
/// use crashpoint::inject::sites::first_save_boundary;
/// let e = |index, call, path: &str| CensusEntry {
///     index, call, name: call.to_string(), paths: path.split(" -> ").map(String::from).collect(),
///     phase: Phase::default(), fd: None, offset: None, len: None,
/// };
/// let census = [
///     e(1, Call::Mkdir, "work/c"),
///     e(2, Call::Create, "work/c/.step=5.ckpt.tmp-9"),
///     e(3, Call::Rename, "work/c/.step=5.ckpt.tmp-9 -> work/c/step=5.ckpt"),
///     e(4, Call::Symlink, "work/c/last.ckpt"),
///     e(5, Call::Create, "work/c/.step=10.ckpt.tmp-9"),
///     e(6, Call::Rename, "work/c/.step=10.ckpt.tmp-9 -> work/c/step=10.ckpt"),
/// ];
/// assert_eq!(first_save_boundary(&census, &["c/step=5.ckpt".into()]), Some(5));
/// assert_eq!(first_save_boundary(&census, &[]), Some(5));
/// assert_eq!(first_save_boundary(&census[..4], &[]), None);
/// ```
pub fn first_save_boundary(census: &[CensusEntry], saved: &[String]) -> Option<u64> {
    let base_of = |p: &String| {
        p.trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let base = saved.first().map(base_of);
    let next = saved
        .get(1)
        .map(base_of)
        .filter(|n| Some(n) != base.as_ref());
    let sites: Vec<Site> = census.iter().map(|e| site_of(e, None)).collect();
    let second = |site: &Site, after: u64, naming: Option<&str>| {
        census
            .iter()
            .zip(&sites)
            .find(|(e, s)| {
                e.index > after && *s == site && naming.map_or(true, |n| names(&e.path(), n))
            })
            .map(|(e, _)| e.index)
    };
    match base {
        Some(base) => {
            let (first, site) = census
                .iter()
                .zip(&sites)
                .find(|(e, _)| names(&e.path(), &base))?;
            second(site, first.index, next.as_deref())
        }
        None => census
            .iter()
            .zip(&sites)
            .filter(|(_, s)| s.call == "create")
            .find_map(|(e, s)| second(s, e.index, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::census::{Call, CensusEntry};

    fn entry(index: u64, call: &str, path: &str) -> CensusEntry {
        CensusEntry {
            index,
            call: Call::from_syscall(call),
            name: call.into(),
            paths: path.split(" -> ").map(String::from).collect(),
            phase: Default::default(),
            fd: None,
            offset: None,
            len: None,
        }
    }

    #[test]
    fn a_site_repeated_inside_the_first_save_does_not_end_it() {
        // The Hugging Face Trainer's census: `mkdir checkpoint-4` is called
        // again (EEXIST) while the first save is written; the second save
        // begins at `mkdir checkpoint-8`.
        let census = [
            entry(1, "mkdir", "work/checkpoints"),
            entry(2, "mkdir", "work/checkpoints/checkpoint-4"),
            entry(3, "mkdir", "work/checkpoints/checkpoint-4"),
            entry(4, "openat", "work/checkpoints/checkpoint-4/config.json"),
            entry(5, "mkdir", "work/checkpoints/checkpoint-4"),
            entry(
                6,
                "openat",
                "work/checkpoints/checkpoint-4/trainer_state.json",
            ),
            entry(7, "mkdir", "work/checkpoints/checkpoint-8"),
            entry(8, "mkdir", "work/checkpoints/checkpoint-8"),
            entry(9, "openat", "work/checkpoints/checkpoint-8/config.json"),
        ];
        let saved = ["checkpoint-4".to_string(), "checkpoint-8".to_string()];
        assert_eq!(first_save_boundary(&census, &saved), Some(7));
        // Every save announced under one name (a `last.ckpt` copy): the
        // site's second occurrence, as before.
        let census = [
            entry(1, "openat", "work/c/.last.ckpt.tmp"),
            entry(2, "rename", "work/c/.last.ckpt.tmp -> work/c/last.ckpt"),
            entry(3, "openat", "work/c/.last.ckpt.tmp"),
            entry(4, "rename", "work/c/.last.ckpt.tmp -> work/c/last.ckpt"),
        ];
        let saved = ["last.ckpt".to_string(), "last.ckpt".to_string()];
        assert_eq!(first_save_boundary(&census, &saved), Some(3));
    }
}
