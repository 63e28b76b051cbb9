//! The CPU reference backend: every training op in plain f32 Rust, parallel over images or channels with rayon, GEMMs by `matrixmultiply`.
//!
//! Written to be read: each op states its shapes, and reductions run in a
//! fixed order (per channel, or over a fixed number of batch chunks) so
//! that results do not depend on the thread count: the same seed gives
//! bit-identical losses.

use rayon::prelude::*;

use super::backend::{
    BResult, Backend, BackendError, BnParams, ChanShape, ConvShape, CopyShape, Crop, PoolShape,
    RmsProp,
};

/// Batch chunks whose partial filter gradients are summed in order.
const FILTER_CHUNKS: usize = 8;

/// The CPU backend (no state: buffers are `Vec<f32>`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Cpu;

/// `c = a b + beta c` for row/column-strided matrices: `a` is m x k,
/// `b` is k x n, `c` is m x n. Bounds are checked before the unsafe call.
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    beta: f32,
    c: &mut [f32],
    (rsc, csc): (usize, usize),
) -> BResult {
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                c[i * rsc + j * csc] *= beta;
            }
        }
        return Ok(());
    }
    let last = |r: usize, rs: usize, cc: usize, cs: usize| (r - 1) * rs + (cc - 1) * cs;
    if last(m, rsa, k, csa) >= a.len()
        || last(k, rsb, n, csb) >= b.len()
        || last(m, rsc, n, csc) >= c.len()
    {
        return Err(BackendError::Shape("gemm"));
    }
    // SAFETY: the largest index each matrix is read or written at was
    // checked against its slice above; `c` is exclusively borrowed and does
    // not alias `a` or `b` (distinct borrows).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            csc as isize,
        );
    }
    Ok(())
}

/// `cols [cin*k*k][h*w]` of one image `x [cin][h][w]` (zero padding k/2).
fn im2col(x: &[f32], cols: &mut [f32], cin: usize, h: usize, w: usize, k: usize) {
    let p = k / 2;
    let hw = h * w;
    for c in 0..cin {
        for ky in 0..k {
            for kx in 0..k {
                let row = &mut cols[((c * k + ky) * k + kx) * hw..][..hw];
                for y in 0..h {
                    let sy = y as isize + ky as isize - p as isize;
                    let out = &mut row[y * w..(y + 1) * w];
                    if sy < 0 || sy >= h as isize {
                        out.fill(0.0);
                        continue;
                    }
                    let src = &x[(c * h + sy as usize) * w..][..w];
                    for (xx, o) in out.iter_mut().enumerate() {
                        let sx = xx as isize + kx as isize - p as isize;
                        *o = if sx < 0 || sx >= w as isize {
                            0.0
                        } else {
                            src[sx as usize]
                        };
                    }
                }
            }
        }
    }
}

/// Adds `cols [cin*k*k][h*w]` back into one image `dx [cin][h][w]`.
fn col2im_add(cols: &[f32], dx: &mut [f32], cin: usize, h: usize, w: usize, k: usize) {
    let p = k / 2;
    let hw = h * w;
    for c in 0..cin {
        for ky in 0..k {
            for kx in 0..k {
                let row = &cols[((c * k + ky) * k + kx) * hw..][..hw];
                for y in 0..h {
                    let sy = y as isize + ky as isize - p as isize;
                    if sy < 0 || sy >= h as isize {
                        continue;
                    }
                    let dst = &mut dx[(c * h + sy as usize) * w..][..w];
                    for xx in 0..w {
                        let sx = xx as isize + kx as isize - p as isize;
                        if sx >= 0 && sx < w as isize {
                            dst[sx as usize] += row[y * w + xx];
                        }
                    }
                }
            }
        }
    }
}

fn check(ok: bool, what: &'static str) -> BResult {
    if ok {
        Ok(())
    } else {
        Err(BackendError::Shape(what))
    }
}

/// Per-channel sums over `[n][c][hw]` of `f(i)` for each element index,
/// in f64 (fixed order: image by image).
fn channel_sums(s: ChanShape, f: impl Fn(usize) -> f64 + Sync) -> Vec<f64> {
    (0..s.c)
        .into_par_iter()
        .map(|c| {
            let mut acc = 0.0f64;
            for i in 0..s.n {
                let base = (i * s.c + c) * s.hw;
                for j in base..base + s.hw {
                    acc += f(j);
                }
            }
            acc
        })
        .collect()
}

