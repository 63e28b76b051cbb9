//! GPU-against-CPU checks: every backend op on random shapes, and the first steps of a tiny training run, with the worst element reported.
//!
//! Used by `tests/gpu.rs` (skipped without a driver) and by the GPU check
//! script through `benches/gpu.rs`. A check passes when every element
//! satisfies `|gpu - cpu| <= atol + rtol |cpu|`; `atol` is scaled by the
//! reference's root mean square, since TF32 convolutions round their
//! inputs to 10 mantissa bits.

use super::backend::{
    BResult, Backend, BnParams, ChanShape, ConvShape, CopyShape, Crop, PoolShape, RmsProp,
};
use super::cpu::Cpu;
use super::cuda::Cuda;
use crate::rng::SplitMix64;

/// The outcome of one comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// What was compared.
    pub name: String,
    /// Elements compared.
    pub elements: usize,
    /// Largest `|gpu - cpu|`.
    pub worst_abs: f64,
    /// The reference value at the worst element.
    pub worst_ref: f64,
    /// Largest `|gpu - cpu| / (atol + rtol |cpu|)`: at most 1 passes.
    pub worst_ratio: f64,
}

impl Report {
    /// Whether every element was within tolerance.
    pub fn passed(&self) -> bool {
        self.worst_ratio <= 1.0
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:<44} {:>9} elements, worst |diff| {:.3e} at ref {:+.3e}, {:.2} of tolerance",
            if self.passed() { "ok  " } else { "FAIL" },
            self.name,
            self.elements,
            self.worst_abs,
            self.worst_ref,
            self.worst_ratio
        )
    }
}

/// Compares `gpu` with `cpu` (the reference).
pub fn compare(name: &str, gpu: &[f32], cpu: &[f32], atol_rms: f64, rtol: f64) -> Report {
    let rms = (cpu
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        / cpu.len().max(1) as f64)
        .sqrt();
    let atol = atol_rms * rms.max(1e-30);
    let mut r = Report {
        name: name.to_string(),
        elements: cpu.len(),
        worst_abs: 0.0,
        worst_ref: 0.0,
        worst_ratio: if gpu.len() == cpu.len() {
            0.0
        } else {
            f64::INFINITY
        },
    };
    for (&g, &c) in gpu.iter().zip(cpu) {
        let d = (f64::from(g) - f64::from(c)).abs();
        let ratio = if d.is_nan() {
            f64::INFINITY
        } else {
            d / (atol + rtol * f64::from(c).abs())
        };
        if ratio > r.worst_ratio || d > r.worst_abs {
            r.worst_abs = r.worst_abs.max(d);
        }
        if ratio > r.worst_ratio {
            r.worst_ratio = ratio;
            r.worst_ref = f64::from(c);
        }
    }
    r
}

fn random(len: usize, rng: &mut SplitMix64) -> Vec<f32> {
    (0..len)
        .map(|_| ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0)
        .collect()
}

/// Runs one op on both backends from the same host inputs and compares
/// the outputs that `f` returns.
struct Pair<'a> {
    gpu: &'a mut Cuda,
    reports: Vec<Report>,
}

/// TF32 tolerances for convolutions, f32 ones for everything else.
const CONV_TOL: (f64, f64) = (1e-2, 1e-2);
const F32_TOL: (f64, f64) = (1e-5, 1e-4);

impl Pair<'_> {
    fn check(&mut self, name: &str, tol: (f64, f64), gpu: &[f32], cpu: &[f32]) {
        self.reports.push(compare(name, gpu, cpu, tol.0, tol.1));
    }

    fn up(&mut self, v: &[f32]) -> BResult<<Cuda as Backend>::Buf> {
        self.gpu.upload(v)
    }

    fn down(&mut self, b: &<Cuda as Backend>::Buf) -> BResult<Vec<f32>> {
        self.gpu.download(b)
    }
}

