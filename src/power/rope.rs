//! File content as a rope of pieces: literal bytes, runs of zeros, and
//! ranges of blobs named by their blake3 hash in a content-addressed store.
//!
//! The model never needs the bytes behind a hash: it only cuts, splices and
//! compares ranges. A store that already holds every blob a traced subject
//! wrote can therefore feed the model without copying, and the bytes are
//! fetched once, when a crash state is materialised on disk.

use std::fmt;
use std::sync::Arc;

/// The blake3 hash of a whole blob in a content-addressed store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The hash of `bytes`, as a store would name them.
    pub fn of(bytes: &[u8]) -> ContentHash {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }

    /// Lower-case hexadecimal, 64 characters.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl From<blake3::Hash> for ContentHash {
    fn from(h: blake3::Hash) -> ContentHash {
        ContentHash(*h.as_bytes())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({}…)", &self.to_hex()[..12])
    }
}

/// One contiguous stretch of a rope.
#[derive(Clone, Debug)]
pub enum Piece {
    /// `len` bytes of `data` starting at `start`.
    Bytes {
        /// The shared buffer.
        data: Arc<[u8]>,
        /// First byte used.
        start: usize,
        /// Bytes used.
        len: usize,
    },
    /// `len` zero bytes (a hole, or a file extended by truncate).
    Zeros(u64),
    /// `len` bytes of the stored blob `hash`, starting at `start`.
    Ref {
        /// The blob.
        hash: ContentHash,
        /// First byte used.
        start: u64,
        /// Bytes used.
        len: u64,
    },
}

impl Piece {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Piece::Bytes { len, .. } => *len as u64,
            Piece::Zeros(len) => *len,
            Piece::Ref { len, .. } => *len,
        }
    }

    /// Whether the piece holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sub-piece `[from, from + len)` of this piece.
    fn sub(&self, from: u64, len: u64) -> Piece {
        debug_assert!(from + len <= self.len());
        match self {
            Piece::Bytes { data, start, .. } => Piece::Bytes {
                data: Arc::clone(data),
                start: start + from as usize,
                len: len as usize,
            },
            Piece::Zeros(_) => Piece::Zeros(len),
            Piece::Ref { hash, start, .. } => Piece::Ref {
                hash: *hash,
                start: start + from,
                len,
            },
        }
    }

    /// Appends `next` to `self` when both describe one contiguous stretch.
    fn try_merge(&mut self, next: &Piece) -> bool {
        match (self, next) {
            (Piece::Zeros(a), Piece::Zeros(b)) => {
                *a += b;
                true
            }
            (
                Piece::Ref { hash, start, len },
                Piece::Ref {
                    hash: h2,
                    start: s2,
                    len: l2,
                },
            ) if hash == h2 && *start + *len == *s2 => {
                *len += l2;
                true
            }
            (
                Piece::Bytes { data, start, len },
                Piece::Bytes {
                    data: d2,
                    start: s2,
                    len: l2,
                },
            ) if Arc::ptr_eq(data, d2) && *start + *len == *s2 => {
                *len += l2;
                true
            }
            _ => false,
        }
    }
}

/// File content: an ordered list of pieces. Cloning is cheap (buffers are
/// shared); equality compares content, not the way it is cut into pieces.
#[derive(Clone, Debug, Default)]
pub struct Rope {
    pieces: Vec<Piece>,
    len: u64,
}

impl Rope {
    /// The empty content.
    pub fn new() -> Rope {
        Rope::default()
    }

    /// Literal bytes.
    pub fn from_bytes(bytes: impl Into<Arc<[u8]>>) -> Rope {
        let data: Arc<[u8]> = bytes.into();
        let len = data.len();
        let mut r = Rope::new();
        r.push(Piece::Bytes {
            data,
            start: 0,
            len,
        });
        r
    }

    /// The whole stored blob `hash`, `len` bytes long.
    pub fn from_ref(hash: ContentHash, len: u64) -> Rope {
        let mut r = Rope::new();
        r.push(Piece::Ref {
            hash,
            start: 0,
            len,
        });
        r
    }

