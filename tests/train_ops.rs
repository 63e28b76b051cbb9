//! The CPU backend's ops: finite-difference gradient checks of every backward, hand-computed batch norm and RMSProp, and a whole small network.

use nasbench::api::SplitMix64;
use nasbench::cell::graph::Matrix;
use nasbench::cell::network::{NetworkConfig, network_parameters};
use nasbench::cell::ops::Op;
use nasbench::train::Cpu;
use nasbench::train::backend::{
    Backend, BnParams, ChanShape, ConvShape, CopyShape, Crop, PoolShape, RmsProp,
};
use nasbench::train::net::{Graph, Mode, Net, init_params};

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..len)
        .map(|_| ((r.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0)
        .collect()
}

/// `sum(r * y)` in f64.
fn dot(r: &[f32], y: &[f32]) -> f64 {
    r.iter()
        .zip(y)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum()
}

/// Central difference of `loss` at `x[i]` against `analytic`, for a sample
/// of indices; returns the worst relative error.
fn fd_check(
    what: &str,
    x: &mut [f32],
    analytic: &[f32],
    h: f32,
    mut loss: impl FnMut(&[f32]) -> f64,
) {
    assert_eq!(x.len(), analytic.len(), "{what}");
    let step = (x.len() / 40).max(1);
    let mut worst = 0.0f64;
    for i in (0..x.len()).step_by(step) {
        let orig = x[i];
        x[i] = orig + h;
        let up = loss(x);
        x[i] = orig - h;
        let down = loss(x);
        x[i] = orig;
        let fd = (up - down) / (2.0 * f64::from(h));
        let a = f64::from(analytic[i]);
        let err = (fd - a).abs() / (1e-2 + fd.abs().max(a.abs()));
        worst = worst.max(err);
        assert!(
            err < 2e-2,
            "{what}[{i}]: finite difference {fd}, backward {a}"
        );
    }
    eprintln!("{what}: worst relative error {worst:.2e}");
}

#[test]
fn conv_gradients_match_finite_differences() {
    let mut cpu = Cpu;
    for k in [1, 3, 5] {
        let s = ConvShape {
            n: 2,
            cin: 3,
            cout: 4,
            h: 5,
            w: 6,
            k,
        };
        let mut x = random(s.x_len(), 1);
        let mut w = random(s.w_len(), 2);
        let r = random(s.y_len(), 3);
        let mut dx = vec![0.0; s.x_len()];
        let mut dw = vec![0.0; s.w_len()];
        cpu.conv_bwd_data(&r, &w, &mut dx, s, false).unwrap();
        cpu.conv_bwd_filter(&x, &r, &mut dw, s).unwrap();
        let wc = w.clone();
        fd_check(&format!("conv{k} dx"), &mut x, &dx, 1e-2, |xv| {
            let mut y = vec![0.0; s.y_len()];
            Cpu.conv_fwd(&xv.to_vec(), &wc, &mut y, s).unwrap();
            dot(&r, &y)
        });
        let xc = x.clone();
        fd_check(&format!("conv{k} dw"), &mut w, &dw, 1e-2, |wv| {
            let mut y = vec![0.0; s.y_len()];
            Cpu.conv_fwd(&xc, &wv.to_vec(), &mut y, s).unwrap();
            dot(&r, &y)
        });
        // Accumulate adds to what is there.
        let mut acc = vec![1.0; s.x_len()];
        cpu.conv_bwd_data(&r, &w, &mut acc, s, true).unwrap();
        for (a, d) in acc.iter().zip(&dx) {
            assert!((a - 1.0 - d).abs() < 1e-5);
        }
    }
}

/// A direct (non-GEMM) convolution as an independent reference.
#[test]
fn conv_forward_equals_direct_sum() {
    let s = ConvShape {
        n: 2,
        cin: 3,
        cout: 2,
        h: 4,
        w: 5,
        k: 3,
    };
    let x = random(s.x_len(), 4);
    let w = random(s.w_len(), 5);
    let mut y = vec![0.0; s.y_len()];
    Cpu.conv_fwd(&x, &w, &mut y, s).unwrap();
    for i in 0..s.n {
        for o in 0..s.cout {
            for yy in 0..s.h {
                for xx in 0..s.w {
                    let mut acc = 0.0f64;
                    for c in 0..s.cin {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (sy, sx) =
                                    (yy as isize + ky as isize - 1, xx as isize + kx as isize - 1);
                                if sy < 0 || sx < 0 || sy >= s.h as isize || sx >= s.w as isize {
                                    continue;
                                }
                                let xv =
                                    x[((i * s.cin + c) * s.h + sy as usize) * s.w + sx as usize];
                                let wv = w[((o * s.cin + c) * 3 + ky) * 3 + kx];
                                acc += f64::from(xv) * f64::from(wv);
                            }
                        }
                    }
                    let got = y[((i * s.cout + o) * s.h + yy) * s.w + xx];
                    assert!((f64::from(got) - acc).abs() < 1e-5, "{got} vs {acc}");
                }
            }
        }
    }
}

