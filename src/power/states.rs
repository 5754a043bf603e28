//! Legal crash states: which of the unsynced changes a power cut keeps.
//!
//! The unsynced window is a set of independent choices: for each directory
//! with entry changes since its last fsync, how many of them (a prefix, in
//! order) are durable; for each file with data changes since its last sync,
//! how many of its 4 KiB block writes and truncations (a prefix, in order)
//! are durable. A rename between two directories is in both lists and is
//! either durable in both or in neither; every choice that respects that is
//! a legal crash state.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::log::Log;
use super::model::{DirChange, DirOp, Fs, Ino, Node, ROOT};
use super::rope::Rope;

/// What a path holds in a crash state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A directory (its entries are listed under its path).
    Dir,
    /// A regular file with this content.
    File(Rope),
    /// A symbolic link with this text.
    Symlink(String),
}

/// Which kind of unsynced change a [`Dropped`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DroppedKind {
    /// A directory entry change (creation, rename, link, symlink, unlink,
    /// mkdir, rmdir) undone.
    Entry,
    /// Data written to a file (some or all of it) lost.
    Data,
}

/// One unsynced change a crash state does not keep, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// Index in the log of the (first) operation concerned.
    pub op: usize,
    /// Entry or data.
    pub kind: DroppedKind,
    /// Undone anyway by a later dropped change of the same name (a file
    /// created and removed again, such as Python's `tempfile` probing its
    /// directory): the tree is the same with or without the pair.
    pub cancelled: bool,
    /// Where: the directory whose entry changed, or the file whose data
    /// was lost, relative to the tree's root (`""` for the root).
    pub place: String,
    /// E.g. "rename of epoch=0-step=3.ckpt.tmp to epoch=0-step=3.ckpt not
    /// made durable: directory checkpoints never fsynced".
    pub message: String,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A directory tree as a power cut could leave it, and what it lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashState {
    /// Every path below the root (relative, `/`-separated), parents before
    /// children. A file with several names appears under each.
    pub entries: BTreeMap<String, Entry>,
    /// The unsynced changes this state does not keep, in log order
    /// (entry changes of reachable directories, data of reachable files).
    pub dropped: Vec<Dropped>,
}

