//! Every file in `scenarios/` is a test: it runs with fault injection and
//! must reach the verdict it expects. Its reference digest, final checkpoint
//! directory and verdict summary are snapshotted (in `snapshots/`).

use std::path::{Path, PathBuf};

use crashpoint::campaign::LayoutResult;
use crashpoint::report::Report;
use crashpoint::scenario::Scenario;

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    crashpoint::scenario::files_in(&dir).expect("scenarios/ exists")
}

fn summary(s: &Scenario, results: &[LayoutResult], report: &Report) -> String {
    let mut out = format!("scenario: {}\nexpected: {:?}\n", s.name, s.expect);
    for (r, row) in results.iter().zip(&report.layouts) {
        out += &format!(
            "layout {}: reference digest {}; census {} ops; cases {}, passed {}, failures {:?}\n",
            r.layout, r.reference.state.digest, row.census, row.cases, row.passed, row.failures
        );
        out += &format!(
            "  final checkpoint directory of the reference ({}):\n",
            r.layout
        );
        for e in &r.reference.dir.entries {
            out += &format!("    {e}\n");
        }
    }
    out += &format!(
        "verdict: certified={} kinds={:?}\n",
        report.certified,
        report.kinds()
    );
    out
}

#[test]
fn every_scenario_meets_its_expectation() {
    let exe = Path::new(env!("CARGO_BIN_EXE_crashpoint"));
    let files = scenario_files();
    assert!(
        files.len() >= 5,
        "expected the scenario set, found {}",
        files.len()
    );
    let mut unexpected = Vec::new();
    for f in &files {
        let s = Scenario::load(f).unwrap_or_else(|e| panic!("{e}"));
        let work = tempfile::tempdir().expect("tempdir");
        let results = s
            .campaign(exe, 2, None)
            .run(work.path(), &|_, _, _| {})
            .unwrap_or_else(|e| panic!("{}: {e}", s.name));
        let report = Report::build(&s.name, "kill", &results, &|_, _| String::new());
        if !report.meets(&s.expect) {
            unexpected.push(format!("{}: {:?}", s.name, report.failures.first()));
        }
        insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(format!("scenario-{}", s.name), summary(&s, &results, &report));
        });
    }
    assert!(
        unexpected.is_empty(),
        "scenarios with unexpected verdicts: {unexpected:#?}"
    );
}

#[test]
fn scenario_set_covers_the_four_basic_layouts_and_a_mix() {
    use crashpoint::layout::Layout;
    let scenarios: Vec<Scenario> = scenario_files()
        .iter()
        .map(|f| Scenario::load(f).unwrap())
        .collect();
    for l in [
        Layout::Relative,
        Layout::Absolute,
        Layout::Nested,
        Layout::SymlinkedCwd,
    ] {
        assert!(
            scenarios.iter().any(|s| s.layouts == vec![l]),
            "no scenario dedicated to layout {l}"
        );
    }
    assert!(
        scenarios
            .iter()
            .any(|s| s.layouts.len() >= 4 && s.crashes >= 2),
        "no scenario mixing four layouts with two crashes per case"
    );
}