/// Every op of the backend on random shapes (some not multiples of the
/// tiles), GPU against the CPU reference.
pub fn check_ops(gpu: &mut Cuda, seed: u64) -> BResult<Vec<Report>> {
    let mut rng = SplitMix64::new(seed);
    let mut p = Pair {
        gpu,
        reports: Vec::new(),
    };
    let mut cpu = Cpu;
    for s in [
        ConvShape {
            n: 3,
            cin: 37,
            cout: 70,
            h: 9,
            w: 11,
            k: 3,
        },
        ConvShape {
            n: 2,
            cin: 19,
            cout: 33,
            h: 7,
            w: 5,
            k: 1,
        },
        ConvShape {
            n: 2,
            cin: 8,
            cout: 12,
            h: 6,
            w: 6,
            k: 5,
        },
        ConvShape {
            n: 16,
            cin: 128,
            cout: 128,
            h: 16,
            w: 16,
            k: 3,
        },
        ConvShape {
            n: 8,
            cin: 256,
            cout: 64,
            h: 8,
            w: 8,
            k: 1,
        },
    ] {
        let tag = format!("n{} {}->{} {}x{} k{}", s.n, s.cin, s.cout, s.h, s.w, s.k);
        let x = random(s.x_len(), &mut rng);
        let w = random(s.w_len(), &mut rng);
        let dy = random(s.y_len(), &mut rng);
        let (gx, gw, gdy) = (p.up(&x)?, p.up(&w)?, p.up(&dy)?);
        let mut y = vec![0.0; s.y_len()];
        cpu.conv_fwd(&x, &w, &mut y, s)?;
        let mut gy = p.gpu.zeros(s.y_len())?;
        p.gpu.conv_fwd(&gx, &gw, &mut gy, s)?;
        let v = p.down(&gy)?;
        p.check(&format!("conv_fwd {tag}"), CONV_TOL, &v, &y);
        let base = random(s.x_len(), &mut rng);
        let mut dx = base.clone();
        cpu.conv_bwd_data(&dy, &w, &mut dx, s, true)?;
        let mut gdx = p.up(&base)?;
        p.gpu.conv_bwd_data(&gdy, &gw, &mut gdx, s, true)?;
        let v = p.down(&gdx)?;
        p.check(
            &format!("conv_bwd_data (accumulate) {tag}"),
            CONV_TOL,
            &v,
            &dx,
        );
        let mut dw = vec![0.0; s.w_len()];
        cpu.conv_bwd_filter(&x, &dy, &mut dw, s)?;
        let mut gdw = p.gpu.zeros(s.w_len())?;
        p.gpu.conv_bwd_filter(&gx, &gdy, &mut gdw, s)?;
        let v = p.down(&gdw)?;
        p.check(&format!("conv_bwd_filter {tag}"), CONV_TOL, &v, &dw);
    }

    for (s, relu) in [
        (
            ChanShape {
                n: 4,
                c: 13,
                hw: 50,
            },
            true,
        ),
        (
            ChanShape {
                n: 32,
                c: 64,
                hw: 64,
            },
            false,
        ),
    ] {
        let tag = format!("n{} c{} hw{} relu={relu}", s.n, s.c, s.hw);
        let bp = BnParams {
            momentum: 0.997,
            eps: 1e-5,
        };
        let x: Vec<f32> = random(s.len(), &mut rng)
            .iter()
            .map(|v| v * 3.0 + 0.5)
            .collect();
        let gamma: Vec<f32> = random(s.c, &mut rng)
            .iter()
            .map(|v| 1.0 + 0.5 * v)
            .collect();
        let beta = random(s.c, &mut rng);
        let rm = random(s.c, &mut rng);
        let rv: Vec<f32> = random(s.c, &mut rng)
            .iter()
            .map(|v| 1.0 + 0.5 * v.abs())
            .collect();
        let (mut y, mut m, mut is, mut rm_c, mut rv_c) = (
            vec![0.0; s.len()],
            vec![0.0; s.c],
            vec![0.0; s.c],
            rm.clone(),
            rv.clone(),
        );
        cpu.bn_train_fwd(
            &x, &gamma, &beta, &mut y, &mut m, &mut is, &mut rm_c, &mut rv_c, s, bp, relu,
        )?;
        let (gxb, ggam, gbeta) = (p.up(&x)?, p.up(&gamma)?, p.up(&beta)?);
        let (mut gyb, mut gm, mut gis, mut grm, mut grv) = (
            p.gpu.zeros(s.len())?,
            p.gpu.zeros(s.c)?,
            p.gpu.zeros(s.c)?,
            p.up(&rm)?,
            p.up(&rv)?,
        );
        p.gpu.bn_train_fwd(
            &gxb, &ggam, &gbeta, &mut gyb, &mut gm, &mut gis, &mut grm, &mut grv, s, bp, relu,
        )?;
        let v = p.down(&gyb)?;
        p.check(&format!("bn_train_fwd {tag}"), F32_TOL, &v, &y);
        let v = p.down(&grm)?;
        p.check(&format!("bn running mean {tag}"), F32_TOL, &v, &rm_c);
        let v = p.down(&grv)?;
        p.check(&format!("bn running var {tag}"), F32_TOL, &v, &rv_c);
        let mut ye = vec![0.0; s.len()];
        cpu.bn_eval_fwd(&x, &gamma, &beta, &rm_c, &rv_c, &mut ye, s, bp, relu)?;
        let mut gye = p.gpu.zeros(s.len())?;
        p.gpu
            .bn_eval_fwd(&gxb, &ggam, &gbeta, &grm, &grv, &mut gye, s, bp, relu)?;
        let v = p.down(&gye)?;
        p.check(&format!("bn_eval_fwd {tag}"), F32_TOL, &v, &ye);
        let dy = random(s.len(), &mut rng);
        let (mut dx, mut dg, mut db) = (vec![0.0; s.len()], vec![0.0; s.c], vec![0.0; s.c]);
        cpu.bn_bwd(
            &x, &y, &dy, &gamma, &m, &is, &mut dx, &mut dg, &mut db, s, relu,
        )?;
        let gdy = p.up(&dy)?;
        let (mut gdx, mut gdg, mut gdb) =
            (p.gpu.zeros(s.len())?, p.gpu.zeros(s.c)?, p.gpu.zeros(s.c)?);
        p.gpu.bn_bwd(
            &gxb, &gyb, &gdy, &ggam, &gm, &gis, &mut gdx, &mut gdg, &mut gdb, s, relu,
        )?;
        for (name, g, c) in [
            ("dx", &gdx, &dx),
            ("dgamma", &gdg, &dg),
            ("dbeta", &gdb, &db),
        ] {
            let v = p.down(g)?;
            p.check(&format!("bn_bwd {name} {tag}"), (1e-4, 1e-3), &v, c);
        }
    }

    for s in [
        PoolShape {
            n: 3,
            c: 5,
            h: 9,
            w: 7,
            k: 3,
            stride: 1,
        },
        PoolShape {
            n: 3,
            c: 5,
            h: 8,
            w: 8,
            k: 2,
            stride: 2,
        },
        PoolShape {
            n: 2,
            c: 3,
            h: 7,
            w: 5,
            k: 2,
            stride: 2,
        },
    ] {
        let tag = format!("{}x{}/{} on {}x{}", s.k, s.k, s.stride, s.h, s.w);
        let x = random(s.x_len(), &mut rng);
        let mut y = vec![0.0; s.y_len()];
        cpu.maxpool_fwd(&x, &mut y, s)?;
        let gx = p.up(&x)?;
        let mut gy = p.gpu.zeros(s.y_len())?;
        p.gpu.maxpool_fwd(&gx, &mut gy, s)?;
        let v = p.down(&gy)?;
        p.check(&format!("maxpool_fwd {tag}"), (0.0, 0.0), &v, &y);
        let dy = random(s.y_len(), &mut rng);
        let base = random(s.x_len(), &mut rng);
        let mut dx = base.clone();
        cpu.maxpool_bwd(&x, &y, &dy, &mut dx, s, true)?;
        let gdy = p.up(&dy)?;
        let mut gdx = p.up(&base)?;
        p.gpu.maxpool_bwd(&gx, &gy, &gdy, &mut gdx, s, true)?;
        let v = p.down(&gdx)?;
        p.check(&format!("maxpool_bwd {tag}"), F32_TOL, &v, &dx);
    }

    let cs = CopyShape {
        n: 3,
        hw: 10,
        src_c: 7,
        src_off: 2,
        dst_c: 9,
        dst_off: 4,
        count: 5,
    };
    let src = random(3 * 7 * 10, &mut rng);
    let dst = random(3 * 9 * 10, &mut rng);
    for accumulate in [false, true] {
        let mut d = dst.clone();
        cpu.copy_channels(&src, &mut d, cs, accumulate)?;
        let gs = p.up(&src)?;
        let mut gd = p.up(&dst)?;
        p.gpu.copy_channels(&gs, &mut gd, cs, accumulate)?;
        let v = p.down(&gd)?;
        p.check(
            &format!("copy_channels accumulate={accumulate}"),
            (0.0, 0.0),
            &v,
            &d,
        );
    }

    let s = ChanShape { n: 6, c: 9, hw: 49 };
    let x = random(s.len(), &mut rng);
    let mut y = vec![0.0; s.n * s.c];
    cpu.avgpool_fwd(&x, &mut y, s)?;
    let gx = p.up(&x)?;
    let mut gy = p.gpu.zeros(s.n * s.c)?;
    p.gpu.avgpool_fwd(&gx, &mut gy, s)?;
    let v = p.down(&gy)?;
    p.check("avgpool_fwd", F32_TOL, &v, &y);
    let dy = random(s.n * s.c, &mut rng);
    let base = random(s.len(), &mut rng);
    let mut dx = base.clone();
    cpu.avgpool_bwd(&dy, &mut dx, s, true)?;
    let gdy = p.up(&dy)?;
    let mut gdx = p.up(&base)?;
    p.gpu.avgpool_bwd(&gdy, &mut gdx, s, true)?;
    let v = p.down(&gdx)?;
    p.check("avgpool_bwd", F32_TOL, &v, &dx);

    let (n, inp, out) = (37, 512, 10);
    let x = random(n * inp, &mut rng);
    let w = random(inp * out, &mut rng);
    let b = random(out, &mut rng);
    let mut y = vec![0.0; n * out];
    cpu.dense_fwd(&x, &w, &b, &mut y, n, inp, out)?;
    let (gx, gw, gb) = (p.up(&x)?, p.up(&w)?, p.up(&b)?);
    let mut gy = p.gpu.zeros(n * out)?;
    p.gpu.dense_fwd(&gx, &gw, &gb, &mut gy, n, inp, out)?;
    let v = p.down(&gy)?;
    p.check("dense_fwd", F32_TOL, &v, &y);
    let dy = random(n * out, &mut rng);
    let (mut dx, mut dw, mut db) = (vec![0.0; n * inp], vec![0.0; inp * out], vec![0.0; out]);
    cpu.dense_bwd(&x, &w, &dy, &mut dx, &mut dw, &mut db, n, inp, out)?;
    let gdy = p.up(&dy)?;
    let (mut gdx, mut gdw, mut gdb) = (
        p.gpu.zeros(n * inp)?,
        p.gpu.zeros(inp * out)?,
        p.gpu.zeros(out)?,
    );
    p.gpu
        .dense_bwd(&gx, &gw, &gdy, &mut gdx, &mut gdw, &mut gdb, n, inp, out)?;
    for (name, g, c) in [("dx", &gdx, &dx), ("dw", &gdw, &dw), ("db", &gdb, &db)] {
        let v = p.down(g)?;
        p.check(&format!("dense_bwd {name}"), F32_TOL, &v, c);
    }

    let (n, k) = (300, 10);
    let logits: Vec<f32> = random(n * k, &mut rng).iter().map(|v| v * 4.0).collect();
    let labels: Vec<f32> = (0..n).map(|i| ((i * 7) % k) as f32).collect();
    let mut d = vec![0.0; n * k];
    let mut st = vec![0.0; 2];
    cpu.softmax_xent(&logits, &labels, &mut d, &mut st, n, k)?;
    cpu.count_correct(&logits, &labels, &mut st, n, k)?;
    let (gl, glab) = (p.up(&logits)?, p.up(&labels)?);
    let mut gd = p.gpu.zeros(n * k)?;
    let mut gst = p.gpu.zeros(2)?;
    p.gpu.softmax_xent(&gl, &glab, &mut gd, &mut gst, n, k)?;
    p.gpu.count_correct(&gl, &glab, &mut gst, n, k)?;
    let v = p.down(&gd)?;
    p.check("softmax_xent dlogits", F32_TOL, &v, &d);
    let v = p.down(&gst)?;
    p.check("softmax_xent loss sum, correct x2", (1e-6, 1e-5), &v, &st);

    let w = random(100_003, &mut rng);
    let mut acc = vec![0.25f32];
    cpu.add_half_sum_squares(&w, &mut acc)?;
    let gw = p.up(&w)?;
    let mut gacc = p.up(&[0.25])?;
    p.gpu.add_half_sum_squares(&gw, &mut gacc)?;
    let v = p.down(&gacc)?;
    p.check("half_sum_squares", (1e-6, 1e-5), &v, &acc);

    let rp = RmsProp {
        lr: 0.17,
        decay: 0.9,
        momentum: 0.9,
        eps: 1.0,
        weight_decay: 1e-4,
    };
    let w0 = random(5000, &mut rng);
    let g = random(5000, &mut rng);
    let ms0: Vec<f32> = random(5000, &mut rng)
        .iter()
        .map(|v| 1.0 + v.abs())
        .collect();
    let mom0 = random(5000, &mut rng);
    let (mut w, mut ms, mut mom) = (w0.clone(), ms0.clone(), mom0.clone());
    cpu.rmsprop(&mut w, &g, &mut ms, &mut mom, rp)?;
    let (mut gw, gg, mut gms, mut gmom) = (p.up(&w0)?, p.up(&g)?, p.up(&ms0)?, p.up(&mom0)?);
    p.gpu.rmsprop(&mut gw, &gg, &mut gms, &mut gmom, rp)?;
    for (name, gb, c) in [("w", &gw, &w), ("ms", &gms, &ms), ("mom", &gmom, &mom)] {
        let v = p.down(gb)?;
        p.check(&format!("rmsprop {name}"), F32_TOL, &v, c);
    }

    let (n, h, w) = (7, 32, 32);
    let images: Vec<u8> = (0..n * 3 * h * w).map(|_| rng.below(256) as u8).collect();
    let crops: Vec<Crop> = (0..n)
        .map(|_| Crop {
            dy: rng.below(9) as u8,
            dx: rng.below(9) as u8,
            flip: rng.below(2) == 1,
        })
        .collect();
    for c in [None, Some(crops.as_slice())] {
        let mut out = vec![0.0; n * 3 * h * w];
        cpu.load_images(
            &images,
            c,
            &mut out,
            n,
            h,
            w,
            super::data::RGB_MEAN,
            super::data::RGB_STD,
        )?;
        let mut gout = p.gpu.zeros(n * 3 * h * w)?;
        p.gpu.load_images(
            &images,
            c,
            &mut gout,
            n,
            h,
            w,
            super::data::RGB_MEAN,
            super::data::RGB_STD,
        )?;
        let v = p.down(&gout)?;
        p.check(
            &format!("load_images crops={}", c.is_some()),
            F32_TOL,
            &v,
            &out,
        );
    }
    Ok(p.reports)
}

