//! The NAS-Bench-101 network built from a cell (`model_builder.py`): layers, parameters, forward and backward over any [`Backend`].
//!
//! The builder lowers the network to a flat list of layers over numbered
//! tensors (NCHW, batch `n`): conv-bn-relu units, max pools, channel copies
//! (which express truncation, the sum at an interior vertex, the output
//! concat and the added input projection), the global average pool and the
//! dense layer. Forward runs the list in order and saves what backward
//! needs (each conv's pre-norm output, each unit's output, the batch
//! statistics); backward runs it in reverse, adding every tensor's gradient
//! from all of its consumers.

use serde_json::json;

use super::backend::{BResult, Backend, BnParams, ChanShape, ConvShape, CopyShape, PoolShape};
use crate::cell::graph::Matrix;
use crate::cell::network::{NetworkConfig, NetworkError, compute_vertex_channels};
use crate::cell::ops::Op;
use crate::rng::SplitMix64;

/// TF batch-norm settings of the original (`base_ops.py`).
pub const BN: BnParams = BnParams {
    momentum: 0.997,
    eps: 1e-5,
};

/// A tensor's shape per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorShape {
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl TensorShape {
    fn len(&self) -> usize {
        self.c * self.h * self.w
    }
}

/// A trainable variable: TF-style name and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamInfo {
    /// `stack1/module0/vertex_2/conv3x3/kernel`, ...
    pub name: String,
    /// Shape (`[cout, cin, k, k]` for kernels, `[inp, out]` for the dense kernel).
    pub shape: Vec<usize>,
}

impl ParamInfo {
    /// Elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One layer over tensor and parameter indices.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    /// `out = relu(bn(conv(x)))`; `pre` holds `conv(x)`. `bn` numbers the
    /// batch-norm statistics.
    ConvBnRelu {
        /// Name prefix.
        name: String,
        /// Input tensor.
        x: usize,
        /// Pre-normalization tensor.
        pre: usize,
        /// Output tensor.
        out: usize,
        /// Kernel size.
        k: usize,
        /// Parameters: kernel, gamma, beta.
        params: [usize; 3],
        /// Batch-norm statistics slot.
        bn: usize,
    },
    /// Max pooling (3x3 stride 1 in cells, 2x2 stride 2 between stacks).
    MaxPool {
        /// Input tensor.
        x: usize,
        /// Output tensor.
        out: usize,
        /// Window.
        k: usize,
        /// Stride.
        stride: usize,
    },
    /// Channel-range copy from `src` into `dst` (adds when `accumulate`).
    Copy {
        /// Source tensor.
        src: usize,
        /// Destination tensor.
        dst: usize,
        /// First source channel.
        src_off: usize,
        /// First destination channel.
        dst_off: usize,
        /// Channels copied.
        count: usize,
        /// Add instead of overwrite.
        accumulate: bool,
    },
    /// Global average pool to `[n][c]`.
    AvgPool {
        /// Input tensor.
        x: usize,
        /// Output tensor (`c x 1 x 1`).
        out: usize,
    },
    /// Dense layer with bias.
    Dense {
        /// Input tensor (`c x 1 x 1`).
        x: usize,
        /// Output tensor (logits).
        out: usize,
        /// Kernel and bias.
        params: [usize; 2],
    },
}

/// The network as layers: built once per cell and config.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// Per-image shape of each tensor; tensor 0 is the input image.
    pub tensors: Vec<TensorShape>,
    /// Layers in execution order.
    pub layers: Vec<Layer>,
    /// Trainable variables, in creation order (the original's
    /// `tf.trainable_variables()` order).
    pub params: Vec<ParamInfo>,
    /// Channels of each batch-norm slot.
    pub bn_channels: Vec<usize>,
    /// The logits tensor.
    pub logits: usize,
    /// Classes.
    pub classes: usize,
}

struct Builder {
    g: Graph,
}

impl Builder {
    fn tensor(&mut self, s: TensorShape) -> usize {
        self.g.tensors.push(s);
        self.g.tensors.len() - 1
    }

    fn param(&mut self, name: String, shape: Vec<usize>) -> usize {
        self.g.params.push(ParamInfo { name, shape });
        self.g.params.len() - 1
    }

