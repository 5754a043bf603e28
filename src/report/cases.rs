//! A report's case records: held in memory (a report read back, merged, or
//! built from a campaign's results), or spooled to a file as a campaign's
//! cases finish, one compact JSON line each, so that a campaign's memory
//! does not grow with its cases. The JSON report, the JUnit file and the
//! HTML page stream a spooled list from its file ([`CaseList::each`], and
//! [`CaseList::reader`] for a record by its place); what they write is the
//! same either way.

use std::borrow::Cow;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::ser::{Error as _, SerializeSeq};

use super::CaseRecord;

/// Why spooled case records could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool file could not be written or read.
    #[error("case records spooled to {path}: {source}")]
    Io {
        /// The spool file.
        path: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// A spooled line is not a case record.
    #[error("case records spooled to {path}: line {line}: {source}")]
    Format {
        /// The spool file.
        path: String,
        /// The line (1-based).
        line: usize,
        /// What did not parse.
        source: serde_json::Error,
    },
}

/// Every case of a report, in report order.
#[derive(Debug, Clone)]
pub enum CaseList {
    /// In memory.
    Held(Vec<CaseRecord>),
    /// In a spool file (see [`Spooler`]).
    Spooled(Arc<SpoolFile>),
}

impl Default for CaseList {
    fn default() -> Self {
        CaseList::Held(Vec::new())
    }
}

impl From<Vec<CaseRecord>> for CaseList {
    fn from(v: Vec<CaseRecord>) -> Self {
        CaseList::Held(v)
    }
}

impl CaseList {
    /// How many cases.
    pub fn len(&self) -> usize {
        match self {
            CaseList::Held(v) => v.len(),
            CaseList::Spooled(f) => f.len,
        }
    }

    /// No case at all?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records: borrowed when held, read back from the spool file
    /// otherwise (then all of them are in memory while the result lives).
    pub fn load(&self) -> Result<Cow<'_, [CaseRecord]>, SpoolError> {
        match self {
            CaseList::Held(v) => Ok(Cow::Borrowed(v)),
            CaseList::Spooled(f) => {
                let out = f.records()?.collect::<Result<Vec<_>, _>>()?;
                Ok(Cow::Owned(out))
            }
        }
    }

    /// Calls `f` with each record in turn: from memory when held, read
    /// back one at a time from the spool file otherwise (never all at once).
    pub fn each(&self, mut f: impl FnMut(&CaseRecord)) -> Result<(), SpoolError> {
        match self {
            CaseList::Held(v) => v.iter().for_each(f),
            CaseList::Spooled(file) => {
                for c in file.records()? {
                    f(&c?);
                }
            }
        }
        Ok(())
    }

    /// A reader of the records by their place in the list: borrowed when
    /// held; read back one at a time from the spool file otherwise (only
    /// the offsets of its lines are held).
    pub fn reader(&self) -> Result<CaseReader<'_>, SpoolError> {
        Ok(CaseReader(match self {
            CaseList::Held(v) => Reader::Held(v),
            CaseList::Spooled(f) => {
                use std::io::{BufReader, Seek};
                let file = std::fs::File::open(&f.path).map_err(|e| f.io(e))?;
                let mut lines = BufReader::new(file);
                let mut offsets = Vec::with_capacity(f.len);
                let (mut at, mut buf) = (0u64, Vec::new());
                for _ in 0..f.len {
                    offsets.push(at);
                    buf.clear();
                    let n = lines.read_until(b'\n', &mut buf).map_err(|e| f.io(e))?;
                    if n == 0 {
                        return Err(f.io(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("{} of {} records", offsets.len() - 1, f.len),
                        )));
                    }
                    at += n as u64;
                }
                lines.rewind().map_err(|e| f.io(e))?;
                Reader::Spooled {
                    file: f,
                    offsets,
                    lines,
                    line: String::new(),
                }
            }
        }))
    }

    /// The records, owned.
    pub fn to_vec(&self) -> Result<Vec<CaseRecord>, SpoolError> {
        self.load().map(Cow::into_owned)
    }
}

