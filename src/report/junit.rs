//! JUnit XML for CI: one test suite per report, one test case per layout ×
//! crash plan, named by its crash point (call, path, phase), laid out as
//! `quick_junit` lays it out.
//!
//! The XML is written as it is made, the spooled case records read back one
//! at a time (twice: once to count, once to write): [`write()`] puts it in a
//! file, so neither the records nor the document are ever all in memory;
//! [`junit`] makes the same text as a string.

use std::fmt::Write;

use super::{CaseRecord, Report, ReportError};

/// JUnit XML of `reports`.
pub fn junit(reports: &[&Report]) -> Result<String, ReportError> {
    let mut text = String::new();
    write_to(&mut text, reports)?;
    Ok(text)
}

/// Writes the JUnit XML of `reports` to `path` (the text [`junit`] makes).
pub fn write(path: &std::path::Path, reports: &[&Report]) -> Result<(), ReportError> {
    super::text_file::write_text(path, |out| write_to(out, reports))
}

/// One test case.
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
    /// One test case more, an error or a failure or neither.
    fn add(&mut self, error: bool, failure: bool) {
        self.tests += 1;
        self.errors += usize::from(error);
        self.failures += usize::from(failure);
    }

    /// The test case of `c` (as [`case_of`] makes it, without its text).
    fn add_record(&mut self, c: &CaseRecord) {
        let failure = !c.findings.is_empty();
        self.add(!failure && c.harness_error.is_some(), failure);
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

/// The writer.
fn write_to(out: &mut impl Write, reports: &[&Report]) -> Result<(), ReportError> {
    let mut tallies = Vec::with_capacity(reports.len());
    let mut all = Tally::default();
    for r in reports {
        let mut t = Tally::default();
        reference_cases(r).for_each(|_| t.add(false, true));
        r.case_results.each(|c| t.add_record(c))?;
        all.tests += t.tests;
        all.failures += t.failures;
        all.errors += t.errors;
        tallies.push(t);
    }
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"crashpoint\" tests=\"{}\" failures=\"{}\" errors=\"{}\">\n",
        all.tests, all.failures, all.errors
    );
    for (r, t) in reports.iter().zip(tallies) {
        let _ = write!(
            out,
            "    <testsuite name=\"{}\" tests=\"{}\" disabled=\"0\" errors=\"{}\" failures=\"{}\">\n        <properties>\n            <property name=\"fault\" value=\"{}\"/>\n        </properties>\n",
            esc(&r.name),
            t.tests,
            t.errors,
            t.failures,
            esc(r.fault.name())
        );
        let mut case = |c: Case| test_case(out, &c);
        reference_cases(r).for_each(&mut case);
        r.case_results.each(|c| case(case_of(r, c)))?;
        let _ = out.write_str("    </testsuite>\n");
    }
    let _ = out.write_str("</testsuites>\n");
    Ok(())
}

/// One `<testcase>` element.
fn test_case(out: &mut impl Write, c: &Case) {
    let _ = match &c.class {
        Some(class) => writeln!(
            out,
            "        <testcase name=\"{}\" classname=\"{}\">",
            esc(&c.name),
            esc(class)
        ),
        None => writeln!(out, "        <testcase name=\"{}\">", esc(&c.name)),
    };
    if let Some(o) = &c.outcome {
        let tag = if o.error { "error" } else { "failure" };
        let (message, ty) = (esc(&o.message), esc(&o.ty));
        let _ = if o.text.is_empty() {
            writeln!(
                out,
                "            <{tag} message=\"{message}\" type=\"{ty}\"/>"
            )
        } else {
            writeln!(
                out,
                "            <{tag} message=\"{message}\" type=\"{ty}\">{}</{tag}>",
                esc(&o.text)
            )
        };
    }
    let _ = out.write_str("        </testcase>\n");
}
