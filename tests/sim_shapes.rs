//! Checkpoint shapes of the simulated trainer (`layout = "file" | "dir"`,
//! `pointer = link | copy | latest | none`, `save_total_limit`), checked by
//! proptest with bounded case counts and by direct tests:
//! (a) train to k, save in any mode, load what a user would resume from,
//!     train to N: the same digest as training to N;
//! (b) any crash plan in any mode and layout passes on the clean sim, and
//!     every drawn crash point is reached;
//! (c) an incomplete or corrupt checkpoint directory, and a `latest` file
//!     naming nothing, are refused; scanning skips what is incomplete.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crashpoint::inject::{CrashPlan, CrashPoint, Mode};
use crashpoint::layout::Layout;
use crashpoint::oracle::{self, Reference, ResumeMode, Target, Tracing};
use crashpoint::protocol::{OpCrash, When};
use crashpoint::runner::Subject;
use crashpoint::sim::ckpt::io::Io;
use crashpoint::sim::ckpt::parts::{METADATA, PART_FILES};
use crashpoint::sim::ckpt::policy::{ModelCheckpoint, Pointer, PolicyConfig, Shape, LATEST};
use crashpoint::sim::ckpt::resume::{self, ResumeArg};
use crashpoint::sim::ckpt::CkptError;
use crashpoint::sim::{Dataset, Mutants, SimConfig, SimSettings, SimState};
use proptest::prelude::*;

const EXE: &str = env!("CARGO_BIN_EXE_crashpoint");

fn small_cfg(params: usize) -> SimConfig {
    SimConfig {
        params,
        dataset: 12,
        batch: 3,
        ..SimConfig::default()
    }
}

fn trained(cfg: &SimConfig, seed: u64, steps: u64) -> SimState {
    let data = Dataset::generate(cfg, seed);
    let mut s = SimState::init(cfg, seed);
    for _ in 0..steps {
        s.train_step(cfg, &data);
    }
    s
}

/// Every combination of shape and pointer, with and without rotation.
fn any_shape() -> impl Strategy<Value = (Shape, Pointer, u64)> {
    (
        prop_oneof![Just(Shape::File), Just(Shape::Dir)],
        prop_oneof![
            Just(Pointer::Link),
            Just(Pointer::Copy),
            Just(Pointer::Latest),
            Just(Pointer::None)
        ],
        0u64..3,
    )
        .prop_map(|(shape, pointer, limit)| {
            let limit = if shape == Shape::Dir { limit } else { 0 };
            (shape, pointer, limit)
        })
}

/// What a user resumes from after a save in `pointer` mode: the announced
/// path for link and copy (`last.ckpt` or the checkpoint directory), the
/// `latest` file, or a keyword that scans.
fn resume_args(pointer: Pointer, dir: &Path, announced: &Path) -> Vec<ResumeArg> {
    let mut args = vec![ResumeArg::Last, ResumeArg::Newest];
    match pointer {
        Pointer::Link | Pointer::Copy => {
            args.push(ResumeArg::Path(dir.join("last.ckpt")));
            args.push(ResumeArg::Path(announced.to_path_buf()));
        }
        Pointer::Latest => args.push(ResumeArg::Path(dir.join(LATEST))),
        Pointer::None => args.push(ResumeArg::Path(announced.to_path_buf())),
    }
    args
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// (a) Train to k, save in any shape and pointer mode through the real
    /// policy and I/O layer, resume the way a user of that mode would
    /// (every way that fits), train to n: the digest of training to n.
    #[test]
    fn save_in_any_mode_then_resume_equals_uninterrupted(
        seed in any::<u64>(),
        n in 2u64..20,
        k_frac in 0.0f64..1.0,
        params in 1usize..200,
        (shape, pointer, limit) in any_shape(),
        earlier in 0u64..3,
    ) {
        let k = (((n as f64) * k_frac) as u64).max(1);
        let cfg = small_cfg(params);
        let data = Dataset::generate(&cfg, seed);
        let straight = trained(&cfg, seed, n);
        let dir = tempfile::tempdir().unwrap();
        let ckpt_dir = dir.path().join("ckpts");
        let pol = PolicyConfig { pointer, shape, save_total_limit: limit, ..PolicyConfig::default() };
        let mut io = Io::new(None, false);
        let mut policy = ModelCheckpoint::new(pol, ckpt_dir.clone(), Mutants::default());
        // A few older saves first, so that resume has to pick the newest.
        for s in (1..k).rev().take(earlier as usize).collect::<Vec<_>>().into_iter().rev() {
            policy.save(&mut io, &trained(&cfg, seed, s)).unwrap();
        }
        let first = trained(&cfg, seed, k);
        let announced = policy.save(&mut io, &first).unwrap();
        for arg in resume_args(pointer, &ckpt_dir, &announced) {
            let found = resume::resolve(&mut io, &arg, &ckpt_dir, &Mutants::default())
                .unwrap_or_else(|e| panic!("{arg:?}: {e}"));
            let loaded = resume::load(&mut io, &found.checkpoint).unwrap();
            prop_assert_eq!(&loaded.state, &first, "{:?} {:?} {:?}", shape, pointer, arg);
            let mut s = loaded.state;
            while s.global_step < n {
                s.train_step(&cfg, &data);
            }
            prop_assert_eq!(s.digest(), straight.digest());
        }
    }
}

