//! The rules: how each operation changes what a process sees and what is
//! durable.
//!
//! Inodes are kept apart from names. A file inode holds its live content
//! (the page cache), its durable content (as of its last `fsync`,
//! `fdatasync`, `sync` or synchronous write) and the data changes since,
//! cut at 4 KiB boundaries. A directory inode holds its live entries, its
//! durable entries (as of its last `fsync`) and the entry changes since, in
//! order. A rename between two directories is one change recorded in both,
//! and made durable in both at once.

use std::collections::BTreeMap;

use super::log::{FileRef, LogErrorKind, Op, SyncMode};
use super::rope::Rope;
use super::states::Entry;

mod apply;

/// Index of an inode in [`Fs::nodes`].
pub(crate) type Ino = usize;

/// The root directory's inode.
pub(crate) const ROOT: Ino = 0;

/// The unit a write may be torn at.
pub const BLOCK: u64 = 4096;

/// Symbolic links followed in one path at most.
const MAX_LINKS: usize = 40;

/// A change to a file's data since its last sync.
#[derive(Clone, Debug)]
pub(crate) enum DataChange {
    /// Bytes at an offset: at most one 4 KiB block, never crossing a block
    /// boundary.
    Write { offset: u64, data: Rope },
    /// A new length.
    Truncate(u64),
}

impl DataChange {
    pub(crate) fn apply(&self, content: &mut Rope) {
        match self {
            DataChange::Write { offset, data } => content.write_at(*offset, data),
            DataChange::Truncate(len) => content.truncate(*len),
        }
    }
}

/// One pending data change and the log operation it came from.
#[derive(Clone, Debug)]
pub(crate) struct Chunk {
    pub op: usize,
    pub change: DataChange,
}

/// A regular file's inode.
#[derive(Clone, Debug, Default)]
pub(crate) struct FileNode {
    pub live: Rope,
    pub durable: Rope,
    pub pending: Vec<Chunk>,
    /// Whether any sync of this file happened in the log.
    pub ever_synced: bool,
    /// The last path it was given, for messages.
    pub label: String,
}

/// A change to a directory's entries since its last fsync.
#[derive(Clone, Debug)]
pub(crate) enum DirChange {
    Insert { name: String, ino: Ino },
    Remove { name: String },
    Move { from: String, to: String, ino: Ino },
}

impl DirChange {
    pub(crate) fn apply(&self, entries: &mut BTreeMap<String, Ino>) {
        match self {
            DirChange::Insert { name, ino } => {
                entries.insert(name.clone(), *ino);
            }
            DirChange::Remove { name } => {
                entries.remove(name);
            }
            DirChange::Move { from, to, ino } => {
                entries.remove(from);
                entries.insert(to.clone(), *ino);
            }
        }
    }
}

/// One pending entry change, the log operation it came from, the other
/// directory of a cross-directory rename, and its description.
#[derive(Clone, Debug)]
pub(crate) struct DirOp {
    pub op: usize,
    pub change: DirChange,
    pub partner: Option<Ino>,
    pub text: String,
}

/// A directory's inode.
#[derive(Clone, Debug, Default)]
pub(crate) struct DirNode {
    pub live: BTreeMap<String, Ino>,
    pub durable: BTreeMap<String, Ino>,
    pub pending: Vec<DirOp>,
    /// Whether this directory was fsynced (or the whole file system
    /// synced) in the log.
    pub ever_synced: bool,
    /// Its path when created or last moved, for messages.
    pub label: String,
}

/// An inode.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    File(FileNode),
    Dir(DirNode),
    /// A symbolic link: its text is durable with its name.
    Symlink(String),
}

/// The modelled file system.
#[derive(Clone, Debug)]
pub(crate) struct Fs {
    pub nodes: Vec<Node>,
    handles: BTreeMap<u64, (Ino, SyncMode)>,
}

impl Default for Fs {
    fn default() -> Fs {
        Fs {
            nodes: vec![Node::Dir(DirNode::default())],
            handles: BTreeMap::new(),
        }
    }
}

/// Where a path leads.
enum Walk {
    /// An existing inode; `parent` is `None` for the root.
    Found {
        ino: Ino,
        parent: Option<(Ino, String)>,
        chain: Vec<Ino>,
    },
    /// The last component is missing in an existing directory.
    Missing {
        parent: Ino,
        name: String,
        chain: Vec<Ino>,
    },
}

fn components(path: &str) -> Result<Vec<String>, LogErrorKind> {
    if path.starts_with('/') {
        return Err(LogErrorKind::LeavesRoot(path.into()));
    }
    Ok(path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_owned)
        .collect())
}

