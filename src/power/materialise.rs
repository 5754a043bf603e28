//! Writing a crash state into a directory on disk.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::rope::{ContentHash, Piece};
use super::states::{CrashState, Entry};

/// Why a state could not be written out.
#[derive(Debug, thiserror::Error)]
pub enum MaterialiseError {
    /// A file system call failed.
    #[error("{path}: {source}")]
    Io {
        /// The path being written.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The content lookup failed for a stored blob.
    #[error("blob {hash} (for {path}): {source}")]
    Lookup {
        /// The blob's hash, in hexadecimal.
        hash: String,
        /// The file that needed it.
        path: PathBuf,
        /// What the lookup said.
        #[source]
        source: std::io::Error,
    },
    /// A stored blob is shorter than a reference into it.
    #[error("blob {hash} (for {path}) has {have} bytes, {need} needed")]
    ShortBlob {
        /// The blob's hash, in hexadecimal.
        hash: String,
        /// The file that needed it.
        path: PathBuf,
        /// Its length.
        have: usize,
        /// The end of the range used.
        need: u64,
    },
    /// A path of the state is not a plain relative path.
    #[error("{0}: not a relative path below the target directory")]
    BadPath(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MaterialiseError + '_ {
    move |source| MaterialiseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `state` below `dir` (which must exist; entries already there are
/// not removed, and an existing path makes this fail). `lookup` returns the
/// whole blob a hash names; each blob is looked up once per run of
/// consecutive references to it.
pub fn materialise(
    state: &CrashState,
    dir: &Path,
    mut lookup: impl FnMut(&ContentHash) -> std::io::Result<Vec<u8>>,
) -> Result<(), MaterialiseError> {
    let mut cached: Option<(ContentHash, Vec<u8>)> = None;
    for (rel, entry) in &state.entries {
        if rel.is_empty()
            || rel.starts_with('/')
            || rel
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(MaterialiseError::BadPath(rel.clone()));
        }
        let path = dir.join(rel);
        match entry {
            Entry::Dir => std::fs::create_dir(&path).map_err(io(&path))?,
            Entry::Symlink(target) => {
                std::os::unix::fs::symlink(target, &path).map_err(io(&path))?
            }
            Entry::File(rope) => {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(io(&path))?;
                let zeros = [0u8; 4096];
                for piece in rope.pieces() {
                    match piece {
                        Piece::Bytes { data, start, len } => {
                            f.write_all(&data[*start..start + len]).map_err(io(&path))?
                        }
                        Piece::Zeros(n) => {
                            let mut left = *n;
                            while left > 0 {
                                let k = left.min(zeros.len() as u64) as usize;
                                f.write_all(&zeros[..k]).map_err(io(&path))?;
                                left -= k as u64;
                            }
                        }
                        Piece::Ref { hash, start, len } => {
                            let hit = matches!(&cached, Some((h, _)) if h == hash);
                            if !hit {
                                let blob =
                                    lookup(hash).map_err(|source| MaterialiseError::Lookup {
                                        hash: hash.to_hex(),
                                        path: path.clone(),
                                        source,
                                    })?;
                                cached = Some((*hash, blob));
                            }
                            let blob = cached.as_ref().map(|(_, b)| b.as_slice()).unwrap_or(&[]);
                            let end = start + len;
                            if end > blob.len() as u64 {
                                return Err(MaterialiseError::ShortBlob {
                                    hash: hash.to_hex(),
                                    path: path.clone(),
                                    have: blob.len(),
                                    need: end,
                                });
                            }
                            f.write_all(&blob[*start as usize..end as usize])
                                .map_err(io(&path))?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