impl Backend for Cpu {
    type Buf = Vec<f32>;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn device_name(&self) -> String {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .map_or_else(
                || format!("CPU, {} threads", rayon::current_num_threads()),
                |m| format!("{m}, {} threads", rayon::current_num_threads()),
            )
    }

    fn zeros(&mut self, len: usize) -> BResult<Vec<f32>> {
        Ok(vec![0.0; len])
    }

    fn upload(&mut self, data: &[f32]) -> BResult<Vec<f32>> {
        Ok(data.to_vec())
    }

    fn write(&mut self, buf: &mut Vec<f32>, data: &[f32]) -> BResult {
        check(buf.len() >= data.len(), "write")?;
        buf[..data.len()].copy_from_slice(data);
        Ok(())
    }

    fn download(&mut self, buf: &Vec<f32>) -> BResult<Vec<f32>> {
        Ok(buf.clone())
    }

    fn fill(&mut self, buf: &mut Vec<f32>, value: f32) -> BResult {
        buf.par_iter_mut().for_each(|v| *v = value);
        Ok(())
    }

    fn conv_fwd(&mut self, x: &Vec<f32>, w: &Vec<f32>, y: &mut Vec<f32>, s: ConvShape) -> BResult {
        check(
            x.len() == s.x_len() && w.len() == s.w_len() && y.len() == s.y_len(),
            "conv_fwd",
        )?;
        let (hw, kk) = (s.h * s.w, s.cin * s.k * s.k);
        // Per image: y [cout][hw] = w [cout][kk] cols [kk][hw].
        y.par_chunks_mut(s.cout * hw)
            .zip(x.par_chunks(s.cin * hw))
            .try_for_each_init(Vec::new, |cols, (yi, xi)| {
                let b: &[f32] = if s.k == 1 {
                    xi
                } else {
                    cols.resize(kk * hw, 0.0);
                    im2col(xi, cols, s.cin, s.h, s.w, s.k);
                    cols
                };
                gemm(s.cout, kk, hw, w, (kk, 1), b, (hw, 1), 0.0, yi, (hw, 1))
            })
    }

    fn conv_bwd_data(
        &mut self,
        dy: &Vec<f32>,
        w: &Vec<f32>,
        dx: &mut Vec<f32>,
        s: ConvShape,
        accumulate: bool,
    ) -> BResult {
        check(
            dx.len() == s.x_len() && w.len() == s.w_len() && dy.len() == s.y_len(),
            "conv_bwd_data",
        )?;
        let (hw, kk) = (s.h * s.w, s.cin * s.k * s.k);
        // Per image: dcols [kk][hw] = w^T [kk][cout] dy [cout][hw], then col2im.
        dx.par_chunks_mut(s.cin * hw)
            .zip(dy.par_chunks(s.cout * hw))
            .try_for_each_init(Vec::new, |cols, (dxi, dyi)| {
                if s.k == 1 {
                    let beta = if accumulate { 1.0 } else { 0.0 };
                    return gemm(
                        s.cin,
                        s.cout,
                        hw,
                        w,
                        (1, kk),
                        dyi,
                        (hw, 1),
                        beta,
                        dxi,
                        (hw, 1),
                    );
                }
                cols.resize(kk * hw, 0.0);
                gemm(kk, s.cout, hw, w, (1, kk), dyi, (hw, 1), 0.0, cols, (hw, 1))?;
                if !accumulate {
                    dxi.fill(0.0);
                }
                col2im_add(cols, dxi, s.cin, s.h, s.w, s.k);
                Ok(())
            })
    }

