//! The store against real directory trees.

use super::*;
use std::os::unix::fs::{symlink, PermissionsExt};

fn tree(root: &Path) {
    let w = root.join("work");
    std::fs::create_dir_all(w.join("runs/exp 1/ckpt=v1:a")).unwrap();
    std::fs::write(w.join("runs/exp 1/ckpt=v1:a/step=5.ckpt"), b"five").unwrap();
    std::fs::write(w.join("empty"), b"").unwrap();
    std::fs::write(w.join("odd %name\nwith newline"), b"x").unwrap();
    let big: Vec<u8> = (0..(CHUNK * 2 + 17)).map(|i| (i % 251) as u8).collect();
    std::fs::write(w.join("big.bin"), &big).unwrap();
    std::fs::set_permissions(w.join("empty"), std::fs::Permissions::from_mode(0o600)).unwrap();
    symlink("runs/exp 1/ckpt=v1:a/step=5.ckpt", w.join("last.ckpt")).unwrap();
    symlink(w.join("big.bin"), w.join("abs-link")).unwrap();
    symlink("nowhere", w.join("dangling")).unwrap();
    std::fs::hard_link(w.join("big.bin"), w.join("big-again.bin")).unwrap();
    std::fs::write(w.join("names-root.txt"), root.as_os_str().as_bytes()).unwrap();
}

use std::os::unix::ffi::OsStrExt;

fn fresh(store: &Store, root: &Path) -> Manifest {
    let mut c = Capturer::new(store, root, None);
    c.scan_all().unwrap();
    c.capture().unwrap();
    c.manifest().clone()
}

/// A store in a temporary directory holding the state of [`tree`] (made
/// in its `a/`), and that state's manifest.
fn recorded() -> (tempfile::TempDir, Store, Manifest) {
    let d = tempfile::tempdir().unwrap();
    let store = Store::create(d.path().join("store")).unwrap();
    let a = d.path().join("a");
    std::fs::create_dir(&a).unwrap();
    tree(&a);
    let m = fresh(&store, &a);
    (d, store, m)
}

#[test]
fn a_state_round_trips_through_the_store() {
    let (d, store, m) = recorded();
    let id = Hash::of(m.to_text().as_bytes());
    let back = Manifest::from_text(std::str::from_utf8(&store.get(&id).unwrap()).unwrap());
    assert_eq!(back.unwrap(), m);
    assert!(matches!(
        m.entries[Path::new("work/big.bin")].node,
        Node::HardLink(_)
    ));

    let b = d.path().join("b");
    std::fs::create_dir(&b).unwrap();
    materialise(&store, &m, &b, None, None).unwrap();
    assert_eq!(fresh(&store, &b), m, "same entries, modes, times, content");
    assert_eq!(
        std::fs::read(b.join("work/runs/exp 1/ckpt=v1:a/step=5.ckpt")).unwrap(),
        b"five"
    );
    // A hard link stays one file: writing one name changes the other.
    std::fs::write(b.join("work/big.bin"), b"changed").unwrap();
    assert_eq!(
        std::fs::read(b.join("work/big-again.bin")).unwrap(),
        b"changed"
    );
    assert_eq!(
        std::fs::metadata(b.join("work/empty"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}

#[test]
fn incremental_updates_equal_a_full_scan() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::create(d.path().join("store")).unwrap();
    let root = d.path().join("sb");
    std::fs::create_dir(&root).unwrap();
    tree(&root);
    let mut c = Capturer::new(&store, &root, None);
    c.scan_all().unwrap();
    let w = root.join("work");
    type Step = Box<dyn Fn(&Path) -> Vec<PathBuf>>;
    let steps: Vec<Step> = vec![
        Box::new(|w| {
            std::fs::write(w.join("empty"), b"now full").unwrap();
            vec![w.join("empty")]
        }),
        Box::new(|w| {
            std::fs::rename(w.join("runs"), w.join("moved")).unwrap();
            vec![w.join("runs"), w.join("moved")]
        }),
        Box::new(|w| {
            std::fs::create_dir_all(w.join("new/deeper")).unwrap();
            std::fs::write(w.join("new/deeper/f"), b"f").unwrap();
            vec![w.join("new/deeper/f")]
        }),
        Box::new(|w| {
            std::fs::remove_file(w.join("last.ckpt")).unwrap();
            vec![w.join("last.ckpt")]
        }),
        Box::new(|w| {
            // Through one name of a hard-linked file.
            std::fs::write(w.join("big-again.bin"), b"small now").unwrap();
            vec![w.join("big-again.bin")]
        }),
        Box::new(|w| {
            std::fs::remove_file(w.join("big.bin")).unwrap();
            vec![w.join("big.bin")]
        }),
    ];
    for (i, step) in steps.iter().enumerate() {
        let changed = step(&w);
        c.update(&changed).unwrap();
        let id = c.capture().unwrap();
        let full = fresh(&store, &root);
        assert_eq!(c.manifest(), &full, "after step {i}");
        assert_eq!(id, Hash::of(full.to_text().as_bytes()));
    }
}

#[test]
fn the_store_grows_with_the_bytes_written_not_with_points() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::create(d.path().join("store")).unwrap();
    let root = d.path().join("sb");
    std::fs::create_dir_all(root.join("ckpt")).unwrap();
    let f = root.join("ckpt/growing");
    let mut bytes = vec![7u8; 1 << 20];
    std::fs::write(&f, &bytes).unwrap();
    let mut c = Capturer::new(&store, &root, None);
    c.scan_all().unwrap();
    c.capture().unwrap();
    let points = 20;
    for i in 0..points {
        bytes.extend(std::iter::repeat(i as u8).take(1024));
        std::fs::write(&f, &bytes).unwrap();
        c.update([&f]).unwrap();
        c.capture().unwrap();
    }
    let written = bytes.len() as u64;
    // Points × size would be over 20 MiB; chunks keep it near the bytes written
    // (plus the last chunk again per point, and the manifests).
    assert!(
        store.bytes_stored() < written + points * (CHUNK as u64 + 4096),
        "stored {} for {written} written",
        store.bytes_stored()
    );
}

#[test]
fn equal_states_have_equal_ids_and_events_count() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::create(d.path().join("store")).unwrap();
    let root = d.path().join("sb");
    std::fs::create_dir_all(root.join("ckpt")).unwrap();
    let events = d.path().join("events");
    let mut c = Capturer::new(&store, &root, Some(&events));
    c.scan_all().unwrap();
    let a = c.capture().unwrap();
    // Nothing changed (an fsync, say): the same state.
    c.update([root.join("ckpt")]).unwrap();
    assert_eq!(c.capture().unwrap(), a);
    std::fs::write(&events, "saved 5 ckpt/x\n").unwrap();
    let b = c.capture().unwrap();
    assert_ne!(a, b, "the events written so far are part of the state");
    let m = Manifest::from_text(std::str::from_utf8(&store.get(&b).unwrap()).unwrap()).unwrap();
    assert_eq!(
        store.read_content(m.events.as_ref().unwrap()).unwrap(),
        b"saved 5 ckpt/x\n"
    );
}