/// A campaign target for the clean sim in one mode.
fn target(shape: Shape, pointer: Pointer, limit: u64) -> Target {
    let settings = SimSettings {
        params: 64,
        dataset: 12,
        batch: 3,
        every_n_steps: 3,
        layout: shape,
        pointer: Some(pointer),
        save_total_limit: limit,
        ..SimSettings::default()
    };
    let mut args: Vec<std::ffi::OsString> = vec!["sim".into()];
    args.extend(settings.to_args().into_iter().map(Into::into));
    Target {
        subject: Subject {
            program: EXE.into(),
            args,
            sim: true,
            preload: Vec::new(),
        },
        mode: Mode::Op,
        max_steps: 10,
        seed: 3,
        resume: match pointer {
            Pointer::Latest => ResumeMode::File(LATEST.into()),
            // No pointer: the harness names the newest announced checkpoint.
            Pointer::None => ResumeMode::Newest,
            _ => ResumeMode::Path,
        },
        timeout: None,
        tracing: Tracing::Needed,
        fault: crashpoint::fault::FaultModel::KILL,
    }
}

/// References by mode and layout, shared by every proptest case.
fn reference(key: (Shape, Pointer, u64), layout: Layout) -> Reference {
    static CACHE: OnceLock<Mutex<HashMap<String, Reference>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let name = format!("{key:?} {layout}");
    if let Some(r) = cache.lock().unwrap().get(&name) {
        return r.clone();
    }
    let dir = tempfile::tempdir().unwrap();
    let r = oracle::reference(&target(key.0, key.1, key.2), layout, dir.path())
        .expect("reference runs");
    cache.lock().unwrap().insert(name, r.clone());
    r
}

fn any_when() -> impl Strategy<Value = When> {
    prop_oneof![Just(When::Before), Just(When::Mid), Just(When::After)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// (b) Any crash plan in any mode and layout: the clean sim ends bit for
    /// bit equal to the reference, with every invariant intact, and every
    /// point of the plan was reached (the first anywhere in the census, a
    /// second one in the first operations of the resume run, where it loads).
    #[test]
    fn any_crash_plan_in_any_shape_passes_and_is_reached(
        key in any_shape(),
        layout in prop::sample::select(Layout::ALL.to_vec()),
        first in 0.0f64..1.0,
        first_when in any_when(),
        second in proptest::option::of((1u64..=2, any_when())),
    ) {
        let reference = reference(key, layout);
        prop_assert!(reference.findings.is_empty(), "{:?}", reference.findings);
        let len = reference.census.len() as u64;
        let index = ((len as f64 * first) as u64).clamp(1, len);
        let mut points = vec![CrashPoint::Op(OpCrash { index, when: first_when })];
        if let Some((index, when)) = second {
            points.push(CrashPoint::Op(OpCrash { index, when }));
        }
        let plan = CrashPlan { points };
        let dir = tempfile::tempdir().unwrap();
        let t = target(key.0, key.1, key.2);
        let out = oracle::run_case(&t, &reference, &plan, &dir.path().join("case")).unwrap();
        prop_assert!(out.passed(), "{key:?} {layout} {plan}: {:#?}", out.findings);
        prop_assert_eq!(out.crashes_hit, plan.points.len(), "{:?} {} {}: a point was not reached", key, layout, plan);
    }
}

/// Saves steps 5 and 10 as directory checkpoints with no pointer; returns
/// the checkpoint root.
fn two_dir_saves(root: &Path) -> PathBuf {
    let cfg = small_cfg(32);
    let ckpt = root.join("ckpts");
    let pol = PolicyConfig {
        shape: Shape::Dir,
        pointer: Pointer::None,
        ..PolicyConfig::default()
    };
    let mut io = Io::new(None, false);
    let mut policy = ModelCheckpoint::new(pol, ckpt.clone(), Mutants::default());
    for step in [5, 10] {
        let at = policy.save(&mut io, &trained(&cfg, 1, step)).unwrap();
        assert_eq!(at, ckpt.join(format!("checkpoint-{step}")));
    }
    ckpt
}

fn newest_step(ckpt: &Path) -> Result<u64, CkptError> {
    let mut io = Io::new(None, false);
    let found = resume::resolve(&mut io, &ResumeArg::Newest, ckpt, &Mutants::default())?;
    Ok(resume::load(&mut io, &found.checkpoint)?.state.global_step)
}

fn load_named(path: &Path) -> Result<u64, CkptError> {
    let mut io = Io::new(None, false);
    let arg = ResumeArg::Path(path.to_path_buf());
    let found = resume::resolve(&mut io, &arg, Path::new("unused"), &Mutants::default())?;
    Ok(resume::load(&mut io, &found.checkpoint)?.state.global_step)
}

fn truncate_half(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len / 2).unwrap();
}

