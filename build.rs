//! Generates one integration test per scenario file (`tests/scenarios.rs`
//! includes them), so `cargo test` names each scenario that fails and runs
//! them in parallel. A scenario file added or removed regenerates the list.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=scenarios");
    let mut names: Vec<String> = std::fs::read_dir("scenarios")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let p = e.path();
                    (p.extension().is_some_and(|x| x == "toml"))
                        .then(|| p.file_stem()?.to_str().map(str::to_string))
                        .flatten()
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = String::new();
    for name in &names {
        let ident: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let _ = writeln!(
            out,
            "#[test]\nfn scenario_{ident}() {{\n    check_scenario({name:?});\n}}\n"
        );
    }
    let _ = writeln!(
        out,
        "/// The scenario files the tests above were generated from.\n#[allow(dead_code)]\nconst GENERATED: &[&str] = &{names:?};"
    );
    let dest =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("scenario_tests.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}
