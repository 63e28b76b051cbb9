//! The NAS-Bench-101 training protocol (`evaluate.py`, `model_builder.py`, `config.py`) over any [`Backend`]: config, schedule, data order, evaluations, retries and checkpoints.
//!
//! One run: a step with learning rate 0 (batch-norm statistics and the
//! RMSProp mean square still move), an evaluation at epoch 0, training to
//! each intermediate evaluation (halfway by default) and to the end, each
//! followed by an evaluation of train-eval, validation and test accuracy on
//! full batches. Training time counts training steps only. Data order and
//! augmentation depend only on the seed and the step, so a run resumed
//! from a checkpoint continues exactly as if it had not stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::backend::{BResult, Backend, BackendError, Crop, RmsProp};
use super::data::{Cifar, RGB_MEAN, RGB_STD, Split};
use super::net::{Graph, Mode, Net, init_params};
use crate::api::SplitMix64;
use crate::cell::network::{NetworkConfig, NetworkError};
use crate::cell::spec::ModelSpec;

/// How the learning rate decays (`lr_decay_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LrDecay {
    /// `0.5 base (1 + cos(pi step / total_steps))` (the dataset's).
    #[serde(rename = "COSINE_BY_STEP")]
    CosineByStep,
    /// x1, x0.1, x0.01, x0.0001 after 1/2, 2/3, 5/6 of the steps (augment runs).
    #[serde(rename = "STEPWISE")]
    Stepwise,
}

/// The original's training config (`config.py` names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Filters of the stem convolution.
    pub stem_filter_size: usize,
    /// Stacks of modules.
    pub num_stacks: usize,
    /// Modules per stack.
    pub num_modules_per_stack: usize,
    /// Classes.
    pub num_labels: usize,
    /// Side of the (square) images.
    pub image_size: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Training epochs (the budget: 4, 12, 36, 108 in the dataset).
    pub train_epochs: f64,
    /// Base learning rate, multiplied by `tpu_num_shards`.
    pub learning_rate: f64,
    /// The dataset was trained on 2 TPU shards, which doubles the rate.
    pub tpu_num_shards: usize,
    /// Schedule.
    pub lr_decay_method: LrDecay,
    /// RMSProp momentum.
    pub momentum: f64,
    /// RMSProp mean-square decay.
    pub rmsprop_decay: f64,
    /// RMSProp epsilon (inside the square root).
    pub rmsprop_epsilon: f64,
    /// L2 weight over all trainable variables.
    pub weight_decay: f64,
    /// Attempts when the loss becomes NaN.
    pub max_attempts: usize,
    /// Evaluation points besides the end, as fractions of the epochs.
    pub intermediate_evaluations: Vec<f64>,
    /// Wall-clock cap on training (0: none).
    pub train_seconds: f64,
    /// Train on train + validation and report test (the original's augment runs).
    pub augment: bool,
}

impl Default for TrainConfig {
    /// The dataset's protocol at 108 epochs.
    fn default() -> Self {
        TrainConfig {
            stem_filter_size: 128,
            num_stacks: 3,
            num_modules_per_stack: 3,
            num_labels: 10,
            image_size: 32,
            batch_size: 256,
            train_epochs: 108.0,
            learning_rate: 0.1,
            tpu_num_shards: 2,
            lr_decay_method: LrDecay::CosineByStep,
            momentum: 0.9,
            rmsprop_decay: 0.9,
            rmsprop_epsilon: 1.0,
            weight_decay: 1e-4,
            max_attempts: 5,
            intermediate_evaluations: vec![0.5],
            train_seconds: 4.0 * 60.0 * 60.0,
            augment: false,
        }
    }
}

/// Why a run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The cell cannot be built.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// A config key or value is wrong.
    #[error("config: {0}")]
    Config(String),
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A checkpoint cannot be read or written.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The data does not fit the config.
    #[error("data: {0}")]
    Data(String),
}

