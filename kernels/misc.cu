// Everything else a training step runs: channel copies (truncate, concat,
// vertex sums), the dense layer, softmax cross-entropy and accuracy, the L2
// term, the fused RMSProp + weight-decay update, fills, and the CIFAR input
// pipeline (pad, crop, flip, normalize) on the device.
//
// Design. All elementwise kernels use grid-stride loops over 64-bit
// indices. The dense layer is tiny (n x 512 x 10): one thread per output
// element. Reductions that feed host-side statistics (loss, correct
// count, L2) accumulate with atomics into a 2-float stats buffer that the
// host reads only when it needs a value.

#define GRID_LOOP(i, total) \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (total); i += (long long)gridDim.x * blockDim.x)

extern "C" __global__ void fill_fwd_f32(float* __restrict__ x, long long total, float value) {
    GRID_LOOP(i, total) x[i] = value;
}

// dst[img][dst_off + j][pix] (+)= src[img][src_off + j][pix], j < count.
extern "C" __global__ void copy_channels_fwd_f32(const float* __restrict__ src, float* __restrict__ dst, int n, int hw,
                                                 int src_c, int src_off, int dst_c, int dst_off, int count, int accumulate) {
    const long long per = (long long)count * hw, total = (long long)n * per;
    GRID_LOOP(i, total) {
        // 32-bit division when the tensor allows it (64-bit costs ~10x more).
        long long img, r;
        if (total <= 0x7fffffffLL) {
            const int ii = (int)i, im = ii / (int)per;
            img = im;
            r = ii - im * (int)per;
        } else {
            img = i / per;
            r = i - img * per;
        }
        const float v = src[(img * src_c + src_off) * hw + r];
        float* d = dst + (img * dst_c + dst_off) * hw + r;
        *d = accumulate ? *d + v : v;
    }
}

// y [n][out] = x [n][inp] w [inp][out] + b.
extern "C" __global__ void dense_fwd_f32(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,
                                         float* __restrict__ y, int n, int inp, int out) {
    GRID_LOOP(i, (long long)n * out) {
        const int r = (int)(i / out), j = (int)(i % out);
        float s = b[j];
        for (int k = 0; k < inp; k++) s += x[(long long)r * inp + k] * w[(long long)k * out + j];
        y[i] = s;
    }
}

// dx = dy w^T; dw = x^T dy; db = sum dy (all overwritten).
extern "C" __global__ void dense_bwd_f32(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ dy,
                                         float* __restrict__ dx, float* __restrict__ dw, float* __restrict__ db,
                                         int n, int inp, int out) {
    const long long ndx = (long long)n * inp, ndw = (long long)inp * out;
    GRID_LOOP(i, ndx + ndw + out) {
        if (i < ndx) {
            const int r = (int)(i / inp), k = (int)(i % inp);
            float s = 0.0f;
            for (int j = 0; j < out; j++) s += dy[(long long)r * out + j] * w[(long long)k * out + j];
            dx[i] = s;
        } else if (i < ndx + ndw) {
            const long long e = i - ndx;
            const int k = (int)(e / out), j = (int)(e % out);
            float s = 0.0f;
            for (int r = 0; r < n; r++) s += x[(long long)r * inp + k] * dy[(long long)r * out + j];
            dw[e] = s;
        } else {
            const int j = (int)(i - ndx - ndw);
            float s = 0.0f;
            for (int r = 0; r < n; r++) s += dy[(long long)r * out + j];
            db[j] = s;
        }
    }
}

// One thread per row: dlogits = (softmax - onehot) / n; stats[0] += loss,
// stats[1] += correct (first argmax).
extern "C" __global__ void softmax_xent_fwd_f32(const float* __restrict__ logits, const float* __restrict__ labels,
                                                float* __restrict__ dlogits, float* __restrict__ stats, int n, int k) {
    GRID_LOOP(r, (long long)n) {
        const float* row = logits + r * k;
        const int label = (int)labels[r];
        int arg = 0;
        float mx = row[0];
        for (int j = 1; j < k; j++)
            if (row[j] > mx) { mx = row[j]; arg = j; }
        float sum = 0.0f;
        for (int j = 0; j < k; j++) sum += expf(row[j] - mx);
        atomicAdd(&stats[0], logf(sum) - (row[label] - mx));
        if (arg == label) atomicAdd(&stats[1], 1.0f);
        for (int j = 0; j < k; j++) dlogits[r * k + j] = (expf(row[j] - mx) / sum - (j == label ? 1.0f : 0.0f)) / n;
    }
}

extern "C" __global__ void count_correct_fwd_f32(const float* __restrict__ logits, const float* __restrict__ labels,
                                                 float* __restrict__ stats, int n, int k) {
    GRID_LOOP(r, (long long)n) {
        const float* row = logits + r * k;
        int arg = 0;
        for (int j = 1; j < k; j++)
            if (row[j] > row[arg]) arg = j;
        if (arg == (int)labels[r]) atomicAdd(&stats[1], 1.0f);
    }
}

// acc[0] += sum(w^2) / 2.
extern "C" __global__ void half_sum_squares_fwd_f32(const float* __restrict__ w, long long total, float* __restrict__ acc) {
    float s = 0.0f;
    GRID_LOOP(i, total) s += w[i] * w[i];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
    if ((threadIdx.x & 31) == 0) atomicAdd(acc, 0.5f * s);
}

// TF1 RMSProp with momentum and the weight-decay gradient, fused.
extern "C" __global__ void rmsprop_fwd_f32(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ ms,
                                           float* __restrict__ mom, long long total, float lr, float decay,
                                           float momentum, float eps, float wd) {
    GRID_LOOP(i, total) {
        const float gi = g[i] + wd * w[i];
        const float m2 = decay * ms[i] + (1.0f - decay) * gi * gi;
        const float mo = momentum * mom[i] + lr * gi / sqrtf(m2 + eps);
        ms[i] = m2;
        mom[i] = mo;
        w[i] -= mo;
    }
}

// out [n][3][h][w] = (pixel - mean[c]) / std[c] of the raw channel-major
// bytes, through a 4-pixel zero pad, a crop at (dy, dx) and a flip when
// `crops` (3 ints per image) is given.
extern "C" __global__ void load_images_fwd_f32(const unsigned char* __restrict__ images, const int* __restrict__ crops,
                                               float* __restrict__ out, int n, int h, int w,
                                               float m0, float m1, float m2, float s0, float s1, float s2) {
    GRID_LOOP(i, (long long)n * 3 * h * w) {
        const int x = (int)(i % w), y = (int)((i / w) % h), c = (int)((i / ((long long)w * h)) % 3);
        const long long img = i / (3LL * h * w);
        float v;
        if (crops) {
            const int dy = crops[img * 3], dx = crops[img * 3 + 1], flip = crops[img * 3 + 2];
            const int cx = flip ? w - 1 - x : x;
            const int sy = y + dy - 4, sx = cx + dx - 4;
            v = (sy < 0 || sx < 0 || sy >= h || sx >= w) ? 0.0f : (float)images[((img * 3 + c) * h + sy) * w + sx];
        } else {
            v = (float)images[i];
        }
        const float mean = c == 0 ? m0 : (c == 1 ? m1 : m2);
        const float sd = c == 0 ? s0 : (c == 1 ? s1 : s2);
        out[i] = (v - mean) / sd;
    }
}
