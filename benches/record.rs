//! The record-once engine against kill-each and against the floor, side by
//! side in one run, on the simulated trainer, one layout, every `op` point:
//! - `floor/one-life-per-case`: one full uninterrupted `crashpoint sim` life
//!   per case, back to back (two workers), each a process of its own;
//! - `campaign/kill-each` and `campaign/record`: the same campaign by each
//!   engine (two workers).
//!
//! Throughput is in cases, so criterion prints cases/s for each. Before the
//! timings it prints the subject-seconds (CPU time of every subject
//! process, from `getrusage(RUSAGE_CHILDREN)`) of one campaign by each
//! engine, and their ratio; then the floor's and the record engine's
//! cases/s measured side by side (ten rounds, one of each in turn), and
//! their ratio. Workspaces live on /dev/shm when it exists.
//!
//! Run with `cargo bench --bench record`.

mod common;
use common::exe;

use std::path::Path;
use std::time::Duration;

use crashpoint::campaign::Campaign;
use crashpoint::inject::{Mode, Selection};
use crashpoint::layout::{Layout, Sandbox};
use crashpoint::observe::HarnessFiles;
use crashpoint::oracle::{ResumeMode, Target, Tracing};
use crashpoint::protocol;
use crashpoint::record::Engine;
use crashpoint::runner::Subject;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::os::unix::process::CommandExt;

fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("tempdir")
    } else {
        tempfile::tempdir().expect("tempdir")
    }
}

fn campaign(engine: Engine) -> Campaign {
    Campaign {
        target: Target {
            subject: Subject {
                program: exe().into(),
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
        },
        layouts: vec![Layout::Relative],
        selection: Selection::All,
        crashes: 1,
        crash_seed: 0,
        engine,
        only: None,
        jobs: 2,
        budget: None,
        partition: crashpoint::partition::Partition::WHOLE,
    }
}

fn children_cpu() -> Duration {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    let t =
        |tv: nix::sys::time::TimeVal| Duration::new(tv.tv_sec() as u64, tv.tv_usec() as u32 * 1000);
    t(u.user_time()) + t(u.system_time())
}

/// Runs the campaign once; returns its cases (probes included) and the
/// subject-seconds it took.
fn once(engine: Engine) -> (u64, Duration) {
    let work = scratch();
    let before = children_cpu();
    let results = campaign(engine)
        .run(
            work.path(),
            &crashpoint::events::Silent,
            &crashpoint::pool::Cancel::new(),
        )
        .expect("campaign");
    let cases = results.iter().map(|r| r.outcomes.len() as u64).sum();
    (cases, children_cpu() - before)
}

/// One uninterrupted sim life in a fresh sandbox under `dir`: a cold
/// `crashpoint sim` process (not a fork of the warm-start server the
/// engines' resume runs use), as the runner starts it.
fn one_life(dir: &Path) {
    std::fs::create_dir_all(dir.join("sandbox")).expect("mkdir");
    std::fs::create_dir_all(dir.join("harness")).expect("mkdir");
    let sb = Sandbox::create(Layout::Relative, &dir.join("sandbox")).expect("sandbox");
    let files = HarnessFiles::in_dir(&dir.join("harness"));
    let place = sb.place();
    let out = std::process::Command::new(exe())
        .arg("sim")
        .current_dir(&place.cwd)
        .env_clear()
        .env("PWD", &place.pwd)
        .env("HOME", sb.root().join("home"))
        .env("TMPDIR", sb.root().join("tmp"))
        .env(protocol::PROTOCOL, "1")
        .env(protocol::CKPT_DIR, &place.ckpt_dir)
        .env(protocol::MAX_STEPS, "20")
        .env(protocol::SEED, "0")
        .env(protocol::STATE_OUT, &files.state)
        .env(protocol::EVENTS, &files.events)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(dir).expect("rm");
}

/// Rounds of the side-by-side measurement printed before the timings.
const ROUNDS: u64 = 10;

/// `cases` sim lives on two workers.
fn floor(cases: u64) {
    let work = scratch();
    let next = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= cases {
                    return;
                }
                one_life(&work.path().join(format!("life-{i}")));
            });
        }
    });
}

fn engines(c: &mut Criterion) {
    let (cases, kill_cpu) = once(Engine::KillEach);
    let (cases_r, rec_cpu) = once(Engine::Record);
    assert_eq!(cases, cases_r);
    eprintln!(
        "subject-seconds, one layout, every op point ({cases} cases): kill-each {:.2}s, record {:.2}s: {:.2}x fewer",
        kill_cpu.as_secs_f64(),
        rec_cpu.as_secs_f64(),
        kill_cpu.as_secs_f64() / rec_cpu.as_secs_f64().max(1e-9)
    );
    // The goals' ratios, side by side: floor and record alternately, the
    // same number of campaigns each.
    let (mut floor_t, mut record_t) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..ROUNDS {
        let t = std::time::Instant::now();
        floor(cases);
        floor_t += t.elapsed();
        let t = std::time::Instant::now();
        once(Engine::Record);
        record_t += t.elapsed();
    }
    let rate = |t: Duration| (cases * ROUNDS) as f64 / t.as_secs_f64().max(1e-9);
    eprintln!(
        "cases/s side by side ({ROUNDS} rounds): floor {:.0}, record {:.0}: {:.2}x the floor (goal 1.6x), {} 1,000 cases/s",
        rate(floor_t),
        rate(record_t),
        floor_t.as_secs_f64() / record_t.as_secs_f64().max(1e-9),
        if rate(record_t) >= 1000.0 { "at least" } else { "below" }
    );
    let mut g = c.benchmark_group("sim-every-op");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(cases));
    g.bench_function("floor/one-life-per-case", |b| b.iter(|| floor(cases)));
    for engine in [Engine::KillEach, Engine::Record] {
        g.bench_function(format!("campaign/{}", engine.name()), |b| {
            b.iter(|| {
                let work = scratch();
                campaign(engine)
                    .run(
                        work.path(),
                        &crashpoint::events::Silent,
                        &crashpoint::pool::Cancel::new(),
                    )
                    .expect("campaign")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, engines);
criterion_main!(benches);
