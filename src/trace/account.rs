//! The census as the tracer keeps it: every trapped call that touches the
//! sandbox is numbered and recorded; regular paths outside the sandbox that
//! the subject mutates are listed once each.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::PathBuf;

use super::filter::SysDesc;
use super::resolve::{Class, Policy, Target};
use super::CallRecord;

/// The calls counted so far and the writes seen outside the sandbox.
#[derive(Debug, Default)]
pub(super) struct Accounting {
    /// The census, in the order the stops were observed.
    pub(super) calls: Vec<CallRecord>,
    /// Paths outside the sandbox (not exempt), first-seen order.
    pub(super) outside: Vec<PathBuf>,
    outside_seen: HashSet<PathBuf>,
    /// Thread id -> process id, for the tasks that made counted calls.
    tgids: HashMap<i32, i32>,
}

impl Accounting {
    /// Looks at the call `desc(args)` made by `tid`: lists what it mutates
    /// outside the sandbox, and numbers and records it when it touches the
    /// sandbox. Returns its number then.
    pub(super) fn count(
        &mut self,
        policy: &Policy,
        tid: i32,
        desc: &SysDesc,
        args: &[u64; 6],
    ) -> Option<u64> {
        let mut inside = false;
        let mut paths = Vec::new();
        for target in policy.targets(tid, desc, args) {
            if let Target::Path(p, class) = target {
                match class {
                    Class::Inside => inside = true,
                    Class::Outside => {
                        if self.outside_seen.insert(p.clone()) {
                            self.outside.push(p.clone());
                        }
                    }
                    Class::Exempt | Class::Ignored => {}
                }
                paths.push(p);
            }
        }
        if !inside {
            return None;
        }
        let index = self.calls.len() as u64 + 1;
        let pid = self.tgid_of(tid);
        let at = super::extent::of(tid, desc.name, args);
        self.calls.push(CallRecord {
            index,
            name: desc.name,
            paths,
            pid,
            tid,
            fd: at.fd,
            offset: at.offset,
            len: at.len,
        });
        Some(index)
    }

    /// `tid` is gone (exited, or replaced by an exec from another thread).
    pub(super) fn forget(&mut self, tid: i32) {
        self.tgids.remove(&tid);
    }

    fn tgid_of(&mut self, tid: i32) -> i32 {
        *self.tgids.entry(tid).or_insert_with(|| {
            fs::read_to_string(format!("/proc/{tid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Tgid:"))
                        .and_then(|v| v.trim().parse().ok())
                })
                .unwrap_or(tid)
        })
    }
}
