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

use crashpoint::ckpt::format::{decode, encode, Checkpoint};
use crashpoint::ckpt::policy::TopK;
use crashpoint::inject::{CrashPlan, Mode};
use crashpoint::layout::Layout;
use crashpoint::oracle::{self, ResumeMode, Target};
use crashpoint::runner::Subject;
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

criterion_group!(benches, cases, codec);
criterion_main!(benches);