impl CrashState {
    /// A digest of the tree (not of `dropped`): equal trees, equal digests.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        for (path, entry) in &self.entries {
            h.update(&(path.len() as u64).to_le_bytes());
            h.update(path.as_bytes());
            match entry {
                Entry::Dir => {
                    h.update(b"d");
                }
                Entry::File(r) => {
                    h.update(b"f");
                    h.update(&r.fingerprint());
                }
                Entry::Symlink(t) => {
                    h.update(b"l");
                    h.update(&(t.len() as u64).to_le_bytes());
                    h.update(t.as_bytes());
                }
            }
        }
        *h.finalize().as_bytes()
    }

    /// Whether the two trees are equal (whatever they dropped).
    pub fn same_tree(&self, other: &CrashState) -> bool {
        self.entries == other.entries
    }

    /// The dropped changes, one per line.
    pub fn explain(&self) -> String {
        self.dropped
            .iter()
            .map(|d| d.message.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// How much is unsynced at the end of a log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unsynced {
    /// Directories with entry changes since their last fsync.
    pub dirs: usize,
    /// Entry changes in them.
    pub entry_changes: usize,
    /// Files with data changes since their last sync.
    pub files: usize,
    /// Data changes (4 KiB block writes and truncations) in them.
    pub data_changes: usize,
}

/// A rename between two directories: its position in each one's list.
struct Couple {
    a: (usize, usize),
    b: (usize, usize),
}

/// The choices a crash state makes.
struct Window {
    /// Directories with pending changes, and how many.
    dirs: Vec<(Ino, usize)>,
    /// Files with pending changes, and how many.
    files: Vec<(Ino, usize)>,
    couples: Vec<Couple>,
}

/// How many pending changes of each window variable a state keeps.
#[derive(Clone, Debug)]
struct Choice {
    dirs: Vec<usize>,
    files: Vec<usize>,
}

impl Window {
    fn of(fs: &Fs) -> Window {
        let mut dirs = Vec::new();
        let mut files = Vec::new();
        let mut halves: BTreeMap<usize, Vec<(usize, usize)>> = BTreeMap::new();
        for (ino, node) in fs.nodes.iter().enumerate() {
            match node {
                Node::Dir(d) if !d.pending.is_empty() => {
                    let var = dirs.len();
                    dirs.push((ino, d.pending.len()));
                    for (pos, op) in d.pending.iter().enumerate() {
                        if op.partner.is_some() {
                            halves.entry(op.op).or_default().push((var, pos));
                        }
                    }
                }
                Node::File(f) if !f.pending.is_empty() => files.push((ino, f.pending.len())),
                _ => {}
            }
        }
        let couples = halves
            .into_values()
            .filter(|h| h.len() == 2)
            .map(|h| Couple { a: h[0], b: h[1] })
            .collect();
        Window {
            dirs,
            files,
            couples,
        }
    }

    fn nothing(&self) -> Choice {
        Choice {
            dirs: vec![0; self.dirs.len()],
            files: vec![0; self.files.len()],
        }
    }

    fn everything(&self) -> Choice {
        Choice {
            dirs: self.dirs.iter().map(|d| d.1).collect(),
            files: self.files.iter().map(|f| f.1).collect(),
        }
    }

    /// Whether every cross-directory rename decided so far (both of its
    /// directories among the first `assigned` ones) is durable in both or
    /// in neither.
    fn consistent(&self, dirs: &[usize], assigned: usize) -> bool {
        self.couples.iter().all(|c| {
            c.a.0 >= assigned || c.b.0 >= assigned || (dirs[c.a.0] > c.a.1) == (dirs[c.b.0] > c.b.1)
        })
    }

    /// Makes a choice legal by keeping fewer changes: a rename durable in
    /// one directory only is dropped there, with what follows it.
    fn repair(&self, choice: &mut Choice) {
        loop {
            let mut changed = false;
            for c in &self.couples {
                let ka = choice.dirs[c.a.0] > c.a.1;
                let kb = choice.dirs[c.b.0] > c.b.1;
                if ka && !kb {
                    choice.dirs[c.a.0] = c.a.1;
                    changed = true;
                } else if kb && !ka {
                    choice.dirs[c.b.0] = c.b.1;
                    changed = true;
                }
            }
            if !changed {
                return;
            }
        }
    }

    /// The directory entries a choice gives each directory of the window.
    fn entries(&self, fs: &Fs, choice: &Choice) -> BTreeMap<Ino, BTreeMap<String, Ino>> {
        let mut out = BTreeMap::new();
        for (&(ino, _), &k) in self.dirs.iter().zip(&choice.dirs) {
            if let Node::Dir(d) = &fs.nodes[ino] {
                let mut e = d.durable.clone();
                for op in &d.pending[..k] {
                    op.change.apply(&mut e);
                }
                out.insert(ino, e);
            }
        }
        out
    }

    /// Which file variables are reachable from the root in a choice of
    /// directory entries.
    fn reachable_files(&self, fs: &Fs, choice: &Choice) -> Vec<usize> {
        let chosen = self.entries(fs, choice);
        let mut seen = HashSet::new();
        let mut stack = vec![ROOT];
        let mut visited = HashSet::new();
        while let Some(d) = stack.pop() {
            if !visited.insert(d) {
                continue;
            }
            let entries = match (chosen.get(&d), &fs.nodes[d]) {
                (Some(e), _) => e,
                (None, Node::Dir(dir)) => &dir.durable,
                _ => continue,
            };
            for &ino in entries.values() {
                match &fs.nodes[ino] {
                    Node::Dir(_) => stack.push(ino),
                    Node::File(_) => {
                        seen.insert(ino);
                    }
                    Node::Symlink(_) => {}
                }
            }
        }
        self.files
            .iter()
            .enumerate()
            .filter(|(_, (ino, _))| seen.contains(ino))
            .map(|(i, _)| i)
            .collect()
    }

    /// The crash state of a choice.
    fn build(&self, fs: &Fs, choice: &Choice) -> CrashState {
        let dir_entries = self.entries(fs, choice);
        let mut contents: BTreeMap<Ino, (Rope, usize)> = BTreeMap::new();
        for (var, (&(ino, _), &k)) in self.files.iter().zip(&choice.files).enumerate() {
            if let Node::File(f) = &fs.nodes[ino] {
                let mut c = f.durable.clone();
                for chunk in &f.pending[..k] {
                    chunk.change.apply(&mut c);
                }
                contents.insert(ino, (c, var));
            }
        }
        let walked = walk_tree(
            fs,
            |d| match (dir_entries.get(&d), &fs.nodes[d]) {
                (Some(e), _) => Some(e),
                (None, Node::Dir(dir)) => Some(&dir.durable),
                _ => None,
            },
            |ino| match (contents.get(&ino), &fs.nodes[ino]) {
                (Some((c, _)), _) => c.clone(),
                (None, Node::File(f)) => f.durable.clone(),
                _ => Rope::new(),
            },
        );
        let mut dropped = Vec::new();
        for (&(ino, len), &k) in self.dirs.iter().zip(&choice.dirs) {
            if k == len || !walked.dirs.contains(&ino) {
                continue;
            }
            let Node::Dir(d) = &fs.nodes[ino] else {
                continue;
            };
            let why = if d.ever_synced {
                "not fsynced after it"
            } else {
                "never fsynced"
            };
            let label = fs.dir_label(ino);
            let place = if ino == ROOT {
                String::new()
            } else {
                d.label.clone()
            };
            let cancelled = cancelling(&d.pending[k..]);
            for (op, &cancelled) in d.pending[k..].iter().zip(&cancelled) {
                // A rename between directories is said once, for the
                // directory it moves into, when that one is reachable.
                let source_half = matches!(op.change, DirChange::Remove { .. });
                if source_half && op.partner.is_some_and(|p| walked.dirs.contains(&p)) {
                    continue;
                }
                dropped.push(Dropped {
                    op: op.op,
                    kind: DroppedKind::Entry,
                    cancelled,
                    place: place.clone(),
                    message: format!("{} not made durable: {label} {why}", op.text),
                });
            }
        }
        for (&(ino, len), &k) in self.files.iter().zip(&choice.files) {
            if k == len {
                continue;
            }
            let Some(path) = walked.files.get(&ino) else {
                continue;
            };
            let Node::File(f) = &fs.nodes[ino] else {
                continue;
            };
            let message = if f.ever_synced {
                format!(
                    "data written to {path} since its last fsync lost: \
                     {k} of {len} pending 4 KiB writes kept"
                )
            } else {
                format!(
                    "data written to {path} not made durable: file never fsynced, \
                     {k} of {len} pending 4 KiB writes kept"
                )
            };
            dropped.push(Dropped {
                op: f.pending[k].op,
                kind: DroppedKind::Data,
                cancelled: false,
                place: path.clone(),
                message,
            });
        }
        dropped.sort_by_key(|d| d.op);
        CrashState {
            entries: walked.entries,
            dropped,
        }
    }
}

/// Which of a directory's dropped changes cancel out: an insertion of a
/// name and a later removal of it, with no change of that name between.
fn cancelling(ops: &[DirOp]) -> Vec<bool> {
    let name_of = |c: &DirChange| match c {
        DirChange::Insert { name, .. } | DirChange::Remove { name } => vec![name.clone()],
        DirChange::Move { from, to, .. } => vec![from.clone(), to.clone()],
    };
    let mut out = vec![false; ops.len()];
    for (a, op) in ops.iter().enumerate() {
        let DirChange::Insert { name, .. } = &op.change else {
            continue;
        };
        let next = ops[a + 1..]
            .iter()
            .position(|o| name_of(&o.change).contains(name))
            .map(|i| a + 1 + i);
        if let Some(b) = next {
            if matches!(&ops[b].change, DirChange::Remove { name: n } if n == name) {
                out[a] = true;
                out[b] = true;
            }
        }
    }
    out
}

/// A tree read from the inodes, and which directories and files it reached.
struct Walked {
    entries: BTreeMap<String, Entry>,
    dirs: BTreeSet<Ino>,
    /// Each reached file and the first path it was found at.
    files: BTreeMap<Ino, String>,
}

fn walk_tree<'a>(
    fs: &'a Fs,
    entries_of: impl Fn(Ino) -> Option<&'a BTreeMap<String, Ino>>,
    content_of: impl Fn(Ino) -> Rope,
) -> Walked
where
{
    let mut out = Walked {
        entries: BTreeMap::new(),
        dirs: BTreeSet::new(),
        files: BTreeMap::new(),
    };
    let mut stack: Vec<(Ino, String)> = vec![(ROOT, String::new())];
    while let Some((d, prefix)) = stack.pop() {
        // A directory reachable twice (possible only in states mixing
        // renames of directories) is listed once.
        if !out.dirs.insert(d) {
            continue;
        }
        let Some(entries) = entries_of(d) else {
            continue;
        };
        for (name, &ino) in entries {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let entry = match &fs.nodes[ino] {
                Node::Dir(_) => {
                    if out.dirs.contains(&ino) {
                        continue;
                    }
                    stack.push((ino, path.clone()));
                    Entry::Dir
                }
                Node::File(_) => {
                    out.files.entry(ino).or_insert_with(|| path.clone());
                    Entry::File(content_of(ino))
                }
                Node::Symlink(t) => Entry::Symlink(t.clone()),
            };
            out.entries.insert(path, entry);
        }
    }
    out
}