    fn conv_bn_relu(&mut self, name: &str, x: usize, k: usize, cout: usize) -> usize {
        let s = self.g.tensors[x];
        let o = TensorShape { c: cout, ..s };
        let pre = self.tensor(o);
        let out = self.tensor(o);
        let kernel = self.param(format!("{name}/conv/kernel"), vec![cout, s.c, k, k]);
        let gamma = self.param(format!("{name}/bn/gamma"), vec![cout]);
        let beta = self.param(format!("{name}/bn/beta"), vec![cout]);
        self.g.bn_channels.push(cout);
        self.g.layers.push(Layer::ConvBnRelu {
            name: name.to_string(),
            x,
            pre,
            out,
            k,
            params: [kernel, gamma, beta],
            bn: self.g.bn_channels.len() - 1,
        });
        out
    }

    fn maxpool(&mut self, x: usize, k: usize, stride: usize) -> usize {
        let s = self.g.tensors[x];
        let out = self.tensor(TensorShape {
            c: s.c,
            h: s.h.div_ceil(stride),
            w: s.w.div_ceil(stride),
        });
        self.g.layers.push(Layer::MaxPool { x, out, k, stride });
        out
    }

    /// `dst` = sum (or concat) of channel ranges: each `(src, src_off,
    /// dst_off, count)` in order; the first overwrites when `first_overwrites`.
    fn copies(&mut self, dst: usize, parts: &[(usize, usize, usize, usize)], sum: bool) {
        for (i, &(src, src_off, dst_off, count)) in parts.iter().enumerate() {
            self.g.layers.push(Layer::Copy {
                src,
                dst,
                src_off,
                dst_off,
                count,
                accumulate: sum && i > 0,
            });
        }
    }

    fn op(&mut self, name: &str, op: Op, x: usize, c: usize) -> usize {
        match op {
            Op::Conv3x3BnRelu => self.conv_bn_relu(&format!("{name}/conv3x3"), x, 3, c),
            Op::Conv1x1BnRelu => self.conv_bn_relu(&format!("{name}/conv1x1"), x, 1, c),
            Op::MaxPool3x3 => self.maxpool(x, 3, 1),
            Op::Identity => x,
            Op::Bottleneck3x3 | Op::Bottleneck5x5 => {
                let k = if op == Op::Bottleneck3x3 { 3 } else { 5 };
                let a = self.conv_bn_relu(&format!("{name}/bottleneck/a"), x, 1, c / 4);
                let b = self.conv_bn_relu(&format!("{name}/bottleneck/b"), a, k, c / 4);
                self.conv_bn_relu(&format!("{name}/bottleneck/c"), b, 1, c)
            }
            Op::MaxPool3x3Conv1x1 => {
                let p = self.maxpool(x, 3, 1);
                self.conv_bn_relu(&format!("{name}/conv1x1"), p, 1, c)
            }
        }
    }

    /// `build_module`: returns the module's output tensor.
    fn module(
        &mut self,
        name: &str,
        matrix: &Matrix,
        ops: &[Op],
        input: usize,
        c: usize,
    ) -> Result<usize, NetworkError> {
        let n = matrix.n();
        let s = self.g.tensors[input];
        let vc = compute_vertex_channels(s.c, c, matrix)?;
        let mut vertex = vec![input; n];
        let mut final_in = Vec::new();
        for t in 1..n - 1 {
            let vname = format!("{name}/vertex_{t}");
            // Earlier interior vertices, truncated to vc[t]; then the
            // projected input.
            let mut parts: Vec<usize> = (1..t)
                .filter(|&src| matrix.get(src, t))
                .map(|src| vertex[src])
                .collect();
            if matrix.get(0, t) {
                parts.push(self.conv_bn_relu(&format!("{vname}/projection"), input, 1, vc[t]));
            }
            let vin = if parts.len() == 1 && self.g.tensors[parts[0]].c == vc[t] {
                parts[0]
            } else {
                let dst = self.tensor(TensorShape { c: vc[t], ..s });
                let spec: Vec<_> = parts.iter().map(|&p| (p, 0, 0, vc[t])).collect();
                self.copies(dst, &spec, true);
                dst
            };
            vertex[t] = self.op(&vname, ops[t - 1], vin, vc[t]);
            if matrix.get(t, n - 1) {
                final_in.push(vertex[t]);
            }
        }
        let out_shape = TensorShape { c, ..s };
        let projection =
            |b: &mut Builder| b.conv_bn_relu(&format!("{name}/output/projection"), input, 1, c);
        if final_in.is_empty() {
            return Ok(projection(self));
        }
        let concat = if final_in.len() == 1 {
            final_in[0]
        } else {
            let dst = self.tensor(out_shape);
            let mut off = 0;
            let mut spec = Vec::new();
            for &v in &final_in {
                let vcnt = self.g.tensors[v].c;
                spec.push((v, 0, off, vcnt));
                off += vcnt;
            }
            self.copies(dst, &spec, false);
            dst
        };
        if !matrix.get(0, n - 1) {
            return Ok(concat);
        }
        let p = projection(self);
        let out = self.tensor(out_shape);
        self.copies(out, &[(concat, 0, 0, c), (p, 0, 0, c)], true);
        Ok(out)
    }
}