impl PartialEq for CaseList {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (CaseList::Held(a), CaseList::Held(b)) => a == b,
            _ => match (self.load(), other.load()) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            },
        }
    }
}

impl Eq for CaseList {}

impl serde::Serialize for CaseList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CaseList::Held(v) => v.serialize(s),
            CaseList::Spooled(f) => {
                // One record in memory at a time.
                let mut seq = s.serialize_seq(Some(f.len))?;
                for c in f.records().map_err(S::Error::custom)? {
                    seq.serialize_element(&c.map_err(S::Error::custom)?)?;
                }
                seq.end()
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for CaseList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<CaseRecord>::deserialize(d).map(CaseList::Held)
    }
}

/// The records of a [`CaseList`] by their place in it ([`CaseList::reader`]).
pub struct CaseReader<'a>(Reader<'a>);

enum Reader<'a> {
    Held(&'a [CaseRecord]),
    Spooled {
        file: &'a SpoolFile,
        offsets: Vec<u64>,
        lines: std::io::BufReader<std::fs::File>,
        line: String,
    },
}

impl CaseReader<'_> {
    /// The record at place `k` (`None` past the end).
    pub fn get(&mut self, k: usize) -> Option<Result<Cow<'_, CaseRecord>, SpoolError>> {
        match &mut self.0 {
            Reader::Held(v) => v.get(k).map(|c| Ok(Cow::Borrowed(c))),
            Reader::Spooled {
                file,
                offsets,
                lines,
                line,
            } => {
                use std::io::{Seek, SeekFrom};
                let at = *offsets.get(k)?;
                line.clear();
                let read = lines
                    .seek(SeekFrom::Start(at))
                    .and_then(|_| lines.read_line(line))
                    .map_err(|e| file.io(e));
                Some(read.and_then(|_| {
                    serde_json::from_str(line)
                        .map(Cow::Owned)
                        .map_err(|source| SpoolError::Format {
                            path: file.path.display().to_string(),
                            line: k + 1,
                            source,
                        })
                }))
            }
        }
    }
}

/// A finished spool file: its records, one JSON line each. The file is
/// removed when the last list that names it goes.
#[derive(Debug)]
pub struct SpoolFile {
    path: PathBuf,
    len: usize,
}

impl SpoolFile {
    /// Its records, in order, read one at a time.
    fn records(&self) -> Result<Records<'_>, SpoolError> {
        let file = std::fs::File::open(&self.path).map_err(|e| self.io(e))?;
        Ok(Records {
            file: self,
            lines: std::io::BufReader::new(file),
            line: String::new(),
            read: 0,
        })
    }

    fn io(&self, source: std::io::Error) -> SpoolError {
        SpoolError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }
}

/// The records of a spool file, read one line at a time.
struct Records<'a> {
    file: &'a SpoolFile,
    lines: std::io::BufReader<std::fs::File>,
    line: String,
    read: usize,
}

impl Iterator for Records<'_> {
    type Item = Result<CaseRecord, SpoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.read == self.file.len {
            return None;
        }
        self.line.clear();
        self.read += 1;
        Some(match self.lines.read_line(&mut self.line) {
            Err(e) => Err(self.file.io(e)),
            Ok(0) => Err(self.file.io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} of {} records", self.read - 1, self.file.len),
            ))),
            Ok(_) => serde_json::from_str(&self.line).map_err(|source| SpoolError::Format {
                path: self.file.path.display().to_string(),
                line: self.read,
                source,
            }),
        })
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes case records to a spool file as they come.
#[derive(Debug)]
pub struct Spooler {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    len: usize,
}

impl Spooler {
    /// Creates (truncates) the spool file `path`.
    pub fn create(path: &Path) -> Result<Spooler, SpoolError> {
        let file = std::fs::File::create(path).map_err(|source| SpoolError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Spooler {
            path: path.to_path_buf(),
            out: std::io::BufWriter::new(file),
            len: 0,
        })
    }

