//! Cases needed to first catch the window bugs, by strategy, side by side:
//!
//! - `windows-first`: the position of the first failing point in the plan's
//!   order (sites once, namespace operations and in-place rewrites first,
//!   after the first completed save);
//! - `uniform`: the expected position of the first failing point when the
//!   same points are drawn uniformly without replacement (the old
//!   `--cases N`), averaged over 1,000 permutations;
//! - `time (window)` and `time (whole run)`: kills at times drawn as
//!   fractions of the save window (today's time mode) or uniformly over the
//!   whole reference run (the old time mode), run one after the other until
//!   one fails, averaged over seeds; `>N` when none of N failed;
//! - `uniform / w-f` and `time / w-f`: how many times more cases uniform
//!   sampling and time mode (window) needed than windows-first (the goal
//!   is 10 or more; where a large share of the points fail, uniform
//!   sampling needs few cases too, and no order can be ten times better);
//! - `every seed`: the budget that catches the bug whatever the seed, what
//!   `--cases N` in a CI job must be set to: windows-first's own position
//!   (its first round, every site once, does not depend on the seed; a
//!   position past the number of sites would), for
//!   uniform sampling `points - failing + 1` (a draw can leave every
//!   failing point to the end), for time mode the most cases any seed
//!   needed (`>N` when one found nothing).
//!
//! Subjects: the simulated trainer's zoo mutants on their scenarios (`op`
//! points) and the Python example's bugs (`syscall` points), layout
//! `relative`. Every point is run once to know which fail, so the figures
//! for the census strategies are exact. Run with
//! `cargo bench --bench detection` (add `-- --quick` for fewer time-mode
//! seeds, `--sim-only` for the simulated trainer's rows alone); it prints
//! one table.

mod common;
use common::exe;

use std::collections::HashSet;
use std::path::Path;

use crashpoint::inject::{self, CrashPlan, CrashPoint, Mode, PlanSpec, Selection};
use crashpoint::layout::Layout;
use crashpoint::oracle::{self, Reference, ResumeMode, Target, Tracing};
use crashpoint::runner::Subject;
use crashpoint::scenario::Scenario;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Row {
    subject: String,
    points: usize,
    sites: usize,
    failing: usize,
    windows_first: Option<usize>,
    uniform: Option<f64>,
    time_window: String,
    time_window_max: String,
    time_whole: String,
}

fn fails(target: &Target, r: &Reference, plan: &CrashPlan, dir: &Path) -> bool {
    let _ = std::fs::remove_dir_all(dir);
    let out = oracle::run_case(target, r, plan, dir).expect("case");
    let _ = std::fs::remove_dir_all(dir);
    !out.passed()
}

/// Time-mode cases until the first failure, averaged over `seeds`, and the
/// most any seed needed; `>max` when some seed found none.
fn time_hunt(
    target: &Target,
    r: &Reference,
    seeds: u64,
    max: usize,
    whole: bool,
    dir: &Path,
) -> (String, String) {
    let mut total = 0;
    let mut most = 0;
    for seed in 0..seeds {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let found = (1..=max).find(|_| {
            let point = if whole {
                CrashPoint::Time(rng.gen_range(0..=r.duration.as_millis() as u64))
            } else {
                CrashPoint::Fraction(rng.gen_range(0..10_000))
            };
            fails(
                target,
                r,
                &CrashPlan {
                    points: vec![point],
                },
                dir,
            )
        });
        match found {
            Some(n) => {
                total += n;
                most = most.max(n);
            }
            None => return (format!(">{max}"), format!(">{max}")),
        }
    }
    (
        format!("{:.1}", total as f64 / seeds as f64),
        most.to_string(),
    )
}