impl TrainConfig {
    /// Sets one key by its original name from text (`--config key=value`).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), TrainError> {
        let bad = |what: &str| TrainError::Config(format!("{key}={value}: {what}"));
        let int = || {
            value
                .parse::<usize>()
                .map_err(|_| bad("expected a non-negative integer"))
        };
        let float = || value.parse::<f64>().map_err(|_| bad("expected a number"));
        match key {
            "stem_filter_size" => self.stem_filter_size = int()?,
            "num_stacks" => self.num_stacks = int()?,
            "num_modules_per_stack" => self.num_modules_per_stack = int()?,
            "num_labels" => self.num_labels = int()?,
            "image_size" => self.image_size = int()?,
            "batch_size" => self.batch_size = int()?,
            "train_epochs" => self.train_epochs = float()?,
            "learning_rate" => self.learning_rate = float()?,
            "tpu_num_shards" => self.tpu_num_shards = int()?,
            "momentum" => self.momentum = float()?,
            "rmsprop_decay" => self.rmsprop_decay = float()?,
            "rmsprop_epsilon" => self.rmsprop_epsilon = float()?,
            "weight_decay" => self.weight_decay = float()?,
            "max_attempts" => self.max_attempts = int()?,
            "train_seconds" => self.train_seconds = float()?,
            "augment" => {
                self.augment = value
                    .parse::<bool>()
                    .map_err(|_| bad("expected true or false"))?
            }
            "lr_decay_method" => {
                self.lr_decay_method = match value {
                    "COSINE_BY_STEP" => LrDecay::CosineByStep,
                    "STEPWISE" => LrDecay::Stepwise,
                    "COSINE_BY_TIME" => {
                        return Err(bad(
                            "COSINE_BY_TIME makes results depend on the machine's speed; \
                             use COSINE_BY_STEP (the dataset's) or STEPWISE",
                        ));
                    }
                    _ => return Err(bad("expected COSINE_BY_STEP or STEPWISE")),
                }
            }
            "intermediate_evaluations" => {
                let list = value
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| s.trim().parse::<f64>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| bad("expected comma-separated fractions, e.g. 0.5"))?;
                if list.windows(2).any(|w| w[0] >= w[1])
                    || list.iter().any(|&f| !(0.0..1.0).contains(&f))
                {
                    return Err(bad("fractions must increase and lie in [0, 1)"));
                }
                self.intermediate_evaluations = list;
            }
            _ => {
                return Err(TrainError::Config(format!(
                    "unknown key {key:?}; known: {}",
                    Self::KEYS.join(", ")
                )));
            }
        }
        self.check_key(key)
    }

    /// Checks every key against its allowed range (see
    /// [`TrainConfig::check_key`]); the first one outside is the error.
    pub fn validate(&self) -> Result<(), TrainError> {
        Self::KEYS.iter().try_for_each(|k| self.check_key(k))
    }

    /// Checks one key's value against its allowed range: the error names
    /// the key, its value and the range. Both backends accept exactly what
    /// passes.
    pub fn check_key(&self, key: &str) -> Result<(), TrainError> {
        fn int(key: &str, v: usize, lo: usize, hi: usize) -> Result<(), TrainError> {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(TrainError::Config(format!(
                    "{key}={v}: must be an integer in {lo}..={hi}"
                )))
            }
        }
        /// `v` finite and in `[lo, hi]`, or `[lo, hi)` when `open_hi`, or
        /// `(lo, hi]` when `open_lo`.
        fn real(
            key: &str,
            v: f64,
            lo: f64,
            hi: f64,
            open_lo: bool,
            open_hi: bool,
        ) -> Result<(), TrainError> {
            let above = if open_lo { v > lo } else { v >= lo };
            let below = if open_hi { v < hi } else { v <= hi };
            let num = |x: f64| {
                if x.abs() >= 1e6 {
                    format!("{x:e}")
                } else {
                    x.to_string()
                }
            };
            if v.is_finite() && above && below {
                Ok(())
            } else {
                Err(TrainError::Config(format!(
                    "{key}={}: must be a number in {}{}, {}{}",
                    num(v),
                    if open_lo { "(" } else { "[" },
                    num(lo),
                    num(hi),
                    if open_hi { ")" } else { "]" }
                )))
            }
        }
        match key {
            "stem_filter_size" => int(key, self.stem_filter_size, 1, 4096),
            "num_stacks" => int(key, self.num_stacks, 1, 8),
            "num_modules_per_stack" => int(key, self.num_modules_per_stack, 1, 32),
            "num_labels" => int(key, self.num_labels, 1, 1000),
            "image_size" => int(key, self.image_size, 1, 1024),
            "batch_size" => int(key, self.batch_size, 1, 65536),
            "tpu_num_shards" => int(key, self.tpu_num_shards, 1, 1024),
            "max_attempts" => int(key, self.max_attempts, 1, 100),
            "train_epochs" => real(key, self.train_epochs, 0.0, 100_000.0, true, false),
            // Any rate an f32 holds: a huge one only makes the loss NaN, which
            // both backends retry alike.
            "learning_rate" => real(key, self.learning_rate, 0.0, 1e38, false, false),
            "momentum" => real(key, self.momentum, 0.0, 1.0, false, true),
            "rmsprop_decay" => real(key, self.rmsprop_decay, 0.0, 1.0, false, true),
            "rmsprop_epsilon" => real(key, self.rmsprop_epsilon, 0.0, 1e6, true, false),
            "weight_decay" => real(key, self.weight_decay, 0.0, 1.0, false, false),
            "train_seconds" => real(key, self.train_seconds, 0.0, 1e9, false, false),
            "intermediate_evaluations" => {
                let l = &self.intermediate_evaluations;
                if l.windows(2).any(|w| w[0] >= w[1]) || l.iter().any(|&f| !(0.0..1.0).contains(&f))
                {
                    Err(TrainError::Config(format!(
                        "intermediate_evaluations={l:?}: fractions must increase and lie in [0, 1)"
                    )))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// The keys [`TrainConfig::set`] accepts.
    pub const KEYS: [&'static str; 18] = [
        "stem_filter_size",
        "num_stacks",
        "num_modules_per_stack",
        "num_labels",
        "image_size",
        "batch_size",
        "train_epochs",
        "learning_rate",
        "tpu_num_shards",
        "lr_decay_method",
        "momentum",
        "rmsprop_decay",
        "rmsprop_epsilon",
        "weight_decay",
        "max_attempts",
        "intermediate_evaluations",
        "train_seconds",
        "augment",
    ];

    /// The network part.
    pub fn network(&self) -> NetworkConfig {
        NetworkConfig {
            input_channels: 3,
            stem_filters: self.stem_filter_size,
            num_stacks: self.num_stacks,
            modules_per_stack: self.num_modules_per_stack,
            num_labels: self.num_labels,
        }
    }

    /// `int(epochs * images / batch)`: steps of the whole run.
    pub fn total_steps(&self, train_images: usize) -> u64 {
        (self.train_epochs * train_images as f64 / self.batch_size as f64) as u64
    }

    /// Global steps at which evaluations after step 0 happen.
    pub fn evaluation_steps(&self, train_images: usize) -> Vec<(f64, u64)> {
        self.intermediate_evaluations
            .iter()
            .chain(std::iter::once(&1.0))
            .map(|&f| {
                let epoch = f * self.train_epochs;
                (
                    epoch,
                    (epoch * train_images as f64 / self.batch_size as f64) as u64,
                )
            })
            .collect()
    }

    /// The learning rate at global `step` (0 at step 0), as
    /// `model_builder.py` computes it.
    pub fn learning_rate_at(&self, step: u64, train_images: usize) -> f64 {
        if step == 0 {
            return 0.0;
        }
        let base = self.learning_rate * self.tpu_num_shards as f64;
        match self.lr_decay_method {
            LrDecay::CosineByStep => {
                let total = self.total_steps(train_images).max(1) as f64;
                0.5 * base * (1.0 + (std::f64::consts::PI * step as f64 / total).cos())
            }
            LrDecay::Stepwise => {
                let total = self.train_epochs * train_images as f64 / self.batch_size as f64;
                let bounds = [
                    (0.5 * total) as u64,
                    (0.667 * total) as u64,
                    (0.833 * total) as u64,
                ];
                let values = [1.0, 0.1, 0.01, 0.0001];
                // tf.train.piecewise_constant: values[i] while step <= bounds[i].
                let i = bounds.iter().take_while(|&&b| step > b).count();
                values[i] * base
            }
        }
    }
}

/// One evaluation of a run (`_evaluate_all`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    /// Epochs trained.
    pub epoch: f64,
    /// Global steps trained.
    pub steps: u64,
    /// Seconds spent in training steps so far.
    pub training_time: f64,
    /// Accuracy on train-eval (batch 1).
    pub train_accuracy: f64,
    /// Accuracy on validation (batch 5); NaN for augment runs.
    pub validation_accuracy: f64,
    /// Accuracy on test.
    pub test_accuracy: f64,
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOutcome {
    /// Evaluations: step 0, the intermediate ones, the end.
    pub evaluations: Vec<EvalPoint>,
    /// Trainable parameters of the network.
    pub trainable_parameters: u64,
    /// Wall seconds of the whole run, evaluations included.
    pub total_time: f64,
    /// Attempts used (more than 1 after NaN losses).
    pub attempts: usize,
    /// Loss (cross-entropy plus the L2 term) of the first recorded steps.
    pub losses: Vec<f32>,
    /// Set when every attempt failed (the last reason).
    pub failure: Option<String>,
}

/// Progress of a run, for a progress bar.
pub trait TrainProgress {
    /// `step` of `total` is done; `loss` is known at report points.
    fn step(&self, step: u64, total: u64, epoch: f64, loss: Option<f32>, images_per_sec: f64);
    /// An evaluation finished.
    fn evaluated(&self, point: &EvalPoint);
    /// Something worth a line (a retry, a resume).
    fn note(&self, message: &str);
}

/// Reports nothing.
pub struct Quiet;

impl TrainProgress for Quiet {
    fn step(&self, _: u64, _: u64, _: f64, _: Option<f32>, _: f64) {}
    fn evaluated(&self, _: &EvalPoint) {}
    fn note(&self, _: &str) {}
}

/// Options of one run.
pub struct RunOptions<'a> {
    /// Seed of the initialization, data order and augmentation.
    pub seed: u64,
    /// Where checkpoints go (one per evaluation); a run finds the latest
    /// one there and resumes from it.
    pub checkpoint_dir: Option<PathBuf>,
    /// Record the loss of this many first steps (each costs a sync).
    pub record_losses: usize,
    /// Steps between progress reports with a loss (each costs a sync).
    pub report_every: u64,
    /// Progress sink.
    pub progress: &'a dyn TrainProgress,
}

/// The state a checkpoint restores.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointMeta {
    step: u64,
    training_time: f64,
    evaluations: Vec<EvalPoint>,
    attempt: usize,
    seed: u64,
    cell: String,
    config: TrainConfig,
    losses: Vec<f32>,
}