impl Graph {
    /// Builds the network for a pruned `matrix` and its interior `ops`
    /// on `h x w` images, as `model_builder.build_model_fn` does.
    pub fn build(
        matrix: &Matrix,
        interior_ops: &[Op],
        config: &NetworkConfig,
        h: usize,
        w: usize,
    ) -> Result<Graph, NetworkError> {
        let mut b = Builder {
            g: Graph {
                tensors: Vec::new(),
                layers: Vec::new(),
                params: Vec::new(),
                bn_channels: Vec::new(),
                logits: 0,
                classes: config.num_labels,
            },
        };
        let input = b.tensor(TensorShape {
            c: config.input_channels,
            h,
            w,
        });
        let mut net = b.conv_bn_relu("stem", input, 3, config.stem_filters);
        for stack in 0..config.num_stacks {
            let mut c = b.g.tensors[net].c;
            if stack > 0 {
                net = b.maxpool(net, 2, 2);
                c *= 2;
            }
            for module in 0..config.modules_per_stack {
                net = b.module(
                    &format!("stack{stack}/module{module}"),
                    matrix,
                    interior_ops,
                    net,
                    c,
                )?;
            }
        }
        let c = b.g.tensors[net].c;
        let pooled = b.tensor(TensorShape { c, h: 1, w: 1 });
        b.g.layers.push(Layer::AvgPool {
            x: net,
            out: pooled,
        });
        let logits = b.tensor(TensorShape {
            c: config.num_labels,
            h: 1,
            w: 1,
        });
        let kernel = b.param("dense/kernel".into(), vec![c, config.num_labels]);
        let bias = b.param("dense/bias".into(), vec![config.num_labels]);
        b.g.layers.push(Layer::Dense {
            x: pooled,
            out: logits,
            params: [kernel, bias],
        });
        b.g.logits = logits;
        Ok(b.g)
    }

    /// Trainable parameters (kernels, gammas, betas, dense kernel and bias).
    pub fn trainable_parameters(&self) -> u64 {
        self.params.iter().map(|p| p.len() as u64).sum()
    }

    /// The layers as JSON (`nasbench train --dry-run`): each with its op,
    /// input and output shapes and parameter count, then the total.
    pub fn to_json(&self) -> serde_json::Value {
        let shape = |t: usize| {
            let s = self.tensors[t];
            json!([s.c, s.h, s.w])
        };
        let count = |ps: &[usize]| ps.iter().map(|&p| self.params[p].len() as u64).sum::<u64>();
        let layers: Vec<serde_json::Value> = self
            .layers
            .iter()
            .map(|l| match l {
                Layer::ConvBnRelu {
                    name, x, out, k, params, ..
                } => json!({"op": format!("conv{k}x{k}-bn-relu"), "name": name, "input": shape(*x),
                            "output": shape(*out), "trainable_parameters": count(params)}),
                Layer::MaxPool { x, out, k, stride } => json!({"op": format!("maxpool{k}x{k}/{stride}"),
                            "input": shape(*x), "output": shape(*out), "trainable_parameters": 0}),
                Layer::Copy {
                    src, dst, src_off, dst_off, count: c, accumulate,
                } => json!({"op": if *accumulate { "add-channels" } else { "copy-channels" },
                            "input": shape(*src), "output": shape(*dst), "channels": [src_off, dst_off, c],
                            "trainable_parameters": 0}),
                Layer::AvgPool { x, out } => json!({"op": "global-avg-pool", "input": shape(*x),
                            "output": shape(*out), "trainable_parameters": 0}),
                Layer::Dense { x, out, params } => json!({"op": "dense", "input": shape(*x),
                            "output": shape(*out), "trainable_parameters": count(params)}),
            })
            .collect();
        json!({
            "layers": layers,
            "trainable_parameters": self.trainable_parameters(),
            "variables": self.params.iter().map(|p| json!({"name": p.name, "shape": p.shape})).collect::<Vec<_>>(),
        })
    }
}

