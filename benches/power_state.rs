//! The power-loss model's cost against the process-kill state, side by side
//! in one run, on the log of a realistic checkpoint run: 20 saves of 1 MiB,
//! each written in 64 KiB writes to a temporary file (content as references
//! to stored blobs, as the record-once store feeds it), renamed into place,
//! `last.ckpt` relinked (a symlink under a temporary name renamed over it),
//! checkpoints beyond the top 3 unlinked. Two trainers:
//!
//! - `synced`: fsync of file and directory where a correct trainer does it;
//! - `no-fsync`: no fsync anywhere (PyTorch Lightning through fsspec).
//!
//! For each: `kill` is the process-kill state (the log applied in full),
//! `power-loss` the most pessimistic power-loss state; `replay+` includes
//! building the log from its operations, `state` only derives the state.
//! The figure to watch is the ratio power-loss / kill.
//!
//! `power_state/point/*` measures what the harness does per crash point,
//! at the end of the same run with the bytes themselves in the log (as the
//! tracer records them): `kill/materialise` rebuilds the process-kill state
//! from the record-once store (its manifest, captured once) in a fresh
//! directory; `power-loss/build` replays the log and derives the most
//! pessimistic state; `power-loss/build+materialise` also writes it into a
//! fresh directory, as a power-loss case does. After the timings it prints,
//! per trainer, the median ratio power-loss / kill of 30 back-to-back pairs
//! (which goes first alternates), so both see the same load.
//!
//! Run with `cargo bench --bench power_state`.

use std::path::Path;
use std::time::Instant;

use crashpoint::power::{self, ContentHash, CrashState, FileRef, Handle, Log, Op, Rope};
use crashpoint::store::{self, Capturer, Manifest, Store};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};

const SAVES: u64 = 20;
const WRITE: u64 = 64 * 1024;
const WRITES_PER_SAVE: u64 = 16;

/// The run's operations; `literal`: writes carry their bytes (as the tracer
/// records them), else references to stored blobs.
fn save_ops(synced: bool, literal: bool) -> Vec<Op> {
    let mut ops = vec![
        Op::Mkdir("checkpoints".into()),
        Op::fsync_path("."),
        Op::fsync_path("checkpoints"),
    ];
    for step in 0..SAVES {
        let name = format!("checkpoints/epoch=0-step={step}.ckpt");
        let tmp = format!("{name}.tmp-{step}");
        let h = step + 1;
        ops.push(Op::create(&tmp, h));
        for w in 0..WRITES_PER_SAVE {
            let data = if literal {
                Rope::from_bytes(vec![(step * WRITES_PER_SAVE + w) as u8; WRITE as usize])
            } else {
                let hash = ContentHash::of(format!("save {step} part {w}").as_bytes());
                Rope::from_ref(hash, WRITE)
            };
            ops.push(Op::Write {
                file: FileRef::Handle(Handle(h)),
                offset: w * WRITE,
                data,
            });
        }
        if synced {
            ops.push(Op::fsync(h));
        }
        ops.push(Op::Close(Handle(h)));
        ops.push(Op::rename(&tmp, &name));
        if synced {
            ops.push(Op::fsync_path("checkpoints"));
        }
        ops.push(Op::symlink(
            &format!("epoch=0-step={step}.ckpt"),
            "checkpoints/last.ckpt.tmp",
        ));
        ops.push(Op::rename(
            "checkpoints/last.ckpt.tmp",
            "checkpoints/last.ckpt",
        ));
        if synced {
            ops.push(Op::fsync_path("checkpoints"));
        }
        if step >= 3 {
            ops.push(Op::Unlink(format!(
                "checkpoints/epoch=0-step={}.ckpt",
                step - 3
            )));
        }
    }
    ops
}

