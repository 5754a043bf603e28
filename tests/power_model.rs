//! The power-loss model on small hand-made logs: for each rule, the states
//! it must produce and those it must not.

use std::collections::{BTreeMap, HashMap};

use crashpoint::power::{
    self, ContentHash, CrashState, DroppedKind, Entry, FileRef, Handle, Log, LogErrorKind, Op,
    OpenFlags, Rope, SyncMode,
};

/// The bytes of a file in a state (literal content only).
fn data(state: &CrashState, path: &str) -> Option<Vec<u8>> {
    match state.entries.get(path)? {
        Entry::File(r) => Some(r.to_vec().expect("literal content")),
        other => panic!("{path} is {other:?}, not a file"),
    }
}

fn has(state: &CrashState, path: &str) -> bool {
    state.entries.contains_key(path)
}

fn link(state: &CrashState, path: &str) -> Option<String> {
    match state.entries.get(path)? {
        Entry::Symlink(t) => Some(t.clone()),
        other => panic!("{path} is {other:?}, not a link"),
    }
}

fn all(log: &Log) -> Vec<CrashState> {
    power::enumerate(log, 10_000).expect("small window")
}

/// A checkpoint directory whose creation is already durable.
fn durable_dir(name: &str) -> Vec<Op> {
    vec![
        Op::Mkdir(name.into()),
        Op::fsync_path("."),
        Op::fsync_path(name),
    ]
}

fn log(ops: impl IntoIterator<Item = Op>) -> Log {
    Log::from_ops(ops).expect("a valid log")
}

#[test]
fn synced_write_then_rename_without_dir_fsync_keeps_the_old_name_with_full_data() {
    let mut ops = durable_dir("ckpt");
    ops.extend([
        Op::create("ckpt/a.tmp", 1),
        Op::write(1, 0, b"full checkpoint"),
        Op::fsync(1),
        Op::fsync_path("ckpt"),
        Op::rename("ckpt/a.tmp", "ckpt/a.ckpt"),
    ]);
    let log = log(ops);
    let worst = power::most_pessimistic(&log);
    assert_eq!(
        data(&worst, "ckpt/a.tmp").as_deref(),
        Some(&b"full checkpoint"[..])
    );
    assert!(!has(&worst, "ckpt/a.ckpt"));
    assert_eq!(
        worst.explain(),
        "rename of a.tmp to a.ckpt not made durable: directory ckpt not fsynced after it"
    );
    let states = all(&log);
    assert_eq!(states.len(), 2, "old name or new name: {states:#?}");
    for s in &states {
        assert!(
            has(s, "ckpt/a.tmp") != has(s, "ckpt/a.ckpt"),
            "exactly one name"
        );
        let d = data(s, "ckpt/a.tmp").or_else(|| data(s, "ckpt/a.ckpt"));
        assert_eq!(
            d.as_deref(),
            Some(&b"full checkpoint"[..]),
            "synced data never lost"
        );
    }
}

#[test]
fn unsynced_write_then_rename_then_dir_fsync_gives_the_new_name_maybe_empty() {
    let payload: Vec<u8> = (0..10_240u32).map(|i| (i % 251) as u8).collect();
    let mut ops = durable_dir("ckpt");
    ops.extend([
        Op::create("ckpt/a.tmp", 1),
        Op::write(1, 0, &payload),
        Op::rename("ckpt/a.tmp", "ckpt/a.ckpt"),
        Op::fsync_path("ckpt"),
    ]);
    let log = log(ops);
    let worst = power::most_pessimistic(&log);
    assert_eq!(
        data(&worst, "ckpt/a.ckpt"),
        Some(vec![]),
        "renamed, data never synced"
    );
    assert!(!has(&worst, "ckpt/a.tmp"));
    assert_eq!(worst.dropped.len(), 1);
    assert_eq!(worst.dropped[0].kind, DroppedKind::Data);
    assert_eq!(
        worst.dropped[0].message,
        "data written to ckpt/a.ckpt not made durable: file never fsynced, 0 of 3 pending 4 KiB writes kept"
    );
    // Torn at 4 KiB boundaries: a prefix of the three blocks.
    let mut lens: Vec<usize> = all(&log)
        .iter()
        .map(|s| {
            assert!(!has(s, "ckpt/a.tmp"));
            let d = data(s, "ckpt/a.ckpt").expect("the name is durable");
            assert_eq!(d[..], payload[..d.len()], "a prefix of what was written");
            d.len()
        })
        .collect();
    lens.sort();
    assert_eq!(lens, vec![0, 4096, 8192, 10_240]);
}

