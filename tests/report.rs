//! What a user reads: every case in the JSON and the JSON Lines, the HTML
//! page of the crash windows (checked without a browser: one cell per crash
//! point, classes per outcome, nothing external), partitions that merge to
//! exactly the single-machine report, failing sandboxes kept, the census.

use std::path::Path;

use crashpoint::fault::Fault;
use crashpoint::inject::{Coverage, CrashPlan, CrashPoint};
use crashpoint::layout::Layout;
use crashpoint::report::{
    html, CaseRecord, CaseVerdict, FindingRecord, LayoutRow, PointRecord, ReplayCommand, Report,
    ReportError,
};
use crashpoint::verdict::FailureKind;

mod common;
use common::{run, text};

fn point(n: u64, call: &str, path: &str, phase: &str) -> PointRecord {
    PointRecord {
        point: CrashPoint::Syscall(n),
        call: call.into(),
        path: path.into(),
        phase: phase.into(),
        site: format!("{call} {path}"),
    }
}

fn case(index: usize, p: &PointRecord, kinds: &[FailureKind], same: Option<&str>) -> CaseRecord {
    CaseRecord {
        layout: Layout::Relative,
        index,
        point: CrashPlan {
            points: vec![p.point],
        },
        name: format!("{} {} {}", p.point, p.call, p.path),
        site: p.site.clone(),
        verdict: if kinds.is_empty() {
            CaseVerdict::Passed
        } else {
            CaseVerdict::Failed
        },
        kinds: kinds.to_vec(),
        findings: kinds
            .iter()
            .map(|&kind| FindingRecord {
                kind,
                detail: "resumed from step 0 <after> \"a\" & b".into(),
            })
            .collect(),
        warnings: Vec::new(),
        harness_error: None,
        power_states: 0,
        same_state_as: same.map(|s| s.parse().expect("a crash point")),
        later_states: Vec::new(),
        duration_ms: None,
    }
}

/// Six census points in two phases; five run (one passed, one sharing a
/// state, two losing progress, one dangling), one not run, plus a probe.
fn sample() -> Report {
    let points = vec![
        point(
            1,
            "write",
            "work/checkpoints/.step=5.ckpt.tmp",
            "save step=5",
        ),
        point(2, "rename", "work/checkpoints/step=5.ckpt", "save step=5"),
        point(
            3,
            "unlink",
            "work/checkpoints/last.ckpt",
            "relink last step=5",
        ),
        point(
            4,
            "symlink",
            "work/checkpoints/last.ckpt",
            "relink last step=5",
        ),
        point(
            5,
            "unlink",
            "work/checkpoints/last.ckpt",
            "relink last step=10",
        ),
        point(
            6,
            "symlink",
            "work/checkpoints/last.ckpt",
            "relink last step=10",
        ),
    ];
    let pl = FailureKind::ProgressLost;
    let mut probe = case(6, &points[0], &[], None);
    probe.point = "probe:missing".parse().expect("a plan");
    probe.name = "probe:missing (resume from a missing file)".into();
    probe.site = "probe".into();
    let cases = vec![
        case(0, &points[0], &[], None),
        case(1, &points[1], &[], Some("syscall:1")),
        case(2, &points[2], &[pl], None),
        case(3, &points[3], &[FailureKind::DanglingLast, pl], None),
        case(4, &points[4], &[pl], None),
        probe,
    ];
    let row = LayoutRow {
        layout: Layout::Relative,
        cases: 0,
        passed: 0,
        failures: Default::default(),
        census: 6,
        reference_digest: "d".into(),
        planned: 7,
        // Five of the six points ran (every site), one of the three probes.
        coverage: Coverage {
            points: 6,
            points_run: 5,
            sites: 4,
            sites_covered: 4,
            probes: (3, 1),
            after_save: 3,
            ..Coverage::default()
        },
        census_points: points,
        reference_findings: Vec::new(),
        reference_warnings: Vec::new(),
        duration: Default::default(),
        states: None,
        power_states: None,
        later_states: None,
    };
    let replay = ReplayCommand::new(
        &["crashpoint", "certify"],
        "--layouts",
        &["--", "python3", "t.py"],
    );
    Report::assemble("python3 t.py", Fault::Kill, replay, vec![row], cases)
}

