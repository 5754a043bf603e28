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

    fn dir_op(
        &mut self,
        dir: Ino,
        op: usize,
        change: DirChange,
        partner: Option<Ino>,
        text: String,
    ) {
        let d = self.dir_mut(dir);
        change.apply(&mut d.live);
        d.pending.push(DirOp {
            op,
            change,
            partner,
            text,
        });
    }

    fn data_op(&mut self, ino: Ino, op: usize, change: DataChange) {
        let f = self.file_mut(ino);
        change.apply(&mut f.live);
        match change {
            DataChange::Write { offset, data } => {
                // Cut at 4 KiB boundaries of the file: a crash may keep any
                // prefix of these blocks.
                let end = offset + data.len();
                let mut pos = offset;
                while pos < end {
                    let next = ((pos / BLOCK + 1) * BLOCK).min(end);
                    f.pending.push(Chunk {
                        op,
                        change: DataChange::Write {
                            offset: pos,
                            data: data.slice(pos - offset, next - pos),
                        },
                    });
                    pos = next;
                }
            }
            t @ DataChange::Truncate(_) => f.pending.push(Chunk { op, change: t }),
        }
    }

    fn commit_file(&mut self, ino: Ino) {
        let f = self.file_mut(ino);
        f.durable = f.live.clone();
        f.pending.clear();
        f.ever_synced = true;
    }

    /// Makes the pending changes of `dir` durable, all of them or up to the
    /// one from log operation `through`; a cross-directory rename among
    /// them becomes durable in its other directory too, with every change
    /// before it there (entry changes persist in order per directory).
    fn commit_dir(&mut self, dir: Ino, through: Option<usize>) {
        let d = self.dir_mut(dir);
        let n = match through {
            None => d.pending.len(),
            Some(op) => match d.pending.iter().position(|x| x.op == op) {
                Some(i) => i + 1,
                None => return,
            },
        };
        let done: Vec<DirOp> = d.pending.drain(..n).collect();
        for o in &done {
            o.change.apply(&mut d.durable);
        }
        for o in done {
            if let Some(p) = o.partner {
                self.commit_dir(p, Some(o.op));
            }
        }
    }

    fn sync_inode(&mut self, ino: Ino) {
        match &self.nodes[ino] {
            Node::File(_) => self.commit_file(ino),
            Node::Dir(_) => {
                self.commit_dir(ino, None);
                self.dir_mut(ino).ever_synced = true;
            }
            Node::Symlink(_) => {}
        }
    }

    /// Applies operation number `index`. Every check comes before the
    /// first change, so a refused operation changes nothing.
    pub(crate) fn apply(&mut self, index: usize, op: &Op) -> Result<(), LogErrorKind> {
        match op {
            Op::Open {
                path,
                handle,
                flags,
            } => {
                if self.handles.contains_key(&handle.0) {
                    return Err(LogErrorKind::HandleInUse(handle.0));
                }
                let ino = match self.walk(path, true)? {
                    Walk::Found { ino, .. } => {
                        match &self.nodes[ino] {
                            Node::Dir(_) if flags.create || flags.truncate => {
                                return Err(LogErrorKind::IsADirectory(path.clone()))
                            }
                            Node::File(f) if flags.truncate && !f.live.is_empty() => {
                                self.data_op(ino, index, DataChange::Truncate(0));
                            }
                            _ => {}
                        }
                        ino
                    }
                    Walk::Missing { parent, name, .. } => {
                        if !flags.create {
                            return Err(LogErrorKind::NotFound(path.clone()));
                        }
                        let ino = self.new_node(Node::File(FileNode {
                            label: path.clone(),
                            ..FileNode::default()
                        }));
                        let text = format!("creation of {name}");
                        self.dir_op(parent, index, DirChange::Insert { name, ino }, None, text);
                        ino
                    }
                };
                self.handles.insert(handle.0, (ino, flags.sync));
            }
            Op::Close(h) => {
                if self.handles.remove(&h.0).is_none() {
                    return Err(LogErrorKind::UnknownHandle(h.0));
                }
            }
            Op::Write { file, offset, data } => {
                let (ino, mode) = self.file_target(file)?;
                if !data.is_empty() {
                    let change = DataChange::Write {
                        offset: *offset,
                        data: data.clone(),
                    };
                    self.data_op(ino, index, change);
                }
                if mode != SyncMode::None {
                    self.commit_file(ino);
                }
            }
            Op::Truncate { file, len } => {
                let (ino, _) = self.file_target(file)?;
                let f = self.file_mut(ino);
                if f.live.len() != *len {
                    self.data_op(ino, index, DataChange::Truncate(*len));
                }
            }
            Op::Fsync(file) | Op::Fdatasync(file) => {
                let (ino, _, _) = self.target(file)?;
                self.sync_inode(ino);
            }
            Op::Sync => {
                for ino in 0..self.nodes.len() {
                    self.sync_inode(ino);
                }
            }
            Op::Rename { from, to } => self.rename(index, from, to)?,
            Op::Link { from, to } => {
                let Walk::Found { ino, .. } = self.walk(from, false)? else {
                    return Err(LogErrorKind::NotFound(from.clone()));
                };
                if matches!(self.nodes[ino], Node::Dir(_)) {
                    return Err(LogErrorKind::IsADirectory(from.clone()));
                }
                let (parent, name) = self.missing(to)?;
                let text = format!("link of {from} as {name}");
                self.dir_op(parent, index, DirChange::Insert { name, ino }, None, text);
            }
            Op::Symlink { target, path } => {
                let (parent, name) = self.missing(path)?;
                let ino = self.new_node(Node::Symlink(target.clone()));
                let text = format!("symlink {name} -> {target}");
                self.dir_op(parent, index, DirChange::Insert { name, ino }, None, text);
            }
            Op::Unlink(path) => {
                let (ino, parent, name) = self.existing(path)?;
                if matches!(self.nodes[ino], Node::Dir(_)) {
                    return Err(LogErrorKind::IsADirectory(path.clone()));
                }
                let text = format!("unlink of {name}");
                self.dir_op(parent, index, DirChange::Remove { name }, None, text);
            }
            Op::Mkdir(path) => {
                let (parent, name) = self.missing(path)?;
                let ino = self.new_node(Node::Dir(DirNode {
                    label: path.clone(),
                    ..DirNode::default()
                }));
                let text = format!("mkdir of {name}");
                self.dir_op(parent, index, DirChange::Insert { name, ino }, None, text);
            }
            Op::Rmdir(path) => {
                let (ino, parent, name) = self.existing(path)?;
                match self.dir(ino) {
                    None => return Err(LogErrorKind::NotADirectory(path.clone())),
                    Some(d) if !d.live.is_empty() => {
                        return Err(LogErrorKind::NotEmpty(path.clone()))
                    }
                    Some(_) => {}
                }
                let text = format!("rmdir of {name}");
                self.dir_op(parent, index, DirChange::Remove { name }, None, text);
            }
        }
        Ok(())
    }

    /// The parent and name of a path that must not exist yet.
    fn missing(&self, path: &str) -> Result<(Ino, String), LogErrorKind> {
        match self.walk(path, false)? {
            Walk::Missing { parent, name, .. } => Ok((parent, name)),
            Walk::Found { .. } => Err(LogErrorKind::Exists(path.into())),
        }
    }

    /// The inode, parent and name of a path that must exist (not the root).
    fn existing(&self, path: &str) -> Result<(Ino, Ino, String), LogErrorKind> {
        match self.walk(path, false)? {
            Walk::Found {
                ino,
                parent: Some((p, n)),
                ..
            } => Ok((ino, p, n)),
            Walk::Found { parent: None, .. } => Err(LogErrorKind::InvalidRename(path.into())),
            Walk::Missing { .. } => Err(LogErrorKind::NotFound(path.into())),
        }
    }

    fn rename(&mut self, index: usize, from: &str, to: &str) -> Result<(), LogErrorKind> {
        let (src, sp, sname) = self.existing(from)?;
        let src_is_dir = matches!(self.nodes[src], Node::Dir(_));
        let (tp, tname, chain) = match self.walk(to, false)? {
            Walk::Missing {
                parent,
                name,
                chain,
            } => (parent, name, chain),
            Walk::Found {
                ino,
                parent: Some((p, n)),
                chain,
            } => {
                if ino == src {
                    return Ok(()); // two names of one inode: rename does nothing
                }
                match (&self.nodes[ino], src_is_dir) {
                    (Node::Dir(d), true) if !d.live.is_empty() => {
                        return Err(LogErrorKind::NotEmpty(to.into()))
                    }
                    (Node::Dir(_), true) => {}
                    (Node::Dir(_), false) => return Err(LogErrorKind::IsADirectory(to.into())),
                    (_, true) => return Err(LogErrorKind::NotADirectory(to.into())),
                    _ => {}
                }
                (p, n, chain)
            }
            Walk::Found { parent: None, .. } => return Err(LogErrorKind::InvalidRename(to.into())),
        };
        if src_is_dir && (chain.contains(&src) || tp == src) {
            return Err(LogErrorKind::InvalidRename(format!("{from} -> {to}")));
        }
        if sp == tp {
            let text = format!("rename of {sname} to {tname}");
            let change = DirChange::Move {
                from: sname,
                to: tname,
                ino: src,
            };
            self.dir_op(sp, index, change, None, text);
        } else {
            let text = format!("rename of {from} to {to}");
            self.dir_op(
                sp,
                index,
                DirChange::Remove { name: sname },
                Some(tp),
                text.clone(),
            );
            self.dir_op(
                tp,
                index,
                DirChange::Insert {
                    name: tname,
                    ino: src,
                },
                Some(sp),
                text,
            );
        }
        match &mut self.nodes[src] {
            Node::Dir(d) => d.label = to.into(),
            Node::File(f) => f.label = to.into(),
            Node::Symlink(_) => {}
        }
        Ok(())
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