#[test]
fn relocation_rewrites_the_recording_root() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::create(d.path().join("store")).unwrap();
    let a = d.path().join("rec00000");
    std::fs::create_dir(&a).unwrap();
    tree(&a);
    let events = d.path().join("events-a");
    std::fs::write(&events, format!("saved 1 {}/work/big.bin\n", a.display())).unwrap();
    let mut c = Capturer::new(&store, &a, Some(&events));
    c.scan_all().unwrap();
    c.capture().unwrap();
    let m = c.manifest().clone();
    let b = d.path().join("c0000001");
    std::fs::create_dir(&b).unwrap();
    let events_b = d.path().join("events-b");
    let reloc = Relocation::between(&a, &b);
    materialise(&store, &m, &b, Some(&events_b), reloc.as_ref()).unwrap();
    assert_eq!(
        std::fs::read_link(b.join("work/abs-link")).unwrap(),
        b.join("work/big.bin")
    );
    assert_eq!(
        std::fs::read(b.join("work/names-root.txt")).unwrap(),
        b.as_os_str().as_bytes()
    );
    assert_eq!(
        std::fs::read_to_string(&events_b).unwrap(),
        format!("saved 1 {}/work/big.bin\n", b.display())
    );
    assert_eq!(
        Relocation::between(&a, &b).unwrap().apply(b"no root here"),
        None
    );
}

#[test]
fn a_malformed_manifest_names_its_line() {
    let e = Manifest::from_text("d 755 1.000000002 work\nq what\n").unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
}

#[test]
fn a_state_is_rebuilt_over_a_tree_that_keeps_only_its_directories() {
    let (d, store, m) = recorded();

    // Another tree where the state goes: some of its directories, others
    // it does not have, a file where it has a directory, a link to a
    // directory outside, stale files.
    let b = d.path().join("b");
    let outside = d.path().join("outside");
    std::fs::create_dir_all(outside.join("keep")).unwrap();
    std::fs::write(outside.join("keep/precious"), b"p").unwrap();
    std::fs::create_dir_all(b.join("work/runs/exp 1")).unwrap();
    std::fs::write(b.join("work/runs/exp 1/step=9.ckpt"), b"stale").unwrap();
    std::fs::create_dir_all(b.join("tmp/deep")).unwrap();
    std::fs::write(b.join("tmp/deep/x"), b"x").unwrap();
    std::fs::write(b.join("work/runs/exp 1/ckpt=v1:a"), b"not a dir").unwrap();
    symlink(&outside, b.join("work/last.ckpt")).unwrap();
    symlink(outside.join("keep"), b.join("work/linked-dir")).unwrap();

    clear_for(&m, &b).unwrap();
    let left: Vec<String> = walk(&b);
    assert_eq!(
        left,
        ["work/", "work/runs/", "work/runs/exp 1/"],
        "only its directories"
    );
    assert_eq!(std::fs::read(outside.join("keep/precious")).unwrap(), b"p");
    materialise(&store, &m, &b, None, None).unwrap();
    assert_eq!(fresh(&store, &b), m, "same entries, modes, times, content");
}

/// Every path under `root`, relative, directories with a trailing slash.
fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                out.push(format!("{rel}/"));
                todo.push(e.path());
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}
