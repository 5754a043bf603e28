//! How each logged operation changes the model's file system: the
//! directory and data changes it records, and the syncs that make them
//! durable.

use super::*;

impl Fs {
    pub(super) fn dir_op(
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

    pub(super) fn data_op(&mut self, ino: Ino, op: usize, change: DataChange) {
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

    pub(super) fn commit_file(&mut self, ino: Ino) {
        let f = self.file_mut(ino);
        f.durable = f.live.clone();
        f.pending.clear();
        f.ever_synced = true;
    }

    /// Makes the pending changes of `dir` durable, all of them or up to the
    /// one from log operation `through`; a cross-directory rename among
    /// them becomes durable in its other directory too, with every change
    /// before it there (entry changes persist in order per directory).
    pub(super) fn commit_dir(&mut self, dir: Ino, through: Option<usize>) {
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

    pub(super) fn sync_inode(&mut self, ino: Ino) {
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
    pub(super) fn missing(&self, path: &str) -> Result<(Ino, String), LogErrorKind> {
        match self.walk(path, false)? {
            Walk::Missing { parent, name, .. } => Ok((parent, name)),
            Walk::Found { .. } => Err(LogErrorKind::Exists(path.into())),
        }
    }

    /// The inode, parent and name of a path that must exist (not the root).
    pub(super) fn existing(&self, path: &str) -> Result<(Ino, Ino, String), LogErrorKind> {
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

    pub(super) fn rename(
        &mut self,
        index: usize,
        from: &str,
        to: &str,
    ) -> Result<(), LogErrorKind> {
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
}