/// Builds the graph a config and cell train.
pub fn build_graph(spec: &ModelSpec, cfg: &TrainConfig) -> Result<Graph, TrainError> {
    let (m, ops) = crate::cell::network::pruned_cell(spec)?;
    Ok(Graph::build(
        m,
        &ops,
        &cfg.network(),
        cfg.image_size,
        cfg.image_size,
    )?)
}

/// Mixes a seed with a stream name and index (SplitMix64 of the xor).
fn derive(seed: u64, stream: u64, index: u64) -> SplitMix64 {
    let mut r = SplitMix64::new(
        seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ index.wrapping_mul(0xd1b5_4a32_d192_ed03),
    );
    r.next_u64();
    r
}

/// The images of global step `step`: the whole split reshuffled every
/// epoch (the original's shuffle buffer holds the whole split), batches
/// running across epoch boundaries.
struct Order {
    seed: u64,
    n: usize,
    epoch: u64,
    perm: Vec<usize>,
}

impl Order {
    fn new(seed: u64, n: usize) -> Order {
        let mut o = Order {
            seed,
            n,
            epoch: u64::MAX,
            perm: Vec::new(),
        };
        o.shuffle(0);
        o
    }

    fn shuffle(&mut self, epoch: u64) {
        let mut r = derive(self.seed, 1, epoch);
        self.perm = (0..self.n).collect();
        // Fisher-Yates.
        for i in (1..self.n).rev() {
            let j = r.below(i as u64 + 1) as usize;
            self.perm.swap(i, j);
        }
        self.epoch = epoch;
    }