    /// Appends one record.
    pub fn push(&mut self, c: &CaseRecord) -> Result<(), SpoolError> {
        let io = |source| SpoolError::Io {
            path: self.path.display().to_string(),
            source,
        };
        serde_json::to_writer(&mut self.out, c).map_err(|e| io(e.into()))?;
        self.out.write_all(b"\n").map_err(io)?;
        self.len += 1;
        Ok(())
    }

    /// The list of the records pushed.
    pub fn finish(mut self) -> Result<CaseList, SpoolError> {
        self.out.flush().map_err(|source| SpoolError::Io {
            path: self.path.display().to_string(),
            source,
        })?;
        Ok(CaseList::Spooled(Arc::new(SpoolFile {
            path: std::mem::take(&mut self.path),
            len: self.len,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::CaseVerdict;

    fn record(index: usize) -> CaseRecord {
        CaseRecord {
            layout: crate::layout::Layout::Relative,
            index,
            point: format!("syscall:{}", index + 1).parse().expect("plan"),
            name: format!("syscall:{} write \"a\\b\"", index + 1),
            site: "write #".into(),
            verdict: CaseVerdict::Passed,
            kinds: Vec::new(),
            findings: Vec::new(),
            warnings: vec![format!("w{index}")],
            harness_error: None,
            power_states: index,
            same_state_as: None,
            later_states: Vec::new(),
            duration_ms: None,
        }
    }

    /// `records` spooled to `path`.
    fn spool(path: &Path, records: &[CaseRecord]) -> CaseList {
        let mut s = Spooler::create(path).expect("create");
        for c in records {
            s.push(c).expect("push");
        }
        s.finish().expect("finish")
    }

    #[test]
    fn a_spooled_list_is_the_held_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cases.jsonl");
        let held: Vec<CaseRecord> = (0..5).map(record).collect();
        let spooled = spool(&path, &held);
        assert_eq!(spooled.len(), 5);
        assert_eq!(spooled.to_vec().expect("load"), held);
        let list = CaseList::Held(held);
        assert_eq!(spooled, list);
        assert_eq!(
            serde_json::to_string_pretty(&spooled).expect("json"),
            serde_json::to_string_pretty(&list).expect("json")
        );
        drop(spooled);
        assert!(!path.exists(), "the spool file goes with its list");
    }

    #[test]
    fn a_spool_file_gone_is_an_error_not_an_empty_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cases.jsonl");
        let mut s = Spooler::create(&path).expect("create");
        s.push(&record(0)).expect("push");
        let spooled = s.finish().expect("finish");
        std::fs::remove_file(&path).expect("remove");
        assert!(matches!(spooled.load(), Err(SpoolError::Io { .. })));
        let err = serde_json::to_string(&spooled).expect_err("no file, no JSON");
        assert!(err.to_string().contains("cases.jsonl"), "{err}");
    }

    #[test]
    fn a_reader_reads_any_record_by_its_place_and_each_streams_them_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cases.jsonl");
        let held: Vec<CaseRecord> = (0..7).map(record).collect();
        let spooled = spool(&path, &held);
        let list = CaseList::Held(held.clone());
        for l in [&spooled, &list] {
            let mut r = l.reader().expect("reader");
            for k in [6, 0, 3, 3, 1, 5, 2, 4] {
                let got = r.get(k).expect("in range").expect("read");
                assert_eq!(*got, held[k], "place {k}");
            }
            assert!(r.get(7).is_none());
            let mut seen = Vec::new();
            l.each(|c| seen.push(c.index)).expect("each");
            assert_eq!(seen, (0..7).collect::<Vec<_>>());
        }
        // A spool file cut short is an error, not a shorter list.
        let text = std::fs::read_to_string(&path).expect("read");
        let cut: String = text.lines().take(4).map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, cut).expect("write");
        assert!(matches!(spooled.reader(), Err(SpoolError::Io { .. })));
    }
}