#[test]
fn batch_norm_gradients_match_finite_differences() {
    for relu in [false, true] {
        let s = ChanShape { n: 3, c: 2, hw: 7 };
        let p = BnParams {
            momentum: 0.997,
            eps: 1e-5,
        };
        let mut x = random(s.len(), 6);
        let mut gamma = vec![1.5, 0.7];
        let mut beta = vec![0.1, -0.2];
        let r = random(s.len(), 7);
        let fwd = |x: &[f32], g: &[f32], b: &[f32]| {
            let (mut y, mut m, mut is) = (vec![0.0; s.len()], vec![0.0; 2], vec![0.0; 2]);
            let (mut rm, mut rv) = (vec![0.0; 2], vec![1.0; 2]);
            Cpu.bn_train_fwd(
                &x.to_vec(),
                &g.to_vec(),
                &b.to_vec(),
                &mut y,
                &mut m,
                &mut is,
                &mut rm,
                &mut rv,
                s,
                p,
                relu,
            )
            .unwrap();
            (y, m, is)
        };
        let (y, m, is) = fwd(&x, &gamma, &beta);
        let (mut dx, mut dg, mut db) = (vec![0.0; s.len()], vec![0.0; 2], vec![0.0; 2]);
        Cpu.bn_bwd(
            &x, &y, &r, &gamma, &m, &is, &mut dx, &mut dg, &mut db, s, relu,
        )
        .unwrap();
        let (g0, b0) = (gamma.clone(), beta.clone());
        fd_check(&format!("bn dx relu={relu}"), &mut x, &dx, 1e-3, |xv| {
            dot(&r, &fwd(xv, &g0, &b0).0)
        });
        let x0 = x.clone();
        fd_check(
            &format!("bn dgamma relu={relu}"),
            &mut gamma,
            &dg,
            1e-3,
            |gv| dot(&r, &fwd(&x0, gv, &b0).0),
        );
        let g1 = gamma.clone();
        fd_check(
            &format!("bn dbeta relu={relu}"),
            &mut beta,
            &db,
            1e-3,
            |bv| dot(&r, &fwd(&x0, &g1, bv).0),
        );
    }
}

/// SPEC.md section 4: the batch's biased variance normalizes, the running
/// variance gets the unbiased one, `moving = 0.997 moving + 0.003 batch`.
#[test]
fn batch_norm_running_statistics_by_hand() {
    let s = ChanShape { n: 2, c: 1, hw: 2 };
    let x = vec![1.0, 2.0, 3.0, 6.0]; // mean 3, biased var 3.5, unbiased 14/3
    let (mut y, mut m, mut is) = (vec![0.0; 4], vec![0.0], vec![0.0]);
    let (mut rm, mut rv) = (vec![0.0], vec![1.0]);
    let p = BnParams {
        momentum: 0.997,
        eps: 1e-5,
    };
    Cpu.bn_train_fwd(
        &x,
        &vec![2.0],
        &vec![0.5],
        &mut y,
        &mut m,
        &mut is,
        &mut rm,
        &mut rv,
        s,
        p,
        false,
    )
    .unwrap();
    assert_eq!(m[0], 3.0);
    let inv = 1.0 / (3.5f64 + 1e-5).sqrt();
    assert!((f64::from(is[0]) - inv).abs() < 1e-6);
    assert!((f64::from(y[0]) - (2.0 * (1.0 - 3.0) * inv + 0.5)).abs() < 1e-5);
    assert!((f64::from(rm[0]) - 0.003 * 3.0).abs() < 1e-6);
    assert!((f64::from(rv[0]) - (0.997 + 0.003 * 14.0 / 3.0)).abs() < 1e-6);
    // Evaluation uses the running values.
    let mut ye = vec![0.0; 4];
    Cpu.bn_eval_fwd(&x, &vec![2.0], &vec![0.5], &rm, &rv, &mut ye, s, p, true)
        .unwrap();
    let want = 2.0 * (1.0 - f64::from(rm[0])) / (f64::from(rv[0]) + 1e-5).sqrt() + 0.5;
    assert!((f64::from(ye[0]) - want).abs() < 1e-5);
}

