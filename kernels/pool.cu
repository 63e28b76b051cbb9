// Max pooling (3x3 stride 1 and 2x2 stride 2, TF `same` padding) and global
// average pooling over NCHW.
//
// Design. Forward: one thread per output. Max-pool backward gathers
// instead of scattering: one thread per input element visits the outputs
// whose window holds it and adds their gradient when it is that window's
// first maximum (TF's rule), so no atomics and a deterministic result; the
// forward output rules out most windows before any scan.
// Average pool: one warp per (image, channel) plane.
//
// Shapes: x [n][c][h][w], y [n][c][oh][ow] with oh = ceil(h / stride).

struct PoolArgs {
    int n, c, h, w, k, stride, oh, ow, ph, pw;
};

// Index (in the plane) of the first maximum of output (oy, ox)'s window.
__device__ __forceinline__ int window_argmax(const float* __restrict__ plane, PoolArgs s, int oy, int ox, float* best_out) {
    int arg = -1;
    float best = 0.0f;
    for (int ky = 0; ky < s.k; ky++) {
        const int iy = oy * s.stride + ky - s.ph;
        if (iy < 0 || iy >= s.h) continue;
        for (int kx = 0; kx < s.k; kx++) {
            const int ix = ox * s.stride + kx - s.pw;
            if (ix < 0 || ix >= s.w) continue;
            const float v = plane[iy * s.w + ix];
            if (arg < 0 || v > best) {
                best = v;
                arg = iy * s.w + ix;
            }
        }
    }
    *best_out = best;
    return arg;
}

extern "C" __global__ void maxpool_fwd_f32(const float* __restrict__ x, float* __restrict__ y, PoolArgs s) {
    const long long total = (long long)s.n * s.c * s.oh * s.ow;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        const int ox = (int)(i % s.ow), oy = (int)((i / s.ow) % s.oh);
        const long long plane = i / ((long long)s.oh * s.ow);
        float best;
        window_argmax(x + plane * s.h * s.w, s, oy, ox, &best);
        y[i] = best;
    }
}

// Splits a flat NCHW index into (plane, offset in the plane): 32-bit
// division when the tensor allows it (64-bit division costs ~10x more).
__device__ __forceinline__ void split_index(long long i, long long total, int plane_size, long long* plane, int* at) {
    if (total <= 0x7fffffffLL) {
        const int ii = (int)i, p = ii / plane_size;
        *plane = p;
        *at = ii - p * plane_size;
    } else {
        *plane = i / plane_size;
        *at = (int)(i - *plane * plane_size);
    }
}

// Gradient of max pooling. `y` is the forward output: an output whose
// maximum exceeds this input cannot have it as its argmax, which spares
// the window scan for almost every (input, output) pair.
extern "C" __global__ void maxpool_bwd_f32(const float* __restrict__ x, const float* __restrict__ y,
                                           const float* __restrict__ dy, float* __restrict__ dx, PoolArgs s,
                                           int accumulate) {
    const long long total = (long long)s.n * s.c * s.h * s.w;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        long long plane;
        int me;
        split_index(i, total, s.h * s.w, &plane, &me);
        const int iy = me / s.w, ix = me - iy * s.w;
        const float* xp = x + plane * s.h * s.w;
        const float* yp = y + plane * s.oh * s.ow;
        const float* dyp = dy + plane * s.oh * s.ow;
        const float xv = xp[me];
        float g = 0.0f;
        // Outputs whose window covers (iy, ix).
        const int oy_lo = max(0, (iy + s.ph - s.k + s.stride) / s.stride);
        const int oy_hi = min(s.oh - 1, (iy + s.ph) / s.stride);
        const int ox_lo = max(0, (ix + s.pw - s.k + s.stride) / s.stride);
        const int ox_hi = min(s.ow - 1, (ix + s.pw) / s.stride);
        for (int oy = oy_lo; oy <= oy_hi; oy++)
            for (int ox = ox_lo; ox <= ox_hi; ox++) {
                // (A NaN compares false and takes the full scan.)
                if (xv < yp[oy * s.ow + ox]) continue;
                float best;
                if (window_argmax(xp, s, oy, ox, &best) == me) g += dyp[oy * s.ow + ox];
            }
        dx[i] = accumulate ? dx[i] + g : g;
    }
}

// y [n][c] = mean of each hw plane; one warp per plane.
extern "C" __global__ void avgpool_fwd_f32(const float* __restrict__ x, float* __restrict__ y, int planes, int hw) {
    const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (warp >= planes) return;
    float s = 0.0f;
    for (int i = lane; i < hw; i += 32) s += x[(long long)warp * hw + i];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
    if (lane == 0) y[warp] = s / hw;
}

// dx (+)= dy / hw broadcast over each plane.
extern "C" __global__ void avgpool_bwd_f32(const float* __restrict__ dy, float* __restrict__ dx, long long total, int hw, int accumulate) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        const float v = dy[i / hw] / hw;
        dx[i] = accumulate ? dx[i] + v : v;
    }
}
