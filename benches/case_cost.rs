//! What a case costs, against the floor it cannot beat, measured side by side
//! in one run:
//! - `floor/two-process-starts`: a fresh sandbox directory and two starts of
//!   the `crashpoint` binary doing nothing (`--version`), removed again;
//! - `case/kill-and-resume`: a real case: a fresh sandbox, the sim killed
//!   half-way through a checkpoint write, resumed to the end, judged;
//! - codec throughput: checkpoint encode and decode, state digest.
//!
//! Run with `cargo bench`; the ratio case/floor is the figure to watch.

mod common;
use common::exe;

use std::path::PathBuf;
use std::process::Command;

use crashpoint::inject::{CrashPlan, Mode};
use crashpoint::layout::Layout;
use crashpoint::oracle::{self, ResumeMode, Target, Tracing};
use crashpoint::runner::Subject;
use crashpoint::sim::ckpt::format::{decode, encode, Checkpoint};
use crashpoint::sim::ckpt::policy::TopK;
use crashpoint::sim::{Dataset, SimConfig, SimState};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn cases(c: &mut Criterion) {
    let exe = exe();
    let target = Target {
        subject: Subject {
            program: exe.clone().into(),
            args: vec!["sim".into()],
            sim: true,
            preload: Vec::new(),
        },
        mode: Mode::Op,
        max_steps: 20,
        seed: 0,
        resume: ResumeMode::Path,
        timeout: None,
        tracing: Tracing::Needed,
        fault: crashpoint::fault::FaultModel::KILL,
    };
    let work = tempfile::tempdir().expect("tempdir");
    let reference = oracle::reference(&target, Layout::Relative, work.path()).expect("reference");
    let plan: CrashPlan = "op:12:mid".parse().expect("plan");
    let mut g = c.benchmark_group("per-case");
    g.sample_size(30);
    g.bench_function("floor/two-process-starts", |b| {
        b.iter(|| {
            let dir = work.path().join("floor");
            std::fs::create_dir_all(dir.join("sandbox/work")).expect("mkdir");
            for _ in 0..2 {
                let s = Command::new(&exe)
                    .arg("--version")
                    .current_dir(&dir)
                    .output()
                    .expect("start");
                assert!(s.status.success());
            }
            std::fs::remove_dir_all(&dir).expect("rm");
        })
    });
    g.bench_function("case/kill-and-resume", |b| {
        b.iter(|| {
            let dir = work.path().join("case");
            let out = oracle::run_case(&target, &reference, &plan, &dir).expect("case");
            assert!(out.passed() && out.crashes_hit == 1);
            std::fs::remove_dir_all(&dir).expect("rm");
        })
    });
    g.finish();
}

fn codec(c: &mut Criterion) {
    let cfg = SimConfig {
        params: 1 << 16,
        ..SimConfig::default()
    };
    let data = Dataset::generate(
        &SimConfig {
            dataset: 8,
            batch: 2,
            ..cfg.clone()
        },
        1,
    );
    let mut state = SimState::init(
        &SimConfig {
            dataset: 8,
            batch: 2,
            ..cfg.clone()
        },
        1,
    );
    state.train_step(
        &SimConfig {
            dataset: 8,
            batch: 2,
            ..cfg.clone()
        },
        &data,
    );
    let ck = Checkpoint {
        state,
        topk: TopK::default(),
    };
    let bytes = encode(&ck);
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("encode", |b| b.iter(|| encode(&ck)));
    g.bench_function("decode", |b| b.iter(|| decode(&bytes).expect("decodes")));
    g.bench_function("digest", |b| b.iter(|| ck.state.digest()));
    g.finish();
}

/// One uninterrupted run of the Python example, untraced and traced by the
/// seccomp/ptrace supervisor, side by side.
fn subject(c: &mut Criterion) {
    use crashpoint::layout::Sandbox;
    use crashpoint::observe::HarnessFiles;
    use crashpoint::runner::{run, Exit, RunRequest};
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/python/trainer.py");
    let subject = Subject {
        program: "python3".into(),
        args: vec![script.into()],
        sim: false,
        preload: Vec::new(),
    };
    let work = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("python-subject");
    g.sample_size(10);
    for traced in [false, true] {
        let name = if traced { "traced" } else { "untraced" };
        g.bench_function(name, |b| {
            b.iter(|| {
                let case = work.path().join(name);
                std::fs::create_dir_all(case.join("sandbox")).expect("mkdir");
                std::fs::create_dir_all(case.join("harness")).expect("mkdir");
                let sb = Sandbox::create(Layout::Relative, &case.join("sandbox")).expect("sandbox");
                let files = HarnessFiles::in_dir(&case.join("harness"));
                let place = sb.place();
                let req = RunRequest {
                    place: &place,
                    sandbox: sb.root(),
                    max_steps: 20,
                    seed: 0,
                    resume: None,
                    state_out: &files.state,
                    events: &files.events,
                    crash: None,
                    op_log: None,
                    traced,
                    power: false,
                    timeout: std::time::Duration::from_secs(60),
                };
                let r = run(&subject, &req).expect("runs");
                assert_eq!(r.exit, Exit::Code(0));
                std::fs::remove_dir_all(&case).expect("rm");
            })
        });
    }
    g.finish();
}

