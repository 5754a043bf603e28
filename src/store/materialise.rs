//! Rebuilds a crash state in a fresh directory: directories, files (from
//! their chunks, each given its permission bits and modification time as it
//! is written), symbolic links and hard links, then the links' times and the
//! directories' bits and times (directories last, deepest first, since
//! filling a directory changes its mtime).
//!
//! A state recorded in one sandbox is rebuilt in another, whose root has
//! another path: absolute paths the subject wrote (an absolute link target,
//! a path inside a file, the `saved` events) still name the recording
//! sandbox. A [`Relocation`] rewrites them. Campaigns give both sandboxes
//! roots of the same length, so a file's length and offsets never change.

use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::manifest::{Entry, Manifest, Node};
use super::{io_err, Content, Store, StoreError};

/// Rewrite `from` (the recording sandbox's root) into `to` (this one's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relocation {
    /// The root the state was recorded under.
    pub from: Vec<u8>,
    /// The root it is rebuilt under.
    pub to: Vec<u8>,
}

impl Relocation {
    /// From `from` to `to`; `None` when they are the same.
    pub fn between(from: &Path, to: &Path) -> Option<Relocation> {
        (from != to).then(|| Relocation {
            from: from.as_os_str().as_bytes().to_vec(),
            to: to.as_os_str().as_bytes().to_vec(),
        })
    }

    /// `bytes` with every occurrence of `from` replaced (left to right, not
    /// overlapping); `None` if none.
    pub fn apply(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let n = self.from.len();
        if n == 0 || bytes.len() < n {
            return None;
        }
        let mut out: Option<Vec<u8>> = None;
        let mut last = 0;
        for i in memchr::memmem::find_iter(bytes, &self.from) {
            if i < last {
                // Overlaps the occurrence just replaced.
                continue;
            }
            let o = out.get_or_insert_with(|| Vec::with_capacity(bytes.len()));
            o.extend_from_slice(&bytes[last..i]);
            o.extend_from_slice(&self.to);
            last = i + n;
        }
        out.map(|mut o| {
            o.extend_from_slice(&bytes[last..]);
            o
        })
    }

    fn path(&self, p: &Path) -> PathBuf {
        match self.apply(p.as_os_str().as_bytes()) {
            Some(b) => PathBuf::from(std::ffi::OsString::from_vec(b)),
            None => p.to_path_buf(),
        }
    }
}

/// Writes `content` to `dest` (a new file), relocated.
pub fn write_content(
    store: &Store,
    content: &Content,
    dest: &Path,
    reloc: Option<&Relocation>,
) -> Result<(), StoreError> {
    if let ([one], None) = (content.chunks.as_slice(), reloc) {
        std::fs::copy(store.path_of(one), dest).map_err(io_err("cannot write", dest))?;
        return Ok(());
    }
    let bytes = store.read_content(content)?;
    let bytes = reloc.and_then(|r| r.apply(&bytes)).unwrap_or(bytes);
    std::fs::write(dest, bytes).map_err(io_err("cannot write", dest))
}

/// Writes the file `e` (whose content is `content`) to `dest`, relocated,
/// with its permission bits and modification time, all through one open
/// file (no path is looked up again).
fn write_file(
    store: &Store,
    e: &Entry,
    content: &Content,
    dest: &Path,
    reloc: Option<&Relocation>,
) -> Result<(), StoreError> {
    use std::io::Write;
    let bytes = store.read_content(content)?;
    let bytes = reloc.and_then(|r| r.apply(&bytes)).unwrap_or(bytes);
    let mut f = std::fs::File::create(dest).map_err(io_err("cannot write", dest))?;
    f.write_all(&bytes).map_err(io_err("cannot write", dest))?;
    f.set_permissions(std::fs::Permissions::from_mode(e.mode))
        .map_err(io_err("cannot set the mode of", dest))?;
    let t = TimeSpec::new(e.mtime.0, e.mtime.1);
    nix::sys::stat::futimens(std::os::fd::AsRawFd::as_raw_fd(&f), &t, &t)
        .map_err(|err| io_err("cannot set the time of", dest)(err.into()))
}

/// Is `path` a directory (not a link to one)?
fn kept_dir(path: &Path) -> bool {
    path.symlink_metadata().is_ok_and(|m| m.is_dir())
}

fn set_mtime(path: &Path, (s, ns): (i64, i64)) -> Result<(), StoreError> {
    let t = TimeSpec::new(s, ns);
    utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| io_err("cannot set the time of", path)(e.into()))
}

/// Makes `root` ready for [`materialise`]: removes everything under it but
/// the directories `manifest` has as directories (a link is removed as a
/// link, never followed). A fresh sandbox of the layout the state was
/// recorded in keeps all its directories.
pub fn clear_for(manifest: &Manifest, root: &Path) -> std::io::Result<()> {
    clear_under(manifest, root, Path::new(""))
}

fn clear_under(manifest: &Manifest, root: &Path, rel: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(root.join(rel))? {
        let e = e?;
        let r = rel.join(e.file_name());
        let t = e.file_type()?;
        let kept = matches!(manifest.entries.get(&r).map(|x| &x.node), Some(Node::Dir));
        if t.is_dir() && kept {
            clear_under(manifest, root, &r)?;
        } else if t.is_dir() {
            std::fs::remove_dir_all(e.path())?;
        } else {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// Rebuilds `manifest` under `root`, an existing directory that holds
/// nothing but some of the manifest's directories (empty, or as
/// [`clear_for`] left it), and writes its events file to `events` (when
/// both exist).
pub fn materialise(
    store: &Store,
    manifest: &Manifest,
    root: &Path,
    events: Option<&Path>,
    reloc: Option<&Relocation>,
) -> Result<(), StoreError> {
    for (rel, e) in &manifest.entries {
        let full = root.join(rel);
        match &e.node {
            Node::Dir => match std::fs::create_dir(&full) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && kept_dir(&full) => {}
                r => r.map_err(io_err("cannot create", &full))?,
            },
            // Its time is set now: a hard link made later does not change it.
            Node::File(c) => write_file(store, e, c, &full, reloc)?,
            Node::Symlink(t) => {
                let t = reloc.map_or_else(|| t.clone(), |r| r.path(t));
                std::os::unix::fs::symlink(&t, &full).map_err(io_err("cannot create", &full))?;
            }
            Node::HardLink(_) => {}
        }
    }
    for (rel, e) in &manifest.entries {
        if let Node::HardLink(to) = &e.node {
            let full = root.join(rel);
            std::fs::hard_link(root.join(to), &full).map_err(io_err("cannot link", &full))?;
        }
    }
    for (rel, e) in &manifest.entries {
        if matches!(e.node, Node::Symlink(_) | Node::HardLink(_)) {
            set_mtime(&root.join(rel), e.mtime)?;
        }
    }
    for (rel, e) in manifest.entries.iter().rev() {
        if e.node == Node::Dir {
            let full = root.join(rel);
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(e.mode))
                .map_err(io_err("cannot set the mode of", &full))?;
            set_mtime(&full, e.mtime)?;
        }
    }
    if let (Some(path), Some(c)) = (events, &manifest.events) {
        write_content(store, c, path, reloc)?;
    }
    Ok(())
}