#[test]
fn the_page_has_a_cell_per_crash_point_coloured_by_outcome() {
    let r = sample();
    let page = html::page(&[&r]).expect("records held in memory");
    // One cell per census point (6) and one for the probe.
    assert_eq!(
        page.matches("<button type=\"button\" class=\"cell ")
            .count(),
        7
    );
    for (class, n) in [
        ("k-passed", 2),
        ("k-same-state", 1),
        ("k-not-run", 1),
        ("k-progress-lost", 2),
        ("k-dangling-last", 1),
    ] {
        assert_eq!(
            page.matches(&format!("class=\"cell {class}\"")).count(),
            n,
            "{class}"
        );
    }
    // Grouped by phase, in census order.
    let a = page.find(">save step=5<").unwrap();
    let b = page.find(">relink last step=5<").unwrap();
    let c = page.find(">relink last step=10<").unwrap();
    assert!(a < b && b < c);
    // The call and path on hover and focus, escaped; the replay to copy.
    assert!(page.contains("title=\"syscall:4 symlink work/checkpoints/last.ckpt: failed: dangling-last, progress-lost\""));
    assert!(page.contains(
        "data-replay=\"crashpoint certify --layouts relative --crash syscall:4 -- python3 t.py\""
    ));
    assert!(page.contains("data-detail=\"resumed from step 0 &lt;after&gt; &quot;a&quot; &amp; b"));
    // The point not run still has its replay (it runs it).
    assert!(page.contains(
        "data-replay=\"crashpoint certify --layouts relative --crash syscall:6 -- python3 t.py\""
    ));
    // The unsafe windows, per site.
    assert!(
        page.contains("relative: unlink work/checkpoints/last.ckpt: 2 of 2 points lose progress"),
        "{page}"
    );
    assert!(page.contains("relative: symlink work/checkpoints/last.ckpt: 1 of 1 points leave last.ckpt dangling (also progress-lost)"));
    // Self-contained: no network, no external asset.
    for bad in ["http://", "https://", "<link", " src=", "@import", "url("] {
        assert!(!page.contains(bad), "{bad}");
    }
    // Cells are buttons: keyboard focus reaches them, and the panel reads them.
    assert!(page.contains("aria-live=\"polite\""));
    assert!(page.contains("addEventListener('focus'"));
}

