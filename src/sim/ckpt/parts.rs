//! Directory checkpoints (`layout = "dir"`): a directory `checkpoint-<step>/`
//! holding the parts of the state as separate files, the way Hugging Face
//! `Trainer` and torch.distributed.checkpoint save, and a small metadata
//! file written last that makes the directory complete: the counters, the
//! policy's bookkeeping, and each part's length and blake3 hash. A directory
//! without its metadata file, or with a part that does not match it, is
//! refused as incomplete or corrupt.
//!
//! ```
//! use crashpoint::sim::ckpt::format::Checkpoint;
//! use crashpoint::sim::ckpt::parts::{decode_dir, encode_dir, METADATA};
//! use crashpoint::sim::ckpt::topk::TopK;
//! use crashpoint::sim::{SimConfig, SimState};
//! let ck = Checkpoint { state: SimState::init(&SimConfig::default(), 1), topk: TopK::default() };
//! let files = encode_dir(&ck);
//! assert_eq!(files.last().map(|f| f.0), Some(METADATA));
//! let back = decode_dir(|name| files.iter().find(|f| f.0 == name).map(|f| f.1.clone())).unwrap();
//! assert_eq!(back, ck);
//! ```

use crate::codec::{DecodeError, Decoder, Encoder};
use crate::sim::SimState;

use super::format::{seal, unseal, Checkpoint, FormatError};
use super::topk::TopK;

/// The metadata file: written last, its presence makes the directory complete.
pub const METADATA: &str = "metadata.bin";

/// The magic of the metadata file.
pub const META_MAGIC: [u8; 8] = *b"CRSHDIR\n";

/// The part files, in write order, with the state part each holds.
pub const PART_FILES: [(&str, &str); 5] = [
    ("params.bin", "params"),
    ("optimizer.bin", "optimizer"),
    ("scheduler.bin", "scheduler"),
    ("rng.bin", "rng"),
    ("data.bin", "data"),
];

/// The prefix of checkpoint directory names: `checkpoint-<step>`.
pub const DIR_PREFIX: &str = "checkpoint-";

/// The name of the checkpoint directory of `step`.
pub fn dir_name(step: u64) -> String {
    format!("{DIR_PREFIX}{step}")
}

/// The step of a checkpoint directory name, if it is one (`checkpoint-<N>`,
/// digits only).
///
/// ```
/// use crashpoint::sim::ckpt::parts::step_of;
/// assert_eq!(step_of("checkpoint-15"), Some(15));
/// assert_eq!(step_of(".checkpoint-15.tmp"), None);
/// assert_eq!(step_of("checkpoint-"), None);
/// ```
pub fn step_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(DIR_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Why a directory checkpoint could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PartsError {
    /// A file the checkpoint needs is not there.
    #[error("incomplete checkpoint directory: {0} is missing")]
    Missing(String),
    /// A file does not decode.
    #[error("{file}: {source}")]
    Format {
        /// The file.
        file: String,
        /// What is wrong with it.
        source: FormatError,
    },
    /// A part file differs from what the metadata file records.
    #[error("{file} is {actual} bytes or has another hash than the {declared} bytes the metadata records (torn or stale part)")]
    PartMismatch {
        /// The part file.
        file: String,
        /// Its length in the metadata.
        declared: u64,
        /// Its length on disk.
        actual: usize,
    },
}

/// The files of a directory checkpoint of `ck`: (name, bytes), in the order
/// they are written, the metadata file last.
pub fn encode_dir(ck: &Checkpoint) -> Vec<(&'static str, Vec<u8>)> {
    let mut files = Vec::new();
    let mut meta = Encoder::default();
    meta.u64(PART_FILES.len() as u64);
    for (file, part) in PART_FILES {
        let mut enc = Encoder::default();
        ck.state.encode_part(part, &mut enc);
        let bytes = enc.into_bytes();
        meta.str(file);
        meta.u64(bytes.len() as u64);
        meta.raw(blake3::hash(&bytes).as_bytes());
        files.push((file, bytes));
    }
    meta.u64(ck.state.global_step);
    meta.u64(ck.state.epoch);
    meta.f32(ck.state.loss);
    ck.topk.encode(&mut meta);
    files.push((METADATA, seal(&META_MAGIC, meta.bytes())));
    files
}

/// Decodes a directory checkpoint, reading its files through `read`
/// (`None`: the file is missing): the metadata first, then every part,
/// each checked against the metadata's length and hash.
pub fn decode_dir(mut read: impl FnMut(&str) -> Option<Vec<u8>>) -> Result<Checkpoint, PartsError> {
    let format = |file: &str| {
        let file = file.to_string();
        move |source: FormatError| PartsError::Format { file, source }
    };
    let payload_err = |file: &str| {
        let f = format(file);
        move |e: DecodeError| f(FormatError::Payload(e))
    };
    let meta_bytes = read(METADATA).ok_or_else(|| PartsError::Missing(METADATA.into()))?;
    let payload = unseal(&META_MAGIC, &meta_bytes).map_err(format(METADATA))?;
    let mut dec = Decoder::new(payload);
    let mut state = Encoder::default();
    let n = dec.u64("metadata.parts").map_err(payload_err(METADATA))?;
    if n != PART_FILES.len() as u64 {
        return Err(payload_err(METADATA)(DecodeError::Malformed(
            "metadata lists another number of parts",
        )));
    }
    for (file, _) in PART_FILES {
        let name = dec.str("metadata.part").map_err(payload_err(METADATA))?;
        let declared = dec.u64("metadata.len").map_err(payload_err(METADATA))?;
        let hash: [u8; 32] = dec.array("metadata.hash").map_err(payload_err(METADATA))?;
        if name != file {
            return Err(payload_err(METADATA)(DecodeError::Malformed(
                "metadata names an unexpected part file",
            )));
        }
        let bytes = read(file).ok_or_else(|| PartsError::Missing(file.into()))?;
        if bytes.len() as u64 != declared || blake3::hash(&bytes).as_bytes() != &hash {
            return Err(PartsError::PartMismatch {
                file: file.into(),
                declared,
                actual: bytes.len(),
            });
        }
        state.raw(&bytes);
    }
    state.u64(
        dec.u64("metadata.global_step")
            .map_err(payload_err(METADATA))?,
    );
    state.u64(dec.u64("metadata.epoch").map_err(payload_err(METADATA))?);
    state.f32(dec.f32("metadata.loss").map_err(payload_err(METADATA))?);
    let topk = TopK::decode(&mut dec).map_err(payload_err(METADATA))?;
    dec.finish().map_err(payload_err(METADATA))?;
    let mut sdec = Decoder::new(state.bytes());
    let state = SimState::decode(&mut sdec).map_err(payload_err("parts"))?;
    sdec.finish().map_err(payload_err("parts"))?;
    Ok(Checkpoint { state, topk })
}
