//! The tensor operations training needs, as one trait that the CPU reference and the CUDA backend implement.
//!
//! Layout: **NCHW**, f32, densely packed (`[n][c][h][w]`). NCHW keeps a
//! channel range of one image contiguous, so channel concat and truncation
//! are block copies, batch-norm statistics are per-channel reductions over
//! contiguous runs, and implicit-GEMM convolution kernels read `h*w` runs.
//! Buffers are opaque to the network and trainer (host vectors on the CPU,
//! device allocations on a GPU); scalars reach the host only through
//! [`Backend::download`], so a training step needs no synchronisation
//! unless the trainer asks for a value.

/// Why a backend operation failed (device errors; the CPU never fails).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// No CUDA driver could be loaded.
    #[error("no CUDA driver found ({0})")]
    NoDriver(String),
    /// A device call failed.
    #[error("{what}: {message}")]
    Device {
        /// The operation.
        what: String,
        /// The driver's message.
        message: String,
    },
    /// Buffers whose sizes do not fit the shape (a bug in the caller).
    #[error("{0}: buffer sizes do not match the shape")]
    Shape(&'static str),
}

/// Result of a backend operation.
pub type BResult<T = ()> = Result<T, BackendError>;

/// A stride-1 `same` convolution without bias: `x [n][cin][h][w]`,
/// `w [cout][cin][k][k]`, `y [n][cout][h][w]`, padding `k / 2` (odd `k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// Images.
    pub n: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Kernel size (1, 3 or 5).
    pub k: usize,
}

impl ConvShape {
    /// Elements of the input.
    pub fn x_len(&self) -> usize {
        self.n * self.cin * self.h * self.w
    }
    /// Elements of the output.
    pub fn y_len(&self) -> usize {
        self.n * self.cout * self.h * self.w
    }
    /// Elements of the kernel.
    pub fn w_len(&self) -> usize {
        self.cout * self.cin * self.k * self.k
    }
}

/// A per-channel operation over `[n][c][hw]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChanShape {
    /// Images.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Pixels per channel (`h * w`).
    pub hw: usize,
}

impl ChanShape {
    /// Elements.
    pub fn len(&self) -> usize {
        self.n * self.c * self.hw
    }
    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Max pooling with TF's `same` padding: output `ceil(h / stride)`, the
/// padding split with the smaller half before; padded cells never win.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolShape {
    /// Images.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Window (3 or 2).
    pub k: usize,
    /// Stride (1 or 2).
    pub stride: usize,
}

impl PoolShape {
    /// Output height and width.
    pub fn out_hw(&self) -> (usize, usize) {
        (self.h.div_ceil(self.stride), self.w.div_ceil(self.stride))
    }
    /// Padding before the first row and column.
    pub fn pad(&self) -> (usize, usize) {
        let (oh, ow) = self.out_hw();
        let ph = ((oh - 1) * self.stride + self.k).saturating_sub(self.h);
        let pw = ((ow - 1) * self.stride + self.k).saturating_sub(self.w);
        (ph / 2, pw / 2)
    }
    /// Elements of the input.
    pub fn x_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    /// Elements of the output.
    pub fn y_len(&self) -> usize {
        let (oh, ow) = self.out_hw();
        self.n * self.c * oh * ow
    }
}

/// Copy of a channel range between two NCHW tensors of the same `n`, `hw`:
/// channels `src_off..src_off + count` of `src` (which has `src_c`) go to
/// `dst_off..dst_off + count` of `dst` (which has `dst_c`). This one
/// operation is truncation (a prefix), concatenation (an offset) and,
/// accumulating, the sum at a vertex and every backward of those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyShape {
    /// Images.
    pub n: usize,
    /// Pixels per channel.
    pub hw: usize,
    /// Channels of the source tensor.
    pub src_c: usize,
    /// First source channel.
    pub src_off: usize,
    /// Channels of the destination tensor.
    pub dst_c: usize,
    /// First destination channel.
    pub dst_off: usize,
    /// Channels copied.
    pub count: usize,
}

/// Batch-norm hyper-parameters (TF: momentum 0.997, epsilon 1e-5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BnParams {
    /// Moving-average momentum.
    pub momentum: f32,
    /// Added to the variance.
    pub eps: f32,
}

