//! Incremental capture: the manifest of a live sandbox, kept up to date from
//! the paths that changed since the last captured point (the tracer and the
//! simulated trainer's I/O layer both know them), so that a point costs the
//! entries and bytes that changed, not the whole directory.
//!
//! Rules, each sound for the calls that are traced: a changed path is looked
//! at again (and everything below it, when it is or was a directory: a
//! renamed directory moves its whole subtree); its parent's metadata is
//! refreshed (an entry added or removed changes the directory's mtime); its
//! missing ancestors are added; a file with several hard links refreshes
//! every name of the same inode.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::manifest::{Entry, Manifest, Node, StateId};
use super::{io_err, Store, StoreError};

/// The manifest of one live sandbox.
#[derive(Debug)]
pub struct Capturer<'a> {
    store: &'a Store,
    root: PathBuf,
    events: Option<PathBuf>,
    current: Manifest,
    /// (dev, inode) of the files with more than one link, per path.
    inodes: BTreeMap<PathBuf, (u64, u64)>,
    /// Bytes of file content, events and manifests handled so far.
    handled: u64,
}

fn mtime_of(m: &std::fs::Metadata) -> (i64, i64) {
    (m.mtime(), m.mtime_nsec())
}

impl<'a> Capturer<'a> {
    /// A capturer of the sandbox at `root` (canonical), also keeping the
    /// events file at `events`. Starts empty: call [`Capturer::scan_all`].
    pub fn new(store: &'a Store, root: &Path, events: Option<&Path>) -> Capturer<'a> {
        Capturer {
            store,
            root: root.to_path_buf(),
            events: events.map(Path::to_path_buf),
            current: Manifest::default(),
            inodes: BTreeMap::new(),
            handled: 0,
        }
    }

    /// How many bytes the captures have handled so far (file content and
    /// events read and hashed, manifests written): their cost, which a
    /// caller may cap.
    pub fn bytes_handled(&self) -> u64 {
        self.handled
    }

    /// The manifest as last updated.
    pub fn manifest(&self) -> &Manifest {
        &self.current
    }

    /// Forgets everything and looks at the whole sandbox.
    pub fn scan_all(&mut self) -> Result<(), StoreError> {
        self.current.entries.clear();
        self.inodes.clear();
        let names = list(&self.root)?;
        for n in names {
            self.add_tree(PathBuf::from(n))?;
        }
        Ok(())
    }

    /// Looks again at `changed` (absolute paths, or relative to the root;
    /// paths outside the sandbox are ignored).
    pub fn update<I, P>(&mut self, changed: I) -> Result<(), StoreError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<Path>,
    {
        let mut rels: Vec<PathBuf> = Vec::new();
        for p in changed {
            let p = p.as_ref();
            let rel = if p.is_absolute() {
                match p.strip_prefix(&self.root) {
                    Ok(r) => r.to_path_buf(),
                    Err(_) => continue,
                }
            } else {
                p.to_path_buf()
            };
            if !rel.as_os_str().is_empty() && !rels.contains(&rel) {
                rels.push(rel);
            }
        }
        for rel in &rels {
            self.refresh(rel)?;
        }
        Ok(())
    }

    /// Stores the manifest as it is now (with the events file read afresh)
    /// and returns its id.
    pub fn capture(&mut self) -> Result<StateId, StoreError> {
        self.current.events = match &self.events {
            Some(p) => match std::fs::read(p) {
                Ok(bytes) => {
                    self.handled += bytes.len() as u64;
                    Some(self.store.put_content(&bytes)?)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(io_err("cannot read", p)(e)),
            },
            None => None,
        };
        self.link_names();
        let text = self.current.to_text();
        self.handled += text.len() as u64;
        self.store.put(text.as_bytes())
    }

    /// Turns the second and later names of an inode into hard links to the
    /// first.
    fn link_names(&mut self) {
        let mut first: HashMap<(u64, u64), PathBuf> = HashMap::new();
        for (path, ino) in &self.inodes {
            match first.get(ino) {
                None => {
                    first.insert(*ino, path.clone());
                }
                Some(to) => {
                    if let Some(e) = self.current.entries.get_mut(path) {
                        e.node = Node::HardLink(to.clone());
                    }
                }
            }
        }
    }

    fn refresh(&mut self, rel: &Path) -> Result<(), StoreError> {
        // Same-inode names first: their content may have changed too.
        if let Some(ino) = self.inodes.get(rel).copied() {
            let others: Vec<PathBuf> = self
                .inodes
                .iter()
                .filter(|(p, i)| **i == ino && p.as_path() != rel)
                .map(|(p, _)| p.clone())
                .collect();
            for o in others {
                self.remove_tree(&o);
                self.add_tree(o)?;
            }
        }
        self.remove_tree(rel);
        self.add_tree(rel.to_path_buf())?;
        // The parent's entries changed; ancestors may be new.
        let mut up = rel.parent();
        while let Some(p) = up.filter(|p| !p.as_os_str().is_empty()) {
            let known = self.current.entries.contains_key(p);
            self.add_one(p)?;
            if known {
                break;
            }
            up = p.parent();
        }
        Ok(())
    }

    fn remove_tree(&mut self, rel: &Path) {
        let below: Vec<PathBuf> = self
            .current
            .entries
            .range(rel.to_path_buf()..)
            .take_while(|(p, _)| p.starts_with(rel))
            .map(|(p, _)| p.clone())
            .collect();
        for p in below {
            self.current.entries.remove(&p);
            self.inodes.remove(&p);
        }
    }

    /// Adds `rel` and, for a directory, everything below it.
    fn add_tree(&mut self, rel: PathBuf) -> Result<(), StoreError> {
        if self.add_one(&rel)? {
            for n in list(&self.root.join(&rel))? {
                self.add_tree(rel.join(n))?;
            }
        }
        Ok(())
    }

    /// Adds (or replaces) the entry of `rel` alone; true if it is a directory.
    fn add_one(&mut self, rel: &Path) -> Result<bool, StoreError> {
        let full = self.root.join(rel);
        let meta = match std::fs::symlink_metadata(&full) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.current.entries.remove(rel);
                self.inodes.remove(rel);
                return Ok(false);
            }
            Err(e) => return Err(io_err("cannot look at", &full)(e)),
        };
        let ft = meta.file_type();
        let node = if ft.is_dir() {
            Node::Dir
        } else if ft.is_symlink() {
            Node::Symlink(std::fs::read_link(&full).map_err(io_err("cannot read link", &full))?)
        } else if ft.is_file() {
            self.handled += meta.len();
            Node::File(self.store.put_file(&full)?)
        } else {
            // Sockets, FIFOs and devices are not checkpoint state.
            self.current.entries.remove(rel);
            return Ok(false);
        };
        if ft.is_file() && meta.nlink() > 1 {
            self.inodes
                .insert(rel.to_path_buf(), (meta.dev(), meta.ino()));
        } else {
            self.inodes.remove(rel);
        }
        let is_dir = node == Node::Dir;
        self.current.entries.insert(
            rel.to_path_buf(),
            Entry {
                node,
                mode: meta.mode() & 0o7777,
                mtime: mtime_of(&meta),
            },
        );
        Ok(is_dir)
    }
}

fn list(dir: &Path) -> Result<Vec<std::ffi::OsString>, StoreError> {
    let mut names = Vec::new();
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        // Gone, or not readable by its owner any more: nothing to add.
        Err(_) => return Ok(names),
    };
    for e in read {
        names.push(e.map_err(io_err("cannot list", dir))?.file_name());
    }
    names.sort();
    Ok(names)
}
