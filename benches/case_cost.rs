//! What a case costs, against the floor it cannot beat, measured side by side
//! in one run:
//! - `floor/two-process-starts`: a fresh sandbox directory and two starts of
//!   the `crashpoint` binary doing nothing (`--version`), removed again;
//! - `case/kill-and-resume`: a real case: a fresh sandbox, the sim killed
//!   half-way through a checkpoint write, resumed to the end, judged;
//! - codec throughput: checkpoint encode and decode, state digest.
//!
//! Run with `cargo bench`; the ratio case/floor is the figure to watch.

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

fn exe() -> PathBuf {
    // Benches run from target/release/deps; the binary sits one level up.
    let mut p = std::env::current_exe().expect("bench executable");
    p.pop();
    if p.ends_with("deps") {
        p.pop();
    }
    p.join("crashpoint")
}

fn cases(c: &mut Criterion) {
    let exe = exe();
    let target = Target {
        subject: Subject {
            program: exe.clone().into(),
            args: vec!["sim".into()],
            sim: true,
        },
        mode: Mode::Op,
        max_steps: 20,
        seed: 0,
        resume: ResumeMode::Path,
        timeout: None,
        tracing: Tracing::Needed,
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

criterion_group!(benches, cases, codec, subject);
criterion_main!(benches);