#[test]
fn a_report_is_assembled_from_its_cases_alone() {
    let r = sample();
    assert_eq!(r.cases, 6);
    assert!(!r.certified);
    // The verdict counts what ran of the census, and says what did not.
    assert_eq!(
        r.verdict(),
        "3 failing cases in 5 of 6 points (4 of 4 sites): NOT certified"
    );
    assert_eq!(
        r.not_covered,
        [
            "relative: 1 of 6 points not run",
            "relative: 2 of 3 misuse probes not run"
        ]
    );
    let row = &r.layouts[0];
    assert_eq!((row.cases, row.passed), (6, 3));
    assert_eq!(row.failures["progress-lost"], 3);
    assert_eq!(r.failures.len(), 4);
    assert_eq!(
        r.failures[0].replay,
        "crashpoint certify --layouts relative --crash syscall:3 -- python3 t.py"
    );
    // Shuffled cases give the same report.
    let mut cases = r.case_results.to_vec().expect("held in memory");
    cases.reverse();
    let again = Report::assemble(&r.name, r.fault, r.replay.clone(), r.layouts.clone(), cases);
    assert_eq!(again, r);
    // The text says what it left out.
    let mut many = r.clone();
    many.warnings = (0..14).map(|i| format!("w{i}")).collect();
    let w = crashpoint::report::warning_lines(&many, 10, "");
    assert!(w.ends_with("     … 4 more warnings, see --json\n"), "{w}");
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn partitions_merge_to_the_single_machine_report() {
    partitions_merge_with("kill-each");
}

#[test]
fn partitions_recorded_once_merge_to_the_single_machine_report() {
    // Each partition records every point's crash state: the merged report
    // says which points share a state exactly as the single machine does.
    partitions_merge_with("record");
}

fn partitions_merge_with(engine: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let base = [
        "run",
        "scenarios/relative.toml",
        "--mutant",
        "unlink-then-link",
        "--quiet",
        "--jobs",
        "2",
        "--engine",
        engine,
    ];
    let whole = run(&[&base[..], &["--json", &p("whole.json")]].concat());
    assert_eq!(whole.status.code(), Some(0), "{}", text(&whole));
    for i in 1..=3 {
        let part = format!("{i}/3");
        let o = run(&[
            &base[..],
            &["--partition", &part, "--json", &p(&format!("p{i}.json"))],
        ]
        .concat());
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    // A partition runs its share only, and says so.
    let p2 = json(&dir.path().join("p2.json"));
    let all = json(&dir.path().join("whole.json"));
    let n = all["cases"].as_u64().unwrap();
    assert_eq!(p2["partition"]["index"], 2);
    assert_eq!(p2["partition"]["count"], 3);
    assert!(all.get("partition").is_none());
    let share = (0..n).filter(|i| i % 3 == 1).count() as u64;
    assert_eq!(p2["cases"].as_u64().unwrap(), share);
    // Every case is in the whole report, with its point named.
    let cases = all["case_results"].as_array().unwrap();
    assert_eq!(cases.len() as u64, n);
    assert!(cases.iter().any(|c| c["verdict"] == "failed"
        && c["name"]
            .as_str()
            .unwrap()
            .contains("symlink checkpoints/last.ckpt")));
    // The JSON Lines beside it: a line per reference and per case, with durations.
    let lines = std::fs::read_to_string(dir.path().join("whole.jsonl")).unwrap();
    let case_lines: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["event"] == "case")
        .collect();
    assert_eq!(case_lines.len() as u64, n);
    assert!(case_lines.iter().all(|c| c["duration_ms"].is_u64()));

    let merged = run(&[
        "merge",
        &p("p3.json"),
        &p("p1.json"),
        &p("p2.json"),
        "--json",
        &p("merged.json"),
        "--html",
        &p("merged.html"),
    ]);
    // The scenario expects failures and has them: as expected.
    assert_eq!(merged.status.code(), Some(0), "{}", text(&merged));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("merged.json")).unwrap(),
        std::fs::read_to_string(dir.path().join("whole.json")).unwrap()
    );
    // A missing partition is said, and fails the merge.
    let short = run(&["merge", &p("p1.json"), &p("p2.json")]);
    assert_eq!(short.status.code(), Some(1), "{}", text(&short));
    assert!(
        text(&short).contains("cases are in no input"),
        "{}",
        text(&short)
    );
    // The same partition twice is refused.
    let twice = run(&["merge", &p("p1.json"), &p("p1.json")]);
    assert_eq!(twice.status.code(), Some(2), "{}", text(&twice));
    // The page of a report read back.
    let page = run(&["report", &p("whole.json"), "--html", &p("again.html")]);
    assert_eq!(page.status.code(), Some(0), "{}", text(&page));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("again.html")).unwrap(),
        std::fs::read_to_string(dir.path().join("merged.html")).unwrap()
    );
}