#[test]
fn pooling_copy_dense_and_loss_gradients_match_finite_differences() {
    let mut cpu = Cpu;
    for (k, stride, h, w) in [(3, 1, 5, 6), (2, 2, 6, 4), (2, 2, 5, 5)] {
        let s = PoolShape {
            n: 2,
            c: 2,
            h,
            w,
            k,
            stride,
        };
        let mut x = random(s.x_len(), 8);
        let r = random(s.y_len(), 9);
        let mut y = vec![0.0; s.y_len()];
        cpu.maxpool_fwd(&x, &mut y, s).unwrap();
        let mut dx = vec![0.0; s.x_len()];
        cpu.maxpool_bwd(&x, &y, &r, &mut dx, s, false).unwrap();
        fd_check(
            &format!("maxpool{k}/{stride} dx"),
            &mut x,
            &dx,
            1e-3,
            |xv| {
                let mut y = vec![0.0; s.y_len()];
                Cpu.maxpool_fwd(&xv.to_vec(), &mut y, s).unwrap();
                dot(&r, &y)
            },
        );
    }
    // A 2x2/2 pool of a 4x4 plane has a 2x2 output; 3x3/1 keeps the size.
    assert_eq!(
        PoolShape {
            n: 1,
            c: 1,
            h: 4,
            w: 4,
            k: 2,
            stride: 2
        }
        .out_hw(),
        (2, 2)
    );
    assert_eq!(
        PoolShape {
            n: 1,
            c: 1,
            h: 4,
            w: 4,
            k: 3,
            stride: 1
        }
        .pad(),
        (1, 1)
    );

    let cs = CopyShape {
        n: 2,
        hw: 3,
        src_c: 4,
        src_off: 1,
        dst_c: 5,
        dst_off: 2,
        count: 3,
    };
    let src = random(2 * 4 * 3, 10);
    let mut dst = vec![7.0; 2 * 5 * 3];
    cpu.copy_channels(&src, &mut dst, cs, true).unwrap();
    assert_eq!(dst[2 * 3], 7.0 + src[3]); // image 0, dst channel 2 = src channel 1
    assert_eq!(dst[5 * 3 + 4 * 3 + 2], 7.0 + src[4 * 3 + 3 * 3 + 2]); // image 1, channel 4 <- 3
    assert_eq!(dst[0], 7.0);

    let (n, inp, out) = (3, 4, 5);
    let mut x = random(n * inp, 11);
    let mut w = random(inp * out, 12);
    let mut b = random(out, 13);
    let r = random(n * out, 14);
    let (mut dx, mut dw, mut db) = (vec![0.0; n * inp], vec![0.0; inp * out], vec![0.0; out]);
    cpu.dense_bwd(&x, &w, &r, &mut dx, &mut dw, &mut db, n, inp, out)
        .unwrap();
    let dense = |x: &[f32], w: &[f32], b: &[f32]| {
        let mut y = vec![0.0; n * out];
        Cpu.dense_fwd(&x.to_vec(), &w.to_vec(), &b.to_vec(), &mut y, n, inp, out)
            .unwrap();
        dot(&r, &y)
    };
    let (w0, b0) = (w.clone(), b.clone());
    fd_check("dense dx", &mut x, &dx, 1e-2, |v| dense(v, &w0, &b0));
    let x0 = x.clone();
    fd_check("dense dw", &mut w, &dw, 1e-2, |v| dense(&x0, v, &b0));
    let w1 = w.clone();
    fd_check("dense db", &mut b, &db, 1e-2, |v| dense(&x0, &w1, v));

    let s = ChanShape { n: 2, c: 3, hw: 4 };
    let mut x = random(s.len(), 15);
    let r = random(6, 16);
    let mut dx = vec![0.0; s.len()];
    cpu.avgpool_bwd(&r, &mut dx, s, false).unwrap();
    fd_check("avgpool dx", &mut x, &dx, 1e-2, |v| {
        let mut y = vec![0.0; 6];
        Cpu.avgpool_fwd(&v.to_vec(), &mut y, s).unwrap();
        dot(&r, &y)
    });

    let (n, k) = (4, 10);
    let mut logits = random(n * k, 17);
    let labels = vec![3.0, 0.0, 9.0, 3.0];
    let mut d = vec![0.0; n * k];
    let mut stats = vec![0.0; 2];
    cpu.softmax_xent(&logits, &labels, &mut d, &mut stats, n, k)
        .unwrap();
    fd_check("softmax cross-entropy", &mut logits, &d, 1e-2, |v| {
        let mut st = vec![0.0; 2];
        Cpu.softmax_xent(&v.to_vec(), &labels, &mut vec![0.0; n * k], &mut st, n, k)
            .unwrap();
        f64::from(st[0]) / n as f64
    });
}