    fn batch(&mut self, step: u64, batch: usize) -> Vec<usize> {
        (0..batch as u64)
            .map(|k| {
                let p = step * batch as u64 + k;
                let epoch = p / self.n as u64;
                if epoch != self.epoch {
                    self.shuffle(epoch);
                }
                self.perm[(p % self.n as u64) as usize]
            })
            .collect()
    }
}

/// Crop offsets and flips of the images of global `step`.
fn crops(seed: u64, step: u64, batch: usize) -> Vec<Crop> {
    let mut r = derive(seed, 2, step);
    (0..batch)
        .map(|_| Crop {
            dy: r.below(9) as u8,
            dx: r.below(9) as u8,
            flip: r.below(2) == 1,
        })
        .collect()
}

/// Everything a step touches on the device.
struct Run<B: Backend> {
    net: Net<B>,
    ms: Vec<B::Buf>,
    mom: Vec<B::Buf>,
    labels: B::Buf,
    stats: B::Buf,
    l2: B::Buf,
    batch_images: Vec<u8>,
    batch_labels: Vec<f32>,
}

impl<B: Backend> Run<B> {
    /// One training step at `lr`: forward, loss, backward, update.
    fn step(
        &mut self,
        be: &mut B,
        cfg: &TrainConfig,
        split: &Split,
        idx: &[usize],
        crop: &[Crop],
        lr: f64,
    ) -> BResult {
        split.gather(idx, &mut self.batch_images, &mut self.batch_labels);
        let n = self.net.n;
        let (h, w) = (split.h, split.w);
        be.load_images(
            &self.batch_images,
            Some(crop),
            &mut self.net.acts[0],
            n,
            h,
            w,
            RGB_MEAN,
            RGB_STD,
        )?;
        be.write(&mut self.labels, &self.batch_labels)?;
        self.net.forward(be, Mode::Train)?;
        be.fill(&mut self.stats, 0.0)?;
        let logits = self.net.graph.logits;
        let k = self.net.graph.classes;
        let (acts, grads) = (&self.net.acts, &mut self.net.grads);
        be.softmax_xent(
            &acts[logits],
            &self.labels,
            &mut grads[logits],
            &mut self.stats,
            n,
            k,
        )?;
        self.net.backward(be)?;
        let p = RmsProp {
            lr: lr as f32,
            decay: cfg.rmsprop_decay as f32,
            momentum: cfg.momentum as f32,
            eps: cfg.rmsprop_epsilon as f32,
            weight_decay: cfg.weight_decay as f32,
        };
        for i in 0..self.net.params.len() {
            be.rmsprop(
                &mut self.net.params[i],
                &self.net.param_grads[i],
                &mut self.ms[i],
                &mut self.mom[i],
                p,
            )?;
        }
        Ok(())
    }

    /// The last step's loss: mean cross-entropy plus the L2 term of the
    /// weights after the update (waits for the device).
    fn loss(&mut self, be: &mut B, cfg: &TrainConfig) -> BResult<f32> {
        be.fill(&mut self.l2, 0.0)?;
        for p in &self.net.params {
            be.add_half_sum_squares(p, &mut self.l2)?;
        }
        let stats = be.download(&self.stats)?;
        let l2 = be.download(&self.l2)?;
        Ok(stats[0] / self.net.n as f32 + cfg.weight_decay as f32 * l2[0])
    }

    /// Accuracy on the full batches of `split`.
    fn accuracy(&mut self, be: &mut B, split: &Split) -> BResult<f64> {
        let n = self.net.n;
        let batches = split.len() / n;
        if batches == 0 {
            return Ok(f64::NAN);
        }
        be.fill(&mut self.stats, 0.0)?;
        let logits = self.net.graph.logits;
        let k = self.net.graph.classes;
        for b in 0..batches {
            let idx: Vec<usize> = (b * n..(b + 1) * n).collect();
            split.gather(&idx, &mut self.batch_images, &mut self.batch_labels);
            be.load_images(
                &self.batch_images,
                None,
                &mut self.net.acts[0],
                n,
                split.h,
                split.w,
                RGB_MEAN,
                RGB_STD,
            )?;
            be.write(&mut self.labels, &self.batch_labels)?;
            self.net.forward(be, Mode::Eval)?;
            be.count_correct(&self.net.acts[logits], &self.labels, &mut self.stats, n, k)?;
        }
        let stats = be.download(&self.stats)?;
        Ok(f64::from(stats[1]) / (batches * n) as f64)
    }
}

