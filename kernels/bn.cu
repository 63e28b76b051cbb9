// Batch normalization over NCHW, with the ReLU that follows it fused.
//
// Design. Statistics are per channel, but one block per channel leaves most
// of a GPU idle (128 channels, 132 SMs), so each channel's n*h*w values are
// split into `slices` blocks (grid slices x channels) that write partial
// sums to a small scratch buffer; a per-channel finalize kernel combines
// them. Mean and variance take two such passes (mean, then centred
// squares: the accuracy of the f64 CPU reference); the finalize writes the
// saved mean and 1/sqrt(var + eps) and moves the running mean and variance
// (fed the unbiased variance, as TF's fused batch norm does).
// Normalization is elementwise with a per-channel scale and shift. The
// backward reduces sum(dy') and sum(dy' xhat) per channel the same way
// (dy' = dy masked by the ReLU, using the saved output), then writes dx
// elementwise.
//
// Shapes: x, y, dy, dx [n][c][hw]; gamma, beta, mean, invstd, running [c].

#define THREADS 256

__device__ __forceinline__ float block_sum(float v, float* shared) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    float t = 0.0f;
    if (threadIdx.x < 32) {
        t = threadIdx.x < blockDim.x / 32 ? shared[threadIdx.x] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffff, t, o);
        if (threadIdx.x == 0) shared[0] = t;
    }
    __syncthreads();
    return shared[0];
}

// Channel of flat NCHW index i: 32-bit division when the tensor allows
// it (64-bit division costs ~10x more and these kernels are memory-bound).
__device__ __forceinline__ int channel_of(long long i, long long total, int c, int hw) {
    if (total <= 0x7fffffffLL) return ((int)i / hw) % c;
    return (int)((i / hw) % c);
}

// y = relu?(gamma (x - mean) invstd + beta), elementwise. `invstd` is the
// saved one (training) or null with `var` given (evaluation).
extern "C" __global__ void bn_apply_fwd_f32(const float* __restrict__ x, const float* __restrict__ gamma,
                                            const float* __restrict__ beta, const float* __restrict__ mean,
                                            const float* __restrict__ invstd, const float* __restrict__ var,
                                            float* __restrict__ y, long long total, int c, int hw, float eps, int relu) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        const int ch = channel_of(i, total, c, hw);
        const float is = invstd ? invstd[ch] : rsqrtf(var[ch] + eps);
        float v = gamma[ch] * (x[i] - mean[ch]) * is + beta[ch];
        y[i] = relu ? fmaxf(v, 0.0f) : v;
    }
}

// Partial sums of one slice of one channel (grid: slices x channels).
// what 0: sum x -> part[0]; 1: sum (x - mean)^2 -> part[0];
// 2: sum dy', sum dy' xhat -> part[0], part[1]. part is [c][slices][2].
extern "C" __global__ void __launch_bounds__(THREADS) bn_partial_fwd_f32(const float* __restrict__ x, const float* __restrict__ y,
                                                                         const float* __restrict__ dy, const float* __restrict__ mean,
                                                                         const float* __restrict__ invstd, float* __restrict__ part,
                                                                         int n, int c, int hw, int what, int relu) {
    __shared__ float red[32];
    const int slice = blockIdx.x, slices = gridDim.x, ch = blockIdx.y;
    const int count = n * hw;
    const int per = (count + slices - 1) / slices;
    const int begin = slice * per, end = min(count, begin + per);
    const float m = (what >= 1) ? mean[ch] : 0.0f;
    const float is = (what == 2) ? invstd[ch] : 0.0f;
    float a = 0.0f, b = 0.0f;
    // (img, p) of element i = img * hw + p, advanced without dividing.
    int img = (begin + threadIdx.x) / hw, p = (begin + threadIdx.x) - img * hw;
    for (int i = begin + threadIdx.x; i < end; i += blockDim.x) {
        const long long at = ((long long)img * c + ch) * hw + p;
        p += blockDim.x;
        while (p >= hw) {
            p -= hw;
            img++;
        }
        if (what == 0) {
            a += x[at];
        } else if (what == 1) {
            const float d = x[at] - m;
            a += d * d;
        } else {
            const float g = (relu && y[at] <= 0.0f) ? 0.0f : dy[at];
            a += g;
            b += g * (x[at] - m) * is;
        }
    }
    a = block_sum(a, red);
    if (what == 2) b = block_sum(b, red);
    if (threadIdx.x == 0) {
        part[((long long)ch * slices + slice) * 2] = a;
        part[((long long)ch * slices + slice) * 2 + 1] = b;
    }
}

// One thread per channel: combines the slices. what 0: save_mean = sum / count;
// 1: save_invstd and the running averages from the centred squares;
// 2: dbeta, dgamma.
extern "C" __global__ void bn_finalize_fwd_f32(const float* __restrict__ part, int slices, float* __restrict__ save_mean,
                                               float* __restrict__ save_invstd, float* __restrict__ running_mean,
                                               float* __restrict__ running_var, float* __restrict__ dgamma,
                                               float* __restrict__ dbeta, int c, int count, float momentum, float eps,
                                               int what) {
    const int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    float a = 0.0f, b = 0.0f;
    for (int s = 0; s < slices; s++) {
        a += part[((long long)ch * slices + s) * 2];
        b += part[((long long)ch * slices + s) * 2 + 1];
    }
    if (what == 0) {
        save_mean[ch] = a / count;
    } else if (what == 1) {
        const float var = a / count;
        save_invstd[ch] = rsqrtf(var + eps);
        const float unbiased = count > 1 ? var * count / (count - 1) : var;
        running_mean[ch] = momentum * running_mean[ch] + (1.0f - momentum) * save_mean[ch];
        running_var[ch] = momentum * running_var[ch] + (1.0f - momentum) * unbiased;
    } else {
        dbeta[ch] = a;
        dgamma[ch] = b;
    }
}

// dx = gamma invstd / N (N dy' - dbeta - xhat dgamma), elementwise.
extern "C" __global__ void bn_dx_bwd_f32(const float* __restrict__ x, const float* __restrict__ y, const float* __restrict__ dy,
                                         const float* __restrict__ gamma, const float* __restrict__ mean,
                                         const float* __restrict__ invstd, const float* __restrict__ dgamma,
                                         const float* __restrict__ dbeta, float* __restrict__ dx, long long total,
                                         int c, int hw, int count, int relu) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        const int ch = channel_of(i, total, c, hw);
        const float is = invstd[ch];
        const float g = (relu && y[i] <= 0.0f) ? 0.0f : dy[i];
        const float xhat = (x[i] - mean[ch]) * is;
        dx[i] = gamma[ch] * is / count * (count * g - dbeta[ch] - xhat * dgamma[ch]);
    }
}
