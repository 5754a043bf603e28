//! The pure-Python parts of the real-framework examples (the protocol
//! adapter shared by `examples/lightning` and `examples/hf-trainer`): their
//! stdlib unit tests run here, without torch. The trainers themselves need
//! gigabytes of frameworks and are checked by `examples/certify-frameworks.sh`.

use std::path::Path;
use std::process::Command;

#[test]
fn the_protocol_adapter_passes_its_unit_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/adapter");
    let out = Command::new("python3")
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(&dir)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    // unittest prints "Ran N tests": at least one must have run.
    let ran = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split_whitespace()
                .next()?
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(0);
    assert!(ran >= 10, "too few adapter tests ran ({ran}):\n{text}");
}
