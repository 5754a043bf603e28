//! Sites: the census grouped by what a call does and where, whatever the
//! step. A site is the call's family (`rename`, `write`, ...) and its path
//! inside the sandbox with every volatile part replaced by `#`: numbers
//! (`step=#.ckpt`), process ids (`.last.ckpt.tmp-#`) and random temporary
//! names (`tmpab12cd_` becomes `tmp#`; Python's 8-character probe of
//! TMPDIR, `tmp/izkvqscg`, becomes `tmp/#`). `symlink checkpoints/last.ckpt` after
//! every save is one site; so is every write of every checkpoint file. For
//! the simulated trainer's `op` points the moment (`before`, `mid`, `after`)
//! is part of the site.
//!
//! ```
//! use crashpoint::inject::sites::path_pattern;
//! assert_eq!(path_pattern("work/checkpoints/.step=10.ckpt.tmp-4242"), "work/checkpoints/.step=#.ckpt.tmp-#");
//! assert_eq!(path_pattern("tmp/tmpab1x_9zq/epoch=0-step=12.ckpt"), "tmp/tmp#/epoch=#-step=#.ckpt");
//! assert_eq!(path_pattern("tmp/tmpabcdefgh"), "tmp/tmp#");
//! assert_eq!(path_pattern("tmp/izkvqscg"), "tmp/#"); // Python's tempfile probe
//! assert_eq!(path_pattern("c/checkpoint_12/random_states_0.pkl"), "c/checkpoint_#/random_states_#.pkl");
//! assert_eq!(path_pattern("c/.last.ckpt.ab1x_9zq"), "c/.last.ckpt.#");
//! assert_eq!(path_pattern("tmp/izkvqscg/a"), "tmp/izkvqscg/a");
//! assert_eq!(path_pattern("a/.x.tmp -> a/last.ckpt"), "a/.x.tmp -> a/last.ckpt");
//! ```

use std::collections::{HashMap, HashSet};
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
    // Python's `tempfile` probes TMPDIR, at its first use, with a file of 8
    // random characters from `a-z0-9_`, digits or not (`tmp/izkvqscg`).
    if let Some(name) = path.strip_prefix("tmp/") {
        let probe = name.len() == 8
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if probe {
            return "tmp/#".into();
        }
    }
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
    } else if let Some(stem) = numbered_stem(token) {
        // `checkpoint_12`, `random_states_0`: the name, and `#` for its number.
        out.push_str(stem);
        out.push_str("_#");
    } else {
        out.push('#');
    }
    token.clear();
}

/// The stem of a name that is words joined by `_` and then a number
/// (`checkpoint_12` gives `checkpoint`, `random_states_0` gives
/// `random_states`): every word three letters or more, without digits.
/// Random names (`ab1x_9zq`) are not: their last part is not all digits.
fn numbered_stem(token: &str) -> Option<&str> {
    let (stem, number) = token.rsplit_once('_')?;
    let words = stem
        .split('_')
        .all(|w| w.len() >= 3 && w.chars().all(|c| c.is_ascii_alphabetic()));
    (words && !number.is_empty() && number.chars().all(|c| c.is_ascii_digit())).then_some(stem)
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
    /// Does the point stop inside an in-place rewrite: a file that held
    /// data was opened again and is partly written (see [`InPlace`])?
    pub in_place: bool,
}

/// Every first crash point the census offers in `mode` (as
/// [`census_points`]), each with its site. Empty for `time`.
pub fn sited_points(mode: Mode, census: &[CensusEntry]) -> Vec<SitedPoint> {
    let by_index: HashMap<u64, &CensusEntry> = census.iter().map(|e| (e.index, e)).collect();
    let in_place = InPlace::of(census);
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
                in_place: in_place.stops_inside(index, when),
            })
        })
        .collect()
}

