//! Names: checkpoint names from the file name template (or
//! `checkpoint-<step>`), free names with `-vN` versions, and the name of the
//! `last` pointer.

use crate::sim::{Mutant, SimState};

use super::super::parts::dir_name;
use super::{ModelCheckpoint, Shape, LAST};

impl ModelCheckpoint {
    /// Formats the name of a checkpoint of `state`: the file name template
    /// with `-v<version>` when `version > 0`, or `checkpoint-<step>` for
    /// directory checkpoints.
    pub fn format_name(&self, state: &SimState, version: u32) -> String {
        if self.cfg.shape == Shape::Dir {
            return dir_name(state.global_step);
        }
        let mut out = String::new();
        let mut rest = self.cfg.filename.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let Some(close) = rest[open..].find('}') else {
                out.push_str(&rest[open..]);
                rest = "";
                break;
            };
            let inner = &rest[open + 1..open + close];
            let (key, spec) = inner.split_once(':').unwrap_or((inner, ""));
            let value = match key {
                "epoch" => state.epoch.to_string(),
                "step" => state.global_step.to_string(),
                "loss" => match spec.strip_prefix('.').and_then(|s| s.strip_suffix('f')) {
                    Some(p) => format!("{:.*}", p.parse().unwrap_or(4), state.loss),
                    None => state.loss.to_string(),
                },
                other => format!("{{{other}}}"),
            };
            if self.cfg.auto_insert_metric_name && matches!(key, "epoch" | "step" | "loss") {
                out.push_str(key);
                out.push('=');
            }
            out.push_str(&value);
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        if version > 0 {
            out.push_str(&format!("-v{version}"));
        }
        out.push_str(".ckpt");
        out
    }

    /// A free name for a new checkpoint: the formatted name, or with `-v1`,
    /// `-v2`... when a checkpoint we keep already has it. A file by that name
    /// that our bookkeeping does not know (left by a run whose progress a
    /// crash undid) is overwritten instead, as the uninterrupted run would
    /// have written exactly that file.
    pub(super) fn free_name(&self, state: &SimState, evicting: Option<&str>) -> String {
        let known = |n: &str| {
            if self.mutants.has(Mutant::StaleTopK) {
                self.dir.join(n).symlink_metadata().is_ok()
            } else {
                self.topk.kept.iter().any(|(k, _)| k == n)
            }
        };
        let mut version = 0;
        loop {
            let name = self.format_name(state, version);
            if !known(&name) || evicting == Some(name.as_str()) {
                return name;
            }
            version += 1;
        }
    }

    /// The name the `last` pointer gets at this save: `last.ckpt`, except
    /// for `last-lost-on-early-resume`, which versions it as Lightning does:
    /// while the name exists (following links) and is not the one the
    /// bookkeeping records, try `last-v1.ckpt`, `last-v2.ckpt`, ...
    pub(super) fn last_name(&self) -> String {
        if !self.mutants.has(Mutant::LastLostOnEarlyResume) {
            return LAST.to_string();
        }
        let mut version = 0;
        loop {
            let name = match version {
                0 => LAST.to_string(),
                v => format!("last-v{v}.ckpt"),
            };
            if !self.dir.join(&name).exists() || self.topk.last_link.as_deref() == Some(&name) {
                return name;
            }
            version += 1;
        }
    }
}
