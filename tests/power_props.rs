//! Properties of the power-loss model over random small logs: sampled
//! states are legal (among the enumerated ones), the extremes are legal,
//! and with nothing unsynced a power cut leaves what a process kill
//! leaves.

use crashpoint::power::{self, FileRef, Handle, Log, Op, OpenFlags, Rope, SyncMode};
use proptest::prelude::*;

const NAMES: [&str; 7] = ["a", "b", "d/a", "d/b", "e/a", "d", "e"];
const SPOTS: [&str; 3] = [".", "d", "e"];

fn name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&NAMES[..])
}

/// One operation over a handful of names, three handles and a few block
/// boundaries; many are refused by the log (and skipped), which is fine.
fn op() -> impl Strategy<Value = Op> {
    let h = 0u64..3;
    prop_oneof![
        2 => prop::sample::select(&["d", "e"][..]).prop_map(|d| Op::Mkdir(d.into())),
        5 => (name(), h.clone(), any::<bool>(), any::<bool>()).prop_map(|(p, h, truncate, sync)| {
            Op::Open {
                path: p.into(),
                handle: Handle(h),
                flags: OpenFlags {
                    create: true,
                    truncate,
                    sync: if sync { SyncMode::DSync } else { SyncMode::None },
                },
            }
        }),
        1 => h.clone().prop_map(|h| Op::Close(Handle(h))),
        4 => (h.clone(), prop::sample::select(&[0u64, 100, 4000, 8192][..]), 1usize..9000, any::<u8>())
            .prop_map(|(h, offset, len, byte)| Op::Write {
                file: FileRef::Handle(Handle(h)),
                offset,
                data: Rope::from_bytes(vec![byte; len]),
            }),
        1 => (h.clone(), 0u64..10_000).prop_map(|(h, len)| Op::Truncate {
            file: FileRef::Handle(Handle(h)),
            len
        }),
        2 => h.clone().prop_map(|h| Op::Fsync(FileRef::Handle(Handle(h)))),
        2 => prop::sample::select(&SPOTS[..]).prop_map(Op::fsync_path),
        1 => Just(Op::Sync),
        5 => (name(), name()).prop_map(|(a, b)| Op::rename(a, b)),
        1 => (name(), name()).prop_map(|(a, b)| Op::Link {
            from: a.into(),
            to: b.into()
        }),
        2 => (name(), name()).prop_map(|(t, p)| Op::symlink(t, p)),
        2 => name().prop_map(|p| Op::Unlink(p.into())),
        1 => prop::sample::select(&["d", "e"][..]).prop_map(|d| Op::Rmdir(d.into())),
    ]
}

fn build(ops: Vec<Op>) -> Log {
    let mut log = Log::new();
    for op in ops {
        let _ = log.push(op);
    }
    log
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn sampled_and_extreme_states_are_among_the_enumerated(ops in prop::collection::vec(op(), 0..20), seed in any::<u64>()) {
        let log = build(ops);
        let Some(all) = power::enumerate(&log, 4000) else { return Ok(()) };
        let fps: std::collections::HashSet<_> = all.iter().map(|s| s.fingerprint()).collect();
        prop_assert_eq!(fps.len(), all.len(), "enumerated states are distinct");
        let worst = power::most_pessimistic(&log);
        prop_assert!(all[0].same_tree(&worst), "the most pessimistic comes first");
        prop_assert!(fps.contains(&power::kill_state(&log).fingerprint()), "the kill state is legal");
        for s in power::sample(&log, seed, 8) {
            prop_assert!(fps.contains(&s.fingerprint()), "sampled state not enumerated: {:?}", s.entries);
        }
    }

    #[test]
    fn keeping_everything_is_the_process_kill_state(ops in prop::collection::vec(op(), 0..24)) {
        let log = build(ops);
        let kill = power::kill_state(&log);
        let best = power::most_optimistic(&log);
        prop_assert!(best.same_tree(&kill), "{:?}\n!=\n{:?}", best.entries, kill.entries);
        prop_assert!(best.dropped.is_empty());
    }

    #[test]
    fn after_a_sync_power_loss_leaves_what_a_kill_leaves(ops in prop::collection::vec(op(), 0..24)) {
        let mut log = build(ops);
        log.push(Op::Sync).expect("sync always applies");
        let kill = power::kill_state(&log);
        let worst = power::most_pessimistic(&log);
        prop_assert!(worst.same_tree(&kill));
        prop_assert!(worst.dropped.is_empty());
        prop_assert_eq!(power::unsynced(&log), power::Unsynced::default());
        let all = power::enumerate(&log, 10).expect("one state");
        prop_assert_eq!(all.len(), 1);
    }

    #[test]
    fn every_pessimistic_state_is_a_tree(ops in prop::collection::vec(op(), 0..24)) {
        // Each path's parent is a directory of the state.
        let log = build(ops);
        let worst = power::most_pessimistic(&log);
        for path in worst.entries.keys() {
            if let Some((parent, _)) = path.rsplit_once('/') {
                prop_assert_eq!(worst.entries.get(parent), Some(&power::Entry::Dir), "{}", path);
            }
        }
    }
}