/// (c) A directory without its metadata file, or with a truncated part or
/// metadata file, is refused when named and skipped by the scan; the
/// checkpoint root itself is not a checkpoint.
#[test]
fn incomplete_or_corrupt_checkpoint_directories_are_refused_and_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = two_dir_saves(tmp.path());
    let ten = ckpt.join("checkpoint-10");
    assert_eq!(newest_step(&ckpt).unwrap(), 10);
    assert_eq!(load_named(&ten).unwrap(), 10);
    assert!(matches!(load_named(&ckpt), Err(CkptError::IsDirectory(_))));

    // The largest part truncated: named, refused; scanned, skipped.
    let largest = PART_FILES
        .iter()
        .map(|p| ten.join(p.0))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let good = std::fs::read(&largest).unwrap();
    truncate_half(&largest);
    let e = load_named(&ten).unwrap_err();
    assert!(matches!(e, CkptError::Incomplete { .. }), "{e}");
    assert!(e.to_string().contains("torn or stale part"), "{e}");
    assert_eq!(newest_step(&ckpt).unwrap(), 5);
    std::fs::write(&largest, good).unwrap();

    // The metadata truncated, then missing.
    let meta = ten.join(METADATA);
    truncate_half(&meta);
    let e = load_named(&ten).unwrap_err();
    assert!(e.to_string().contains(METADATA), "{e}");
    assert_eq!(newest_step(&ckpt).unwrap(), 5);
    std::fs::remove_file(&meta).unwrap();
    let e = load_named(&ten).unwrap_err();
    assert!(
        e.to_string().contains("incomplete checkpoint directory"),
        "{e}"
    );
    assert_eq!(newest_step(&ckpt).unwrap(), 5);

    // Nothing complete at all.
    std::fs::remove_file(ckpt.join("checkpoint-5").join(METADATA)).unwrap();
    assert!(matches!(newest_step(&ckpt), Err(CkptError::NoComplete(_))));
}

/// (c) A `latest` file that is empty, torn or names a missing checkpoint is
/// refused with its own message; a good one is followed.
#[test]
fn a_latest_file_that_names_nothing_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = two_dir_saves(tmp.path());
    let latest = ckpt.join(LATEST);
    std::fs::write(&latest, "checkpoint-10\n").unwrap();
    assert_eq!(load_named(&latest).unwrap(), 10);
    for (text, says) in [
        ("", "is empty"),
        ("checkp", "which does not exist"),
        ("../x", "does not hold one checkpoint name"),
    ] {
        std::fs::write(&latest, text).unwrap();
        let e = load_named(&latest).unwrap_err();
        assert!(matches!(e, CkptError::BadPointer { .. }), "{text:?}: {e}");
        assert!(e.to_string().contains(says), "{text:?}: {e}");
    }
}

/// Rotation keeps the newest `save_total_limit` directories by step and
/// leaves no staging or trash directory behind.
#[test]
fn rotation_keeps_the_newest_directories_by_step() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small_cfg(16);
    let ckpt = tmp.path().join("c");
    let pol = PolicyConfig {
        shape: Shape::Dir,
        pointer: Pointer::Latest,
        save_total_limit: 2,
        ..PolicyConfig::default()
    };
    let mut io = Io::new(None, false);
    let mut policy = ModelCheckpoint::new(pol, ckpt.clone(), Mutants::default());
    for step in [5, 10, 15, 20] {
        policy.save(&mut io, &trained(&cfg, 2, step)).unwrap();
    }
    let mut names: Vec<String> = std::fs::read_dir(&ckpt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["checkpoint-15", "checkpoint-20", "latest"]);
    assert_eq!(
        std::fs::read_to_string(ckpt.join(LATEST)).unwrap(),
        "checkpoint-20\n"
    );
}