fn bench(c: &mut Criterion) {
    for (label, synced) in [("synced", true), ("no-fsync", false)] {
        let ops = save_ops(synced, false);
        let log = Log::from_ops(ops.clone()).expect("a valid log");
        let mut g = c.benchmark_group(format!("power_state/{label}"));
        g.sample_size(40);
        g.bench_function("kill/replay+state", |b| {
            b.iter(|| {
                let log = Log::from_ops(ops.clone()).expect("log");
                black_box(power::kill_state(&log).entries.len())
            })
        });
        g.bench_function("power-loss/replay+state", |b| {
            b.iter(|| {
                let log = Log::from_ops(ops.clone()).expect("log");
                black_box(power::most_pessimistic(&log).entries.len())
            })
        });
        g.bench_function("kill/state", |b| {
            b.iter(|| black_box(power::kill_state(&log).entries.len()))
        });
        g.bench_function("power-loss/state", |b| {
            b.iter(|| black_box(power::most_pessimistic(&log).entries.len()))
        });
        g.finish();
    }
}

/// A state written into `dir` (its content is all literal bytes).
fn write_state(state: &CrashState, dir: &Path) {
    power::materialise(state, dir, |h| {
        Err(std::io::Error::other(format!("no blob {}", h.to_hex())))
    })
    .expect("materialised");
}

/// The most pessimistic state of `ops`, built from scratch.
fn build(ops: &[Op]) -> CrashState {
    let log = Log::from_ops(ops.iter().cloned()).expect("log");
    power::most_pessimistic(&log)
}

/// The record-once store holding the process-kill state of `ops`, and that
/// state's manifest.
fn kill_manifest(ops: &[Op], scratch: &Path) -> (Store, Manifest) {
    let store = Store::create(scratch.join("store")).expect("store");
    let live = scratch.join("live");
    std::fs::create_dir(&live).expect("live dir");
    let log = Log::from_ops(ops.iter().cloned()).expect("log");
    write_state(&power::kill_state(&log), &live);
    let mut cap = Capturer::new(&store, &live, None);
    cap.scan_all().expect("scanned");
    let id = cap.capture().expect("captured");
    let text = String::from_utf8(store.get(&id).expect("manifest")).expect("utf-8");
    let manifest = Manifest::from_text(&text).expect("parsed");
    (store, manifest)
}

fn point(c: &mut Criterion) {
    let scratch = tempfile::tempdir().expect("tempdir");
    // A fresh, empty case directory, removed when dropped (outside the
    // timed part).
    let fresh = || tempfile::tempdir_in(scratch.path()).expect("case dir");
    let mut ratios_out = Vec::new();
    for (label, synced) in [("synced", true), ("no-fsync", false)] {
        let ops = save_ops(synced, true);
        let sub = scratch.path().join(label);
        std::fs::create_dir(&sub).expect("dir");
        let (store, manifest) = kill_manifest(&ops, &sub);
        let mut g = c.benchmark_group(format!("power_state/point/{label}"));
        g.sample_size(20);
        g.bench_function("kill/materialise", |b| {
            b.iter_batched(
                fresh,
                |d| {
                    store::materialise(&store, &manifest, d.path(), None, None)
                        .expect("materialised");
                    d
                },
                BatchSize::PerIteration,
            )
        });
        g.bench_function("power-loss/build", |b| {
            b.iter(|| black_box(build(&ops).entries.len()))
        });
        g.bench_function("power-loss/build+materialise", |b| {
            b.iter_batched(
                fresh,
                |d| {
                    write_state(&build(&ops), d.path());
                    d
                },
                BatchSize::PerIteration,
            )
        });
        g.finish();
        let time = |power: bool| {
            let d = fresh();
            let t = Instant::now();
            if power {
                write_state(&build(&ops), d.path());
            } else {
                store::materialise(&store, &manifest, d.path(), None, None).expect("materialised");
            }
            t.elapsed().as_secs_f64()
        };
        let mut ratios: Vec<f64> = (0..30)
            .map(|i| {
                if i % 2 == 0 {
                    let kill = time(false);
                    time(true) / kill
                } else {
                    let p = time(true);
                    p / time(false)
                }
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios_out.push((label, ratios[15], ratios[0], ratios[29]));
    }
    for (label, median, lo, hi) in ratios_out {
        eprintln!(
            "power_state/point/{label}: power-loss build+materialise / kill materialise, median of 30 back-to-back pairs: {median:.3} (range {lo:.3}..{hi:.3})"
        );
    }
}

criterion_group!(benches, bench, point);
criterion_main!(benches);
