//! The manifest of one crash state: every entry under the sandbox (path
//! relative to its root → type, permission bits, modification time, content
//! or link target) and the events file as it was at that point. Its text form
//! is canonical, so its blake3 hash, the [`StateId`], says whether two states
//! are equal.
//!
//! ```
//! use crashpoint::store::{Entry, Manifest, Node};
//! let mut m = Manifest::default();
//! m.entries.insert("work".into(), Entry { node: Node::Dir, mode: 0o755, mtime: (1, 2) });
//! m.entries.insert("work/last.ckpt".into(),
//!     Entry { node: Node::Symlink("step=5.ckpt".into()), mode: 0o777, mtime: (3, 4) });
//! let text = m.to_text();
//! assert_eq!(Manifest::from_text(&text).unwrap(), m);
//! ```

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::{Content, Hash, StoreError};

/// A crash state's identity: the hash of its manifest's text form (which
/// is also the blob the store keeps it in).
pub type StateId = Hash;

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Node {
    /// A directory.
    Dir,
    /// A regular file with this content.
    File(Content),
    /// A symbolic link with this target, as written.
    Symlink(PathBuf),
    /// Another name of the file at this path (a hard link; the path sorts
    /// before this one in the manifest).
    HardLink(PathBuf),
}

/// One path of a state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// What it is.
    pub node: Node,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Modification time: seconds and nanoseconds since the epoch.
    pub mtime: (i64, i64),
}

/// One crash state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Every entry under the sandbox root, by path relative to it.
    pub entries: BTreeMap<PathBuf, Entry>,
    /// The events file as it was (absent: not there yet).
    pub events: Option<Content>,
}

/// Percent-encodes what would break a space-separated line.
fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if b <= b' ' || b == b'%' || b >= 0x7f {
            s.push_str(&format!("%{b:02x}"));
        } else {
            s.push(b as char);
        }
    }
    if s.is_empty() {
        s.push('%');
    }
    s
}

fn unescape(s: &str) -> Option<Vec<u8>> {
    if s == "%" {
        return Some(Vec::new());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

fn path_field(p: &Path) -> String {
    escape(p.as_os_str().as_bytes())
}

fn content_fields(c: &Content) -> String {
    let chunks: Vec<String> = c.chunks.iter().map(Hash::to_hex).collect();
    format!("{} {} {}", c.len, c.hash, chunks.join(","))
}

fn parse_content(len: &str, hash: &str, chunks: &str) -> Option<Content> {
    Some(Content {
        len: len.parse().ok()?,
        hash: Hash::from_hex(hash)?,
        chunks: chunks
            .split(',')
            .map(Hash::from_hex)
            .collect::<Option<Vec<_>>>()?,
    })
}

impl Manifest {
    /// The canonical text form: one line per entry, in path order, then the
    /// events line.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (path, e) in &self.entries {
            let head = format!("{:o} {}.{:09}", e.mode, e.mtime.0, e.mtime.1);
            let line = match &e.node {
                Node::Dir => format!("d {head} {}", path_field(path)),
                Node::File(c) => format!("f {head} {} {}", content_fields(c), path_field(path)),
                Node::Symlink(t) => format!("l {head} {} {}", path_field(t), path_field(path)),
                Node::HardLink(to) => format!("h {head} {} {}", path_field(to), path_field(path)),
            };
            s.push_str(&line);
            s.push('\n');
        }
        if let Some(c) = &self.events {
            s.push_str(&format!("e {}\n", content_fields(c)));
        }
        s
    }

    /// Reads [`Manifest::to_text`]'s form back.
    pub fn from_text(text: &str) -> Result<Manifest, StoreError> {
        let mut m = Manifest::default();
        for (i, line) in text.lines().enumerate() {
            let bad = |problem: &str| StoreError::Manifest {
                line: i + 1,
                problem: problem.to_string(),
            };
            let f: Vec<&str> = line.split(' ').collect();
            let path = |s: &str| {
                unescape(s)
                    .map(|b| PathBuf::from(OsString::from_vec(b)))
                    .ok_or_else(|| bad("bad path"))
            };
            if f.first() == Some(&"e") {
                let [_, len, hash, chunks] = f[..] else {
                    return Err(bad("bad events line"));
                };
                m.events = Some(parse_content(len, hash, chunks).ok_or_else(|| bad("bad events"))?);
                continue;
            }
            if f.len() < 4 {
                return Err(bad("too few fields"));
            }
            let mode = u32::from_str_radix(f[1], 8).map_err(|_| bad("bad mode"))?;
            let (s, ns) = f[2].split_once('.').ok_or_else(|| bad("bad mtime"))?;
            let mtime = (
                s.parse().map_err(|_| bad("bad mtime"))?,
                ns.parse().map_err(|_| bad("bad mtime"))?,
            );
            let (node, name) = match (f[0], f.len()) {
                ("d", 4) => (Node::Dir, f[3]),
                ("f", 7) => (
                    Node::File(parse_content(f[3], f[4], f[5]).ok_or_else(|| bad("bad content"))?),
                    f[6],
                ),
                ("l", 5) => (Node::Symlink(path(f[3])?), f[4]),
                ("h", 5) => (Node::HardLink(path(f[3])?), f[4]),
                _ => return Err(bad("unknown entry")),
            };
            m.entries.insert(path(name)?, Entry { node, mode, mtime });
        }
        Ok(m)
    }

    /// The paths (relative to the sandbox) whose entry differs between
    /// `self` and `other`, in path order: added, removed or changed.
    pub fn changed_paths(&self, other: &Manifest) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for (p, e) in &self.entries {
            if other.entries.get(p) != Some(e) {
                out.push(p.clone());
            }
        }
        for p in other.entries.keys() {
            if !self.entries.contains_key(p) {
                out.push(p.clone());
            }
        }
        out.sort();
        out
    }
}