/// A tiny training run on both backends: the CPU reference's losses and
/// the GPU's with exact (f32) and TF32 convolutions.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingCheck {
    /// GPU with f32 convolutions against the CPU: must agree closely.
    pub exact: Report,
    /// GPU with TF32 convolutions (the training default) against the CPU:
    /// drifts as 10-bit mantissas compound over the steps.
    pub tf32: Report,
    /// The CPU's losses.
    pub cpu: Vec<f32>,
    /// The GPU's, f32 convolutions.
    pub gpu_exact: Vec<f32>,
    /// The GPU's, TF32 convolutions.
    pub gpu_tf32: Vec<f32>,
}

impl std::fmt::Display for TrainingCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.exact)?;
        writeln!(f, "{}", self.tf32)?;
        writeln!(f, "  step  cpu        gpu f32    gpu tf32")?;
        for (i, c) in self.cpu.iter().enumerate() {
            writeln!(
                f,
                "  {:>4}  {c:<9.6}  {:<9.6}  {:<9.6}",
                i + 1,
                self.gpu_exact.get(i).copied().unwrap_or(f32::NAN),
                self.gpu_tf32.get(i).copied().unwrap_or(f32::NAN)
            )?;
        }
        Ok(())
    }
}

/// A tiny network trained on the synthetic set with the same seed and data
/// order on both backends: the losses of the first `steps` steps, GPU
/// (f32 and TF32 convolutions) against CPU.
pub fn check_training(
    gpu: &mut Cuda,
    steps: usize,
) -> Result<TrainingCheck, super::trainer::TrainError> {
    use super::trainer::{Quiet, RunOptions, TrainConfig, TrainError, train};
    let dir = tempfile::tempdir().map_err(|e| TrainError::Data(e.to_string()))?;
    super::data::write_synthetic(dir.path(), 256, 16, 3)
        .map_err(|e| TrainError::Data(e.to_string()))?;
    let data = super::data::load(dir.path(), 16).map_err(|e| TrainError::Data(e.to_string()))?;
    let mut cfg = TrainConfig::default();
    for (k, v) in [
        ("stem_filter_size", "16"),
        ("num_stacks", "2"),
        ("num_modules_per_stack", "1"),
        ("image_size", "16"),
        ("batch_size", "32"),
    ] {
        cfg.set(k, v)?;
    }
    cfg.train_epochs = (steps as f64 * 32.0 / 1024.0).ceil() + 1.0;
    let spec = crate::cell::spec::ModelSpec::new(
        &[
            vec![0, 1, 1, 0, 1],
            vec![0, 0, 0, 1, 0],
            vec![0, 0, 0, 1, 0],
            vec![0, 0, 0, 0, 1],
            vec![0, 0, 0, 0, 0],
        ],
        [
            "input",
            "conv3x3-bn-relu",
            "maxpool3x3",
            "conv1x1-bn-relu",
            "output",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .map_err(|e| TrainError::Data(e.to_string()))?;
    let opts = RunOptions {
        seed: 11,
        checkpoint_dir: None,
        record_losses: steps,
        report_every: 0,
        progress: &Quiet,
    };
    let c = train(&mut Cpu, &spec, &cfg, &data, &opts)?;
    gpu.set_exact_convs(true);
    let exact = train(gpu, &spec, &cfg, &data, &opts);
    gpu.set_exact_convs(false);
    let exact = exact?;
    let tf32 = train(gpu, &spec, &cfg, &data, &opts)?;
    Ok(TrainingCheck {
        exact: compare(
            &format!("training loss, {steps} steps, f32 convs"),
            &exact.losses,
            &c.losses,
            5e-3,
            1e-2,
        ),
        tf32: compare(
            &format!("training loss, {steps} steps, TF32 convs"),
            &tf32.losses,
            &c.losses,
            5e-2,
            0.25,
        ),
        cpu: c.losses,
        gpu_exact: exact.losses,
        gpu_tf32: tf32.losses,
    })
}