/// The state a process kill leaves: every operation of the log done, as
/// the page cache holds it. Nothing is dropped.
pub fn kill_state(log: &Log) -> CrashState {
    let fs = &log.fs;
    let walked = walk_tree(
        fs,
        |d| match &fs.nodes[d] {
            Node::Dir(dir) => Some(&dir.live),
            _ => None,
        },
        |ino| match &fs.nodes[ino] {
            Node::File(f) => f.live.clone(),
            _ => Rope::new(),
        },
    );
    CrashState {
        entries: walked.entries,
        dropped: Vec::new(),
    }
}

/// The most pessimistic legal state: every unsynced change lost. Files
/// hold their content as of their last sync (nothing if never synced);
/// directories their entries as of their last fsync.
pub fn most_pessimistic(log: &Log) -> CrashState {
    let win = Window::of(&log.fs);
    win.build(&log.fs, &win.nothing())
}

/// The state that keeps every unsynced change: the same tree as
/// [`kill_state`], built through the power-loss rules.
pub fn most_optimistic(log: &Log) -> CrashState {
    let win = Window::of(&log.fs);
    win.build(&log.fs, &win.everything())
}

/// How much is unsynced at the end of the log.
pub fn unsynced(log: &Log) -> Unsynced {
    let win = Window::of(&log.fs);
    Unsynced {
        dirs: win.dirs.len(),
        entry_changes: win.dirs.iter().map(|d| d.1).sum(),
        files: win.files.len(),
        data_changes: win.files.iter().map(|f| f.1).sum(),
    }
}