/// TF1 `RMSPropOptimizer` with momentum, plus the weight-decay gradient:
/// `g' = g + wd w; ms = decay ms + (1 - decay) g'^2;
/// mom = momentum mom + lr g' / sqrt(ms + eps); w -= mom`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsProp {
    /// Learning rate of this step.
    pub lr: f32,
    /// Mean-square decay (0.9).
    pub decay: f32,
    /// Momentum (0.9).
    pub momentum: f32,
    /// Epsilon inside the square root (1.0).
    pub eps: f32,
    /// Weight decay (1e-4): the L2 term `wd * sum(w^2) / 2` of the loss.
    pub weight_decay: f32,
}

/// Augmentation of one image: crop offset into the 4-pixel zero-padded
/// image (0..=8 each) and horizontal flip. Chosen by the trainer's seeded
/// generator, so every backend sees the same crops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Crop {
    /// Row offset into the padded image.
    pub dy: u8,
    /// Column offset into the padded image.
    pub dx: u8,
    /// Mirror left-right.
    pub flip: bool,
}

/// Tensor operations over opaque f32 buffers (see the module docs for the
/// layout). Backward operations that produce an input gradient add into it
/// when `accumulate` is set (a tensor with several consumers sums their
/// gradients) and overwrite it otherwise.
pub trait Backend {
    /// A buffer of f32 on the backend's device.
    type Buf;

    /// A short name (`cpu`, `cuda`).
    fn name(&self) -> &'static str;
    /// The device, in words (CPU model, GPU name).
    fn device_name(&self) -> String;

    /// A zero-filled buffer of `len` elements.
    fn zeros(&mut self, len: usize) -> BResult<Self::Buf>;
    /// A buffer holding `data`.
    fn upload(&mut self, data: &[f32]) -> BResult<Self::Buf>;
    /// Copies `data` into the start of `buf`.
    fn write(&mut self, buf: &mut Self::Buf, data: &[f32]) -> BResult;
    /// The contents of `buf` (waits for pending work).
    fn download(&mut self, buf: &Self::Buf) -> BResult<Vec<f32>>;
    /// Sets every element to `value`.
    fn fill(&mut self, buf: &mut Self::Buf, value: f32) -> BResult;

    /// `y = conv(x, w)`.
    fn conv_fwd(
        &mut self,
        x: &Self::Buf,
        w: &Self::Buf,
        y: &mut Self::Buf,
        s: ConvShape,
    ) -> BResult;
    /// `dx (+)= conv_transpose(dy, w)`.
    fn conv_bwd_data(
        &mut self,
        dy: &Self::Buf,
        w: &Self::Buf,
        dx: &mut Self::Buf,
        s: ConvShape,
        accumulate: bool,
    ) -> BResult;
    /// `dw = sum over images and pixels of dy (x) x` (overwrites).
    fn conv_bwd_filter(
        &mut self,
        x: &Self::Buf,
        dy: &Self::Buf,
        dw: &mut Self::Buf,
        s: ConvShape,
    ) -> BResult;

    /// Training batch norm (then ReLU when `relu`): normalizes with the
    /// batch mean and biased variance, saves the mean and `1/sqrt(var +
    /// eps)` for the backward, and moves the running mean and the running
    /// variance (fed the unbiased batch variance, as TF's fused op does).
    #[allow(clippy::too_many_arguments)]
    fn bn_train_fwd(
        &mut self,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        y: &mut Self::Buf,
        save_mean: &mut Self::Buf,
        save_invstd: &mut Self::Buf,
        running_mean: &mut Self::Buf,
        running_var: &mut Self::Buf,
        s: ChanShape,
        p: BnParams,
        relu: bool,
    ) -> BResult;
    /// Evaluation batch norm with the running statistics (then ReLU).
    #[allow(clippy::too_many_arguments)]
    fn bn_eval_fwd(
        &mut self,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        running_mean: &Self::Buf,
        running_var: &Self::Buf,
        y: &mut Self::Buf,
        s: ChanShape,
        p: BnParams,
        relu: bool,
    ) -> BResult;
    /// Backward of [`Backend::bn_train_fwd`] (with its ReLU when `relu`,
    /// using the saved output `y` as the mask): overwrites `dx`, `dgamma`,
    /// `dbeta`.
    #[allow(clippy::too_many_arguments)]
    fn bn_bwd(
        &mut self,
        x: &Self::Buf,
        y: &Self::Buf,
        dy: &Self::Buf,
        gamma: &Self::Buf,
        save_mean: &Self::Buf,
        save_invstd: &Self::Buf,
        dx: &mut Self::Buf,
        dgamma: &mut Self::Buf,
        dbeta: &mut Self::Buf,
        s: ChanShape,
        relu: bool,
    ) -> BResult;