/// One resume run of the Python example (from the checkpoint of step 10 to
/// step 20), untraced and traced, side by side: what tracing every resume
/// run costs (`certify --no-trace-resume` saves it). Each sample resumes in a
/// fresh copy of one sandbox an uninterrupted run of 10 steps left.
fn resume(c: &mut Criterion) {
    use crashpoint::layout::Sandbox;
    use crashpoint::observe::HarnessFiles;
    use crashpoint::runner::{run, Exit, RunRequest};
    use criterion::BatchSize;
    use std::time::Duration;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/python/trainer.py");
    let subject = Subject {
        program: "python3".into(),
        args: vec![script.into()],
        sim: false,
        preload: Vec::new(),
    };
    let work = tempfile::tempdir().expect("tempdir");
    let seed = work.path().join("seed");
    std::fs::create_dir_all(seed.join("sandbox")).expect("mkdir");
    std::fs::create_dir_all(seed.join("harness")).expect("mkdir");
    let sb = Sandbox::create(Layout::Relative, &seed.join("sandbox")).expect("sandbox");
    let files = HarnessFiles::in_dir(&seed.join("harness"));
    let place = sb.place();
    let first = RunRequest {
        place: &place,
        sandbox: sb.root(),
        max_steps: 10,
        seed: 0,
        resume: None,
        state_out: &files.state,
        events: &files.events,
        crash: None,
        op_log: None,
        traced: false,
        power: false,
        timeout: Duration::from_secs(60),
    };
    assert_eq!(run(&subject, &first).expect("runs").exit, Exit::Code(0));
    let fresh = |name: &str| {
        let case = work.path().join(name);
        let _ = std::fs::remove_dir_all(&case);
        let ok = Command::new("cp")
            .arg("-a")
            .arg(&seed)
            .arg(&case)
            .status()
            .expect("cp");
        assert!(ok.success());
        case
    };
    let resume_in = |case: PathBuf, traced: bool| {
        let root = case.join("sandbox").canonicalize().expect("sandbox");
        let files = HarnessFiles::in_dir(&case.join("harness"));
        let cwd = root.join("work");
        let place = crashpoint::layout::Place {
            cwd: cwd.clone(),
            pwd: cwd.display().to_string(),
            ckpt_dir: "checkpoints".into(),
        };
        let req = RunRequest {
            place: &place,
            sandbox: &root,
            max_steps: 20,
            seed: 0,
            resume: Some("checkpoints/last.ckpt".into()),
            state_out: &files.state,
            events: &files.events,
            crash: None,
            op_log: None,
            traced,
            power: false,
            timeout: Duration::from_secs(60),
        };
        let r = run(&subject, &req).expect("runs");
        assert_eq!(r.exit, Exit::Code(0), "{}", r.stderr_tail);
        let state = crashpoint::observe::read_state(&files.state).expect("state");
        assert_eq!(state.resumed_from_step, Some(10), "a resume run");
    };
    let mut g = c.benchmark_group("python-resume");
    g.sample_size(20);
    for traced in [false, true] {
        let name = if traced { "traced" } else { "untraced" };
        g.bench_function(name, |b| {
            b.iter_batched(
                || fresh(name),
                |case| resume_in(case, traced),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
    // On a loaded machine the two benchmarks above run many seconds apart;
    // the two runs of a pair run back to back and see the same load (which
    // goes first alternates). The median ratio of 30 pairs:
    let mut ratios: Vec<f64> = (0..30)
        .map(|i| {
            let time = |traced: bool| {
                let case = fresh(if traced { "traced" } else { "untraced" });
                let t = std::time::Instant::now();
                resume_in(case, traced);
                t.elapsed().as_secs_f64()
            };
            if i % 2 == 0 {
                let plain = time(false);
                time(true) / plain
            } else {
                let traced = time(true);
                traced / time(false)
            }
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    eprintln!(
        "python-resume: traced/untraced, median of 30 back-to-back pairs: {:.3} (range {:.3}..{:.3})",
        ratios[15], ratios[0], ratios[29]
    );
}

criterion_group!(benches, cases, codec, subject, resume);
criterion_main!(benches);