    fn conv_bwd_filter(
        &mut self,
        x: &Vec<f32>,
        dy: &Vec<f32>,
        dw: &mut Vec<f32>,
        s: ConvShape,
    ) -> BResult {
        check(
            x.len() == s.x_len() && dw.len() == s.w_len() && dy.len() == s.y_len(),
            "conv_bwd_filter",
        )?;
        let (hw, kk) = (s.h * s.w, s.cin * s.k * s.k);
        let per_chunk = s.n.div_ceil(FILTER_CHUNKS).max(1);
        // Per chunk of images: partial [cout][kk] += dy_i [cout][hw] cols_i^T [hw][kk].
        let partials: Vec<BResult<Vec<f32>>> = (0..s.n.div_ceil(per_chunk))
            .into_par_iter()
            .map(|chunk| {
                let mut part = vec![0.0f32; s.cout * kk];
                let mut cols = Vec::new();
                for i in chunk * per_chunk..((chunk + 1) * per_chunk).min(s.n) {
                    let xi = &x[i * s.cin * hw..][..s.cin * hw];
                    let dyi = &dy[i * s.cout * hw..][..s.cout * hw];
                    let b: &[f32] = if s.k == 1 {
                        xi
                    } else {
                        cols.resize(kk * hw, 0.0);
                        im2col(xi, &mut cols, s.cin, s.h, s.w, s.k);
                        &cols
                    };
                    gemm(
                        s.cout,
                        hw,
                        kk,
                        dyi,
                        (hw, 1),
                        b,
                        (1, hw),
                        1.0,
                        &mut part,
                        (kk, 1),
                    )?;
                }
                Ok(part)
            })
            .collect();
        dw.fill(0.0);
        for p in partials {
            for (d, v) in dw.iter_mut().zip(p?) {
                *d += v;
            }
        }
        Ok(())
    }

    fn bn_train_fwd(
        &mut self,
        x: &Vec<f32>,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        y: &mut Vec<f32>,
        save_mean: &mut Vec<f32>,
        save_invstd: &mut Vec<f32>,
        running_mean: &mut Vec<f32>,
        running_var: &mut Vec<f32>,
        s: ChanShape,
        p: BnParams,
        relu: bool,
    ) -> BResult {
        check(
            x.len() == s.len()
                && y.len() == s.len()
                && [gamma.len(), beta.len(), save_mean.len(), save_invstd.len()]
                    .iter()
                    .chain([running_mean.len(), running_var.len()].iter())
                    .all(|&l| l == s.c),
            "bn_train_fwd",
        )?;
        let count = (s.n * s.hw) as f64;
        let sums = channel_sums(s, |j| f64::from(x[j]));
        let mean: Vec<f64> = sums.iter().map(|v| v / count).collect();
        let sq = channel_sums(s, |j| {
            let c = (j / s.hw) % s.c;
            let d = f64::from(x[j]) - mean[c];
            d * d
        });
        for c in 0..s.c {
            let var = sq[c] / count;
            save_mean[c] = mean[c] as f32;
            save_invstd[c] = (1.0 / (var + f64::from(p.eps)).sqrt()) as f32;
            let unbiased = if count > 1.0 {
                var * count / (count - 1.0)
            } else {
                var
            };
            running_mean[c] = p.momentum * running_mean[c] + (1.0 - p.momentum) * mean[c] as f32;
            running_var[c] = p.momentum * running_var[c] + (1.0 - p.momentum) * unbiased as f32;
        }
        let (m, is) = (&*save_mean, &*save_invstd);
        y.par_chunks_mut(s.hw)
            .zip(x.par_chunks(s.hw))
            .enumerate()
            .for_each(|(plane, (yp, xp))| {
                let c = plane % s.c;
                let (scale, shift) = (gamma[c] * is[c], beta[c] - gamma[c] * is[c] * m[c]);
                for (o, &v) in yp.iter_mut().zip(xp) {
                    let t = v * scale + shift;
                    *o = if relu { t.max(0.0) } else { t };
                }
            });
        Ok(())
    }

    fn bn_eval_fwd(
        &mut self,
        x: &Vec<f32>,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        running_mean: &Vec<f32>,
        running_var: &Vec<f32>,
        y: &mut Vec<f32>,
        s: ChanShape,
        p: BnParams,
        relu: bool,
    ) -> BResult {
        check(x.len() == s.len() && y.len() == s.len(), "bn_eval_fwd")?;
        y.par_chunks_mut(s.hw)
            .zip(x.par_chunks(s.hw))
            .enumerate()
            .for_each(|(plane, (yp, xp))| {
                let c = plane % s.c;
                let is = 1.0 / (running_var[c] + p.eps).sqrt();
                let (scale, shift) = (gamma[c] * is, beta[c] - gamma[c] * is * running_mean[c]);
                for (o, &v) in yp.iter_mut().zip(xp) {
                    let t = v * scale + shift;
                    *o = if relu { t.max(0.0) } else { t };
                }
            });
        Ok(())
    }

