// Max pooling (3x3 stride 1 and 2x2 stride 2, TF `same` padding) and global
// average pooling over NCHW.
//
// Design. Forward: one thread per output. Max-pool backward gathers
// instead of scattering: one thread per input element visits the outputs
// whose window holds it and adds their gradient when it is that window's
// first maximum (TF's rule), so no atomics and a deterministic result.
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

extern "C" __global__ void maxpool_bwd_f32(const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ dx,
                                           PoolArgs s, int accumulate) {
    const long long total = (long long)s.n * s.c * s.h * s.w;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        const int ix = (int)(i % s.w), iy = (int)((i / s.w) % s.h);
        const long long plane = i / ((long long)s.h * s.w);
        const float* xp = x + plane * s.h * s.w;
        const float* dyp = dy + plane * s.oh * s.ow;
        const int me = iy * s.w + ix;
        float g = 0.0f;
        // Outputs whose window covers (iy, ix).
        const int oy_lo = max(0, (iy + s.ph - s.k + s.stride) / s.stride);
        const int oy_hi = min(s.oh - 1, (iy + s.ph) / s.stride);
        const int ox_lo = max(0, (ix + s.pw - s.k + s.stride) / s.stride);
        const int ox_hi = min(s.ow - 1, (ix + s.pw) / s.stride);
        for (int oy = oy_lo; oy <= oy_hi; oy++)
            for (int ox = ox_lo; ox <= ox_hi; ox++) {
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
