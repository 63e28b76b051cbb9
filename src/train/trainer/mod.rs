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
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::backend::{BResult, Backend, Crop, RmsProp};
use super::data::{Cifar, RGB_MEAN, RGB_STD, Split};
use super::net::{Graph, Mode, Net, init_params};
use crate::cell::spec::ModelSpec;
use crate::rng::SplitMix64;

mod checkpoint;
mod config;

use checkpoint::*;
pub use config::{LrDecay, TrainConfig, TrainError};

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
        let mut rng = crate::rng::SplitMix64::new(9);
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