    fn bn_bwd(
        &mut self,
        x: &Vec<f32>,
        y: &Vec<f32>,
        dy: &Vec<f32>,
        gamma: &Vec<f32>,
        save_mean: &Vec<f32>,
        save_invstd: &Vec<f32>,
        dx: &mut Vec<f32>,
        dgamma: &mut Vec<f32>,
        dbeta: &mut Vec<f32>,
        s: ChanShape,
        relu: bool,
    ) -> BResult {
        check(
            x.len() == s.len() && dy.len() == s.len() && dx.len() == s.len() && dgamma.len() == s.c,
            "bn_bwd",
        )?;
        // dy' = dy masked by the ReLU; xhat = (x - mean) invstd.
        let g = |j: usize| -> f64 {
            if relu && y[j] <= 0.0 {
                0.0
            } else {
                f64::from(dy[j])
            }
        };
        let xhat = |j: usize| {
            let c = (j / s.hw) % s.c;
            (f64::from(x[j]) - f64::from(save_mean[c])) * f64::from(save_invstd[c])
        };
        let sum_g = channel_sums(s, g);
        let sum_gx = channel_sums(s, |j| g(j) * xhat(j));
        for c in 0..s.c {
            dbeta[c] = sum_g[c] as f32;
            dgamma[c] = sum_gx[c] as f32;
        }
        let count = (s.n * s.hw) as f64;
        // dx = gamma invstd / N (N dy' - sum dy' - xhat sum dy' xhat).
        dx.par_chunks_mut(s.hw).enumerate().for_each(|(plane, dp)| {
            let c = plane % s.c;
            let k = f64::from(gamma[c]) * f64::from(save_invstd[c]) / count;
            for (o, j) in dp.iter_mut().zip(plane * s.hw..) {
                *o = (k * (count * g(j) - sum_g[c] - xhat(j) * sum_gx[c])) as f32;
            }
        });
        Ok(())
    }

