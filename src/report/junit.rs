//! JUnit XML for CI.

use super::{Report, ReportError};

/// JUnit XML: one test suite per report, one test case per layout × crash plan.
pub fn junit(reports: &[&Report]) -> Result<String, ReportError> {
    use quick_junit::{NonSuccessKind, Report as JReport, TestCase, TestCaseStatus, TestSuite};
    let mut j = JReport::new("crashpoint");
    for r in reports {
        let mut suite = TestSuite::new(r.name.as_str());
        for f in r.failures.iter().filter(|f| f.crash == "none") {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_message(f.kind.name());
            status.set_type(f.kind.name());
            status.set_description(format!("{}\nreplay: {}", f.detail, f.replay));
            suite.add_test_case(TestCase::new(format!("{} reference", f.layout), status));
        }
        for c in &r.case_lines {
            let status = match c.failures.first() {
                None if c.harness_error.is_some() => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                    s.set_message("harness error");
                    s.set_type("harness-error");
                    s.set_description(c.harness_error.clone().unwrap_or_default());
                    s
                }
                None => TestCaseStatus::success(),
                Some(&i) => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    let kinds: Vec<&str> = c
                        .failures
                        .iter()
                        .map(|&i| r.failures[i].kind.name())
                        .collect();
                    s.set_message(kinds.join(", "));
                    s.set_type(r.failures[i].kind.name());
                    let text: Vec<String> = c
                        .failures
                        .iter()
                        .map(|&i| format!("{}: {}", r.failures[i].kind, r.failures[i].detail))
                        .collect();
                    s.set_description(format!(
                        "{}\nreplay: {}",
                        text.join("\n"),
                        r.failures[i].replay
                    ));
                    s
                }
            };
            let mut case = TestCase::new(format!("{} {}", c.layout, c.crash), status);
            case.set_classname(format!("{}.{}", r.name, c.layout));
            suite.add_test_case(case);
        }
        j.add_test_suite(suite);
    }
    j.to_string().map_err(|e| ReportError::Junit(e.to_string()))
}
