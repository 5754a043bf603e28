//! The crash-state store: content-addressed blobs (blake3), each stored once,
//! and one small manifest per crash state.
//!
//! A file's content is kept as a list of fixed-size chunks, so that a file
//! that grows between two captured points costs only its new bytes (and its
//! last chunk again), never its whole size per point: the store grows with
//! the bytes written, not with points × directory size.
//!
//! * [`manifest`]: what a crash state is (path → type, mode, mtime, content
//!   or link target; the events written so far), its text form and its id;
//! * [`capture`]: keeps the manifest of a live sandbox up to date from the
//!   paths that changed since the last captured point;
//! * [`materialise`](mod@materialise): rebuilds a state in a fresh directory.
//!
//! ```
//! use crashpoint::store::Store;
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::create(dir.path().join("store")).unwrap();
//! let a = store.put(b"hello").unwrap();
//! let b = store.put(b"hello").unwrap();
//! assert_eq!(a, b);
//! assert_eq!(store.bytes_stored(), 5);
//! assert_eq!(store.get(&a).unwrap(), b"hello");
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub mod capture;
pub mod manifest;
pub mod materialise;

pub use capture::Capturer;
pub use manifest::{Entry, Manifest, Node, StateId};
pub use materialise::{clear_for, materialise, Relocation};

/// The size of the chunks file contents are split into.
pub const CHUNK: usize = 64 * 1024;

/// A blake3 content hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }

    /// Lower-case hexadecimal, 64 characters.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from(self.0).to_hex().to_string()
    }

    /// Parses [`Hash::to_hex`]'s form.
    pub fn from_hex(s: &str) -> Option<Hash> {
        blake3::Hash::from_hex(s).ok().map(|h| Hash(*h.as_bytes()))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..12])
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A file's content as the store keeps it: its length, the hash of the
/// whole content, and the chunks it is made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Content {
    /// Length in bytes.
    pub len: u64,
    /// blake3 of the whole content.
    pub hash: Hash,
    /// The chunks, [`CHUNK`] bytes each but the last.
    pub chunks: Vec<Hash>,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing the store or a sandbox failed.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A manifest could not be read back.
    #[error("malformed manifest line {line}: {problem}")]
    Manifest {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        problem: String,
    },
}

pub(crate) fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { what, path, source }
}

/// How many bytes of blobs a store keeps in memory as well: every case
/// materialises its states from the store, and a blob read from memory
/// costs no open, read and close. The first blobs stored or read are kept
/// until the store is dropped; once this much is kept the rest is read from
/// its file every time. Kept small: the harness's memory is to stay flat
/// however many cases a campaign has (`cargo bench --bench memory`), and
/// the cache fills with the cases.
pub const CACHE_BYTES: usize = 1 << 20;

/// A directory of blobs named by their hash.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    known: Mutex<HashSet<Hash>>,
    stored: AtomicU64,
    cache: Mutex<Cache>,
}

/// The blobs kept in memory (see [`CACHE_BYTES`]).
#[derive(Debug, Default)]
struct Cache {
    blobs: HashMap<Hash, Arc<[u8]>>,
    bytes: usize,
}

impl Cache {
    fn keep(&mut self, h: Hash, bytes: &[u8]) {
        if self.bytes + bytes.len() <= CACHE_BYTES && !self.blobs.contains_key(&h) {
            self.bytes += bytes.len();
            self.blobs.insert(h, Arc::from(bytes));
        }
    }
}

impl Store {
    /// Creates (or reuses) the store directory `dir`.
    pub fn create(dir: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io_err("cannot create the store", &dir))?;
        Ok(Store {
            dir,
            known: Mutex::new(HashSet::new()),
            stored: AtomicU64::new(0),
            cache: Mutex::new(Cache::default()),
        })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of blobs this store has written (each distinct blob once).
    pub fn bytes_stored(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    /// Where the blob `h` lives.
    pub fn path_of(&self, h: &Hash) -> PathBuf {
        self.dir.join(h.to_hex())
    }

    /// Stores `bytes` (once) and returns their hash.
    pub fn put(&self, bytes: &[u8]) -> Result<Hash, StoreError> {
        let h = Hash::of(bytes);
        self.put_hashed(h, bytes)?;
        Ok(h)
    }

    /// [`Store::put`] of `bytes` whose hash `h` is known.
    fn put_hashed(&self, h: Hash, bytes: &[u8]) -> Result<(), StoreError> {
        let fresh = self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(h);
        if fresh {
            let path = self.path_of(&h);
            // Written under a temporary name, so a reader never sees half a blob.
            let tmp = self.dir.join(format!("{}.tmp", h.to_hex()));
            std::fs::write(&tmp, bytes).map_err(io_err("cannot write blob", &tmp))?;
            std::fs::rename(&tmp, &path).map_err(io_err("cannot write blob", &path))?;
            self.stored.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            self.cache().keep(h, bytes);
        }
        Ok(())
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The blob `h`.
    pub fn get(&self, h: &Hash) -> Result<Vec<u8>, StoreError> {
        if let Some(b) = self.cache().blobs.get(h) {
            return Ok(b.to_vec());
        }
        let path = self.path_of(h);
        let bytes = std::fs::read(&path).map_err(io_err("cannot read blob", &path))?;
        self.cache().keep(*h, &bytes);
        Ok(bytes)
    }

    /// Stores the content of the file at `path`, chunk by chunk.
    pub fn put_file(&self, path: &Path) -> Result<Content, StoreError> {
        let mut f = std::fs::File::open(path).map_err(io_err("cannot read", path))?;
        let mut whole = blake3::Hasher::new();
        let mut chunks = Vec::new();
        let mut len = 0u64;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let mut filled = 0;
            while filled < CHUNK {
                match f.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_err("cannot read", path)(e)),
                }
            }
            if filled == 0 && !chunks.is_empty() {
                break;
            }
            if chunks.is_empty() && filled < CHUNK {
                // The only chunk: the whole content's hash is its hash.
                let h = Hash::of(&buf[..filled]);
                self.put_hashed(h, &buf[..filled])?;
                return Ok(Content {
                    len: filled as u64,
                    hash: h,
                    chunks: vec![h],
                });
            }
            whole.update(&buf[..filled]);
            len += filled as u64;
            chunks.push(self.put(&buf[..filled])?);
            if filled < CHUNK {
                break;
            }
        }
        Ok(Content {
            len,
            hash: Hash(*whole.finalize().as_bytes()),
            chunks,
        })
    }

    /// Stores `bytes` as a [`Content`] (the events file, say).
    pub fn put_content(&self, bytes: &[u8]) -> Result<Content, StoreError> {
        let mut chunks = Vec::new();
        for c in bytes.chunks(CHUNK) {
            chunks.push(self.put(c)?);
        }
        if chunks.is_empty() {
            chunks.push(self.put(b"")?);
        }
        Ok(Content {
            len: bytes.len() as u64,
            hash: Hash::of(bytes),
            chunks,
        })
    }

    /// The bytes of `content`.
    pub fn read_content(&self, content: &Content) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::with_capacity(content.len as usize);
        for c in &content.chunks {
            let kept = self.cache().blobs.get(c).cloned();
            match kept {
                Some(b) => out.extend_from_slice(&b),
                None => out.extend_from_slice(&self.get(c)?),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