fn measure(name: &str, target: Target, work: &Path, seeds: u64, max_time: usize) -> Row {
    let dir = work.join("case");
    let r = oracle::reference(&target, Layout::Relative, work).expect("reference");
    let spec = PlanSpec {
        mode: target.mode,
        selection: Selection::All,
        crashes: 1,
        seed: 0,
        layout: Layout::Relative.name(),
        saved: &r.saved,
    };
    let order = inject::first_points(&spec, &r.census);
    let failing: HashSet<CrashPoint> = order
        .iter()
        .filter(|p| {
            fails(
                &target,
                &r,
                &CrashPlan {
                    points: vec![p.point],
                },
                &dir,
            )
        })
        .map(|p| p.point)
        .collect();
    let sites: HashSet<_> = order.iter().map(|p| &p.site).collect();
    let windows_first = order
        .iter()
        .position(|p| failing.contains(&p.point))
        .map(|i| i + 1);
    let uniform = (!failing.is_empty()).then(|| {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut points: Vec<CrashPoint> = order.iter().map(|p| p.point).collect();
        let runs = 1000;
        let sum: usize = (0..runs)
            .map(|_| {
                points.shuffle(&mut rng);
                points.iter().position(|p| failing.contains(p)).unwrap_or(0) + 1
            })
            .sum();
        sum as f64 / runs as f64
    });
    let timed = Target {
        mode: Mode::Time,
        ..target.clone()
    };
    let rt = oracle::reference(&timed, Layout::Relative, work).expect("time reference");
    let (time_window, time_window_max) = time_hunt(&timed, &rt, seeds, max_time, false, &dir);
    Row {
        subject: name.to_string(),
        points: order.len(),
        sites: sites.len(),
        failing: failing.len(),
        windows_first,
        uniform,
        time_window,
        time_window_max,
        time_whole: time_hunt(&timed, &rt, seeds, max_time, true, &dir).0,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let sim_only = std::env::args().any(|a| a == "--sim-only");
    let seeds = if quick { 2 } else { 5 };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().expect("tempdir");
    let mut rows = Vec::new();
    for m in ["unlink-then-link", "delete-before-save", "torn-write"] {
        let s = Scenario::load(&root.join(format!("scenarios/zoo-{m}.toml"))).expect("scenario");
        let target = s.campaign(&exe(), 1, None).target;
        let w = work.path().join(format!("sim-{m}"));
        std::fs::create_dir_all(&w).expect("mkdir");
        rows.push(measure(&format!("sim {m}"), target, &w, seeds, 200));
    }
    if crashpoint::trace::tracing_available() && !sim_only {
        let trainer = root.join("examples/python/trainer.py");
        for bug in [
            &["--bug", "unlink-then-link"][..],
            &["--bug", "delete-before-save", "--keep", "1"],
            &["--bug", "torn-write"],
        ] {
            let mut args = vec![trainer.clone().into_os_string()];
            args.extend(bug.iter().map(Into::into));
            let target = Target {
                subject: Subject {
                    program: "python3".into(),
                    args,
                    sim: false,
                    preload: Vec::new(),
                },
                mode: Mode::Syscall,
                max_steps: 20,
                seed: 0,
                resume: ResumeMode::Path,
                timeout: None,
                tracing: Tracing::Needed,
                fault: crashpoint::fault::FaultModel::KILL,
            };
            let w = work.path().join(format!("py-{}", bug[1]));
            std::fs::create_dir_all(&w).expect("mkdir");
            rows.push(measure(
                &format!("python {}", bug.join(" ")),
                target,
                &w,
                seeds,
                40,
            ));
        }
    }
    // How many times more cases the other strategies need than
    // windows-first (the goal: 10 or more), `>x` where time mode caught
    // nothing in its tries.
    let ratio = |other: &str, wf: Option<usize>| -> String {
        let Some(wf) = wf else { return "-".into() };
        let (more, v) = match other.strip_prefix('>') {
            Some(v) => (">", v),
            None => ("", other),
        };
        match v.parse::<f64>() {
            Ok(v) => format!("{more}{:.1}", v / wf as f64),
            Err(_) => "-".into(),
        }
    };
    let mut lines = vec![[
        "subject".to_string(),
        "points".into(),
        "sites".into(),
        "failing".into(),
        "windows-first".into(),
        "uniform".into(),
        "time (window)".into(),
        "time (whole run)".into(),
        "uniform / w-f".into(),
        "time / w-f".into(),
        "every seed: w-f".into(),
        "uniform".into(),
        "time".into(),
    ]];
    for r in &rows {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "never".into());
        lines.push([
            r.subject.clone(),
            r.points.to_string(),
            r.sites.to_string(),
            r.failing.to_string(),
            opt(r.windows_first.map(|n| n.to_string())),
            opt(r.uniform.map(|u| format!("{u:.1}"))),
            r.time_window.clone(),
            r.time_whole.clone(),
            ratio(
                &r.uniform.map(|u| u.to_string()).unwrap_or_default(),
                r.windows_first,
            ),
            ratio(&r.time_window, r.windows_first),
            opt(r.windows_first.map(|n| n.to_string())),
            if r.failing == 0 {
                "never".into()
            } else {
                (r.points - r.failing + 1).to_string()
            },
            r.time_window_max.clone(),
        ]);
    }
    print!("{}", crashpoint::report::render(&lines));
}