    /// `len` zero bytes.
    pub fn zeros(len: u64) -> Rope {
        let mut r = Rope::new();
        r.push(Piece::Zeros(len));
        r
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// Appends one piece, merging it with the last one where contiguous.
    pub fn push(&mut self, piece: Piece) {
        if piece.is_empty() {
            return;
        }
        self.len += piece.len();
        if let Some(last) = self.pieces.last_mut() {
            if last.try_merge(&piece) {
                return;
            }
        }
        self.pieces.push(piece);
    }

    /// Appends a whole rope.
    pub fn append(&mut self, other: &Rope) {
        for p in &other.pieces {
            self.push(p.clone());
        }
    }

    /// The bytes `[from, from + len)`, clamped to the content.
    pub fn slice(&self, from: u64, len: u64) -> Rope {
        let end = from.saturating_add(len).min(self.len);
        let mut out = Rope::new();
        if from >= end {
            return out;
        }
        let mut pos = 0u64;
        for p in &self.pieces {
            let (ps, pe) = (pos, pos + p.len());
            pos = pe;
            if pe <= from {
                continue;
            }
            if ps >= end {
                break;
            }
            let a = from.max(ps);
            let b = end.min(pe);
            out.push(p.sub(a - ps, b - a));
        }
        out
    }

    /// Cuts or extends (with zeros) the content to `len` bytes, as
    /// `ftruncate` does.
    pub fn truncate(&mut self, len: u64) {
        if len >= self.len {
            let grow = len - self.len;
            self.push(Piece::Zeros(grow));
        } else {
            *self = self.slice(0, len);
        }
    }

    /// Writes `data` at `offset`, as `pwrite` does: a write past the end
    /// leaves a hole of zeros.
    pub fn write_at(&mut self, offset: u64, data: &Rope) {
        if data.is_empty() {
            return;
        }
        if offset >= self.len {
            self.push(Piece::Zeros(offset - self.len));
            self.append(data);
            return;
        }
        let end = offset + data.len;
        let mut out = self.slice(0, offset);
        out.append(data);
        if end < self.len {
            out.append(&self.slice(end, self.len - end));
        }
        *self = out;
    }

    /// The literal bytes when the rope holds no store reference.
    pub fn to_vec(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len as usize);
        for p in &self.pieces {
            match p {
                Piece::Bytes { data, start, len } => {
                    out.extend_from_slice(&data[*start..start + len])
                }
                Piece::Zeros(n) => out.resize(out.len() + *n as usize, 0),
                Piece::Ref { .. } => return None,
            }
        }
        Some(out)
    }

    /// A digest of the content that equal ropes share however they are cut:
    /// literal bytes and zeros are hashed as bytes, store references by
    /// hash and range (two references are equal only to each other).
    pub fn fingerprint(&self) -> [u8; 32] {
        // Maximal runs of literal bytes and zeros are hashed as byte
        // streams; maximal contiguous store ranges by name and range.
        enum Run {
            None,
            Bytes(Box<blake3::Hasher>, u64),
            Ref(ContentHash, u64, u64),
        }
        fn close(outer: &mut blake3::Hasher, run: Run) {
            match run {
                Run::None => {}
                Run::Bytes(inner, n) => {
                    outer.update(&[0x00]);
                    outer.update(inner.finalize().as_bytes());
                    outer.update(&n.to_le_bytes());
                }
                Run::Ref(hash, start, len) => {
                    outer.update(&[0xff]);
                    outer.update(&hash.0);
                    outer.update(&start.to_le_bytes());
                    outer.update(&len.to_le_bytes());
                }
            }
        }
        let mut outer = blake3::Hasher::new();
        let mut run = Run::None;
        for p in &self.pieces {
            match p {
                Piece::Ref { hash, start, len } => {
                    if let Run::Ref(h, s, l) = &mut run {
                        if h == hash && *s + *l == *start {
                            *l += len;
                            continue;
                        }
                    }
                    close(
                        &mut outer,
                        std::mem::replace(&mut run, Run::Ref(*hash, *start, *len)),
                    );
                }
                Piece::Bytes { .. } | Piece::Zeros(_) => {
                    if !matches!(run, Run::Bytes(..)) {
                        close(
                            &mut outer,
                            std::mem::replace(
                                &mut run,
                                Run::Bytes(Box::new(blake3::Hasher::new()), 0),
                            ),
                        );
                    }
                    if let Run::Bytes(inner, n) = &mut run {
                        *n += p.len();
                        match p {
                            Piece::Bytes { data, start, len } => {
                                inner.update(&data[*start..start + len]);
                            }
                            _ => {
                                let block = [0u8; 4096];
                                let mut left = p.len();
                                while left > 0 {
                                    let k = left.min(block.len() as u64) as usize;
                                    inner.update(&block[..k]);
                                    left -= k as u64;
                                }
                            }
                        }
                    }
                }
            }
        }
        close(&mut outer, run);
        *outer.finalize().as_bytes()
    }
}

