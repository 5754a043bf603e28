//! Properties of the simulated trainer and the harness, checked by proptest
//! with bounded case counts:
//! (a) encode then decode gives back the same state, for any state;
//! (b) train to k, checkpoint, load, train to N equals training to N, for any k, N, seed;
//! (c) for any crash plan proptest draws, a case on the correct sim passes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use crashpoint::census::PhaseKind;
use crashpoint::inject::{CrashPlan, CrashPoint, Mode, Selection};
use crashpoint::layout::Layout;
use crashpoint::oracle::{self, Reference, ResumeMode, Target, Tracing};
use crashpoint::runner::Subject;
use crashpoint::sim::ckpt::format::{decode, encode, Checkpoint, FormatError};
use crashpoint::sim::ckpt::io::{Io, OpCrash, When};
use crashpoint::sim::ckpt::policy::{ModelCheckpoint, PolicyConfig, TopK};
use crashpoint::sim::ckpt::resume;
use crashpoint::sim::Mutants;
use crashpoint::sim::{Dataset, SimConfig, SimState};
use proptest::prelude::*;
use rand::SeedableRng;

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

/// Any state: a trained state with every field then overwritten by arbitrary values.
fn any_state() -> impl Strategy<Value = SimState> {
    (
        1usize..64,
        any::<u64>(),
        0u64..20,
        any::<u64>(),
        any::<u32>(),
        any::<u128>(),
        proptest::collection::vec(any::<u32>(), 0..64),
    )
        .prop_map(|(params, seed, steps, counter, bits, word_pos, order)| {
            let cfg = small_cfg(params);
            let mut s = trained(&cfg, seed, steps);
            s.global_step = counter;
            s.epoch = counter.rotate_left(7);
            s.loss = f32::from_bits(bits);
            s.params[0] = f32::from_bits(bits.rotate_left(3));
            s.scheduler.lr = f32::from_bits(bits ^ 0x5555_5555);
            s.rng.set_word_pos(word_pos);
            s.data.pos = order.len() as u64 / 2;
            s.data.order = order;
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// (a) Encoding is lossless, bit for bit (NaNs and negative zeros included).
    #[test]
    fn encode_decode_roundtrip(state in any_state(), kept in proptest::collection::vec(("[a-z=0-9-][a-z=0-9.-]{0,11}", any::<f32>()), 0..4)) {
        let topk = TopK { kept: kept.clone(), best: kept.first().map(|k| k.0.clone()), ..TopK::default() };
        let ck = Checkpoint { state, topk };
        let bytes = encode(&ck);
        let back = decode(&bytes).expect("decodes");
        prop_assert_eq!(encode(&back), bytes);
        prop_assert_eq!(back.state.digest(), ck.state.digest());
    }

    /// A checkpoint with any single byte flipped, or cut anywhere, is refused.
    #[test]
    fn corruption_is_detected(seed in any::<u64>(), at in any::<prop::sample::Index>(), cut in any::<bool>()) {
        let cfg = small_cfg(16);
        let ck = Checkpoint { state: trained(&cfg, seed, 3), topk: TopK::default() };
        let mut bytes = encode(&ck);
        let i = at.index(bytes.len());
        if cut { bytes.truncate(i) } else { bytes[i] ^= 0x40 }
        prop_assert!(decode(&bytes).is_err());
    }

    /// (b) Train to k, save through the real policy and I/O layer, load, train
    /// to n: the same digest as training to n without a break.
    #[test]
    fn checkpoint_then_resume_equals_uninterrupted(seed in any::<u64>(), n in 1u64..30, k_frac in 0.0f64..1.0, params in 1usize..300) {
        let k = ((n as f64) * k_frac) as u64;
        let cfg = small_cfg(params);
        let data = Dataset::generate(&cfg, seed);
        let straight = trained(&cfg, seed, n);

        let dir = tempfile::tempdir().unwrap();
        let ckpt_dir = dir.path().join("ckpts");
        let mut io = Io::new(None, false);
        let mut policy = ModelCheckpoint::new(PolicyConfig::default(), ckpt_dir.clone(), Mutants::default());
        let first = trained(&cfg, seed, k);
        let path = policy.save(&mut io, &first).unwrap();
        let loaded = resume::load(&mut io, &path).unwrap();
        prop_assert_eq!(&loaded.state, &first);
        let mut s = loaded.state;
        while s.global_step < n {
            s.train_step(&cfg, &data);
        }
        prop_assert_eq!(s.digest(), straight.digest());
    }
}

#[test]
fn a_torn_checkpoint_names_what_is_wrong() {
    let ck = Checkpoint {
        state: trained(&small_cfg(8), 1, 2),
        topk: TopK::default(),
    };
    let bytes = encode(&ck);
    assert!(matches!(
        decode(&bytes[..10]),
        Err(FormatError::TooShort(10))
    ));
    assert!(matches!(
        decode(&bytes[..bytes.len() - 3]),
        Err(FormatError::Length { .. })
    ));
    let mut b = bytes.clone();
    b[0] = b'X';
    assert!(matches!(decode(&b), Err(FormatError::BadMagic)));
}

#[test]
fn the_rng_state_is_really_saved() {
    // A digest that ignored the RNG would make the no-rng-state bug invisible.
    let cfg = small_cfg(8);
    let a = trained(&cfg, 3, 4);
    let mut b = a.clone();
    b.rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    assert_ne!(a.digest(), b.digest());
    let parts_a = a.part_digests();
    let parts_b = b.part_digests();
    let differing: Vec<_> = parts_a
        .iter()
        .zip(&parts_b)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| x.0)
        .collect();
    assert_eq!(differing, vec!["rng"]);
}

fn target() -> Target {
    Target {
        subject: Subject {
            program: env!("CARGO_BIN_EXE_crashpoint").into(),
            args: vec![
                "sim".into(),
                "--params".into(),
                "256".into(),
                "--every-n-steps".into(),
                "3".into(),
            ],
            sim: true,
            preload: Vec::new(),
        },
        mode: Mode::Op,
        max_steps: 10,
        seed: 7,
        resume: ResumeMode::Path,
        timeout: None,
        tracing: Tracing::Needed,
        fault: crashpoint::fault::FaultModel::KILL,
    }
}

/// References are computed once per layout and shared by every proptest case.
fn reference(layout: Layout) -> Reference {
    static CACHE: OnceLock<Mutex<HashMap<Layout, Reference>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().unwrap();
    map.entry(layout)
        .or_insert_with(|| {
            let dir = tempfile::tempdir().unwrap();
            oracle::reference(&target(), layout, dir.path()).expect("reference runs")
        })
        .clone()
}

fn when() -> impl Strategy<Value = When> {
    prop_oneof![Just(When::Before), Just(When::Mid), Just(When::After)]
}

/// A crash plan every point of which is reached: the first lands on an
/// operation of the layout's census; later ones (in resume runs) on one of
/// the first two operations, which every run makes (a resume reads the link
/// and the checkpoint; a fresh start makes its directories).
fn reachable_plan(census_len: u64) -> impl Strategy<Value = CrashPlan> {
    let first = (1..=census_len, when()).prop_map(|(index, when)| OpCrash { index, when });
    let later = (1u64..=2, when()).prop_map(|(index, when)| OpCrash { index, when });
    (first, proptest::collection::vec(later, 0..3)).prop_map(|(first, later)| CrashPlan {
        points: std::iter::once(first)
            .chain(later)
            .map(CrashPoint::Op)
            .collect(),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// (c) Any crash plan, in any layout: the correct sim ends bit for bit
    /// equal to the reference, with every invariant intact, and every
    /// crash of the plan really happened.
    #[test]
    fn any_crash_plan_passes_on_the_correct_sim(
        (layout, plan) in prop::sample::select(Layout::ALL.to_vec()).prop_flat_map(|layout| {
            let len = reference(layout).census.len() as u64;
            (Just(layout), reachable_plan(len))
        }),
    ) {
        let reference = reference(layout);
        let dir = tempfile::tempdir().unwrap();
        let out = oracle::run_case(&target(), &reference, &plan, &dir.path().join("case")).unwrap();
        prop_assert_eq!(out.crashes_hit, plan.points.len(), "{} {}: not every crash was reached", layout, plan);
        prop_assert!(out.passed(), "{layout} {plan}: {:?}", out.findings);
    }
}

#[test]
fn census_reaches_save_relink_and_resume() {
    // The crash points must be able to land inside save, inside the relink of
    // last.ckpt, and inside resume (the second crash of a plan).
    let r = reference(Layout::Relative);
    let phases: Vec<PhaseKind> = r.census.iter().map(|e| e.phase.kind).collect();
    assert!(phases.contains(&PhaseKind::Save), "{phases:?}");
    assert!(phases.contains(&PhaseKind::RelinkLast), "{phases:?}");
    let spec = crashpoint::inject::PlanSpec {
        mode: Mode::Op,
        selection: Selection::All,
        crashes: 2,
        seed: 1,
        layout: "relative",
        saved: &r.saved,
    };
    let plans = crashpoint::inject::plans(&spec, &r.census);
    // A resume run starts with readlink, read: its first ops are resume ops.
    let in_resume = plans
        .iter()
        .filter(|p| matches!(p.points[1], CrashPoint::Op(OpCrash { index: 1..=3, .. })))
        .count();
    assert!(
        in_resume > 0,
        "no second crash lands in the resume's loading"
    );
    // And such a case really crashes twice and still passes.
    let plan: CrashPlan = "op:8:after,op:2:mid".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = oracle::run_case(&target(), &r, &plan, Path::new(&dir.path().join("case"))).unwrap();
    assert_eq!(out.crashes_hit, 2, "{out:?}");
    assert!(out.passed(), "{out:?}");
}