impl Fs {
    /// A file system holding `tree`, all of it durable.
    pub(crate) fn from_tree<'a>(
        tree: impl IntoIterator<Item = (&'a String, &'a Entry)>,
    ) -> Result<Fs, LogErrorKind> {
        let mut fs = Fs::default();
        let mut items: Vec<(&String, &Entry)> = tree.into_iter().collect();
        // Parents before children: "a" sorts before "a/b" and "a b".
        items.sort_by_key(|a| components(a.0).ok());
        for (path, entry) in items {
            let parts = components(path)?;
            let Some((name, dirs)) = parts.split_last() else {
                return Err(LogErrorKind::BadInitialTree(format!(
                    "{path:?}: empty path"
                )));
            };
            let mut cur = ROOT;
            for d in dirs {
                let next = match &fs.nodes[cur] {
                    Node::Dir(dir) => dir.live.get(d).copied(),
                    _ => None,
                };
                match next {
                    Some(n) if matches!(fs.nodes[n], Node::Dir(_)) => cur = n,
                    _ => {
                        return Err(LogErrorKind::BadInitialTree(format!(
                            "{path}: {d} is not a directory of the tree"
                        )))
                    }
                }
            }
            let node = match entry {
                Entry::Dir => Node::Dir(DirNode {
                    label: parts.join("/"),
                    ..DirNode::default()
                }),
                Entry::File(content) => Node::File(FileNode {
                    live: content.clone(),
                    durable: content.clone(),
                    label: parts.join("/"),
                    ..FileNode::default()
                }),
                Entry::Symlink(target) => Node::Symlink(target.clone()),
            };
            let ino = fs.nodes.len();
            fs.nodes.push(node);
            if let Node::Dir(dir) = &mut fs.nodes[cur] {
                if dir.live.insert(name.clone(), ino).is_some() {
                    return Err(LogErrorKind::BadInitialTree(format!(
                        "{path}: listed twice"
                    )));
                }
                dir.durable.insert(name.clone(), ino);
            }
        }
        Ok(fs)
    }

    fn dir(&self, ino: Ino) -> Option<&DirNode> {
        match &self.nodes[ino] {
            Node::Dir(d) => Some(d),
            _ => None,
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> &mut DirNode {
        match &mut self.nodes[ino] {
            Node::Dir(d) => d,
            _ => unreachable!("inode {ino} was checked to be a directory"),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> &mut FileNode {
        match &mut self.nodes[ino] {
            Node::File(f) => f,
            _ => unreachable!("inode {ino} was checked to be a file"),
        }
    }

    /// Resolves `path` in the live namespace, following symbolic links in
    /// every component but the last, and in the last one when
    /// `follow_last`.
    fn walk(&self, path: &str, follow_last: bool) -> Result<Walk, LogErrorKind> {
        let mut queue: std::collections::VecDeque<String> = components(path)?.into();
        let mut stack: Vec<Ino> = vec![ROOT];
        let mut names: Vec<String> = Vec::new();
        let mut links = 0usize;
        while let Some(c) = queue.pop_front() {
            if c == ".." {
                if stack.len() == 1 {
                    return Err(LogErrorKind::LeavesRoot(path.into()));
                }
                stack.pop();
                names.pop();
                continue;
            }
            let cur = *stack.last().unwrap_or(&ROOT);
            let Some(dir) = self.dir(cur) else {
                return Err(LogErrorKind::NotADirectory(path.into()));
            };
            match dir.live.get(&c) {
                None if queue.is_empty() => {
                    return Ok(Walk::Missing {
                        parent: cur,
                        name: c,
                        chain: stack,
                    })
                }
                None => return Err(LogErrorKind::NotFound(path.into())),
                Some(&ino) => match &self.nodes[ino] {
                    Node::Symlink(target) if follow_last || !queue.is_empty() => {
                        links += 1;
                        if links > MAX_LINKS {
                            return Err(LogErrorKind::LinkLoop(path.into()));
                        }
                        for t in components(target)
                            .map_err(|_| LogErrorKind::LeavesRoot(path.into()))?
                            .into_iter()
                            .rev()
                        {
                            queue.push_front(t);
                        }
                    }
                    _ => {
                        stack.push(ino);
                        names.push(c);
                    }
                },
            }
        }
        let ino = stack.pop().unwrap_or(ROOT);
        let parent = match (stack.last(), names.pop()) {
            (Some(&p), Some(n)) => Some((p, n)),
            _ => None,
        };
        Ok(Walk::Found {
            ino,
            parent,
            chain: stack,
        })
    }

    /// The inode a [`FileRef`] names, and the sync mode of its handle.
    fn target(&self, file: &FileRef) -> Result<(Ino, SyncMode, String), LogErrorKind> {
        match file {
            FileRef::Handle(h) => match self.handles.get(&h.0) {
                Some(&(ino, mode)) => Ok((ino, mode, format!("#{}", h.0))),
                None => Err(LogErrorKind::UnknownHandle(h.0)),
            },
            FileRef::Path(p) => match self.walk(p, true)? {
                Walk::Found { ino, .. } => Ok((ino, SyncMode::None, p.clone())),
                Walk::Missing { .. } => Err(LogErrorKind::NotFound(p.clone())),
            },
        }
    }

    fn file_target(&self, file: &FileRef) -> Result<(Ino, SyncMode), LogErrorKind> {
        let (ino, mode, name) = self.target(file)?;
        match &self.nodes[ino] {
            Node::File(_) => Ok((ino, mode)),
            Node::Dir(_) => Err(LogErrorKind::IsADirectory(name)),
            Node::Symlink(_) => Err(LogErrorKind::NotAFile(name)),
        }
    }

    fn new_node(&mut self, node: Node) -> Ino {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// The label of a directory for messages.
    pub(crate) fn dir_label(&self, ino: Ino) -> String {
        match self.dir(ino) {
            Some(_) if ino == ROOT => "the root directory".into(),
            Some(d) => format!("directory {}", d.label),
            None => format!("inode {ino}"),
        }
    }
}
