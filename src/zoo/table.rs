//! The zoo as text: one line per mutant (caught or not, the kinds, the
//! layouts where it showed, after how many cases, the minimal case), then
//! each minimal case before and after shrinking with its replay command,
//! then the clean trainer's verdict. Nothing here depends on timing, so the
//! same seeds print the same text.

use std::fmt::Write as _;

use super::hunt::{CaseView, Verdict, ZooReport};

/// Renders the whole report.
pub fn render(report: &ZooReport) -> String {
    let mut lines: Vec<[String; 6]> = vec![[
        "mutant".into(),
        "verdict".into(),
        "kinds".into(),
        "layouts".into(),
        "found at".into(),
        "minimal case".into(),
    ]];
    for r in &report.mutants {
        let kinds = match r.verdict {
            Verdict::NeedsPowerLoss => "needs the power-loss fault model".to_string(),
            Verdict::NoScenario => format!("no scenarios/{}", r.mutant.scenario_file()),
            _ if r.kinds.is_empty() => "-".into(),
            _ => join(r.kinds.iter().map(|k| k.name())),
        };
        let found = match (r.found_at, r.found_in_reference) {
            (_, true) => "reference run".to_string(),
            (Some(n), false) => format!("case {n} of {}", r.cases),
            (None, _) if r.cases > 0 => format!("none of {}", r.cases),
            _ => "-".into(),
        };
        let minimal = r
            .minimal
            .as_ref()
            .map(|m| short(&m.after))
            .unwrap_or_else(|| "-".into());
        lines.push([
            r.mutant.name().into(),
            r.verdict.word().into(),
            kinds,
            if r.layouts.is_empty() {
                "-".into()
            } else {
                join(r.layouts.iter().map(|l| l.as_str()))
            },
            found,
            minimal,
        ]);
    }
    let mut out = crate::report::render(&lines);
    out.push_str("\nminimal cases, before -> after shrinking (runs: subject runs of the case):\n");
    for r in &report.mutants {
        let Some(m) = &r.minimal else { continue };
        let _ = writeln!(
            out,
            "  {} [{}]: {} -> {} ({})\n    replay: {}",
            r.mutant,
            m.kind,
            long(&m.before),
            long(&m.after),
            plural(m.attempts, "attempt"),
            m.replay
        );
    }
    let cases: usize = report.clean.iter().map(|c| c.cases).sum();
    let bad: Vec<_> = report.clean.iter().filter(|c| !c.as_expected).collect();
    let _ = writeln!(
        out,
        "\nclean sim: {} scenarios, {cases} cases: {}",
        report.clean.len(),
        if bad.is_empty() {
            "every verdict as expected".to_string()
        } else {
            format!("{} UNEXPECTED", bad.len())
        }
    );
    for c in bad {
        let _ = writeln!(
            out,
            "  UNEXPECTED {}: {}{}",
            c.scenario,
            if c.kinds.is_empty() {
                "no failure".to_string()
            } else {
                join(c.kinds.iter().map(|k| k.name()))
            },
            c.replay
                .as_ref()
                .map(|r| format!("\n    replay: {r}"))
                .unwrap_or_default()
        );
    }
    let shown = report
        .mutants
        .iter()
        .filter(|r| r.verdict != Verdict::NeedsPowerLoss)
        .count();
    let caught = report
        .mutants
        .iter()
        .filter(|r| r.verdict == Verdict::Caught)
        .count();
    let waiting = report.mutants.len() - shown;
    let waiting = if waiting > 0 {
        format!(", {waiting} waiting for the power-loss fault model")
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "zoo: {caught} of {shown} mutants caught{waiting}: {}",
        if report.ok { "ok" } else { "NOT ok" }
    );
    out
}

fn join<'a>(words: impl Iterator<Item = &'a str>) -> String {
    words.collect::<Vec<_>>().join(",")
}

/// `relative 5 steps op:7:after`.
fn short(c: &CaseView) -> String {
    let crash = if c.crash == "none" {
        "no crash"
    } else {
        &c.crash
    };
    format!("{} {} steps {crash}", c.layout, c.steps)
}

/// `relative, 10 steps, 1 crash (op:7:after), 2 runs`.
fn long(c: &CaseView) -> String {
    let crashes = match c.crashes {
        0 if c.crash == "none" => "no crash".to_string(),
        0 => c.crash.clone(),
        1 => format!("1 crash ({})", c.crash),
        n => format!("{n} crashes ({})", c.crash),
    };
    format!(
        "{}, {} steps, {crashes}, {}",
        c.layout,
        c.steps,
        plural(c.runs, "run")
    )
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
