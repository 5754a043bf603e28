//! The simulated model: parameters, Adam moments, a stateful learning-rate
//! schedule, a shuffled dataset with a position inside the epoch, dropout-like
//! noise from a ChaCha RNG, and counters. One seed drives all of it.
//!
//! Training is plain `f32` arithmetic in a fixed order, so the same binary
//! always produces the same bits: that is what makes bit-for-bit comparison of
//! an interrupted and an uninterrupted run meaningful.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::codec::{DecodeError, Decoder, Encoder};

/// Hyper-parameters and sizes of the simulated trainer; everything not in
/// [`SimState`] is derived from these and the seed.
///
/// ```
/// let cfg = crashpoint::sim::SimConfig::default();
/// assert!(cfg.params >= 1024);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Number of `f32` parameters.
    pub params: usize,
    /// Number of samples in the synthetic dataset.
    pub dataset: usize,
    /// Samples per optimizer step.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f32,
    /// Linear warm-up length in steps.
    pub warmup: u64,
    /// Multiplicative decay per step after warm-up.
    pub decay: f32,
    /// Probability that a gradient coordinate is dropped.
    pub dropout: f32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            params: 1024,
            dataset: 64,
            batch: 4,
            lr: 0.05,
            warmup: 3,
            decay: 0.95,
            dropout: 0.1,
        }
    }
}

/// The synthetic regression task: inputs and targets, generated from the seed.
/// Not part of the state: it never changes during training.
#[derive(Debug, Clone)]
pub struct Dataset {
    inputs: Vec<Vec<f32>>,
    targets: Vec<f32>,
}

impl Dataset {
    /// Generates the dataset of `cfg` from `seed`.
    pub fn generate(cfg: &SimConfig, seed: u64) -> Dataset {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xD47A_5E7D_47A5_E7D0);
        let truth: Vec<f32> = (0..cfg.params).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let mut inputs = Vec::with_capacity(cfg.dataset);
        let mut targets = Vec::with_capacity(cfg.dataset);
        for _ in 0..cfg.dataset {
            let x: Vec<f32> = (0..cfg.params).map(|_| rng.gen_range(-1.0..1.0)).collect();
            targets.push(dot(&x, &truth));
            inputs.push(x);
        }
        Dataset { inputs, targets }
    }
}

/// State of the Adam-style optimizer.
#[derive(Debug, Clone, PartialEq)]
pub struct Optimizer {
    /// Number of optimizer updates taken (bias correction).
    pub t: u64,
    /// First moments.
    pub m: Vec<f32>,
    /// Second moments.
    pub v: Vec<f32>,
}

/// A learning-rate schedule with state: linear warm-up, then multiplicative
/// decay of the stored rate, so restarting it changes every later step.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduler {
    /// Calls to `step` so far.
    pub steps: u64,
    /// The current learning rate.
    pub lr: f32,
}

/// Where the data loader stands: the permutation of this epoch, the position
/// inside it, and the generator that shuffles the next epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct DataPosition {
    /// Sample order of the current epoch.
    pub order: Vec<u32>,
    /// Index of the next sample in `order`.
    pub pos: u64,
    /// The shuffling generator.
    pub rng: ChaCha8Rng,
}

/// The complete training state: what a checkpoint must hold so that a resumed
/// run continues bit for bit.
#[derive(Debug, Clone, PartialEq)]
pub struct SimState {
    /// Model parameters.
    pub params: Vec<f32>,
    /// Optimizer moments and counter.
    pub optimizer: Optimizer,
    /// Learning-rate schedule.
    pub scheduler: Scheduler,
    /// The generator for dropout-like noise.
    pub rng: ChaCha8Rng,
    /// Data order and position.
    pub data: DataPosition,
    /// Global optimizer step.
    pub global_step: u64,
    /// Completed epochs.
    pub epoch: u64,
    /// Loss of the last batch (the monitored metric).
    pub loss: f32,
}