/// Trains `spec` with `cfg` on `data` and evaluates it, retrying from
/// scratch (new initialization) when the loss becomes NaN, up to
/// `max_attempts`. With a checkpoint directory, resumes from the latest
/// checkpoint of the same cell and config found there.
pub fn train<B: Backend>(
    be: &mut B,
    spec: &ModelSpec,
    cfg: &TrainConfig,
    data: &Cifar,
    opts: &RunOptions<'_>,
) -> Result<TrainOutcome, TrainError> {
    let started = Instant::now();
    cfg.validate()?;
    for (split, name) in [
        (&data.train, "training"),
        (&data.valid, "validation"),
        (&data.test, "test"),
    ] {
        if let Some((i, l)) = split
            .labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| usize::from(l) >= cfg.num_labels)
        {
            return Err(TrainError::Data(format!(
                "{}: image {i} of the {name} split has label {l}, outside 0..{n} \
                 (num_labels={n})",
                data.source,
                n = cfg.num_labels
            )));
        }
    }
    let graph = build_graph(spec, cfg)?;
    if data.train.h != cfg.image_size {
        return Err(TrainError::Data(format!(
            "images are {}x{}, config image_size is {}",
            data.train.h, data.train.w, cfg.image_size
        )));
    }
    let mut last_failure = String::new();
    let resume = match &opts.checkpoint_dir {
        Some(dir) => latest_checkpoint(dir, &graph, spec, cfg, opts.seed, opts.progress)?,
        None => None,
    };
    let first_attempt = resume.as_ref().map_or(1, |r| r.0.attempt);
    for attempt in first_attempt..=cfg.max_attempts.max(1) {
        let from = if attempt == first_attempt {
            resume.clone()
        } else {
            None
        };
        match run_attempt(be, &graph, spec, cfg, data, opts, attempt, from)? {
            Ok(mut outcome) => {
                outcome.total_time = started.elapsed().as_secs_f64();
                return Ok(outcome);
            }
            Err(reason) => {
                opts.progress.note(&format!(
                    "attempt {attempt}: {reason}; retrying from scratch"
                ));
                last_failure = reason;
                if let Some(dir) = &opts.checkpoint_dir {
                    remove_checkpoints(dir)?;
                }
            }
        }
    }
    Ok(TrainOutcome {
        evaluations: Vec::new(),
        trainable_parameters: graph.trainable_parameters(),
        total_time: started.elapsed().as_secs_f64(),
        attempts: cfg.max_attempts,
        losses: Vec::new(),
        failure: Some(last_failure),
    })
}

type Resume = (CheckpointMeta, BTreeMap<String, Vec<f32>>);