#[test]
fn keep_failed_keeps_each_failing_sandbox_by_layout_and_point() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("kept");
    let o = run(&[
        "run",
        "scenarios/relative.toml",
        "--mutant",
        "unlink-then-link",
        "--layout",
        "relative",
        "--crash",
        "op:15:after",
        "--quiet",
        "--keep-failed",
        keep.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let case = keep.join("relative").join("op-15-after");
    assert!(case.join("sandbox").is_dir(), "{}", text(&o));
    // The sandbox as the case left it: the link unlinked, never relinked.
    let ckpt = case.join("sandbox/work/checkpoints");
    assert!(
        ckpt.join("step=10.ckpt").is_file(),
        "{:?}",
        std::fs::read_dir(&ckpt).map(|d| d.count())
    );
    assert!(ckpt.join("last.ckpt").symlink_metadata().is_err());
    assert!(case.join("harness").is_dir());
    assert!(text(&o).contains("kept 1 failing cases"), "{}", text(&o));
    // The no-checkpoint detail says what the directory held.
    assert!(
        text(&o).contains("the checkpoint directory held: "),
        "{}",
        text(&o)
    );
}

#[test]
fn census_prints_numbered_points_with_sites() {
    let o = run(&["census", "--scenario", "scenarios/relative.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert!(t.starts_with("relative: census of "), "{t}");
    assert!(t.contains("symlink    checkpoints/.last.ckpt.tmp"), "{t}");
    assert!(t.contains("relative: 8 sites"), "{t}");
    let none = run(&["census"]);
    assert_eq!(none.status.code(), Some(2), "{}", text(&none));
}

#[test]
fn every_command_help_ends_with_examples() {
    for cmd in ["run", "certify", "census", "report", "merge", "sim", "zoo"] {
        let o = run(&[cmd, "--help"]);
        let t = text(&o);
        assert!(t.contains("Examples"), "{cmd}: {t}");
        assert!(
            t.trim_end().lines().last().unwrap().contains("crashpoint"),
            "{cmd}"
        );
    }
}

#[test]
fn kept_trees_copy_links_as_links_and_never_follow_them() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), "x").unwrap();
    let from = dir.path().join("case");
    std::fs::create_dir_all(from.join("sandbox/work")).unwrap();
    std::fs::write(from.join("sandbox/work/a.ckpt"), "ckpt").unwrap();
    std::os::unix::fs::symlink(&outside, from.join("sandbox/work/out")).unwrap();
    std::os::unix::fs::symlink("a.ckpt", from.join("sandbox/work/last.ckpt")).unwrap();
    let to = dir.path().join("kept");
    crashpoint::keep::copy_tree(&from, &to).unwrap();
    let w = to.join("sandbox/work");
    assert_eq!(std::fs::read_to_string(w.join("a.ckpt")).unwrap(), "ckpt");
    assert_eq!(
        std::fs::read_link(w.join("last.ckpt")).unwrap(),
        Path::new("a.ckpt")
    );
    assert_eq!(std::fs::read_link(w.join("out")).unwrap(), outside);
    assert!(w
        .join("out")
        .symlink_metadata()
        .unwrap()
        .file_type()
        .is_symlink());
    // Nothing was written through the link.
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
}