/// One save of a checkpoint-writing trainer: where the temporary file is
/// made, which fsyncs it does, how it relinks `last.ckpt`, how big it is.
#[derive(Clone, Debug)]
struct Save {
    in_tmpdir: bool,
    fsync_file: bool,
    fsync_dir: bool,
    relink_by_rename: bool,
    blocks: u64,
}

fn save() -> impl Strategy<Value = Save> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        1u64..4,
    )
        .prop_map(
            |(in_tmpdir, fsync_file, fsync_dir, relink_by_rename, blocks)| Save {
                in_tmpdir,
                fsync_file,
                fsync_dir,
                relink_by_rename,
                blocks,
            },
        )
}

/// The log of a run of saves, and for each save whether the protocol it
/// followed made it durable (file fsynced before the rename, directory
/// fsynced after it).
fn saves_log(saves: &[Save]) -> (Log, Vec<(String, Vec<u8>, bool)>) {
    let mut log = Log::new();
    log.extend([
        Op::Mkdir("ckpt".into()),
        Op::Mkdir("tmp".into()),
        Op::fsync_path("."),
    ])
    .expect("setup");
    let mut made = Vec::new();
    for (i, s) in saves.iter().enumerate() {
        let name = format!("ckpt/step={i}.ckpt");
        let tmp = if s.in_tmpdir {
            format!("tmp/{i}.part")
        } else {
            format!("{name}.tmp")
        };
        let bytes = vec![i as u8 + 1; (s.blocks * 4096 - 100) as usize];
        let h = i as u64;
        let mut ops = vec![Op::create(&tmp, h), Op::write(h, 0, &bytes)];
        if s.fsync_file {
            ops.push(Op::fsync(h));
        }
        ops.push(Op::Close(Handle(h)));
        ops.push(Op::rename(&tmp, &name));
        if s.fsync_dir {
            ops.push(Op::fsync_path("ckpt"));
        }
        let target = format!("step={i}.ckpt");
        if s.relink_by_rename {
            ops.push(Op::symlink(&target, "ckpt/last.tmp"));
            ops.push(Op::rename("ckpt/last.tmp", "ckpt/last.ckpt"));
        } else {
            if i > 0 {
                ops.push(Op::Unlink("ckpt/last.ckpt".into()));
            }
            ops.push(Op::symlink(&target, "ckpt/last.ckpt"));
        }
        log.extend(ops).expect("a valid save");
        made.push((name, bytes, s.fsync_file && s.fsync_dir));
    }
    (log, made)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn a_save_made_durable_survives_every_state(saves in prop::collection::vec(save(), 1..7), seed in any::<u64>()) {
        let (log, made) = saves_log(&saves);
        let mut states = power::sample(&log, seed, 16);
        states.push(power::most_pessimistic(&log));
        for s in &states {
            for (name, bytes, durable) in &made {
                match s.entries.get(name) {
                    Some(power::Entry::File(r)) => {
                        let got = r.to_vec().expect("literal");
                        prop_assert!(bytes.starts_with(&got), "{} holds a prefix of its data", name);
                        if *durable {
                            prop_assert_eq!(&got, bytes, "{} was made durable", name);
                        }
                    }
                    None => prop_assert!(!durable, "{} was made durable, but is missing", name),
                    Some(other) => prop_assert!(false, "{} is {:?}", name, other),
                }
            }
        }
        if let Some(all) = power::enumerate(&log, 3000) {
            let fps: std::collections::HashSet<_> = all.iter().map(|s| s.fingerprint()).collect();
            for s in &states {
                prop_assert!(fps.contains(&s.fingerprint()));
            }
            prop_assert!(fps.contains(&power::kill_state(&log).fingerprint()));
        }
    }
}
