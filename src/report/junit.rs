//! JUnit XML for CI: one test suite per report, one test case per layout ×
//! crash plan, named by its crash point (call, path, phase).
//!
//! [`junit`] builds the XML in memory with `quick_junit`; [`write()`] writes
//! the same bytes to a file as it goes, the spooled case records read back
//! one at a time (twice: once to count, once to write), so that neither the
//! records nor the document are ever all in memory.

use std::io::Write;

use super::{CaseRecord, Report, ReportError};

/// JUnit XML of `reports`.
pub fn junit(reports: &[&Report]) -> Result<String, ReportError> {
    use quick_junit::{NonSuccessKind, Report as JReport, TestCase, TestCaseStatus, TestSuite};
    let mut j = JReport::new("crashpoint");
    for r in reports {
        let mut suite = TestSuite::new(r.name.as_str());
        suite.add_property(quick_junit::Property::new("fault", r.fault.name()));
        let mut add = |case: Case| {
            let status = match case.outcome {
                None => TestCaseStatus::success(),
                Some(o) => {
                    let kind = if o.error {
                        NonSuccessKind::Error
                    } else {
                        NonSuccessKind::Failure
                    };
                    let mut s = TestCaseStatus::non_success(kind);
                    s.set_message(o.message);
                    s.set_type(o.ty);
                    s.set_description(o.text);
                    s
                }
            };
            let mut t = TestCase::new(case.name, status);
            if let Some(c) = case.class {
                t.set_classname(c);
            }
            suite.add_test_case(t);
        };
        reference_cases(r).for_each(&mut add);
        r.case_results.each(|c| add(case_of(r, c)))?;
        j.add_test_suite(suite);
    }
    j.to_string().map_err(|e| ReportError::Junit(e.to_string()))
}

/// Writes the JUnit XML of `reports` to `path` (the bytes [`junit`] makes).
pub fn write(path: &std::path::Path, reports: &[&Report]) -> Result<(), ReportError> {
    let failed = |source| ReportError::Write {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::create(path).map_err(failed)?;
    let mut out = std::io::BufWriter::new(file);
    let mut io_error = None;
    write_to(&mut out, reports, &mut io_error)?;
    if let Some(e) = io_error {
        return Err(failed(e));
    }
    out.flush().map_err(failed)
}

/// One test case, as both writers see it.
struct Case {
    name: String,
    class: Option<String>,
    outcome: Option<Outcome>,
}

/// A test case that did not pass.
struct Outcome {
    /// An error of the harness, not a failure of the subject.
    error: bool,
    message: String,
    ty: String,
    text: String,
}

/// The test cases of a report's failures outside any case (the reference).
fn reference_cases<'a>(r: &'a Report) -> impl Iterator<Item = Case> + 'a {
    r.failures
        .iter()
        .filter(|f| f.crash.points.is_empty())
        .map(|f| Case {
            name: format!("{} reference", f.layout),
            class: None,
            outcome: Some(Outcome {
                error: false,
                message: f.kind.name().into(),
                ty: f.kind.name().into(),
                text: format!("{}\nreplay: {}", f.detail, f.replay),
            }),
        })
}

/// The test case of one case record.
fn case_of(r: &Report, c: &CaseRecord) -> Case {
    let outcome = match c.findings.first() {
        None => c.harness_error.as_ref().map(|e| Outcome {
            error: true,
            message: "harness error".into(),
            ty: "harness-error".into(),
            text: e.clone(),
        }),
        Some(first) => {
            let kinds: Vec<&str> = c.kinds.iter().map(|k| k.name()).collect();
            let text: Vec<String> = c
                .findings
                .iter()
                .map(|f| format!("{}: {}", f.kind, f.detail))
                .collect();
            Some(Outcome {
                error: false,
                message: kinds.join(", "),
                ty: first.kind.name().into(),
                text: format!(
                    "{}\nreplay: {}",
                    text.join("\n"),
                    r.replay.command(c.layout.name(), &c.point)
                ),
            })
        }
    };
    Case {
        name: format!("{} {}", c.layout, c.name),
        class: Some(format!("{}.{}.{}", r.name, r.fault, c.layout)),
        outcome,
    }
}

/// How many test cases, failures and errors.
#[derive(Default, Clone, Copy)]
struct Tally {
    tests: usize,
    failures: usize,
    errors: usize,
}

impl Tally {
    fn add(&mut self, c: &Case) {
        self.tests += 1;
        match &c.outcome {
            Some(o) if o.error => self.errors += 1,
            Some(_) => self.failures += 1,
            None => {}
        }
    }
}

/// `s` with `<`, `>`, `&`, `'` and `"` escaped, as quick-xml escapes text
/// and attribute values.
fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['<', '>', '&', '\'', '"']) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for ch in s.chars() {
        match ch {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out.into()
}

/// The streaming writer: the first I/O error is kept in `io_error` (and
/// nothing more is written).
fn write_to(
    out: &mut impl Write,
    reports: &[&Report],
    io_error: &mut Option<std::io::Error>,
) -> Result<(), ReportError> {
    let mut put = |text: std::fmt::Arguments<'_>| {
        if io_error.is_none() {
            if let Err(e) = out.write_fmt(text) {
                *io_error = Some(e);
            }
        }
    };
    let mut tallies = Vec::with_capacity(reports.len());
    let mut all = Tally::default();
    for r in reports {
        let mut t = Tally::default();
        reference_cases(r).for_each(|c| t.add(&c));
        r.case_results.each(|c| t.add(&case_of(r, c)))?;
        all.tests += t.tests;
        all.failures += t.failures;
        all.errors += t.errors;
        tallies.push(t);
    }
    put(format_args!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"crashpoint\" tests=\"{}\" failures=\"{}\" errors=\"{}\">\n",
        all.tests, all.failures, all.errors
    ));
    for (r, t) in reports.iter().zip(tallies) {
        put(format_args!(
            "    <testsuite name=\"{}\" tests=\"{}\" disabled=\"0\" errors=\"{}\" failures=\"{}\">\n        <properties>\n            <property name=\"fault\" value=\"{}\"/>\n        </properties>\n",
            esc(&r.name),
            t.tests,
            t.errors,
            t.failures,
            esc(r.fault.name())
        ));
        let mut case = |c: Case| {
            match &c.class {
                Some(class) => put(format_args!(
                    "        <testcase name=\"{}\" classname=\"{}\">\n",
                    esc(&c.name),
                    esc(class)
                )),
                None => put(format_args!(
                    "        <testcase name=\"{}\">\n",
                    esc(&c.name)
                )),
            }
            if let Some(o) = &c.outcome {
                let tag = if o.error { "error" } else { "failure" };
                if o.text.is_empty() {
                    put(format_args!(
                        "            <{tag} message=\"{}\" type=\"{}\"/>\n",
                        esc(&o.message),
                        esc(&o.ty)
                    ));
                } else {
                    put(format_args!(
                        "            <{tag} message=\"{}\" type=\"{}\">{}</{tag}>\n",
                        esc(&o.message),
                        esc(&o.ty),
                        esc(&o.text)
                    ));
                }
            }
            put(format_args!("        </testcase>\n"));
        };
        reference_cases(r).for_each(&mut case);
        r.case_results.each(|c| case(case_of(r, c)))?;
        put(format_args!("    </testsuite>\n"));
    }
    put(format_args!("</testsuites>\n"));
    Ok(())
}
