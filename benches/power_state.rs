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
//! The figure to watch is the ratio power-loss / kill. Run with
//! `cargo bench --bench power_state`.

use crashpoint::power::{self, ContentHash, FileRef, Handle, Log, Op, Rope};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

const SAVES: u64 = 20;
const WRITE: u64 = 64 * 1024;
const WRITES_PER_SAVE: u64 = 16;

fn save_ops(synced: bool) -> Vec<Op> {
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
            let hash = ContentHash::of(format!("save {step} part {w}").as_bytes());
            ops.push(Op::Write {
                file: FileRef::Handle(Handle(h)),
                offset: w * WRITE,
                data: Rope::from_ref(hash, WRITE),
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
        let ops = save_ops(synced);
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

criterion_group!(benches, bench);
criterion_main!(benches);
