//! Shape of the full network (`model_builder.py`): network config, vertex channels and the trainable-parameter count.

use crate::cell::graph::Matrix;
use crate::cell::ops::{Op, UnknownOp};
use crate::cell::spec::ModelSpec;

/// The network around the cell (the original's `config.py` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Channels of the input images (3 for CIFAR-10).
    pub input_channels: usize,
    /// Filters of the stem 3x3 convolution (`stem_filter_size`, 128).
    pub stem_filters: usize,
    /// Stacks of modules (`num_stacks`, 3); each after the first halves the
    /// resolution and doubles the channels.
    pub num_stacks: usize,
    /// Modules per stack (`num_modules_per_stack`, 3).
    pub modules_per_stack: usize,
    /// Output classes (`num_labels`, 10).
    pub num_labels: usize,
}

impl Default for NetworkConfig {
    /// The configuration every NAS-Bench-101 cell was trained with.
    fn default() -> Self {
        NetworkConfig {
            input_channels: 3,
            stem_filters: 128,
            num_stacks: 3,
            modules_per_stack: 3,
            num_labels: 10,
        }
    }
}

/// Why a network cannot be built from a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// The spec is invalid (input does not reach output).
    #[error("invalid spec, provided graph is disconnected.")]
    Disconnected,
    /// An interior op the model builder does not know.
    #[error(transparent)]
    UnknownOp(#[from] UnknownOp),
    /// A vertex would get no channels (output channels smaller than the
    /// number of vertices feeding the output, or an unpruned matrix).
    #[error("vertex {vertex} gets 0 channels (module output channels {output_channels})")]
    NoChannels {
        /// The vertex.
        vertex: usize,
        /// The module's output channels.
        output_channels: usize,
    },
}

/// The original's `compute_vertex_channels(input_channels, output_channels,
/// matrix)` for a pruned matrix: the output's channels are split among the
/// vertices feeding it (the remainder going one each to the first ones);
/// every other interior vertex takes the max of its successors.
pub fn compute_vertex_channels(
    input_channels: usize,
    output_channels: usize,
    matrix: &Matrix,
) -> Result<Vec<usize>, NetworkError> {
    let n = matrix.n();
    let mut vc = vec![0usize; n];
    if n == 0 {
        return Ok(vc);
    }
    vc[0] = input_channels;
    vc[n - 1] = output_channels;
    if n == 2 {
        return Ok(vc);
    }
    let out = n - 1;
    // In-degree of the output, ignoring the input vertex.
    let fan_in = (1..out).filter(|&v| matrix.get(v, out)).count();
    if fan_in == 0 {
        return Err(NetworkError::NoChannels {
            vertex: 1,
            output_channels,
        });
    }
    let interior = output_channels / fan_in;
    let mut correction = output_channels % fan_in;
    for (v, c) in vc.iter_mut().enumerate().take(out).skip(1) {
        if matrix.get(v, out) {
            *c = interior;
            if correction > 0 {
                *c += 1;
                correction -= 1;
            }
        }
    }
    // Backwards, so that successors are set first; vertex n-2 can only feed
    // the output.
    for v in (1..n.saturating_sub(2)).rev() {
        if !matrix.get(v, out) {
            for dst in v + 1..out {
                if matrix.get(v, dst) {
                    vc[v] = vc[v].max(vc[dst]);
                }
            }
        }
    }
    if let Some(v) = (1..out).find(|&v| vc[v] == 0) {
        return Err(NetworkError::NoChannels {
            vertex: v,
            output_channels,
        });
    }
    Ok(vc)
}

/// Parameters of conv (no bias) + batch norm (gamma, beta).
fn conv_bn_relu(kernel: usize, cin: usize, cout: usize) -> u64 {
    (kernel * kernel * cin * cout + 2 * cout) as u64
}

/// Trainable parameters of one op applied to `c` channels.
pub fn op_parameters(op: Op, c: usize) -> u64 {
    match op {
        Op::Conv3x3BnRelu => conv_bn_relu(3, c, c),
        Op::Conv1x1BnRelu | Op::MaxPool3x3Conv1x1 => conv_bn_relu(1, c, c),
        Op::MaxPool3x3 | Op::Identity => 0,
        Op::Bottleneck3x3 => {
            conv_bn_relu(1, c, c / 4) + conv_bn_relu(3, c / 4, c / 4) + conv_bn_relu(1, c / 4, c)
        }
        Op::Bottleneck5x5 => {
            conv_bn_relu(1, c, c / 4) + conv_bn_relu(5, c / 4, c / 4) + conv_bn_relu(1, c / 4, c)
        }
    }
}

/// Trainable parameters of one module (`build_module`) with `cin` input and
/// `c` output channels: input projections (1x1 conv-bn-relu) into interior
/// vertices and the output, plus each interior op at its vertex channels.
pub fn module_parameters(
    matrix: &Matrix,
    ops: &[Op],
    cin: usize,
    c: usize,
) -> Result<u64, NetworkError> {
    let n = matrix.n();
    let vc = compute_vertex_channels(cin, c, matrix)?;
    let mut total = 0;
    for t in 1..n.saturating_sub(1) {
        if matrix.get(0, t) {
            total += conv_bn_relu(1, cin, vc[t]);
        }
        total += op_parameters(ops[t - 1], vc[t]);
    }
    if n >= 2 && matrix.get(0, n - 1) {
        total += conv_bn_relu(1, cin, c);
    }
    Ok(total)
}

/// Trainable parameters of the whole network (stem, stacks of modules,
/// dense layer) for a pruned `matrix` and its interior `ops`.
pub fn network_parameters(
    matrix: &Matrix,
    interior_ops: &[Op],
    config: &NetworkConfig,
) -> Result<u64, NetworkError> {
    let mut total = conv_bn_relu(3, config.input_channels, config.stem_filters);
    let mut cin = config.stem_filters;
    for stack in 0..config.num_stacks {
        if config.modules_per_stack == 0 {
            continue;
        }
        let c = if stack > 0 { cin * 2 } else { cin };
        // The first module maps cin -> c channels, the others c -> c.
        total += module_parameters(matrix, interior_ops, cin, c)?;
        total +=
            (config.modules_per_stack as u64 - 1) * module_parameters(matrix, interior_ops, c, c)?;
        cin = c;
    }
    total += (cin * config.num_labels + config.num_labels) as u64;
    Ok(total)
}

/// The trainable-parameter count of the full network for `spec` (after
/// pruning), as the dataset's `trainable_parameters` reports it.
pub fn trainable_parameters(spec: &ModelSpec, config: &NetworkConfig) -> Result<u64, NetworkError> {
    let (matrix, interior) = pruned_cell(spec)?;
    network_parameters(matrix, &interior, config)
}

/// The pruned matrix of `spec` and the ops of its interior vertices.
pub fn pruned_cell(spec: &ModelSpec) -> Result<(&Matrix, Vec<Op>), NetworkError> {
    let (matrix, ops) = spec
        .matrix()
        .zip(spec.ops())
        .ok_or(NetworkError::Disconnected)?;
    let interior = ops[1..ops.len() - 1]
        .iter()
        .map(|o| o.parse::<Op>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok((matrix, interior))
}
