//! Everything a subject writes that the harness reads: the state file, the
//! events file and the simulated trainer's op log, parsed from arbitrary
//! bytes. Subjects are untrusted: no input may panic or hang; whatever
//! parses must display (digests are cut for reports at character
//! boundaries) and round-trip.
#![no_main]

use crashpoint::census::CensusEntry;
use crashpoint::protocol::{short_digest, Event, StateFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = StateFile::parse(data) {
        let _ = short_digest(&s.digest).len();
        for v in s.fields.values() {
            let _ = short_digest(v).len();
        }
        let text = serde_json::to_vec(&s).expect("a parsed state file serialises");
        assert_eq!(StateFile::parse(&text).ok(), Some(s));
    }
    let text = String::from_utf8_lossy(data);
    for e in Event::parse_all(&text) {
        let _ = format!("{e:?}");
    }
    if let Ok(census) = CensusEntry::parse_log(&text) {
        for e in &census {
            assert_eq!(CensusEntry::from_line(&e.to_line()).ok().as_ref(), Some(e));
            let _ = e.describe();
        }
    }
});