/// SPEC.md section 5: `ms = 0.9 ms + 0.1 g^2; mom = 0.9 mom + lr g /
/// sqrt(ms + 1); w -= mom`, mean square starting at ones, with the weight
/// decay gradient `wd w` added to `g`.
#[test]
fn rmsprop_by_hand() {
    let p = RmsProp {
        lr: 0.2,
        decay: 0.9,
        momentum: 0.9,
        eps: 1.0,
        weight_decay: 1e-4,
    };
    let (mut w, mut ms, mut mom) = (vec![0.5f32], vec![1.0f32], vec![0.0f32]);
    let (mut ew, mut ems, mut emom) = (0.5f64, 1.0f64, 0.0f64);
    for g in [0.3f32, -0.1, 0.7] {
        Cpu.rmsprop(&mut w, &vec![g], &mut ms, &mut mom, p).unwrap();
        let gd = f64::from(g) + 1e-4 * ew;
        ems = 0.9 * ems + 0.1 * gd * gd;
        emom = 0.9 * emom + 0.2 * gd / (ems + 1.0).sqrt();
        ew -= emom;
        assert!((f64::from(w[0]) - ew).abs() < 1e-6, "{} vs {ew}", w[0]);
        assert!((f64::from(ms[0]) - ems).abs() < 1e-6);
    }
    // A zero learning rate leaves the weights but still moves the mean square.
    let (mut w, mut ms, mut mom) = (vec![0.5f32], vec![1.0f32], vec![0.0f32]);
    Cpu.rmsprop(
        &mut w,
        &vec![2.0],
        &mut ms,
        &mut mom,
        RmsProp { lr: 0.0, ..p },
    )
    .unwrap();
    assert_eq!(w[0], 0.5);
    assert!(ms[0] > 1.0);
}

#[test]
fn image_loading_pads_crops_flips_and_normalizes() {
    let (h, w) = (4, 4);
    let img: Vec<u8> = (0..3 * h * w).map(|v| v as u8).collect();
    let mean = [1.0, 2.0, 3.0];
    let std = [2.0, 2.0, 2.0];
    let mut out = vec![0.0; 3 * h * w];
    Cpu.load_images(&img, None, &mut out, 1, h, w, mean, std)
        .unwrap();
    assert_eq!(out[0], (0.0 - 1.0) / 2.0);
    assert_eq!(out[h * w + 5], (f32::from(img[h * w + 5]) - 2.0) / 2.0);
    // Crop offset (4, 4) into the padded image is the identity; (0, 0)
    // shifts by 4 (all padding for a 4x4 image); a flip mirrors columns.
    let crop = |dy, dx, flip| {
        let mut o = vec![0.0; 3 * h * w];
        Cpu.load_images(
            &img,
            Some(&[Crop { dy, dx, flip }]),
            &mut o,
            1,
            h,
            w,
            mean,
            std,
        )
        .unwrap();
        o
    };
    assert_eq!(crop(4, 4, false), out);
    assert!(crop(0, 0, false)[..h * w].iter().all(|&v| v == -0.5));
    let f = crop(4, 4, true);
    assert_eq!(f[0], out[w - 1]);
    assert_eq!(crop(5, 4, false)[0], out[w]);
}

