//! The checkpoint file format: an 8-byte magic, a format version, the payload
//! length, a blake3 checksum of the payload, then the payload (the training
//! state and the checkpoint callback's bookkeeping, canonically encoded).
//!
//! ```
//! use crashpoint::sim::ckpt::format::{decode, encode, Checkpoint, FormatError};
//! use crashpoint::sim::ckpt::topk::TopK;
//! use crashpoint::sim::{SimConfig, SimState};
//! let ck = Checkpoint { state: SimState::init(&SimConfig::default(), 1), topk: TopK::default() };
//! let mut bytes = encode(&ck);
//! assert_eq!(decode(&bytes).unwrap(), ck);
//! let last = bytes.len() - 1;
//! bytes[last] ^= 1;
//! assert!(matches!(decode(&bytes), Err(FormatError::Checksum)));
//! ```

use crate::codec::{DecodeError, Decoder, Encoder};
use crate::sim::SimState;

use super::topk::TopK;

/// The first eight bytes of every checkpoint.
pub const MAGIC: [u8; 8] = *b"CRSHPT\r\n";
/// The format version written by this build.
pub const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 32;

/// What a checkpoint file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The complete training state.
    pub state: SimState,
    /// The checkpoint callback's bookkeeping at the time of the save.
    pub topk: TopK,
}

/// Why a checkpoint file could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormatError {
    /// Shorter than the header.
    #[error("file is {0} bytes, shorter than the {HEADER}-byte header (empty or torn write?)")]
    TooShort(usize),
    /// Wrong magic bytes.
    #[error("not a crashpoint checkpoint (bad magic bytes)")]
    BadMagic,
    /// A version this build cannot read.
    #[error("checkpoint format version {0} is not supported (this build reads version {VERSION})")]
    Version(u32),
    /// The payload is not as long as the header says.
    #[error("header says the payload is {declared} bytes but {actual} follow (torn write?)")]
    Length {
        /// Length in the header.
        declared: u64,
        /// Bytes that follow the header.
        actual: usize,
    },
    /// The payload's checksum does not match.
    #[error("checksum mismatch: the payload is corrupt")]
    Checksum,
    /// The payload's fields do not decode.
    #[error("payload does not decode: {0}")]
    Payload(#[from] DecodeError),
}

/// Encodes a checkpoint file.
pub fn encode(ck: &Checkpoint) -> Vec<u8> {
    let mut payload = Encoder::default();
    ck.state.encode(&mut payload);
    ck.topk.encode(&mut payload);
    seal(&MAGIC, &payload.into_bytes())
}

/// Wraps `payload` in the container every checkpoint file uses: `magic`,
/// version, length, blake3 checksum, payload.
pub(crate) fn seal(magic: &[u8; 8], payload: &[u8]) -> Vec<u8> {
    let mut out = Encoder::default();
    out.raw(magic);
    out.u32(VERSION);
    out.u64(payload.len() as u64);
    out.raw(blake3::hash(payload).as_bytes());
    out.raw(payload);
    out.into_bytes()
}

/// Checks magic, version, length and checksum of what [`seal`] wrote and
/// returns the payload.
pub(crate) fn unseal<'a>(magic: &[u8; 8], bytes: &'a [u8]) -> Result<&'a [u8], FormatError> {
    if bytes.len() < HEADER {
        return Err(FormatError::TooShort(bytes.len()));
    }
    let mut dec = Decoder::new(bytes);
    let found: [u8; 8] = dec.array("magic")?;
    if &found != magic {
        return Err(FormatError::BadMagic);
    }
    let version = dec.u32("version")?;
    if version != VERSION {
        return Err(FormatError::Version(version));
    }
    let declared = dec.u64("length")?;
    let sum: [u8; 32] = dec.array("checksum")?;
    let payload = &bytes[HEADER..];
    if declared != payload.len() as u64 {
        return Err(FormatError::Length {
            declared,
            actual: payload.len(),
        });
    }
    if blake3::hash(payload).as_bytes() != &sum {
        return Err(FormatError::Checksum);
    }
    Ok(payload)
}

/// Decodes a checkpoint file, checking magic, version, length and checksum
/// before looking at the payload.
pub fn decode(bytes: &[u8]) -> Result<Checkpoint, FormatError> {
    let payload = unseal(&MAGIC, bytes)?;
    let mut dec = Decoder::new(payload);
    let state = SimState::decode(&mut dec)?;
    let topk = TopK::decode(&mut dec)?;
    dec.finish()?;
    Ok(Checkpoint { state, topk })
}