/// One attempt: `Ok(Err(reason))` when the loss became NaN or the time cap
/// was hit.
#[allow(clippy::too_many_arguments)]
fn run_attempt<B: Backend>(
    be: &mut B,
    graph: &Graph,
    spec: &ModelSpec,
    cfg: &TrainConfig,
    data: &Cifar,
    opts: &RunOptions<'_>,
    attempt: usize,
    resume: Option<Resume>,
) -> Result<Result<TrainOutcome, String>, TrainError> {
    let seed = opts
        .seed
        .wrapping_add((attempt as u64 - 1).wrapping_mul(0x5851_f42d_4c95_7f2d));
    // Augment runs train on train + validation; others use train in place.
    let train_split: std::borrow::Cow<'_, Split> = if cfg.augment {
        let mut s = data.train.clone();
        s.images.extend_from_slice(&data.valid.images);
        s.labels.extend_from_slice(&data.valid.labels);
        std::borrow::Cow::Owned(s)
    } else {
        std::borrow::Cow::Borrowed(&data.train)
    };
    let n_train = train_split.len();
    if n_train == 0 {
        return Err(TrainError::Data("the training split is empty".into()));
    }
    let b = cfg.batch_size;
    let names: Vec<String> = graph.params.iter().map(|p| p.name.clone()).collect();
    let (params, mut meta) = match &resume {
        Some((meta, tensors)) => {
            let params = names
                .iter()
                .map(|n| {
                    tensors
                        .get(n)
                        .cloned()
                        .ok_or_else(|| ckpt_err("?", &format!("lacks {n}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            opts.progress
                .note(&format!("resuming at step {} from a checkpoint", meta.step));
            (params, meta.clone())
        }
        None => (
            init_params(&graph.params, seed),
            CheckpointMeta {
                step: 0,
                training_time: 0.0,
                evaluations: Vec::new(),
                attempt,
                seed: opts.seed,
                cell: spec_key(spec),
                config: cfg.clone(),
                losses: Vec::new(),
            },
        ),
    };
    let net = Net::new(be, graph.clone(), b, &params)?;
    let mut run = Run {
        ms: Vec::new(),
        mom: Vec::new(),
        labels: be.zeros(b)?,
        stats: be.zeros(2)?,
        l2: be.zeros(1)?,
        batch_images: Vec::new(),
        batch_labels: Vec::new(),
        net,
    };
    for info in &graph.params {
        let (ms, mom) = match &resume {
            Some((_, t)) => (
                t.get(&format!("slot/ms/{}", info.name)).cloned(),
                t.get(&format!("slot/mom/{}", info.name)).cloned(),
            ),
            None => (None, None),
        };
        run.ms
            .push(be.upload(&ms.unwrap_or_else(|| vec![1.0; info.len()]))?);
        run.mom
            .push(be.upload(&mom.unwrap_or_else(|| vec![0.0; info.len()]))?);
    }
    if let Some((_, t)) = &resume {
        for (i, slot) in run.net.running.iter_mut().enumerate() {
            for (k, what) in ["mean", "var"].iter().enumerate() {
                if let Some(v) = t.get(&format!("bn/{i}/{what}")) {
                    slot[k] = be.upload(v)?;
                }
            }
        }
    }

    let total = cfg.total_steps(n_train);
    let mut targets = vec![(0.0, 1u64)];
    targets.extend(cfg.evaluation_steps(n_train));
    let mut order = Order::new(seed, n_train);
    let train_eval = data.train_eval();
    for (epoch, target) in targets {
        // The step-0 evaluation comes after the single zero-rate step.
        let eval_at = if target == 1 && epoch == 0.0 {
            0
        } else {
            target
        };
        if meta
            .evaluations
            .iter()
            .any(|e| e.steps == eval_at && e.epoch == epoch)
        {
            continue;
        }
        let seg_start = Instant::now();
        let mut last_report = Instant::now();
        let mut reported_step = meta.step;
        while meta.step < target.max(1) {
            let step = meta.step;
            let idx = order.batch(step, b);
            let crop = crops(seed, step, b);
            let lr = cfg.learning_rate_at(step, n_train);
            run.step(be, cfg, &train_split, &idx, &crop, lr)?;
            meta.step += 1;
            let record = meta.losses.len() < opts.record_losses;
            let report = opts.report_every > 0 && meta.step % opts.report_every == 0;
            if record || report || meta.step == target {
                let loss = run.loss(be, cfg)?;
                if record {
                    meta.losses.push(loss);
                }
                if !loss.is_finite() {
                    return Ok(Err(format!("loss is {loss} at step {}", meta.step)));
                }
                let secs = last_report.elapsed().as_secs_f64();
                let ips = (meta.step - reported_step) as f64 * b as f64 / secs.max(1e-9);
                last_report = Instant::now();
                reported_step = meta.step;
                let epoch_now = meta.step as f64 * b as f64 / n_train as f64;
                opts.progress
                    .step(meta.step, total, epoch_now, Some(loss), ips);
            }
            if cfg.train_seconds > 0.0
                && meta.training_time + seg_start.elapsed().as_secs_f64() > cfg.train_seconds
            {
                return Ok(Err(format!(
                    "training time exceeded train_seconds = {}",
                    cfg.train_seconds
                )));
            }
        }
        // The timer stops when the device is done with the segment.
        let _ = be.download(&run.stats)?;
        meta.training_time += seg_start.elapsed().as_secs_f64();
        let point = EvalPoint {
            epoch,
            steps: eval_at,
            training_time: meta.training_time,
            train_accuracy: run.accuracy(be, &train_eval)?,
            validation_accuracy: if cfg.augment {
                f64::NAN
            } else {
                run.accuracy(be, &data.valid)?
            },
            test_accuracy: run.accuracy(be, &data.test)?,
        };
        opts.progress.evaluated(&point);
        meta.evaluations.push(point);
        if let Some(dir) = &opts.checkpoint_dir {
            save_checkpoint(be, dir, &run, &meta)?;
        }
    }
    Ok(Ok(TrainOutcome {
        evaluations: meta.evaluations,
        trainable_parameters: graph.trainable_parameters(),
        total_time: 0.0,
        attempts: attempt,
        losses: meta.losses,
        failure: None,
    }))
}

/// The cell as `BITS OPS` (pruned), to match checkpoints to runs.
fn spec_key(spec: &ModelSpec) -> String {
    match (spec.matrix(), spec.ops()) {
        (Some(m), Some(o)) => format!("{} {}", m.to_bit_string(), o.join(",")),
        _ => String::new(),
    }
}

fn ckpt_err(path: &str, message: &str) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_string(),
        message: message.to_string(),
    }
}

/// Writes `dir/step-NNNNNNNNNN.safetensors` (temporary name, then rename):
/// parameters under their names, RMSProp slots under `slot/ms/` and
/// `slot/mom/`, batch-norm statistics under `bn/<i>/mean|var`, and the run
/// state as JSON metadata.
fn save_checkpoint<B: Backend>(
    be: &mut B,
    dir: &Path,
    run: &Run<B>,
    meta: &CheckpointMeta,
) -> Result<(), TrainError> {
    use safetensors::tensor::{Dtype, TensorView};
    std::fs::create_dir_all(dir)
        .map_err(|e| ckpt_err(&dir.display().to_string(), &e.to_string()))?;
    let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, values: Vec<f32>| {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        named.push((name, shape, bytes));
    };
    for (i, info) in run.net.graph.params.iter().enumerate() {
        push(
            info.name.clone(),
            info.shape.clone(),
            be.download(&run.net.params[i])?,
        );
        push(
            format!("slot/ms/{}", info.name),
            info.shape.clone(),
            be.download(&run.ms[i])?,
        );
        push(
            format!("slot/mom/{}", info.name),
            info.shape.clone(),
            be.download(&run.mom[i])?,
        );
    }
    for (i, [m, v]) in run.net.running.iter().enumerate() {
        let c = run.net.graph.bn_channels[i];
        push(format!("bn/{i}/mean"), vec![c], be.download(m)?);
        push(format!("bn/{i}/var"), vec![c], be.download(v)?);
    }
    let path = dir.join(format!("step-{:010}.safetensors", meta.step));
    let err = |e: &dyn std::fmt::Display| ckpt_err(&path.display().to_string(), &e.to_string());
    let views: Vec<(String, TensorView<'_>)> = named
        .iter()
        .map(|(n, s, b)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<_, _>>()
        .map_err(|e| err(&e))?;
    let mut info = std::collections::HashMap::new();
    info.insert(
        "nasbench".to_string(),
        serde_json::to_string(meta).map_err(|e| err(&e))?,
    );
    let crc = tensors_crc(
        named
            .iter()
            .map(|(n, _, b)| (n.as_str(), b.as_slice()))
            .collect(),
    );
    info.insert(CHECKPOINT_CRC.to_string(), crc.to_string());
    let bytes = safetensors::serialize(views, Some(info)).map_err(|e| err(&e))?;
    crate::db::export::write_atomically(&path, |f| {
        std::io::Write::write_all(f, &bytes).map_err(|source| crate::db::export::ExportError::Io {
            path: path.display().to_string(),
            source,
        })
    })
    .map_err(|e| err(&e))?;
    Ok(())
}

/// The newest usable checkpoint in `dir` for this cell, config and seed.
/// Each file is checked whole (its metadata, and every tensor the run
/// restores: parameters, both RMSProp slots, batch-norm statistics, with
/// their names, dtype F32 and shapes); an unusable newest file (torn,
/// corrupt, incomplete) is passed over with a warning for the one before.
/// A checkpoint of another cell, config or seed is an error.
fn latest_checkpoint(
    dir: &Path,
    graph: &Graph,
    spec: &ModelSpec,
    cfg: &TrainConfig,
    seed: u64,
    progress: &dyn TrainProgress,
) -> Result<Option<Resume>, TrainError> {
    let Ok(files) = super::files_named(dir, "step-", ".safetensors") else {
        return Ok(None);
    };
    for path in files.iter().rev() {
        let shown = path.display().to_string();
        match read_checkpoint(path, graph, spec, cfg, seed) {
            Ok(resume) => return Ok(Some(resume)),
            Err(Unusable::Foreign) => {
                return Err(ckpt_err(
                    &shown,
                    "belongs to another cell, config or seed; use another --checkpoint-dir or remove it",
                ));
            }
            Err(Unusable::Bad(why)) => {
                progress.note(&format!(
                    "warning: checkpoint {shown} is unusable ({why}); trying the one before"
                ));
            }
        }
    }
    Ok(None)
}

/// The metadata key of a checkpoint's CRC32C over its tensors' bytes, in
/// name order.
const CHECKPOINT_CRC: &str = "nasbench_crc32c";

/// The CRC32C of the tensors' bytes in name order (what [`CHECKPOINT_CRC`]
/// holds).
fn tensors_crc(mut tensors: Vec<(&str, &[u8])>) -> u32 {
    tensors.sort_by(|a, b| a.0.cmp(b.0));
    tensors
        .iter()
        .fold(0, |c, (_, bytes)| crc32c::crc32c_append(c, bytes))
}

/// Why a checkpoint file cannot be resumed from.
enum Unusable {
    /// It is another run's.
    Foreign,
    /// It is damaged or incomplete.
    Bad(String),
}

/// Reads and checks one checkpoint (see [`latest_checkpoint`]).
fn read_checkpoint(
    path: &Path,
    graph: &Graph,
    spec: &ModelSpec,
    cfg: &TrainConfig,
    seed: u64,
) -> Result<Resume, Unusable> {
    use safetensors::tensor::Dtype;
    let bad = |e: &dyn std::fmt::Display| Unusable::Bad(e.to_string());
    let bytes = std::fs::read(path).map_err(|e| bad(&e))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(&e))?;
    let meta: CheckpointMeta = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("nasbench"))
        .ok_or_else(|| bad(&"no nasbench metadata"))
        .and_then(|j| serde_json::from_str(j).map_err(|e| bad(&e)))?;
    if meta.cell != spec_key(spec) || meta.config != *cfg || meta.seed != seed {
        return Err(Unusable::Foreign);
    }
    let stored_crc: u32 = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(CHECKPOINT_CRC))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad(&"no checksum"))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(&e))?;
    let views = st.tensors();
    let crc = tensors_crc(views.iter().map(|(n, v)| (n.as_str(), v.data())).collect());
    if crc != stored_crc {
        return Err(bad(&"its tensors fail their checksum"));
    }
    let mut expected: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for info in &graph.params {
        for prefix in ["", "slot/ms/", "slot/mom/"] {
            expected.insert(format!("{prefix}{}", info.name), info.shape.clone());
        }
    }
    for (i, &c) in graph.bn_channels.iter().enumerate() {
        expected.insert(format!("bn/{i}/mean"), vec![c]);
        expected.insert(format!("bn/{i}/var"), vec![c]);
    }
    let mut tensors = BTreeMap::new();
    for (name, view) in views {
        let Some(shape) = expected.get(&name) else {
            return Err(bad(&format!("unexpected tensor {name}")));
        };
        if view.dtype() != Dtype::F32 {
            return Err(bad(&format!("{name} is {:?}, expected F32", view.dtype())));
        }
        if view.shape() != shape.as_slice() {
            return Err(bad(&format!(
                "{name} has shape {:?}, expected {shape:?}",
                view.shape()
            )));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(bad(&format!("{name} holds NaN or infinite values")));
        }
        tensors.insert(name, values);
    }
    if let Some(missing) = expected.keys().find(|k| !tensors.contains_key(*k)) {
        return Err(bad(&format!("lacks {missing}")));
    }
    Ok((meta, tensors))
}