#[test]
fn later_crash_states_are_in_the_json_and_partitions_merge_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let exe = env!("CARGO_BIN_EXE_crashpoint");
    let certify = |extra: &[&str]| {
        let o = run(&[
            &[
                "certify",
                "--quiet",
                "--crashes",
                "3",
                "--layouts",
                "relative,absolute",
                "--cases",
                "10",
                "--max-steps",
                "10",
                "--jobs",
                "2",
            ][..],
            extra,
            &["--", exe, "sim", "--every-n-steps", "5"],
        ]
        .concat());
        assert!(o.status.code().is_some_and(|c| c < 2), "{}", text(&o));
    };
    certify(&["--json", &p("whole.json")]);
    let whole = json(&dir.path().join("whole.json"));
    // Each case says which state each of its later crashes was in, named
    // by the crashes before it; each layout counts them.
    let mut third = 0;
    for c in whole["case_results"].as_array().unwrap() {
        for s in c["later_states"].as_array().into_iter().flatten() {
            let crash = s["crash"].as_u64().unwrap();
            assert!((2..=3).contains(&crash), "{s}");
            assert_eq!(s["from"].as_array().unwrap().len() as u64, crash - 1, "{s}");
            let points: Vec<&str> = c["point"].as_str().unwrap().split(',').collect();
            assert_eq!(s["point"], points[crash as usize - 1], "{c}");
            third += usize::from(crash == 3);
        }
    }
    assert!(third > 0, "no third crash state: {whole}");
    for l in whole["layouts"].as_array().unwrap() {
        let later = &l["later_states"];
        let points = later["points"].as_u64().unwrap();
        let distinct = later["distinct"].as_u64().unwrap();
        assert!(points > 0 && distinct <= points, "{later}");
        assert_eq!(
            later["same_as"].as_array().unwrap().len() as u64,
            points - distinct,
            "{later}"
        );
    }
    // Partitions record only their share's later crashes: merged, they say
    // what the single machine says, byte for byte.
    for i in 1..=2 {
        let part = format!("{i}/2");
        certify(&["--partition", &part, "--json", &p(&format!("p{i}.json"))]);
    }
    let merged = run(&[
        "merge",
        &p("p2.json"),
        &p("p1.json"),
        "--json",
        &p("merged.json"),
    ]);
    assert!(
        merged.status.code().is_some_and(|c| c < 2),
        "{}",
        text(&merged)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("merged.json")).unwrap(),
        std::fs::read_to_string(dir.path().join("whole.json")).unwrap()
    );
    // The kill-each engine records nothing: the fields are absent.
    certify(&["--engine", "kill-each", "--json", &p("kill.json")]);
    let kill = json(&dir.path().join("kill.json"));
    assert!(kill["layouts"][0].get("later_states").is_none(), "{kill}");
    assert!(kill["case_results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c.get("later_states").is_none()));
}

/// A campaign's cases spooled to a file as its layouts finish give the
/// report built from every case held in memory, byte for byte in every
/// format, and the campaign keeps only the cases that failed.
#[test]
fn spooled_cases_give_the_report_held_in_memory() {
    use crashpoint::campaign::{CaseSink, LayoutDone};
    use crashpoint::report::{json, junit, SpooledCases};
    // Failures (a mutant), later crash states (three crashes), and passes.
    let cases: &[(&str, Option<u32>)] = &[
        ("zoo-torn-write", None),
        ("relative", Some(3)),
        ("zoo-last-lost-on-early-resume", Some(2)),
    ];
    let exe = Path::new(env!("CARGO_BIN_EXE_crashpoint"));
    let (mut failed, mut later) = (0, 0);
    for (name, crashes) in cases {
        let f = common::root()
            .join("scenarios")
            .join(format!("{name}.toml"));
        let s = crashpoint::scenario::Scenario::load(&f).unwrap_or_else(|e| panic!("{e}"));
        let mut c = s.campaign(exe, 2, None);
        c.selection = crashpoint::inject::Selection::Sample(8);
        if let Some(n) = crashes {
            c.crashes = *n;
        }
        let results = common::run_campaign(&c).unwrap_or_else(|e| panic!("{name}: {e}"));
        let replay = ReplayCommand::default();
        let held = Report::build(name, Fault::Kill, s.mode, &results, &replay);
        // The same cases through the sink, as `run` hands them over.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sink = SpooledCases::create(&dir.path().join("cases.jsonl")).expect("spool");
        let mut kept = results.clone();
        for r in &mut kept {
            let done = LayoutDone {
                reference: &r.reference,
                recorded: r.recorded.as_ref(),
            };
            let (indexes, outcomes): (Vec<usize>, Vec<_>) = r
                .indexes
                .iter()
                .zip(&r.outcomes)
                .filter_map(|(&i, o)| sink.case(&done, i, o.clone()).map(|o| (i, o)))
                .unzip();
            assert!(outcomes.iter().all(|o| !o.findings.is_empty()), "{name}");
            r.indexes = indexes;
            r.outcomes = outcomes;
        }
        let spooled = sink
            .finish(name, Fault::Kill, s.mode, &kept, &replay)
            .expect("finish");
        assert!(spooled.cases > 0 && spooled.cases == held.cases, "{name}");
        for (l, r) in spooled.layouts.iter().zip(&results) {
            assert_eq!(l.cases, r.outcomes.len(), "{name}");
            let passed = r.outcomes.iter().filter(|o| o.passed()).count();
            assert_eq!(l.passed, passed, "{name}");
        }
        failed += spooled.failures.len();
        later += spooled
            .layouts
            .iter()
            .filter(|l| l.later_states.is_some())
            .count();
        assert_eq!(spooled, held, "{name}");
        let out = dir.path().join("report.json");
        json::write(&out, &[&spooled]).expect("write");
        assert_eq!(
            std::fs::read_to_string(&out).expect("read"),
            json::to_string(&[&held]).expect("json"),
            "{name}: JSON"
        );
        // JUnit, HTML and the text report.
        let others = |r: &Report| {
            let page = html::page(&[r]).expect("html");
            let text = crashpoint::report::failure_list(r, 3);
            (junit(&[r]).expect("junit"), page, text)
        };
        assert_eq!(others(&spooled), others(&held), "{name}");
        // The JUnit file and the page, written as the spooled records are
        // read back: the bytes of the strings made from the held ones.
        let file = |name: &str, write: &dyn Fn(&Path) -> Result<(), ReportError>| {
            let p = dir.path().join(name);
            write(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
            std::fs::read_to_string(&p).expect("read")
        };
        let xml = file("report.xml", &|p| {
            crashpoint::report::junit::write(p, &[&spooled])
        });
        assert_eq!(xml, junit(&[&held]).expect("junit"), "{name}: JUnit file");
        assert_eq!(as_quick_junit_writes_it(&xml), xml, "{name}: JUnit layout");
        let page = file("report.html", &|p| html::write(p, &[&spooled]));
        assert_eq!(
            page,
            html::page(&[&held]).expect("html"),
            "{name}: HTML file"
        );
    }
    assert!(failed > 0, "no case failed");
    assert!(later > 0, "no later crash state");
}

#[test]
fn the_junit_file_is_the_junit_text_with_errors_reference_failures_and_escapes() {
    let mut r = sample();
    let mut cases = r.case_results.to_vec().expect("cases");
    cases[0].harness_error = Some("run 2: the sandbox <x> & 'y' \"z\" was changed".into());
    cases[2].name = "a <name> & 'quotes' \"too\"".into();
    r.case_results = cases.into();
    r.failures.insert(
        0,
        crashpoint::report::Failure {
            layout: Layout::Nested,
            kind: FailureKind::Nondeterministic,
            crash: CrashPlan { points: Vec::new() },
            name: "reference".into(),
            detail: "the two reference runs differ: <a> & <b>".into(),
            replay: "crashpoint certify -- python3 t.py".into(),
        },
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("report.xml");
    crashpoint::report::junit::write(&path, &[&r, &sample()]).expect("written");
    let text = crashpoint::report::junit(&[&r, &sample()]).expect("junit");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
    assert_eq!(as_quick_junit_writes_it(&text), text);
    assert!(text.contains("<error message=\"harness error\" type=\"harness-error\">run 2: the sandbox &lt;x&gt; &amp; &apos;y&apos; &quot;z&quot; was changed</error>"), "{text}");
    assert!(
        text.contains("a &lt;name&gt; &amp; &apos;quotes&apos; &quot;too&quot;"),
        "{text}"
    );
    assert!(
        text.contains("<testcase name=\"nested reference\">"),
        "{text}"
    );
    assert!(
        text.contains("tests=\"13\" failures=\"7\" errors=\"1\""),
        "{text}"
    );
}

/// `xml` read by quick_junit and written again by it: JUnit the way a
/// JUnit library lays it out, with every test case, status and text kept.
fn as_quick_junit_writes_it(xml: &str) -> String {
    quick_junit::Report::deserialize_from_str(xml)
        .unwrap_or_else(|e| panic!("quick_junit cannot read it: {e}\n{xml}"))
        .to_string()
        .expect("quick_junit writes it")
}