/// `last.ckpt -> a.ckpt` and both checkpoints already durable.
fn relink_start() -> Log {
    let tree: BTreeMap<String, Entry> = [
        ("ckpt".to_string(), Entry::Dir),
        (
            "ckpt/a.ckpt".to_string(),
            Entry::File(Rope::from_bytes(b"A".to_vec())),
        ),
        (
            "ckpt/b.ckpt".to_string(),
            Entry::File(Rope::from_bytes(b"B".to_vec())),
        ),
        (
            "ckpt/last.ckpt".to_string(),
            Entry::Symlink("a.ckpt".into()),
        ),
    ]
    .into();
    Log::with_initial(&tree).expect("a tree")
}

#[test]
fn unlink_then_symlink_without_dir_fsync_may_leave_no_last_link() {
    let mut log = relink_start();
    log.extend([
        Op::Unlink("ckpt/last.ckpt".into()),
        Op::symlink("b.ckpt", "ckpt/last.ckpt"),
    ])
    .unwrap();
    let worst = power::most_pessimistic(&log);
    assert_eq!(link(&worst, "ckpt/last.ckpt").as_deref(), Some("a.ckpt"));
    assert_eq!(
        worst.explain(),
        "unlink of last.ckpt not made durable: directory ckpt never fsynced\n\
         symlink last.ckpt -> b.ckpt not made durable: directory ckpt never fsynced"
    );
    let mut links: Vec<Option<String>> = all(&log)
        .iter()
        .map(|s| link(s, "ckpt/last.ckpt"))
        .collect();
    links.sort();
    assert_eq!(
        links,
        vec![None, Some("a.ckpt".into()), Some("b.ckpt".into())]
    );
    // With the directory fsynced, only the new link.
    log.push(Op::fsync_path("ckpt")).unwrap();
    let states = all(&log);
    assert_eq!(states.len(), 1);
    assert_eq!(
        link(&states[0], "ckpt/last.ckpt").as_deref(),
        Some("b.ckpt")
    );
}

#[test]
fn rename_over_the_last_link_never_leaves_it_missing() {
    let mut log = relink_start();
    log.extend([
        Op::symlink("b.ckpt", "ckpt/last.ckpt.tmp"),
        Op::rename("ckpt/last.ckpt.tmp", "ckpt/last.ckpt"),
    ])
    .unwrap();
    let states = all(&log);
    assert_eq!(states.len(), 3);
    for s in &states {
        assert!(
            link(s, "ckpt/last.ckpt").is_some(),
            "atomic replace: {:?}",
            s.entries
        );
    }
    assert!(states.iter().any(|s| has(s, "ckpt/last.ckpt.tmp")));
    assert!(!states
        .iter()
        .any(|s| has(s, "ckpt/last.ckpt.tmp")
            && link(s, "ckpt/last.ckpt").as_deref() == Some("b.ckpt")));
}

#[test]
fn directory_changes_persist_in_order_within_one_directory() {
    let mut ops = durable_dir("d");
    ops.extend([Op::create("d/a", 1), Op::create("d/b", 2)]);
    let states = all(&log(ops));
    let mut shapes: Vec<(bool, bool)> = states
        .iter()
        .map(|s| (has(s, "d/a"), has(s, "d/b")))
        .collect();
    shapes.sort();
    assert_eq!(
        shapes,
        vec![(false, false), (true, false), (true, true)],
        "never b without a"
    );
}

#[test]
fn directories_persist_independently_of_each_other() {
    let mut ops = durable_dir("d1");
    ops.extend(durable_dir("d2"));
    ops.extend([Op::create("d1/a", 1), Op::create("d2/b", 2)]);
    let states = all(&log(ops));
    let mut shapes: Vec<(bool, bool)> = states
        .iter()
        .map(|s| (has(s, "d1/a"), has(s, "d2/b")))
        .collect();
    shapes.sort();
    assert_eq!(
        shapes,
        vec![(false, false), (false, true), (true, false), (true, true)]
    );
}

#[test]
fn fsync_of_a_file_does_not_make_its_name_durable() {
    let mut ops = durable_dir("ckpt");
    ops.extend([Op::create("ckpt/a", 1), Op::write(1, 0, b"x"), Op::fsync(1)]);
    let log = log(ops);
    assert!(!has(&power::most_pessimistic(&log), "ckpt/a"));
    assert_eq!(
        data(&power::kill_state(&log), "ckpt/a"),
        Some(b"x".to_vec())
    );
}