/// The in-place rewrites of a census: a file that held data is opened
/// again (`create`) and written from its start, so between that open and
/// its last write the only copy under that name is empty or partial (the
/// torn write of `torch.save(path)` over an existing `last.ckpt`). An open
/// of a file with data followed by a first write past its start is an
/// append (a log), not a rewrite.
///
/// ```
/// use crashpoint::census::{Call, CensusEntry, Phase};
/// use crashpoint::inject::sites::InPlace;
/// let e = |index, call, path: &str, offset| CensusEntry {
///     index, call, name: call.to_string(), paths: vec![path.into()],
///     phase: Phase::default(), fd: Some(3), offset, len: None,
/// };
/// let census = [
///     e(1, Call::Create, "c/last.ckpt", None),
///     e(2, Call::Write, "c/last.ckpt", Some(0)),
///     e(3, Call::Create, "c/log", None),
///     e(4, Call::Write, "c/log", Some(0)),
///     e(5, Call::Create, "c/last.ckpt", None), // opened again: a rewrite
///     e(6, Call::Write, "c/last.ckpt", Some(0)),
///     e(7, Call::Write, "c/last.ckpt", Some(4096)),
///     e(8, Call::Create, "c/log", None), // opened again: an append
///     e(9, Call::Write, "c/log", Some(80)),
/// ];
/// let p = InPlace::of(&census);
/// assert!(!p.stops_inside(2, None), "the first write of a new file");
/// assert!(!p.stops_inside(5, None), "a kill at the open: not opened yet");
/// assert!(p.stops_inside(6, None) && p.stops_inside(7, None));
/// assert!(!p.stops_inside(9, None));
/// ```
#[derive(Debug, Default)]
pub struct InPlace {
    /// The opens of files that held data, each starting a rewrite.
    reopens: HashSet<u64>,
    /// The writes and truncations of a rewrite.
    rewrites: HashSet<u64>,
}

impl InPlace {
    /// Walks `census`, following which names hold data.
    pub fn of(census: &[CensusEntry]) -> InPlace {
        // Name -> does it hold data.
        let mut held: HashMap<&str, bool> = HashMap::new();
        // Name -> the open of a file with data, until its first write says
        // whether it is rewritten (from its start) or appended to.
        let mut pending: HashMap<&str, u64> = HashMap::new();
        // Names being rewritten, from their first write to their next open,
        // rename or removal.
        let mut rewriting: HashSet<&str> = HashSet::new();
        let mut out = InPlace::default();
        for e in census {
            let Some(path) = e.paths.first().map(String::as_str) else {
                continue;
            };
            match e.call {
                Call::Create => {
                    rewriting.remove(path);
                    pending.remove(path);
                    if held.get(path).copied().unwrap_or(false) {
                        pending.insert(path, e.index);
                    } else {
                        held.entry(path).or_insert(false);
                    }
                }
                Call::Write | Call::Truncate => {
                    if let Some(open) = pending.remove(path) {
                        if e.offset.unwrap_or(0) == 0 {
                            out.reopens.insert(open);
                            rewriting.insert(path);
                        }
                    }
                    if rewriting.contains(path) {
                        out.rewrites.insert(e.index);
                    }
                    held.insert(path, true);
                }
                Call::Rename | Call::Link | Call::Symlink => {
                    // The new name: the second path of a rename or link, the
                    // one path of a symlink.
                    let to = e.paths.last().map(String::as_str).unwrap_or(path);
                    let data = if e.call == Call::Rename {
                        pending.remove(path);
                        rewriting.remove(path);
                        held.remove(path).unwrap_or(true)
                    } else {
                        true
                    };
                    pending.remove(to);
                    rewriting.remove(to);
                    held.insert(to, data);
                }
                Call::Unlink | Call::Rmdir => {
                    held.remove(path);
                    pending.remove(path);
                    rewriting.remove(path);
                }
                _ => {}
            }
        }
        out
    }

    /// Does a crash at census entry `index` (at moment `when`, for `op`
    /// points) leave a file rewritten in place partial? A syscall point stops
    /// before its call: inside a rewrite at each of its writes. An `op` point
    /// also after the open that starts it, and not after its writes.
    pub fn stops_inside(&self, index: u64, when: Option<When>) -> bool {
        match when {
            None | Some(When::Before) | Some(When::Mid) => self.rewrites.contains(&index),
            Some(When::After) => self.reopens.contains(&index),
        }
    }
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
