//! The scenario parser on arbitrary text: it returns a scenario or an error
//! that names a line and a field, and never panics, hangs or allocates
//! without bound.
#![no_main]

use crashpoint::scenario::Scenario;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    match Scenario::parse("fuzz.toml", src) {
        Ok(s) => {
            // A scenario that parses is usable: at least one layout, at
            // least one step.
            assert!(!s.layouts.is_empty());
            assert!(s.max_steps >= 1);
        }
        Err(e) => {
            // Every error renders, and names the file it came from.
            let text = e.to_string();
            assert!(text.starts_with("fuzz.toml"), "{text}");
        }
    }
});