/// Up to `n` distinct legal states drawn from `seed` (the same seed, the
/// same states, in the same order). Each choice keeps none of its pending
/// changes with probability ¼, all of them with ¼, otherwise a uniform
/// number; fewer than `n` come back when the window holds fewer states or
/// 16·n + 16 draws found no more.
pub fn sample(log: &Log, seed: u64, n: usize) -> Vec<CrashState> {
    let fs = &log.fs;
    let win = Window::of(fs);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut draws = 0usize;
    let pick = |rng: &mut ChaCha8Rng, len: usize| match rng.gen_range(0..4u8) {
        0 => 0,
        1 => len,
        _ => rng.gen_range(0..=len),
    };
    while out.len() < n && draws < n.saturating_mul(16).saturating_add(16) {
        draws += 1;
        let mut choice = Choice {
            dirs: win.dirs.iter().map(|d| pick(&mut rng, d.1)).collect(),
            files: win.files.iter().map(|f| pick(&mut rng, f.1)).collect(),
        };
        win.repair(&mut choice);
        let state = win.build(fs, &choice);
        if seen.insert(state.fingerprint()) {
            out.push(state);
        }
    }
    out
}

/// Every distinct legal state, the most pessimistic first, or `None` when
/// the window has more than `limit` candidate choices (choices of files no
/// directory state reaches are not counted: they cannot change the tree).
pub fn enumerate(log: &Log, limit: usize) -> Option<Vec<CrashState>> {
    let fs = &log.fs;
    let win = Window::of(fs);
    // Directory choices first: legal combinations, depth first.
    let mut dir_choices: Vec<Vec<usize>> = Vec::new();
    let mut cur = vec![0usize; win.dirs.len()];
    if !dir_dfs(&win, 0, &mut cur, &mut dir_choices, limit) {
        return None;
    }
    // Then the files each of them reaches.
    let mut plans = Vec::new();
    let mut total = 0usize;
    for dirs in dir_choices {
        let choice = Choice {
            dirs,
            files: vec![0; win.files.len()],
        };
        let vars = win.reachable_files(fs, &choice);
        let combos = vars
            .iter()
            .try_fold(1usize, |acc, &v| acc.checked_mul(win.files[v].1 + 1));
        total = total.checked_add(combos?)?;
        if total > limit {
            return None;
        }
        plans.push((choice, vars));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (mut choice, vars) in plans {
        loop {
            let state = win.build(fs, &choice);
            if seen.insert(state.fingerprint()) {
                out.push(state);
            }
            // Next combination of the reachable files' choices.
            let mut i = 0;
            while let Some(&v) = vars.get(i) {
                if choice.files[v] < win.files[v].1 {
                    choice.files[v] += 1;
                    break;
                }
                choice.files[v] = 0;
                i += 1;
            }
            if i == vars.len() {
                break;
            }
        }
    }
    Some(out)
}

/// Collects legal directory choices from variable `var` on; false when
/// there are more than `limit`.
fn dir_dfs(
    win: &Window,
    var: usize,
    cur: &mut Vec<usize>,
    out: &mut Vec<Vec<usize>>,
    limit: usize,
) -> bool {
    if var == win.dirs.len() {
        out.push(cur.clone());
        return out.len() <= limit;
    }
    for k in 0..=win.dirs[var].1 {
        cur[var] = k;
        if win.consistent(cur, var + 1) && !dir_dfs(win, var + 1, cur, out, limit) {
            return false;
        }
    }
    cur[var] = 0;
    true
}