/// The parts of [`SimState`], in canonical order; a digest mismatch names one.
pub const PARTS: [&str; 6] = [
    "params",
    "optimizer",
    "scheduler",
    "rng",
    "data",
    "counters",
];

impl SimState {
    /// The state before the first step, derived from `seed`.
    pub fn init(cfg: &SimConfig, seed: u64) -> SimState {
        let mut init_rng = ChaCha8Rng::seed_from_u64(seed);
        let params = (0..cfg.params)
            .map(|_| init_rng.gen_range(-0.1..0.1))
            .collect();
        let mut data_rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(1));
        let order = shuffled(cfg.dataset, &mut data_rng);
        SimState {
            params,
            optimizer: Optimizer {
                t: 0,
                m: vec![0.0; cfg.params],
                v: vec![0.0; cfg.params],
            },
            scheduler: Scheduler { steps: 0, lr: 0.0 },
            rng: ChaCha8Rng::seed_from_u64(seed.wrapping_add(2)),
            data: DataPosition {
                order,
                pos: 0,
                rng: data_rng,
            },
            global_step: 0,
            epoch: 0,
            loss: 0.0,
        }
    }

    /// One optimizer step on the next batch. Returns true when the step
    /// finished an epoch.
    pub fn train_step(&mut self, cfg: &SimConfig, data: &Dataset) -> bool {
        let n = self.params.len();
        let mut grad = vec![0.0f32; n];
        let mut loss = 0.0f32;
        for _ in 0..cfg.batch.max(1) {
            let idx = self.data.order[self.data.pos as usize] as usize;
            self.data.pos += 1;
            let x = &data.inputs[idx];
            let err = dot(&self.params, x) - data.targets[idx];
            loss += err * err;
            for (g, xi) in grad.iter_mut().zip(x) {
                *g += err * xi;
            }
            if self.data.pos as usize >= self.data.order.len() {
                break;
            }
        }
        let keep = 1.0 - cfg.dropout;
        for g in grad.iter_mut() {
            let r: f32 = self.rng.gen();
            *g = if r < cfg.dropout { 0.0 } else { *g / keep };
        }
        self.scheduler.step(cfg);
        self.optimizer
            .update(&mut self.params, &grad, self.scheduler.lr);
        self.global_step += 1;
        self.loss = loss / cfg.batch.max(1) as f32;
        if self.data.pos as usize >= self.data.order.len() {
            self.epoch += 1;
            self.data.order = shuffled(cfg.dataset, &mut self.data.rng);
            self.data.pos = 0;
            return true;
        }
        false
    }

    /// Canonical encoding of one part (see [`PARTS`]).
    pub fn encode_part(&self, part: &str, enc: &mut Encoder) {
        match part {
            "params" => enc.f32s(&self.params),
            "optimizer" => {
                enc.u64(self.optimizer.t);
                enc.f32s(&self.optimizer.m);
                enc.f32s(&self.optimizer.v);
            }
            "scheduler" => {
                enc.u64(self.scheduler.steps);
                enc.f32(self.scheduler.lr);
            }
            "rng" => encode_rng(&self.rng, enc),
            "data" => {
                enc.u32s(&self.data.order);
                enc.u64(self.data.pos);
                encode_rng(&self.data.rng, enc);
            }
            "counters" => {
                enc.u64(self.global_step);
                enc.u64(self.epoch);
                enc.f32(self.loss);
            }
            _ => {}
        }
    }

    /// Canonical encoding of the whole state: every part, in [`PARTS`] order.
    pub fn encode(&self, enc: &mut Encoder) {
        for part in PARTS {
            self.encode_part(part, enc);
        }
    }

    /// Decodes what [`SimState::encode`] wrote. Lengths are checked against
    /// the bytes left before anything is allocated.
    pub fn decode(dec: &mut Decoder<'_>) -> Result<SimState, DecodeError> {
        let params = dec.f32s("params")?;
        let optimizer = Optimizer {
            t: dec.u64("optimizer.t")?,
            m: dec.f32s("optimizer.m")?,
            v: dec.f32s("optimizer.v")?,
        };
        let scheduler = Scheduler {
            steps: dec.u64("scheduler.steps")?,
            lr: dec.f32("scheduler.lr")?,
        };
        let rng = decode_rng(dec, "rng")?;
        let order = dec.u32s("data.order")?;
        let pos = dec.u64("data.pos")?;
        let data_rng = decode_rng(dec, "data.rng")?;
        let state = SimState {
            params,
            optimizer,
            scheduler,
            rng,
            data: DataPosition {
                order,
                pos,
                rng: data_rng,
            },
            global_step: dec.u64("counters.global_step")?,
            epoch: dec.u64("counters.epoch")?,
            loss: dec.f32("counters.loss")?,
        };
        state.validate()?;
        Ok(state)
    }

    fn validate(&self) -> Result<(), DecodeError> {
        let n = self.params.len();
        if self.optimizer.m.len() != n || self.optimizer.v.len() != n {
            return Err(DecodeError::Malformed(
                "optimizer moments differ in size from params",
            ));
        }
        if self.data.pos as usize > self.data.order.len() {
            return Err(DecodeError::Malformed("data position beyond the epoch"));
        }
        Ok(())
    }

    /// Blake3 digest (hex) over the canonical encoding of the whole state.
    pub fn digest(&self) -> String {
        let mut enc = Encoder::default();
        self.encode(&mut enc);
        blake3::hash(enc.bytes()).to_hex().to_string()
    }

    /// One digest per part, in [`PARTS`] order.
    pub fn part_digests(&self) -> Vec<(&'static str, String)> {
        PARTS
            .iter()
            .map(|part| {
                let mut enc = Encoder::default();
                self.encode_part(part, &mut enc);
                (*part, blake3::hash(enc.bytes()).to_hex().to_string())
            })
            .collect()
    }
}