/// Checks the backward of a small network on a 5-vertex cell against
/// central differences (steps `hs`) of the f32 loss, two entries of every
/// parameter.
/// Returns the relative errors.
fn network_fd_errors(ops: [Op; 3], num_stacks: usize, hs: &[f32]) -> Vec<(String, f64)> {
    let mut m = Matrix::zeros(5);
    for (a, b) in [(0, 1), (0, 2), (1, 3), (2, 3), (0, 4), (3, 4), (1, 4)] {
        m.set(a, b, true);
    }
    let config = NetworkConfig {
        input_channels: 3,
        stem_filters: 16,
        num_stacks,
        modules_per_stack: 1,
        num_labels: 4,
    };
    let graph = Graph::build(&m, &ops, &config, 6, 6).unwrap();
    assert_eq!(
        graph.trainable_parameters(),
        network_parameters(&m, &ops, &config).unwrap()
    );
    let n = 4;
    let params = init_params(&graph.params, 3);
    let input = random(n * 3 * 36, 21);
    let labels = vec![0.0, 1.0, 2.0, 3.0];
    let loss = |params: &[Vec<f32>]| -> (f64, Net<Cpu>) {
        let mut c = Cpu;
        let mut net = Net::new(&mut c, graph.clone(), n, params).unwrap();
        net.acts[0] = input.clone();
        net.forward(&mut c, Mode::Train).unwrap();
        let mut st = vec![0.0; 2];
        let logits = net.graph.logits;
        let mut d = vec![0.0; n * 4];
        c.softmax_xent(&net.acts[logits], &labels, &mut d, &mut st, n, 4)
            .unwrap();
        net.grads[logits] = d;
        (f64::from(st[0]) / n as f64, net)
    };
    let (_, mut net) = loss(&params);
    net.backward(&mut Cpu).unwrap();
    let grads = net.param_grads.clone();
    let mut errors = Vec::new();
    for (pi, info) in graph.params.iter().enumerate() {
        for j in [0, info.len() / 2] {
            let a = f64::from(grads[pi][j]);
            // Central differences at several steps: ReLU and max-pool kinks
            // spoil large steps, f32 rounding spoils small ones; a correct
            // gradient agrees with at least one of them.
            let mut best = (f64::INFINITY, 0.0);
            for &h in hs {
                let mut p = params.clone();
                p[pi][j] += h;
                let up = loss(&p).0;
                p[pi][j] -= 2.0 * h;
                let down = loss(&p).0;
                let fd = (up - down) / (2.0 * f64::from(h));
                let err = (fd - a).abs() / (2e-3 + fd.abs().max(a.abs()));
                if err < best.0 {
                    best = (err, fd);
                }
            }
            errors.push((
                format!(
                    "{}[{j}]: finite difference {}, backward {a}",
                    info.name, best.1
                ),
                best.0,
            ));
        }
    }
    errors
}

/// Cells without max pooling: the loss is smooth almost everywhere (only
/// ReLU kinks), so every checked entry must agree.
#[test]
fn whole_network_gradient_matches_finite_differences() {
    for ops in [
        [Op::Conv3x3BnRelu, Op::Identity, Op::Conv1x1BnRelu],
        [Op::Conv1x1BnRelu, Op::Conv3x3BnRelu, Op::Identity],
    ] {
        let errors = network_fd_errors(ops, 1, &[1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5]);
        let worst = errors.iter().map(|e| e.1).fold(0.0, f64::max);
        eprintln!(
            "{ops:?}: {} entries, worst relative error {worst:.2e}",
            errors.len()
        );
        for (what, err) in &errors {
            assert!(*err < 0.1, "{ops:?} {what}");
        }
        let mut sorted: Vec<f64> = errors.iter().map(|e| e.1).collect();
        sorted.sort_by(f64::total_cmp);
        assert!(
            sorted[sorted.len() / 2] < 1e-2,
            "{ops:?}: median {}",
            sorted[sorted.len() / 2]
        );
    }
}

/// With max pooling over ReLU outputs (ties at zero are everywhere) or deep
/// narrow bottlenecks (many ReLU kinks per unit of step), central
/// differences straddle kinks for some entries; most must still agree.
#[test]
fn whole_network_with_pooling_mostly_matches_finite_differences() {
    for ops in [
        [Op::Conv3x3BnRelu, Op::MaxPool3x3, Op::Conv1x1BnRelu],
        [Op::MaxPool3x3Conv1x1, Op::Identity, Op::Conv3x3BnRelu],
        [Op::Bottleneck3x3, Op::Conv1x1BnRelu, Op::Bottleneck5x5],
    ] {
        let mut errors: Vec<f64> = network_fd_errors(ops, 2, &[1e-3, 3e-4, 1e-4])
            .into_iter()
            .map(|e| e.1)
            .collect();
        errors.sort_by(f64::total_cmp);
        let median = errors[errors.len() / 2];
        eprintln!("{ops:?}: median relative error {median:.2e}");
        assert!(median < 2e-2, "{ops:?}: median relative error {median}");
    }
}