impl PartialEq for Rope {
    /// Content equality: literal bytes and zeros compare byte by byte; a
    /// store reference equals only the same range of the same blob.
    fn eq(&self, other: &Rope) -> bool {
        if self.len != other.len {
            return false;
        }
        let (mut i, mut j) = (0usize, 0usize);
        let (mut oi, mut oj) = (0u64, 0u64); // offsets inside pieces i and j
        while i < self.pieces.len() && j < other.pieces.len() {
            let (a, b) = (&self.pieces[i], &other.pieces[j]);
            let n = (a.len() - oi).min(b.len() - oj);
            let same = match (a.sub(oi, n), b.sub(oj, n)) {
                (Piece::Zeros(_), Piece::Zeros(_)) => true,
                (
                    Piece::Ref {
                        hash: h1,
                        start: s1,
                        ..
                    },
                    Piece::Ref {
                        hash: h2,
                        start: s2,
                        ..
                    },
                ) => h1 == h2 && s1 == s2,
                (
                    Piece::Bytes { data, start, len },
                    Piece::Bytes {
                        data: d2,
                        start: s2,
                        len: l2,
                    },
                ) => data[start..start + len] == d2[s2..s2 + l2],
                (Piece::Bytes { data, start, len }, Piece::Zeros(_))
                | (Piece::Zeros(_), Piece::Bytes { data, start, len }) => {
                    data[start..start + len].iter().all(|&x| x == 0)
                }
                _ => false,
            };
            if !same {
                return false;
            }
            oi += n;
            oj += n;
            if oi == a.len() {
                i += 1;
                oi = 0;
            }
            if oj == b.len() {
                j += 1;
                oj = 0;
            }
        }
        true
    }
}

impl Eq for Rope {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_at_overwrites_extends_and_leaves_holes() {
        let mut r = Rope::from_bytes(b"hello world".to_vec());
        r.write_at(6, &Rope::from_bytes(b"WORLD!!".to_vec()));
        assert_eq!(r.to_vec().unwrap(), b"hello WORLD!!");
        r.write_at(15, &Rope::from_bytes(b"x".to_vec()));
        assert_eq!(r.to_vec().unwrap(), b"hello WORLD!!\0\0x");
        r.write_at(0, &Rope::from_bytes(b"J".to_vec()));
        assert_eq!(r.to_vec().unwrap(), b"Jello WORLD!!\0\0x");
    }

    #[test]
    fn truncate_cuts_and_grows_with_zeros() {
        let mut r = Rope::from_bytes(b"abcdef".to_vec());
        r.truncate(3);
        assert_eq!(r.to_vec().unwrap(), b"abc");
        r.truncate(5);
        assert_eq!(r.to_vec().unwrap(), b"abc\0\0");
    }

    #[test]
    fn equality_ignores_how_content_is_cut() {
        let whole = Rope::from_bytes(b"abcdef".to_vec());
        let mut parts = Rope::from_bytes(b"abc".to_vec());
        parts.append(&Rope::from_bytes(b"def".to_vec()));
        assert_eq!(whole, parts);
        assert_eq!(whole.fingerprint(), parts.fingerprint());
        assert_ne!(whole, Rope::from_bytes(b"abcdeg".to_vec()));
        assert_eq!(Rope::zeros(3), Rope::from_bytes(vec![0, 0, 0]));
        assert_eq!(
            Rope::zeros(3).fingerprint(),
            Rope::from_bytes(vec![0, 0, 0]).fingerprint()
        );
    }

    #[test]
    fn references_compare_by_blob_and_range() {
        let h = ContentHash::of(b"blob");
        let whole = Rope::from_ref(h, 8192);
        let mut cut = whole.slice(0, 4096);
        cut.append(&whole.slice(4096, 4096));
        assert_eq!(cut.pieces().len(), 1, "contiguous ranges merge");
        assert_eq!(whole, cut);
        assert_eq!(whole.fingerprint(), cut.fingerprint());
        assert_ne!(whole.slice(0, 10), whole.slice(1, 10));
        assert_ne!(whole.slice(0, 4), Rope::from_bytes(b"blob".to_vec()));
        assert_eq!(whole.to_vec(), None);
    }
}