#[test]
fn an_undone_mkdir_hides_everything_below_it() {
    let ops = vec![
        Op::Mkdir("d".into()),
        Op::create("d/f", 1),
        Op::write(1, 0, b"data"),
        Op::fsync(1),
        Op::fsync_path("d"),
    ];
    let mut log = log(ops);
    let worst = power::most_pessimistic(&log);
    assert!(worst.entries.is_empty(), "{:?}", worst.entries);
    assert_eq!(
        worst.explain(),
        "mkdir of d not made durable: the root directory never fsynced"
    );
    log.push(Op::fsync_path(".")).unwrap();
    let states = all(&log);
    assert_eq!(states.len(), 1);
    assert_eq!(data(&states[0], "d/f"), Some(b"data".to_vec()));
}

#[test]
fn o_sync_and_o_dsync_writes_are_durable_at_once() {
    for sync in [SyncMode::Sync, SyncMode::DSync, SyncMode::None] {
        let mut ops = durable_dir("ckpt");
        ops.extend([
            Op::Open {
                path: "ckpt/a".into(),
                handle: Handle(1),
                flags: OpenFlags {
                    create: true,
                    truncate: false,
                    sync,
                },
            },
            Op::fsync_path("ckpt"),
            Op::write(1, 0, b"durable?"),
        ]);
        let worst = power::most_pessimistic(&log(ops));
        let want = if sync == SyncMode::None {
            &b""[..]
        } else {
            &b"durable?"[..]
        };
        assert_eq!(data(&worst, "ckpt/a").as_deref(), Some(want), "{sync:?}");
    }
}

#[test]
fn fdatasync_and_sync_make_data_durable() {
    let mut ops = durable_dir("ckpt");
    ops.extend([
        Op::create("ckpt/a", 1),
        Op::fsync_path("ckpt"),
        Op::write(1, 0, b"one"),
        Op::Fdatasync(FileRef::Handle(Handle(1))),
    ]);
    let mut log = log(ops);
    assert_eq!(
        data(&power::most_pessimistic(&log), "ckpt/a"),
        Some(b"one".to_vec())
    );
    log.extend([Op::write(1, 3, b"two"), Op::create("ckpt/b", 2), Op::Sync])
        .unwrap();
    let worst = power::most_pessimistic(&log);
    assert_eq!(data(&worst, "ckpt/a"), Some(b"onetwo".to_vec()));
    assert!(has(&worst, "ckpt/b"));
    assert!(worst.dropped.is_empty());
    assert!(worst.same_tree(&power::kill_state(&log)));
}

