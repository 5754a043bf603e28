//! JUnit XML for CI: one test suite per report, one test case per layout ×
//! crash plan, named by its crash point (call, path, phase). Spooled case
//! records are read back (the XML is built in memory).

use super::{Report, ReportError};

/// JUnit XML of `reports`.
pub fn junit(reports: &[&Report]) -> Result<String, ReportError> {
    use quick_junit::{NonSuccessKind, Report as JReport, TestCase, TestCaseStatus, TestSuite};
    let mut j = JReport::new("crashpoint");
    for r in reports {
        let mut suite = TestSuite::new(r.name.as_str());
        suite.add_property(quick_junit::Property::new("fault", r.fault.name()));
        for f in r.failures.iter().filter(|f| f.crash.points.is_empty()) {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_message(f.kind.name());
            status.set_type(f.kind.name());
            status.set_description(format!("{}\nreplay: {}", f.detail, f.replay));
            suite.add_test_case(TestCase::new(format!("{} reference", f.layout), status));
        }
        for c in r.case_results.load()?.iter() {
            let status = match c.findings.first() {
                None if c.harness_error.is_some() => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                    s.set_message("harness error");
                    s.set_type("harness-error");
                    s.set_description(c.harness_error.clone().unwrap_or_default());
                    s
                }
                None => TestCaseStatus::success(),
                Some(first) => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    let kinds: Vec<&str> = c.kinds.iter().map(|k| k.name()).collect();
                    s.set_message(kinds.join(", "));
                    s.set_type(first.kind.name());
                    let text: Vec<String> = c
                        .findings
                        .iter()
                        .map(|f| format!("{}: {}", f.kind, f.detail))
                        .collect();
                    s.set_description(format!(
                        "{}\nreplay: {}",
                        text.join("\n"),
                        r.replay.command(c.layout.name(), &c.point)
                    ));
                    s
                }
            };
            let mut case = TestCase::new(format!("{} {}", c.layout, c.name), status);
            case.set_classname(format!("{}.{}.{}", r.name, r.fault, c.layout));
            suite.add_test_case(case);
        }
        j.add_test_suite(suite);
    }
    j.to_string().map_err(|e| ReportError::Junit(e.to_string()))
}