impl Scheduler {
    fn step(&mut self, cfg: &SimConfig) {
        self.steps += 1;
        if self.steps <= cfg.warmup {
            self.lr = cfg.lr * self.steps as f32 / cfg.warmup.max(1) as f32;
        } else {
            self.lr *= cfg.decay;
        }
    }
}

impl Optimizer {
    fn update(&mut self, params: &mut [f32], grad: &[f32], lr: f32) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        const EPS: f32 = 1e-8;
        self.t += 1;
        let c1 = 1.0 - B1.powi(self.t.min(i32::MAX as u64) as i32);
        let c2 = 1.0 - B2.powi(self.t.min(i32::MAX as u64) as i32);
        for i in 0..params.len() {
            self.m[i] = B1 * self.m[i] + (1.0 - B1) * grad[i];
            self.v[i] = B2 * self.v[i] + (1.0 - B2) * grad[i] * grad[i];
            let mhat = self.m[i] / c1;
            let vhat = self.v[i] / c2;
            params[i] -= lr * mhat / (vhat.sqrt() + EPS);
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn shuffled(n: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in (1..order.len()).rev() {
        let j = rng.gen_range(0..=i);
        order.swap(i, j);
    }
    order
}

fn encode_rng(rng: &ChaCha8Rng, enc: &mut Encoder) {
    enc.raw(&rng.get_seed());
    enc.u64(rng.get_stream());
    enc.u128(rng.get_word_pos());
}

fn decode_rng(dec: &mut Decoder<'_>, field: &'static str) -> Result<ChaCha8Rng, DecodeError> {
    let seed: [u8; 32] = dec.array(field)?;
    let stream = dec.u64(field)?;
    let word_pos = dec.u128(field)?;
    let mut rng = ChaCha8Rng::from_seed(seed);
    rng.set_stream(stream);
    rng.set_word_pos(word_pos);
    Ok(rng)
}