    /// Max pooling.
    fn maxpool_fwd(&mut self, x: &Self::Buf, y: &mut Self::Buf, s: PoolShape) -> BResult;
    /// Routes each output gradient to the first maximum of its window
    /// (adds into `dx` when `accumulate`).
    fn maxpool_bwd(
        &mut self,
        x: &Self::Buf,
        y: &Self::Buf,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
        s: PoolShape,
        accumulate: bool,
    ) -> BResult;

    /// Channel-range copy (see [`CopyShape`]); adds when `accumulate`.
    fn copy_channels(
        &mut self,
        src: &Self::Buf,
        dst: &mut Self::Buf,
        s: CopyShape,
        accumulate: bool,
    ) -> BResult;

    /// `y [n][c] = mean over hw of x [n][c][hw]`.
    fn avgpool_fwd(&mut self, x: &Self::Buf, y: &mut Self::Buf, s: ChanShape) -> BResult;
    /// `dx (+)= dy / hw` broadcast over hw.
    fn avgpool_bwd(
        &mut self,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
        s: ChanShape,
        accumulate: bool,
    ) -> BResult;

    /// `y [n][out] = x [n][inp] w [inp][out] + b [out]`.
    #[allow(clippy::too_many_arguments)]
    fn dense_fwd(
        &mut self,
        x: &Self::Buf,
        w: &Self::Buf,
        b: &Self::Buf,
        y: &mut Self::Buf,
        n: usize,
        inp: usize,
        out: usize,
    ) -> BResult;
    /// Overwrites `dx`, `dw`, `db`.
    #[allow(clippy::too_many_arguments)]
    fn dense_bwd(
        &mut self,
        x: &Self::Buf,
        w: &Self::Buf,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
        dw: &mut Self::Buf,
        db: &mut Self::Buf,
        n: usize,
        inp: usize,
        out: usize,
    ) -> BResult;

    /// Mean softmax cross-entropy of `logits [n][k]` against `labels [n]`
    /// (class indices stored as f32): writes `dlogits = (softmax - onehot) /
    /// n`, adds the batch's summed loss to `stats[0]` and its count of
    /// correct argmax predictions to `stats[1]`.
    fn softmax_xent(
        &mut self,
        logits: &Self::Buf,
        labels: &Self::Buf,
        dlogits: &mut Self::Buf,
        stats: &mut Self::Buf,
        n: usize,
        k: usize,
    ) -> BResult;
    /// Adds the count of correct argmax predictions to `stats[1]` (evaluation).
    fn count_correct(
        &mut self,
        logits: &Self::Buf,
        labels: &Self::Buf,
        stats: &mut Self::Buf,
        n: usize,
        k: usize,
    ) -> BResult;
    /// Adds `sum(w^2) / 2` to `acc[0]` (the L2 term, for reporting).
    fn add_half_sum_squares(&mut self, w: &Self::Buf, acc: &mut Self::Buf) -> BResult;

    /// One TF1 RMSProp step with weight decay (see [`RmsProp`]).
    fn rmsprop(
        &mut self,
        w: &mut Self::Buf,
        g: &Self::Buf,
        ms: &mut Self::Buf,
        mom: &mut Self::Buf,
        p: RmsProp,
    ) -> BResult;

    /// Builds a normalized input batch `out [n][3][h][w]` from raw CIFAR
    /// bytes `images [n][3][h][w]` (u8, channel-major as the release stores
    /// them): optional pad-4 / crop / flip per image, then `(v - mean[c]) /
    /// std[c]`.
    #[allow(clippy::too_many_arguments)]
    fn load_images(
        &mut self,
        images: &[u8],
        crops: Option<&[Crop]>,
        out: &mut Self::Buf,
        n: usize,
        h: usize,
        w: usize,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> BResult;
}
