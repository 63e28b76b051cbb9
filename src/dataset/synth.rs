//! Synthetic release files: every cell of the generated search space with deterministic, plausible (but made-up) metrics, in the exact release format, marked synthetic.
//!
//! Used by tests and the ingest benchmark. The values are not NAS-Bench-101
//! results: each run's first point has the checkpoint path
//! [`crate::dataset::SYNTHETIC_CHECKPOINT_PREFIX`], so that ingest gives the
//! run's rows the source `synthetic` (and stores no path).

use std::io::{BufWriter, Write};
use std::path::Path;

use rayon::prelude::*;

use crate::cell::generate::Cell;
use crate::dataset::SYNTHETIC_CHECKPOINT_PREFIX;
use crate::dataset::record::{EvaluationData, ModelMetrics, encode};
use crate::dataset::tfrecord::write_record;
use crate::output::{ExportError, write_atomically};

/// The budgets of `nasbench_full.tfrecord`.
pub const FULL_BUDGETS: [i64; 4] = [4, 12, 36, 108];
/// The budget of `nasbench_only108.tfrecord`.
pub const ONLY108_BUDGETS: [i64; 1] = [108];

/// What to synthesize.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// Budgets (epochs) per cell, in file order.
    pub budgets: Vec<i64>,
    /// Repeats per (cell, budget).
    pub repeats: u32,
    /// Seed of the made-up metrics.
    pub seed: u64,
}

/// Counts of what was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthSummary {
    /// Records written.
    pub records: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// SplitMix64: a tiny deterministic generator, enough for made-up metrics.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// An accuracy as the real evaluation produces it: a multiple of 1/9984
/// (39 batches of 256 images), stored as float32.
fn accuracy(a: f64) -> f64 {
    let k = (a.clamp(0.0, 1.0) * 9984.0).round();
    f64::from((k / 9984.0) as f32)
}

/// The made-up metrics of one run.
pub fn synthetic_metrics(cell: &Cell, epochs: i64, repeat: u32, seed: u64) -> ModelMetrics {
    let h = cell.hash.as_u128();
    let mut cell_rng = Rng(seed ^ (h as u64) ^ ((h >> 64) as u64));
    // A cell's quality is fixed; repeats and budgets add noise around it.
    let quality = cell_rng.unit();
    let mut rng = Rng(cell_rng.next() ^ (epochs as u64) << 32 ^ u64::from(repeat));
    let progress = 1.0 - (-(epochs as f64) / 20.0).exp();
    let params_m = cell.trainable_parameters as f64 / 1e6;
    let per_epoch = 2.0 + 3.5 * params_m;
    // The release files carry no checkpoint paths (their records average
    // ~390 bytes); only the step-0 point carries the short synthetic mark.
    let point = |frac: f64, rng: &mut Rng| {
        let e = epochs as f64 * frac;
        let p = 1.0 - (-(e.max(0.5)) / 20.0).exp();
        let val = 0.1 + (0.72 + 0.22 * quality) * p * (1.0 + 0.01 * (rng.unit() - 0.5));
        EvaluationData {
            current_epoch: Some(e),
            training_time: Some(f64::from(
                (per_epoch * e * (0.95 + 0.1 * rng.unit())) as f32,
            )),
            train_accuracy: Some(accuracy(val + 0.05 * p + 0.02 * rng.unit())),
            validation_accuracy: Some(accuracy(val)),
            test_accuracy: Some(accuracy(val - 0.006 + 0.004 * (rng.unit() - 0.5))),
            checkpoint_path: (frac == 0.0).then(|| SYNTHETIC_CHECKPOINT_PREFIX.to_string()),
        }
    };
    let evaluation_data = vec![
        point(0.0, &mut rng),
        point(0.5, &mut rng),
        point(1.0, &mut rng),
    ];
    let total_time = evaluation_data[2]
        .training_time
        .map(|t| t + 20.0 * progress);
    ModelMetrics {
        evaluation_data,
        trainable_parameters: i32::try_from(cell.trainable_parameters).ok(),
        total_time,
    }
}

/// The framed records of one cell, appended to `out`.
fn cell_records(cell: &Cell, opts: &SynthOptions, out: &mut Vec<u8>) -> std::io::Result<u64> {
    let hash = cell.hash.to_hex();
    let adjacency = cell.graph.adjacency_bits();
    let ops = cell.graph.ops().join(",");
    let mut n = 0;
    for &epochs in &opts.budgets {
        for repeat in 1..=opts.repeats {
            let m = synthetic_metrics(cell, epochs, repeat, opts.seed);
            let data =
                encode(&hash, epochs, &adjacency, &ops, &m).map_err(std::io::Error::other)?;
            write_record(out, &data)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Writes one record per (cell, budget, repeat), cell by cell, to `path`
/// (atomically). The output depends only on `cells` and `opts`.
pub fn write_synthetic(
    path: &Path,
    cells: &[Cell],
    opts: &SynthOptions,
) -> Result<SynthSummary, ExportError> {
    let io_err = |source| ExportError::Io {
        path: path.display().to_string(),
        source,
    };
    write_atomically(path, |file| {
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let mut summary = SynthSummary {
            records: 0,
            bytes: 0,
        };
        for chunk in cells.chunks(16_384) {
            let parts: Vec<(Vec<u8>, u64)> = chunk
                .par_iter()
                .map(|c| {
                    let mut buf = Vec::with_capacity(512 * opts.budgets.len() * 3);
                    let n = cell_records(c, opts, &mut buf)?;
                    Ok((buf, n))
                })
                .collect::<std::io::Result<_>>()
                .map_err(io_err)?;
            for (buf, n) in parts {
                w.write_all(&buf).map_err(io_err)?;
                summary.records += n;
                summary.bytes += buf.len() as u64;
            }
        }
        w.flush().map_err(io_err)?;
        Ok(summary)
    })
}