/// Samples the original's initializers with a seeded generator:
/// conv kernels from TF1 `variance_scaling_initializer()` (scale 1, fan-in,
/// normal truncated at two standard deviations, standard deviation
/// `sqrt(1 / fan_in) / 0.8796`), gamma 1, beta 0, the dense kernel
/// Glorot-uniform and its bias 0.
pub fn init_params(params: &[ParamInfo], seed: u64) -> Vec<Vec<f32>> {
    let mut rng = SplitMix64::new(seed);
    let mut uniform = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    params
        .iter()
        .map(|p| {
            let len = p.len();
            if p.name.ends_with("/gamma") {
                vec![1.0; len]
            } else if p.name.ends_with("/beta") || p.name.ends_with("/bias") {
                vec![0.0; len]
            } else if p.shape.len() == 4 {
                let fan_in = (p.shape[1] * p.shape[2] * p.shape[3]) as f64;
                let std = (1.0 / fan_in).sqrt() / 0.879_625_661_034_239_8;
                (0..len)
                    .map(|_| {
                        loop {
                            // Box-Muller; redraw outside two standard deviations.
                            let (u1, u2) = (uniform().max(f64::MIN_POSITIVE), uniform());
                            let z =
                                (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                            if z.abs() <= 2.0 {
                                break (z * std) as f32;
                            }
                        }
                    })
                    .collect()
            } else {
                let (fi, fo) = (
                    p.shape[0] as f64,
                    p.shape.get(1).copied().unwrap_or(1) as f64,
                );
                let limit = (6.0 / (fi + fo)).sqrt();
                (0..len)
                    .map(|_| ((2.0 * uniform() - 1.0) * limit) as f32)
                    .collect()
            }
        })
        .collect()
}

/// Which statistics batch norm uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics, running averages updated.
    Train,
    /// Running statistics.
    Eval,
}

/// A graph's buffers on a backend, for batches of `n` images.
pub struct Net<B: Backend> {
    /// The layers.
    pub graph: Graph,
    /// Images per batch.
    pub n: usize,
    /// Activations, one per tensor.
    pub acts: Vec<B::Buf>,
    /// Gradients, one per tensor.
    pub grads: Vec<B::Buf>,
    /// Trainable parameters.
    pub params: Vec<B::Buf>,
    /// Their gradients.
    pub param_grads: Vec<B::Buf>,
    /// Running mean and variance per batch-norm slot.
    pub running: Vec<[B::Buf; 2]>,
    /// Saved batch mean and inverse std per slot.
    saved: Vec<[B::Buf; 2]>,
}

/// Two distinct elements of a slice, one shared and one mutable.
fn pair<T>(v: &mut [T], shared: usize, mutable: usize) -> (&T, &mut T) {
    debug_assert_ne!(shared, mutable);
    if shared < mutable {
        let (a, b) = v.split_at_mut(mutable);
        (&a[shared], &mut b[0])
    } else {
        let (a, b) = v.split_at_mut(shared);
        (&b[0], &mut a[mutable])
    }
}