#[test]
fn an_overwrite_is_torn_only_as_a_prefix_of_its_blocks() {
    let tree: BTreeMap<String, Entry> = [(
        "f".to_string(),
        Entry::File(Rope::from_bytes(vec![b'A'; 8192])),
    )]
    .into();
    let mut log = Log::with_initial(&tree).unwrap();
    log.extend([
        Op::Open {
            path: "f".into(),
            handle: Handle(1),
            flags: OpenFlags::default(),
        },
        Op::write(1, 0, &[b'B'; 8192]),
    ])
    .unwrap();
    let mut seen: Vec<(u8, u8)> = all(&log)
        .iter()
        .map(|s| {
            let d = data(s, "f").unwrap();
            assert_eq!(d.len(), 8192);
            (d[0], d[4096])
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![(b'A', b'A'), (b'B', b'A'), (b'B', b'B')],
        "never AB"
    );
}

#[test]
fn o_trunc_without_fsync_may_leave_the_old_content() {
    let tree: BTreeMap<String, Entry> = [(
        "last.ckpt".to_string(),
        Entry::File(Rope::from_bytes(b"old".to_vec())),
    )]
    .into();
    let mut log = Log::with_initial(&tree).unwrap();
    log.extend([Op::create("last.ckpt", 1), Op::write(1, 0, b"new!")])
        .unwrap();
    let mut got: Vec<Vec<u8>> = all(&log)
        .iter()
        .map(|s| data(s, "last.ckpt").unwrap())
        .collect();
    got.sort();
    assert_eq!(got, vec![b"".to_vec(), b"new!".to_vec(), b"old".to_vec()]);
    assert_eq!(
        data(&power::most_pessimistic(&log), "last.ckpt"),
        Some(b"old".to_vec())
    );
}

#[test]
fn a_rename_between_directories_is_atomic() {
    let mut ops = durable_dir("tmp");
    ops.extend(durable_dir("ckpt"));
    ops.extend([
        Op::create("tmp/x", 1),
        Op::write(1, 0, b"x"),
        Op::fsync(1),
        Op::fsync_path("tmp"),
        Op::rename("tmp/x", "ckpt/x"),
    ]);
    let mut log = log(ops);
    let states = all(&log);
    assert_eq!(states.len(), 2);
    for s in &states {
        assert!(
            has(s, "tmp/x") != has(s, "ckpt/x"),
            "in one place: {:?}",
            s.entries
        );
    }
    assert_eq!(
        power::most_pessimistic(&log).explain(),
        "rename of tmp/x to ckpt/x not made durable: directory ckpt not fsynced after it",
        "said once, for the directory it moves into"
    );
    // An fsync of the destination makes the rename durable on both sides.
    log.push(Op::fsync_path("ckpt")).unwrap();
    let states = all(&log);
    assert_eq!(states.len(), 1);
    assert!(has(&states[0], "ckpt/x") && !has(&states[0], "tmp/x"));
}

#[test]
fn handles_follow_the_inode_and_hard_links_share_data() {
    let mut ops = durable_dir("d");
    ops.extend([
        Op::create("d/a", 1),
        Op::rename("d/a", "d/b"),
        Op::write(1, 0, b"via handle"),
        Op::Link {
            from: "d/b".into(),
            to: "d/c".into(),
        },
        Op::Unlink("d/b".into()),
    ]);
    let log = log(ops);
    let kill = power::kill_state(&log);
    assert_eq!(kill.entries.keys().collect::<Vec<_>>(), ["d", "d/c"]);
    assert_eq!(data(&kill, "d/c"), Some(b"via handle".to_vec()));
    for s in all(&log) {
        if let (Some(b), Some(c)) = (data(&s, "d/b"), data(&s, "d/c")) {
            assert_eq!(b, c, "one inode, one content");
        }
    }
}

#[test]
fn paths_through_a_symlinked_directory_reach_its_target() {
    let mut ops = vec![
        Op::Mkdir("store".into()),
        Op::Mkdir("store/ckpts".into()),
        Op::symlink("store/ckpts", "ckpt-link"),
        Op::Sync,
    ];
    ops.extend([
        Op::create("ckpt-link/a", 1),
        Op::write(1, 0, b"a"),
        Op::fsync(1),
    ]);
    let log = log(ops);
    let kill = power::kill_state(&log);
    assert_eq!(data(&kill, "store/ckpts/a"), Some(b"a".to_vec()));
    assert_eq!(link(&kill, "ckpt-link").as_deref(), Some("store/ckpts"));
    let worst = power::most_pessimistic(&log);
    assert!(!has(&worst, "store/ckpts/a"));
    assert_eq!(
        worst.explain(),
        "creation of a not made durable: directory store/ckpts not fsynced after it"
    );
}

#[test]
fn refused_operations_name_the_operation_and_leave_the_log_unchanged() {
    let mut log = log(durable_dir("d"));
    let cases: Vec<(Op, LogErrorKind)> = vec![
        (
            Op::Unlink("d/missing".into()),
            LogErrorKind::NotFound("d/missing".into()),
        ),
        (Op::Mkdir("d".into()), LogErrorKind::Exists("d".into())),
        (
            Op::Mkdir("/abs".into()),
            LogErrorKind::LeavesRoot("/abs".into()),
        ),
        (
            Op::Mkdir("../up".into()),
            LogErrorKind::LeavesRoot("../up".into()),
        ),
        (Op::write(9, 0, b"x"), LogErrorKind::UnknownHandle(9)),
        (
            Op::Unlink("d".into()),
            LogErrorKind::IsADirectory("d".into()),
        ),
        (
            Op::rename("d", "d/inner"),
            LogErrorKind::InvalidRename("d -> d/inner".into()),
        ),
    ];
    for (op, want) in cases {
        let err = log.push(op.clone()).expect_err("refused");
        assert_eq!(err.kind, want, "{op}");
        assert_eq!(err.index, 3);
    }
    log.extend([Op::create("d/f", 1)]).unwrap();
    let err = log.push(Op::Rmdir("d".into())).unwrap_err();
    assert_eq!(err.kind, LogErrorKind::NotEmpty("d".into()));
    assert_eq!(
        err.to_string(),
        "operation 4 (rmdir d): d: directory not empty"
    );
    assert_eq!(log.len(), 4);
}

/// A trainer in the style of PyTorch Lightning 2.x through fsspec: no
/// fsync of file or directory anywhere.
#[test]
fn a_save_without_any_fsync_says_which_rename_was_not_made_durable() {
    let mut log = log(durable_dir("checkpoints"));
    for step in [1u32, 3] {
        let name = format!("checkpoints/epoch=0-step={step}.ckpt");
        let tmp = format!("{name}.tmp");
        log.extend([
            Op::create(&tmp, 1),
            Op::write(1, 0, format!("state {step}").as_bytes()),
            Op::Close(Handle(1)),
            Op::rename(&tmp, &name),
        ])
        .unwrap();
    }
    let worst = power::most_pessimistic(&log);
    assert!(
        worst.entries.keys().all(|k| k == "checkpoints"),
        "{:?}",
        worst.entries
    );
    assert!(worst.dropped.iter().any(|d| d.message
        == "rename of epoch=0-step=3.ckpt.tmp to epoch=0-step=3.ckpt not made durable: \
            directory checkpoints not fsynced after it"));
    assert_eq!(worst.dropped.len(), 4, "{}", worst.explain());
    // The process-kill state has both checkpoints.
    let kill = power::kill_state(&log);
    assert_eq!(
        data(&kill, "checkpoints/epoch=0-step=3.ckpt"),
        Some(b"state 3".to_vec())
    );
}

#[test]
fn enumerate_gives_up_beyond_its_limit_and_sampling_is_seeded() {
    let mut ops = durable_dir("d");
    for i in 0..6u64 {
        ops.push(Op::create(&format!("d/f{i}"), i));
        ops.push(Op::write(i, 0, &vec![i as u8 + 1; 3 * 4096]));
    }
    let log = log(ops);
    assert!(power::enumerate(&log, 50).is_none());
    let a = power::sample(&log, 7, 20);
    let b = power::sample(&log, 7, 20);
    let c = power::sample(&log, 8, 20);
    assert_eq!(a.len(), 20);
    assert_eq!(a, b, "same seed, same states");
    assert_ne!(a, c);
    let fps: std::collections::HashSet<_> = a.iter().map(|s| s.fingerprint()).collect();
    assert_eq!(fps.len(), 20, "distinct states");
    let u = power::unsynced(&log);
    assert_eq!(
        (u.dirs, u.entry_changes, u.files, u.data_changes),
        (1, 6, 6, 18)
    );
}

#[test]
fn materialise_writes_the_tree_and_fetches_each_blob_once() {
    let blob: Vec<u8> = (0..20_000u32).map(|i| (i % 253) as u8).collect();
    let hash = ContentHash::of(&blob);
    let mut ops = durable_dir("ckpt");
    ops.extend([
        Op::create("ckpt/a.ckpt", 1),
        Op::Write {
            file: FileRef::Handle(Handle(1)),
            offset: 0,
            data: Rope::from_ref(hash, blob.len() as u64),
        },
        Op::Write {
            file: FileRef::Handle(Handle(1)),
            offset: 30_000,
            data: Rope::from_bytes(b"tail".to_vec()),
        },
        Op::symlink("a.ckpt", "ckpt/last.ckpt"),
        Op::Sync,
    ]);
    let state = power::most_pessimistic(&log(ops));
    let store: HashMap<ContentHash, Vec<u8>> = [(hash, blob.clone())].into();
    let dir = tempfile::tempdir().unwrap();
    let mut lookups = 0;
    power::materialise(&state, dir.path(), |h| {
        lookups += 1;
        store
            .get(h)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no blob"))
    })
    .unwrap();
    assert_eq!(lookups, 1);
    let on_disk = std::fs::read(dir.path().join("ckpt/a.ckpt")).unwrap();
    assert_eq!(on_disk.len(), 30_004);
    assert_eq!(on_disk[..20_000], blob[..]);
    assert!(
        on_disk[20_000..30_000].iter().all(|&b| b == 0),
        "a hole reads as zeros"
    );
    assert_eq!(&on_disk[30_000..], b"tail");
    let target = std::fs::read_link(dir.path().join("ckpt/last.ckpt")).unwrap();
    assert_eq!(target, std::path::Path::new("a.ckpt"));

    // A missing blob is a typed error naming the file.
    let other = tempfile::tempdir().unwrap();
    let err = power::materialise(&state, other.path(), |_| {
        Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no blob"))
    })
    .unwrap_err();
    assert!(err.to_string().contains("ckpt/a.ckpt"), "{err}");
}