fn remove_checkpoints(dir: &Path) -> Result<(), TrainError> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "safetensors") {
                std::fs::remove_file(&p)
                    .map_err(|err| ckpt_err(&p.display().to_string(), &err.to_string()))?;
            }
        }
    }
    Ok(())
}

/// Times full training steps (forward, backward, RMSProp) of the dataset's
/// default network on the README's Inception-like cell, after one warm-up
/// step; returns a line with images/s and ms/step.
pub fn step_benchmark<B: Backend>(
    be: &mut B,
    batch: usize,
    steps: usize,
) -> Result<String, TrainError> {
    let m = crate::cell::parse::parse_matrix("0111010000000100000010000100000000100000010000000")
        .map_err(|e| TrainError::Config(e.to_string()))?;
    let ops = crate::cell::parse::parse_ops(
        "input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,maxpool3x3,output",
    )
    .map_err(|e| TrainError::Config(e.to_string()))?;
    let spec = ModelSpec::new(&m, ops).map_err(|e| TrainError::Config(e.to_string()))?;
    let cfg = TrainConfig::default();
    let graph = build_graph(&spec, &cfg)?;
    let params = init_params(&graph.params, 1);
    let mut net = Net::new(be, graph, batch, &params)?;
    let images: Vec<u8> = (0..batch * 3 * 32 * 32)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let labels: Vec<f32> = (0..batch).map(|i| (i % 10) as f32).collect();
    let crops: Vec<Crop> = (0..batch)
        .map(|i| Crop {
            dy: (i % 9) as u8,
            dx: (i * 5 % 9) as u8,
            flip: i % 2 == 0,
        })
        .collect();
    let mut ms: Vec<B::Buf> = Vec::new();
    let mut mom: Vec<B::Buf> = Vec::new();
    for p in &net.graph.params {
        ms.push(be.upload(&vec![1.0; p.len()])?);
        mom.push(be.zeros(p.len())?);
    }
    let labels_buf = be.upload(&labels)?;
    let mut stats = be.zeros(2)?;
    let logits = net.graph.logits;
    let k = net.graph.classes;
    let rms = crate::train::backend::RmsProp {
        lr: 0.1,
        decay: 0.9,
        momentum: 0.9,
        eps: 1.0,
        weight_decay: 1e-4,
    };
    let mut step = |be: &mut B, net: &mut Net<B>, stats: &mut B::Buf| -> BResult {
        be.load_images(
            &images,
            Some(&crops),
            &mut net.acts[0],
            batch,
            32,
            32,
            RGB_MEAN,
            RGB_STD,
        )?;
        net.forward(be, Mode::Train)?;
        let (acts, grads) = (&net.acts, &mut net.grads);
        be.softmax_xent(
            &acts[logits],
            &labels_buf,
            &mut grads[logits],
            stats,
            batch,
            k,
        )?;
        net.backward(be)?;
        for i in 0..net.params.len() {
            be.rmsprop(
                &mut net.params[i],
                &net.param_grads[i],
                &mut ms[i],
                &mut mom[i],
                rms,
            )?;
        }
        Ok(())
    };
    step(be, &mut net, &mut stats)?;
    let _ = be.download(&stats)?;
    let t = Instant::now();
    for _ in 0..steps {
        step(be, &mut net, &mut stats)?;
    }
    let _ = be.download(&stats)?;
    let secs = t.elapsed().as_secs_f64();
    Ok(format!(
        "train step, default network (README cell, {} parameters), {} backend on {}: batch {batch}, {steps} steps in {secs:.2} s: {:.1} images/s, {:.1} ms/step",
        net.graph.trainable_parameters(),
        be.name(),
        be.device_name(),
        (steps * batch) as f64 / secs,
        secs * 1e3 / steps as f64
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mutated checkpoints (bit flips, random bytes, truncation, junk) are
    /// refused or read back with the intact tensors; never a panic.
    #[test]
    fn mutated_checkpoints_are_refused_or_intact() {
        const CASES: usize = 2_000;
        let dir = tempfile::tempdir().unwrap();
        crate::train::data::write_synthetic(dir.path(), 32, 8, 3).unwrap();
        let data = crate::train::data::load(dir.path(), 8).unwrap();
        let mut cfg = TrainConfig::default();
        for (k, v) in [
            ("stem_filter_size", "8"),
            ("num_stacks", "1"),
            ("num_modules_per_stack", "1"),
            ("image_size", "8"),
            ("batch_size", "16"),
        ] {
            cfg.set(k, v).unwrap();
        }
        cfg.train_epochs = 1.0;
        let m = crate::cell::parse::parse_matrix("0110000100010000").unwrap();
        let ops = crate::cell::parse::parse_ops("input,conv3x3-bn-relu,maxpool3x3,output").unwrap();
        let spec = ModelSpec::new(&m, ops).unwrap();
        let ck = dir.path().join("ck");
        let opts = RunOptions {
            seed: 1,
            checkpoint_dir: Some(ck.clone()),
            record_losses: 0,
            report_every: 0,
            progress: &Quiet,
        };
        train(&mut crate::train::Cpu, &spec, &cfg, &data, &opts).unwrap();
        let graph = build_graph(&spec, &cfg).unwrap();
        let files = crate::train::files_named(&ck, "step-", ".safetensors").unwrap();
        let path = files.last().unwrap();
        let pristine = std::fs::read(path).unwrap();
        let Ok((_, want)) = read_checkpoint(path, &graph, &spec, &cfg, 1) else {
            panic!("the intact checkpoint reads");
        };
        let mut rng = crate::api::SplitMix64::new(9);
        let (mut refused, mut read) = (0usize, 0usize);
        for case in 0..CASES {
            let mut b = pristine.clone();
            let len = b.len() as u64;
            match rng.below(4) {
                0 => {
                    let at = rng.below(len) as usize;
                    b[at] ^= 1 << rng.below(8);
                }
                1 => {
                    for _ in 0..4 {
                        let at = rng.below(len) as usize;
                        b[at] = rng.below(256) as u8;
                    }
                }
                2 => b.truncate(rng.below(len) as usize),
                _ => b.extend((0..1 + rng.below(64)).map(|_| rng.below(256) as u8)),
            }
            std::fs::write(path, &b).unwrap();
            match read_checkpoint(path, &graph, &spec, &cfg, 1) {
                Ok((_, got)) => {
                    assert_eq!(
                        got, want,
                        "case {case}: a damaged checkpoint read back other tensors"
                    );
                    read += 1;
                }
                Err(_) => refused += 1,
            }
        }
        let _ = std::io::Write::write_all(
            &mut std::io::stderr().lock(),
            format!("checkpoint fuzz: {CASES} cases, {refused} refused, {read} read intact\n")
                .as_bytes(),
        );
        assert!(refused > CASES / 2);
    }
}
