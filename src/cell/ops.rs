//! The operations a cell's vertices can hold: names, hash labels and the dataset's canonical order.

use std::fmt;
use std::str::FromStr;

/// Name of the first vertex of every cell.
pub const INPUT: &str = "input";
/// Name of the last vertex of every cell.
pub const OUTPUT: &str = "output";
/// Hash label of the input vertex.
pub const INPUT_LABEL: i64 = -1;
/// Hash label of the output vertex.
pub const OUTPUT_LABEL: i64 = -2;

/// The dataset's `available_ops`, in canonical order: an op's index here is
/// its hash label.
pub const CANONICAL_OPS: [&str; 3] = ["conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"];

/// Every operation the original model builder (`base_ops.OP_MAP`) knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// 3x3 convolution, batch norm, ReLU (`conv3x3-bn-relu`, label 0).
    Conv3x3BnRelu,
    /// 1x1 convolution, batch norm, ReLU (`conv1x1-bn-relu`, label 1).
    Conv1x1BnRelu,
    /// 3x3 max-pool, stride 1, `same` padding (`maxpool3x3`, label 2).
    MaxPool3x3,
    /// Identity (`identity`); not in the dataset.
    Identity,
    /// 1x1 (C/4), 3x3 (C/4), 1x1 (C) conv-bn-relu stack (`bottleneck3x3`); not in the dataset.
    Bottleneck3x3,
    /// 1x1 (C/4), 5x5 (C/4), 1x1 (C) conv-bn-relu stack (`bottleneck5x5`); not in the dataset.
    Bottleneck5x5,
    /// 3x3 max-pool then 1x1 conv-bn-relu (`maxpool3x3-conv1x1`); not in the dataset.
    MaxPool3x3Conv1x1,
}

impl Op {
    /// All seven ops; the first three are the dataset's, in canonical order.
    pub const ALL: [Op; 7] = [
        Op::Conv3x3BnRelu,
        Op::Conv1x1BnRelu,
        Op::MaxPool3x3,
        Op::Identity,
        Op::Bottleneck3x3,
        Op::Bottleneck5x5,
        Op::MaxPool3x3Conv1x1,
    ];

    /// The op's name as the original spells it.
    pub fn name(self) -> &'static str {
        match self {
            Op::Conv3x3BnRelu => "conv3x3-bn-relu",
            Op::Conv1x1BnRelu => "conv1x1-bn-relu",
            Op::MaxPool3x3 => "maxpool3x3",
            Op::Identity => "identity",
            Op::Bottleneck3x3 => "bottleneck3x3",
            Op::Bottleneck5x5 => "bottleneck5x5",
            Op::MaxPool3x3Conv1x1 => "maxpool3x3-conv1x1",
        }
    }

    /// The op with this exact name.
    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    /// The hash label (index in [`CANONICAL_OPS`]), for the dataset's three ops.
    pub fn canonical_label(self) -> Option<i64> {
        CANONICAL_OPS
            .iter()
            .position(|&n| n == self.name())
            .map(|i| i as i64)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of the seven ops.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown op {0:?} (known ops: {known})", known = known_ops())]
pub struct UnknownOp(pub String);

fn known_ops() -> String {
    Op::ALL.map(Op::name).join(", ")
}

impl FromStr for Op {
    type Err = UnknownOp;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Op::from_name(s).ok_or_else(|| UnknownOp(s.to_string()))
    }
}

/// Name of the vertex with this hash label (-1 input, 0..=2 canonical op, -2 output).
pub fn label_name(label: i64) -> Option<&'static str> {
    match label {
        INPUT_LABEL => Some(INPUT),
        OUTPUT_LABEL => Some(OUTPUT),
        0..=2 => Some(CANONICAL_OPS[label as usize]),
        _ => None,
    }
}

/// Python's `repr` of a list of strings: `['a', 'b']`, as the original's
/// error messages print `available_ops`.
pub fn python_list_repr<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<String> = items.iter().map(|s| format!("'{}'", s.as_ref())).collect();
    format!("[{}]", inner.join(", "))
}