impl<B: Backend> Net<B> {
    /// Allocates every buffer and uploads `params` (from [`init_params`] or
    /// a checkpoint).
    pub fn new(backend: &mut B, graph: Graph, n: usize, params: &[Vec<f32>]) -> BResult<Self> {
        let mut acts = Vec::new();
        let mut grads = Vec::new();
        for t in &graph.tensors {
            acts.push(backend.zeros(n * t.len())?);
            grads.push(backend.zeros(n * t.len())?);
        }
        let mut ps = Vec::new();
        let mut pg = Vec::new();
        for (info, values) in graph.params.iter().zip(params) {
            if values.len() != info.len() {
                return Err(super::backend::BackendError::Shape("parameter values"));
            }
            ps.push(backend.upload(values)?);
            pg.push(backend.zeros(info.len())?);
        }
        let mut running = Vec::new();
        let mut saved = Vec::new();
        for &c in &graph.bn_channels {
            running.push([backend.zeros(c)?, backend.upload(&vec![1.0; c])?]);
            saved.push([backend.zeros(c)?, backend.zeros(c)?]);
        }
        Ok(Net {
            graph,
            n,
            acts,
            grads,
            params: ps,
            param_grads: pg,
            running,
            saved,
        })
    }

    fn chan(&self, t: usize) -> ChanShape {
        let s = self.graph.tensors[t];
        ChanShape {
            n: self.n,
            c: s.c,
            hw: s.h * s.w,
        }
    }

    /// Runs the layers on the input already in `acts[0]`; the logits end
    /// in `acts[graph.logits]`.
    pub fn forward(&mut self, be: &mut B, mode: Mode) -> BResult {
        for layer in &self.graph.layers {
            match *layer {
                Layer::ConvBnRelu {
                    x,
                    pre,
                    out,
                    k,
                    params: [kw, g, b],
                    bn,
                    ..
                } => {
                    let cs = self.conv_shape(x, out, k);
                    let (xa, pa) = pair(&mut self.acts, x, pre);
                    be.conv_fwd(xa, &self.params[kw], pa, cs)?;
                    let chan = self.chan(out);
                    let (pa, oa) = pair(&mut self.acts, pre, out);
                    match mode {
                        Mode::Train => {
                            let [m, is] = &mut self.saved[bn];
                            let [rm, rv] = &mut self.running[bn];
                            be.bn_train_fwd(
                                pa,
                                &self.params[g],
                                &self.params[b],
                                oa,
                                m,
                                is,
                                rm,
                                rv,
                                chan,
                                BN,
                                true,
                            )?;
                        }
                        Mode::Eval => {
                            let [rm, rv] = &self.running[bn];
                            be.bn_eval_fwd(
                                pa,
                                &self.params[g],
                                &self.params[b],
                                rm,
                                rv,
                                oa,
                                chan,
                                BN,
                                true,
                            )?;
                        }
                    }
                }
                Layer::MaxPool { x, out, k, stride } => {
                    let ps = self.pool_shape(x, k, stride);
                    let (xa, oa) = pair(&mut self.acts, x, out);
                    be.maxpool_fwd(xa, oa, ps)?;
                }
                Layer::Copy {
                    src,
                    dst,
                    src_off,
                    dst_off,
                    count,
                    accumulate,
                } => {
                    let cs = self.copy_shape(src, dst, src_off, dst_off, count);
                    let (sa, da) = pair(&mut self.acts, src, dst);
                    be.copy_channels(sa, da, cs, accumulate)?;
                }
                Layer::AvgPool { x, out } => {
                    let chan = self.chan(x);
                    let (xa, oa) = pair(&mut self.acts, x, out);
                    be.avgpool_fwd(xa, oa, chan)?;
                }
                Layer::Dense {
                    x,
                    out,
                    params: [kw, b],
                } => {
                    let (inp, o) = (self.graph.tensors[x].c, self.graph.tensors[out].c);
                    let (xa, oa) = pair(&mut self.acts, x, out);
                    be.dense_fwd(xa, &self.params[kw], &self.params[b], oa, self.n, inp, o)?;
                }
            }
        }
        Ok(())
    }

    /// The convolution of layer input `x` to output `out`.
    fn conv_shape(&self, x: usize, out: usize, k: usize) -> ConvShape {
        let (xs, os) = (self.graph.tensors[x], self.graph.tensors[out]);
        ConvShape {
            n: self.n,
            cin: xs.c,
            cout: os.c,
            h: xs.h,
            w: xs.w,
            k,
        }
    }

