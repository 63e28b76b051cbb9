//! The training configuration (`config.py`): keys, defaults, allowed ranges, and the errors of training.

use serde::{Deserialize, Serialize};

use crate::cell::network::{NetworkConfig, NetworkError};
use crate::train::backend::BackendError;

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