    fn maxpool_fwd(&mut self, x: &Vec<f32>, y: &mut Vec<f32>, s: PoolShape) -> BResult {
        check(x.len() == s.x_len() && y.len() == s.y_len(), "maxpool_fwd")?;
        let (oh, ow) = s.out_hw();
        let (ph, pw) = s.pad();
        y.par_chunks_mut(oh * ow)
            .zip(x.par_chunks(s.h * s.w))
            .for_each(|(yp, xp)| {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let (_, best) = window_max(xp, s, oy, ox, ph, pw);
                        yp[oy * ow + ox] = best;
                    }
                }
            });
        Ok(())
    }

    fn maxpool_bwd(
        &mut self,
        x: &Vec<f32>,
        _y: &Vec<f32>,
        dy: &Vec<f32>,
        dx: &mut Vec<f32>,
        s: PoolShape,
        accumulate: bool,
    ) -> BResult {
        check(
            x.len() == s.x_len() && dx.len() == s.x_len() && dy.len() == s.y_len(),
            "maxpool_bwd",
        )?;
        let (oh, ow) = s.out_hw();
        let (ph, pw) = s.pad();
        dx.par_chunks_mut(s.h * s.w)
            .zip(x.par_chunks(s.h * s.w))
            .zip(dy.par_chunks(oh * ow))
            .for_each(|((dxp, xp), dyp)| {
                if !accumulate {
                    dxp.fill(0.0);
                }
                for oy in 0..oh {
                    for ox in 0..ow {
                        let (arg, _) = window_max(xp, s, oy, ox, ph, pw);
                        dxp[arg] += dyp[oy * ow + ox];
                    }
                }
            });
        Ok(())
    }

    fn copy_channels(
        &mut self,
        src: &Vec<f32>,
        dst: &mut Vec<f32>,
        s: CopyShape,
        accumulate: bool,
    ) -> BResult {
        check(
            src.len() == s.n * s.src_c * s.hw
                && dst.len() == s.n * s.dst_c * s.hw
                && s.src_off + s.count <= s.src_c
                && s.dst_off + s.count <= s.dst_c,
            "copy_channels",
        )?;
        dst.par_chunks_mut(s.dst_c * s.hw)
            .zip(src.par_chunks(s.src_c * s.hw))
            .for_each(|(d, sr)| {
                let d = &mut d[s.dst_off * s.hw..(s.dst_off + s.count) * s.hw];
                let sr = &sr[s.src_off * s.hw..(s.src_off + s.count) * s.hw];
                if accumulate {
                    d.iter_mut().zip(sr).for_each(|(a, b)| *a += b);
                } else {
                    d.copy_from_slice(sr);
                }
            });
        Ok(())
    }

    fn avgpool_fwd(&mut self, x: &Vec<f32>, y: &mut Vec<f32>, s: ChanShape) -> BResult {
        check(x.len() == s.len() && y.len() == s.n * s.c, "avgpool_fwd")?;
        y.par_iter_mut().zip(x.par_chunks(s.hw)).for_each(|(o, p)| {
            *o = (p.iter().map(|&v| f64::from(v)).sum::<f64>() / s.hw as f64) as f32;
        });
        Ok(())
    }

    fn avgpool_bwd(
        &mut self,
        dy: &Vec<f32>,
        dx: &mut Vec<f32>,
        s: ChanShape,
        accumulate: bool,
    ) -> BResult {
        check(dx.len() == s.len() && dy.len() == s.n * s.c, "avgpool_bwd")?;
        dx.par_chunks_mut(s.hw)
            .zip(dy.par_iter())
            .for_each(|(p, &g)| {
                let v = g / s.hw as f32;
                for o in p.iter_mut() {
                    *o = if accumulate { *o + v } else { v };
                }
            });
        Ok(())
    }

    fn dense_fwd(
        &mut self,
        x: &Vec<f32>,
        w: &Vec<f32>,
        b: &Vec<f32>,
        y: &mut Vec<f32>,
        n: usize,
        inp: usize,
        out: usize,
    ) -> BResult {
        check(
            x.len() == n * inp && w.len() == inp * out && b.len() == out && y.len() == n * out,
            "dense_fwd",
        )?;
        for row in y.chunks_mut(out) {
            row.copy_from_slice(b);
        }
        gemm(n, inp, out, x, (inp, 1), w, (out, 1), 1.0, y, (out, 1))
    }

    fn dense_bwd(
        &mut self,
        x: &Vec<f32>,
        w: &Vec<f32>,
        dy: &Vec<f32>,
        dx: &mut Vec<f32>,
        dw: &mut Vec<f32>,
        db: &mut Vec<f32>,
        n: usize,
        inp: usize,
        out: usize,
    ) -> BResult {
        check(
            x.len() == n * inp && dx.len() == n * inp && dw.len() == inp * out && db.len() == out,
            "dense_bwd",
        )?;
        // dx [n][inp] = dy [n][out] w^T; dw [inp][out] = x^T dy; db = sum dy.
        gemm(n, out, inp, dy, (out, 1), w, (1, out), 0.0, dx, (inp, 1))?;
        gemm(inp, n, out, x, (1, inp), dy, (out, 1), 0.0, dw, (out, 1))?;
        for (j, d) in db.iter_mut().enumerate() {
            *d = (0..n).map(|i| f64::from(dy[i * out + j])).sum::<f64>() as f32;
        }
        Ok(())
    }

    fn softmax_xent(
        &mut self,
        logits: &Vec<f32>,
        labels: &Vec<f32>,
        dlogits: &mut Vec<f32>,
        stats: &mut Vec<f32>,
        n: usize,
        k: usize,
    ) -> BResult {
        check(
            logits.len() == n * k
                && labels.len() == n
                && dlogits.len() == n * k
                && stats.len() >= 2,
            "softmax_xent",
        )?;
        let mut loss = 0.0f64;
        let mut correct = 0u32;
        for i in 0..n {
            let row = &logits[i * k..(i + 1) * k];
            let label = labels[i] as usize;
            let (arg, max) = argmax(row);
            let sum: f64 = row
                .iter()
                .map(|&v| (f64::from(v) - f64::from(max)).exp())
                .sum();
            loss += sum.ln() - (f64::from(row[label.min(k - 1)]) - f64::from(max));
            correct += u32::from(arg == label);
            for (j, d) in dlogits[i * k..(i + 1) * k].iter_mut().enumerate() {
                let p = (f64::from(row[j]) - f64::from(max)).exp() / sum;
                *d = ((p - f64::from(u8::from(j == label))) / n as f64) as f32;
            }
        }
        stats[0] += loss as f32;
        stats[1] += correct as f32;
        Ok(())
    }

    fn count_correct(
        &mut self,
        logits: &Vec<f32>,
        labels: &Vec<f32>,
        stats: &mut Vec<f32>,
        n: usize,
        k: usize,
    ) -> BResult {
        check(
            logits.len() == n * k && labels.len() == n && stats.len() >= 2,
            "count_correct",
        )?;
        let correct = (0..n)
            .filter(|&i| argmax(&logits[i * k..(i + 1) * k]).0 == labels[i] as usize)
            .count();
        stats[1] += correct as f32;
        Ok(())
    }

    fn add_half_sum_squares(&mut self, w: &Vec<f32>, acc: &mut Vec<f32>) -> BResult {
        check(!acc.is_empty(), "add_half_sum_squares")?;
        let s: f64 = w.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        acc[0] += (s / 2.0) as f32;
        Ok(())
    }

    fn rmsprop(
        &mut self,
        w: &mut Vec<f32>,
        g: &Vec<f32>,
        ms: &mut Vec<f32>,
        mom: &mut Vec<f32>,
        p: RmsProp,
    ) -> BResult {
        check(
            g.len() == w.len() && ms.len() == w.len() && mom.len() == w.len(),
            "rmsprop",
        )?;
        w.par_iter_mut()
            .zip(g.par_iter())
            .zip(ms.par_iter_mut().zip(mom.par_iter_mut()))
            .for_each(|((w, &g), (ms, mom))| {
                let g = g + p.weight_decay * *w;
                *ms = p.decay * *ms + (1.0 - p.decay) * g * g;
                *mom = p.momentum * *mom + p.lr * g / (*ms + p.eps).sqrt();
                *w -= *mom;
            });
        Ok(())
    }

    fn load_images(
        &mut self,
        images: &[u8],
        crops: Option<&[Crop]>,
        out: &mut Vec<f32>,
        n: usize,
        h: usize,
        w: usize,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> BResult {
        check(
            images.len() == n * 3 * h * w
                && out.len() == n * 3 * h * w
                && crops.is_none_or(|c| c.len() == n),
            "load_images",
        )?;
        out.par_chunks_mut(3 * h * w)
            .zip(images.par_chunks(3 * h * w))
            .enumerate()
            .for_each(|(i, (o, img))| {
                let crop = crops.map(|c| c[i]);
                for c in 0..3 {
                    for y in 0..h {
                        for x in 0..w {
                            let v = match crop {
                                None => f32::from(img[(c * h + y) * w + x]),
                                Some(cr) => {
                                    let cx = if cr.flip { w - 1 - x } else { x };
                                    // Padded coordinates minus the 4-pixel border.
                                    let sy = (y + cr.dy as usize) as isize - 4;
                                    let sx = (cx + cr.dx as usize) as isize - 4;
                                    if sy < 0 || sx < 0 || sy >= h as isize || sx >= w as isize {
                                        0.0
                                    } else {
                                        f32::from(img[(c * h + sy as usize) * w + sx as usize])
                                    }
                                }
                            };
                            o[(c * h + y) * w + x] = (v - mean[c]) / std[c];
                        }
                    }
                }
            });
        Ok(())
    }
}

/// Index and value of the first maximum of a row.
fn argmax(row: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (j, &v) in row.iter().enumerate() {
        if v > best.1 {
            best = (j, v);
        }
    }
    best
}

/// Index (into the plane) and value of the first maximum of an output
/// cell's window; padded cells are skipped.
fn window_max(
    xp: &[f32],
    s: PoolShape,
    oy: usize,
    ox: usize,
    ph: usize,
    pw: usize,
) -> (usize, f32) {
    let mut best: Option<(usize, f32)> = None;
    for ky in 0..s.k {
        let iy = (oy * s.stride + ky) as isize - ph as isize;
        if iy < 0 || iy >= s.h as isize {
            continue;
        }
        for kx in 0..s.k {
            let ix = (ox * s.stride + kx) as isize - pw as isize;
            if ix < 0 || ix >= s.w as isize {
                continue;
            }
            let j = iy as usize * s.w + ix as usize;
            if best.is_none_or(|(_, b)| xp[j] > b) {
                best = Some((j, xp[j]));
            }
        }
    }
    best.unwrap_or((0, 0.0))
}