    /// The pooling of tensor `x`.
    fn pool_shape(&self, x: usize, k: usize, stride: usize) -> PoolShape {
        let s = self.graph.tensors[x];
        PoolShape {
            n: self.n,
            c: s.c,
            h: s.h,
            w: s.w,
            k,
            stride,
        }
    }

    fn copy_shape(
        &self,
        src: usize,
        dst: usize,
        src_off: usize,
        dst_off: usize,
        count: usize,
    ) -> CopyShape {
        let (ss, ds) = (self.graph.tensors[src], self.graph.tensors[dst]);
        CopyShape {
            n: self.n,
            hw: ss.h * ss.w,
            src_c: ss.c,
            src_off,
            dst_c: ds.c,
            dst_off,
            count,
        }
    }

    /// Backward of the last training forward, from the logits gradient in
    /// `grads[graph.logits]`: fills `param_grads` (every tensor gradient is
    /// zeroed first; the input image's is not computed).
    pub fn backward(&mut self, be: &mut B) -> BResult {
        for (t, g) in self.grads.iter_mut().enumerate() {
            if t != self.graph.logits {
                be.fill(g, 0.0)?;
            }
        }
        for layer in self.graph.layers.iter().rev() {
            match *layer {
                Layer::ConvBnRelu {
                    x,
                    pre,
                    out,
                    k,
                    params: [kw, g, b],
                    bn,
                    ..
                } => {
                    let chan = self.chan(out);
                    let [m, is] = &self.saved[bn];
                    let (dout, dpre) = pair(&mut self.grads, out, pre);
                    let (dg, db) = pair_mut(&mut self.param_grads, g, b);
                    be.bn_bwd(
                        &self.acts[pre],
                        &self.acts[out],
                        dout,
                        &self.params[g],
                        m,
                        is,
                        dpre,
                        dg,
                        db,
                        chan,
                        true,
                    )?;
                    let cs = self.conv_shape(x, out, k);
                    be.conv_bwd_filter(
                        &self.acts[x],
                        &self.grads[pre],
                        &mut self.param_grads[kw],
                        cs,
                    )?;
                    if x != 0 {
                        let (dp, dx) = pair(&mut self.grads, pre, x);
                        be.conv_bwd_data(dp, &self.params[kw], dx, cs, true)?;
                    }
                }
                Layer::MaxPool { x, out, k, stride } => {
                    let ps = self.pool_shape(x, k, stride);
                    let (dy, dx) = pair(&mut self.grads, out, x);
                    be.maxpool_bwd(&self.acts[x], &self.acts[out], dy, dx, ps, true)?;
                }
                Layer::Copy {
                    src,
                    dst,
                    src_off,
                    dst_off,
                    count,
                    ..
                } => {
                    // d src[src_off..] += d dst[dst_off..].
                    let cs = self.copy_shape(src, dst, src_off, dst_off, count);
                    let back = CopyShape {
                        src_c: cs.dst_c,
                        src_off: cs.dst_off,
                        dst_c: cs.src_c,
                        dst_off: cs.src_off,
                        ..cs
                    };
                    let (dd, ds) = pair(&mut self.grads, dst, src);
                    be.copy_channels(dd, ds, back, true)?;
                }
                Layer::AvgPool { x, out } => {
                    let chan = self.chan(x);
                    let (dy, dx) = pair(&mut self.grads, out, x);
                    be.avgpool_bwd(dy, dx, chan, true)?;
                }
                Layer::Dense {
                    x,
                    out,
                    params: [kw, b],
                } => {
                    let (inp, o) = (self.graph.tensors[x].c, self.graph.tensors[out].c);
                    let (dy, dx) = pair(&mut self.grads, out, x);
                    let (dw, db) = pair_mut(&mut self.param_grads, kw, b);
                    be.dense_bwd(
                        &self.acts[x],
                        &self.params[kw],
                        dy,
                        dx,
                        dw,
                        db,
                        self.n,
                        inp,
                        o,
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// Two distinct elements of a slice, both mutable.
fn pair_mut<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    debug_assert_ne!(a, b);
    if a < b {
        let (x, y) = v.split_at_mut(b);
        (&mut x[a], &mut y[0])
    } else {
        let (x, y) = v.split_at_mut(a);
        (&mut y[0], &mut x[b])
    }
}
