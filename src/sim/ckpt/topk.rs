//! The checkpoint policy's bookkeeping ([`TopK`]): which files the top-k
//! keeps, the best and newest of them, and the deletions still owed. It
//! travels inside every checkpoint so a resumed run continues it exactly.

use crate::codec::{DecodeError, Decoder, Encoder};

/// The policy's bookkeeping, saved in every checkpoint and restored on resume.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopK {
    /// Kept checkpoints (file names in the checkpoint directory) and their scores, oldest first.
    pub kept: Vec<(String, f32)>,
    /// The best of `kept`.
    pub best: Option<String>,
    /// The newest top-k file, which a `last.ckpt` link points at.
    pub last_saved: Option<String>,
    /// The global step of the newest save (a step is never saved twice).
    pub last_step_saved: u64,
    /// Files this save evicts: deleted after the save is durable, and again
    /// on resume if a crash came first.
    pub pending_delete: Vec<String>,
    /// The name of the `last` pointer as this checkpoint records it (what
    /// Lightning calls `last_model_path`); `None` when nothing is recorded.
    pub last_link: Option<String>,
}

impl TopK {
    /// Canonical encoding (part of the checkpoint payload).
    pub fn encode(&self, enc: &mut Encoder) {
        enc.u64(self.kept.len() as u64);
        for (name, score) in &self.kept {
            enc.str(name);
            enc.f32(*score);
        }
        for opt in [&self.best, &self.last_saved] {
            enc.str(opt.as_deref().unwrap_or(""));
        }
        enc.u64(self.last_step_saved);
        enc.u64(self.pending_delete.len() as u64);
        for name in &self.pending_delete {
            enc.str(name);
        }
        enc.str(self.last_link.as_deref().unwrap_or(""));
    }

    /// Decodes what [`TopK::encode`] wrote.
    pub fn decode(dec: &mut Decoder<'_>) -> Result<TopK, DecodeError> {
        let n = dec.u64("topk.kept")?;
        let mut kept = Vec::new();
        for _ in 0..n {
            let name = dec.str("topk.kept.name")?;
            kept.push((name, dec.f32("topk.kept.score")?));
        }
        let opt = |s: String| (!s.is_empty()).then_some(s);
        let best = opt(dec.str("topk.best")?);
        let last_saved = opt(dec.str("topk.last_saved")?);
        let last_step_saved = dec.u64("topk.last_step_saved")?;
        let n = dec.u64("topk.pending_delete")?;
        let mut pending_delete = Vec::new();
        for _ in 0..n {
            pending_delete.push(dec.str("topk.pending_delete")?);
        }
        let last_link = opt(dec.str("topk.last_link")?);
        let names = kept
            .iter()
            .map(|(n, _)| n)
            .chain(&pending_delete)
            .chain(&last_link);
        if names.into_iter().any(|n| !is_plain_name(n)) {
            return Err(DecodeError::Malformed(
                "top-k names a file outside its directory",
            ));
        }
        Ok(TopK {
            kept,
            best,
            last_saved,
            last_step_saved,
            pending_delete,
            last_link,
        })
    }
}

/// A name that stays inside its directory: no separator, not `.` or `..`.
pub(crate) fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && name != "." && name != ".."
}
