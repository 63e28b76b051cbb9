// Convolution as implicit GEMM on tensor cores (TF32 mma.sync, f32 accumulate).
//
// Design. Every stride-1 `same` convolution pass is one GEMM C[M][N] =
// sum_k A[M][K] B[K][N] whose operands are gathered on the fly from NCHW
// tensors, never materialised (no im2col buffer):
//   forward      C = y  [cout][n*h*w],  A = w [cout][cin*k*k],
//                B[(ci,ky,kx)][p] = x[img][ci][y+ky-pad][x+kx-pad]
//   backward-data C = dx [cin][n*h*w],  A[ci][(co,ky,kx)] = w[co][ci][k-1-ky][k-1-kx],
//                B[(co,ky,kx)][p] = dy[img][co][y+ky-pad][x+kx-pad]
//   backward-filter C = dw [cout][cin*k*k], A[co][p] = dy[img][co][pix],
//                B[p][(ci,ky,kx)] = x[img][ci][y+ky-pad][x+kx-pad]  (split-K, atomics)
// A block computes a 64x64 tile of C with 4 warps (2x2, 32x32 each: 2 x 4
// m16n8k8 tiles), stepping K by 32 through double-buffered shared memory
// (the next tile's global loads overlap the current tile's multiply).
// Operands are rounded to TF32 (cvt.rna) as they are staged in registers;
// shared rows are padded by 4 floats so fragment reads are bank-conflict
// free. 1x1 kernels
// take the same path (k = 1: the gather is a strided copy). With
// `exact` set the same tiles are multiplied with f32 FMAs instead, so that
// a training run can be compared with the CPU reference step by step.
//
// Shapes: x [n][cin][h][w], w [cout][cin][k][k], y [n][cout][h][w].

#define BM 64
#define BN 64
#define BK 32
#define PAD 4
#define THREADS 128
#define MIN_BLOCKS 3  // blocks per SM the register budget must allow (<= 168 registers)
#define A_STEP (THREADS / BK)  // rows between one thread's A loads
#define B_STEP (THREADS / BN)  // rows between one thread's B loads (forward, data gradient)
#define A_STEP_D (THREADS / BM)  // columns between one thread's A loads (data gradient)

#define MODE_FWD 0
#define MODE_DGRAD 1
#define MODE_WGRAD 2

struct ConvArgs {
    int n, cin, cout, h, w, k;
    int exact;  // 1: full f32 FMAs instead of TF32 tensor cores (for checks)
};

__device__ __forceinline__ unsigned to_tf32(float v) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(v));
    return r;
}

__device__ __forceinline__ void mma_tf32(float* d, const unsigned* a, const unsigned* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// One 64x64 tile of C over k-range [k_begin, k_end).
//
// Loads: thread t fetches A elements (rows t/32 + 4i, column t%32) of each
// k-step (data gradient: row t%64, columns t/64 + 2i, so that consecutive
// threads read nearby weights), and B elements (rows t/64 + 2i, column t%64) for the forward and
// data gradient, whose B column (a pixel) is then fixed for the whole
// block and decomposed once; for the filter gradient, B elements (row
// t%32, columns t/32 + 4i), so that consecutive threads read consecutive
// pixels, with the columns' kernel taps decomposed once per block.
//
// Pipeline: the tiles are double-buffered in shared memory and staged
// through registers. While the warps multiply tile k from one buffer, the
// global loads of tile k+1 are already in flight into registers; they are
// stored to the other buffer after the multiply, and one barrier per
// k-step separates the two. Global latency thus hides behind the tensor
// core work instead of stalling every k-step.
#define A_PER_THREAD ((BM * BK) / THREADS)  // 16
#define B_PER_THREAD ((BK * BN) / THREADS)  // 16
// Shared memory of one block, declared once per kernel (a __shared__
// array inside the template would be allocated once per instantiation).
struct Smem {
    unsigned As[2][BK][BM + PAD];
    unsigned Bs[2][BK][BN + PAD];
    int Tap[BN];
    // 3x3 forward and data gradient: each row of a k-tile as (offset of its
    // tap from the thread's pixel, tap index ky * 3 + kx, or -1 past the
    // end), double-buffered like the tiles.
    int2 Rows[2][BK];
};

// KS: the kernel size when known at compile time (1 or 3, the network's
// convolutions: divisions by it become multiplications), 0 for any other,
// read from the arguments.
template <int KS>
__device__ __forceinline__ void igemm(int mode, const float* __restrict__ a, const float* __restrict__ b,
                                      float* __restrict__ c, ConvArgs s, int M, int N, int K,
                                      int k_begin, int k_end, int accumulate, int m0, int n0, Smem& sm) {
    auto& As = sm.As;
    auto& Bs = sm.Bs;
    auto& Tap = sm.Tap;
    auto& Rows = sm.Rows;
    // 3x3 gathers of the forward and data gradient go through Rows: one
    // shared load and a bit test per element instead of dividing kg.
    constexpr bool by_rows = KS == 3;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 1, wn = warp & 1;
    const int g = lane >> 2, t4 = lane & 3;
    const int ks = KS > 0 ? KS : s.k;
    const int hw = s.h * s.w, kk2 = ks * ks, pad = ks / 2;
    // A loads: column tid % BK, rows tid / BK + A_STEP i.
    const int acol = tid % BK, arow0 = tid / BK;
    // A loads of the data gradient: row tid % BM, columns tid / BM + A_STEP_D i.
    const int arow_d = tid % BM, acol_d = tid / BM;
    const int bcol = tid % BN, brow0 = tid / BN;
    const int nn = n0 + bcol;
    const bool col_ok = nn < N;
    // This thread's B column: a pixel (forward, data gradient) or a
    // kernel tap (filter gradient).
    int p_img = 0, p_y = 0, p_x = 0;
    if (col_ok && mode != MODE_WGRAD) {
        p_img = nn / hw;
        const int pix = nn - p_img * hw;
        p_y = pix / s.w;
        p_x = pix - p_y * s.w;
    }
    const int bch = mode == MODE_DGRAD ? s.cout : s.cin;  // channels of the gathered tensor
    // by_rows: this thread's pixel in the gathered tensor, and which of the
    // 9 taps land inside the image (bit ky * 3 + kx).
    long long pix_base = 0;
    unsigned tap_ok = 0;
    if (by_rows && mode != MODE_WGRAD && col_ok) {
        pix_base = (long long)p_img * bch * hw + p_y * s.w + p_x;
#pragma unroll
        for (int t = 0; t < 9; t++) {
            const int y = p_y + t / 3 - 1, x = p_x + t % 3 - 1;
            if (y >= 0 && y < s.h && x >= 0 && x < s.w) tap_ok |= 1u << t;
        }
    }
    // Fills Rows[rb] for the k-tile at k0 (threads 0..BK-1).
    const auto fill_rows = [&](int rbuf, int k0) {
        if (!by_rows || mode == MODE_WGRAD || tid >= BK) return;
        const int kg = k0 + tid;
        int2 e = make_int2(0, -1);
        if (kg < k_end) {
            const int ch = kg / 9, t = kg - ch * 9;
            e = make_int2(ch * hw + (t / 3 - 1) * s.w + (t % 3 - 1), t);
        }
        Rows[rbuf][tid] = e;
    };
    // Filter gradient: each of the block's 64 columns as ci << 16 | ky << 8
    // | kx, or -1 past the end (one shared load per gathered element).
    if (mode == MODE_WGRAD && tid < BN) {
        const int col = n0 + tid;
        const int ci = col / kk2, r = col - ci * kk2;
        Tap[tid] = col < N ? (ci << 16) | ((r / ks) << 8) | (r - (r / ks) * ks) : -1;
    }
    __syncthreads();
    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int r = 0; r < 4; r++) acc[i][j][r] = 0.0f;

    // The staging registers of one tile.
    unsigned ra[A_PER_THREAD], rb[B_PER_THREAD];
    const auto as_operand = [&](float v) { return s.exact ? __float_as_uint(v) : to_tf32(v); };

    // Global loads of the tile at k0 into ra, rb.
    const auto fetch = [&](int k0, int rbuf) {
        if (mode == MODE_DGRAD) {
            // A of the data gradient (the flipped, transposed weights): this
            // thread's row m (an input channel) is fixed and its columns
            // step by 2, so consecutive threads read weights kk2 apart
            // rather than cin * kk2 apart.
            const int m = m0 + arow_d;
#pragma unroll
            for (int i = 0; i < A_PER_THREAD; i++) {
                const int kg = k0 + acol_d + A_STEP_D * i;
                float v = 0.0f;
                if (kg < k_end && m < M) {
                    const int co = kg / kk2, r = kg - co * kk2, ky = r / ks, kx = r - ky * ks;
                    v = a[(((long long)co * s.cin + m) * ks + (ks - 1 - ky)) * ks + (ks - 1 - kx)];
                }
                ra[i] = as_operand(v);
            }
        } else {
            // A: column kg fixed for this thread in this k-step.
            const int kg = k0 + acol;
            const bool k_ok = kg < k_end;
            long long base = 0;
            if (mode == MODE_WGRAD && k_ok) {
                const int img = kg / hw;
                base = (long long)img * s.cout * hw + (kg - img * hw);
            }
#pragma unroll
            for (int i = 0; i < A_PER_THREAD; i++) {
                const int m = m0 + arow0 + A_STEP * i;
                float v = 0.0f;
                if (k_ok && m < M) {
                    if (mode == MODE_FWD) v = a[(long long)m * K + kg];
                    else v = a[base + (long long)m * hw];
                }
                ra[i] = as_operand(v);
            }
        }
        if (by_rows && mode != MODE_WGRAD) {
            // B through the row table; consecutive threads read consecutive
            // pixels.
#pragma unroll
            for (int i = 0; i < B_PER_THREAD; i++) {
                const int2 e = Rows[rbuf][brow0 + B_STEP * i];
                float v = 0.0f;
                if (e.y >= 0 && ((tap_ok >> e.y) & 1u)) v = b[pix_base + e.x];
                rb[i] = as_operand(v);
            }
        } else if (mode != MODE_WGRAD) {
            // B: this thread's pixel column, rows brow0 + 2i; consecutive
            // threads read consecutive pixels.
#pragma unroll
            for (int i = 0; i < B_PER_THREAD; i++) {
                const int kg = k0 + brow0 + B_STEP * i;
                float v = 0.0f;
                if (col_ok && kg < k_end) {
                    int ch = kg, ky = 0, kx = 0;
                    if (kk2 > 1) {
                        ch = kg / kk2;
                        const int r = kg - ch * kk2;
                        ky = r / ks;
                        kx = r - ky * ks;
                    }
                    const int y = p_y + ky - pad, x = p_x + kx - pad;
                    if (y >= 0 && y < s.h && x >= 0 && x < s.w)
                        v = b[(((long long)p_img * bch + ch) * s.h + y) * s.w + x];
                }
                rb[i] = as_operand(v);
            }
        } else {
            // B of the filter gradient: this thread's row (a pixel) is
            // fixed in the k-step and its columns (kernel taps, decomposed
            // once per block in Tap) step by 4, so consecutive threads read
            // consecutive pixels of one channel.
            const int kg = k0 + acol;
            const bool row_ok = kg < k_end;
            int img = 0, py = 0, px = 0;
            if (row_ok) {
                img = kg / hw;
                const int pix = kg - img * hw;
                py = pix / s.w;
                px = pix - py * s.w;
            }
#pragma unroll
            for (int i = 0; i < B_PER_THREAD; i++) {
                const int col = arow0 + A_STEP * i;
                float v = 0.0f;
                const int tap = Tap[col];
                if (row_ok && tap >= 0) {
                    const int y = py + ((tap >> 8) & 0xff) - pad, x = px + (tap & 0xff) - pad;
                    if (y >= 0 && y < s.h && x >= 0 && x < s.w)
                        v = b[(((long long)img * s.cin + (tap >> 16)) * s.h + y) * s.w + x];
                }
                rb[i] = as_operand(v);
            }
        }
    };

    // ra, rb into shared buffer `buf`.
    const auto stash = [&](int buf) {
        if (mode == MODE_DGRAD) {
#pragma unroll
            for (int i = 0; i < A_PER_THREAD; i++) As[buf][acol_d + A_STEP_D * i][arow_d] = ra[i];
        } else {
#pragma unroll
            for (int i = 0; i < A_PER_THREAD; i++) As[buf][acol][arow0 + A_STEP * i] = ra[i];
        }
        if (mode != MODE_WGRAD) {
#pragma unroll
            for (int i = 0; i < B_PER_THREAD; i++) Bs[buf][brow0 + B_STEP * i][bcol] = rb[i];
        } else {
#pragma unroll
            for (int i = 0; i < B_PER_THREAD; i++) Bs[buf][acol][arow0 + A_STEP * i] = rb[i];
        }
    };

    fill_rows(0, k_begin);
    __syncthreads();
    if (k_begin < k_end) {
        fetch(k_begin, 0);
        stash(0);
    }
    fill_rows(1, k_begin + BK);
    __syncthreads();
    int buf = 0;
    for (int k0 = k_begin; k0 < k_end; k0 += BK) {
        const bool more = k0 + BK < k_end;
        if (more) fetch(k0 + BK, buf ^ 1);  // in flight during the multiply below
        if (s.exact) {
            // Same output positions as the mma layout, with f32 FMAs.
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
#pragma unroll
                    for (int r = 0; r < 4; r++) {
                        const int ml = wm * 32 + i * 16 + g + (r >= 2 ? 8 : 0);
                        const int nl = wn * 32 + j * 8 + t4 * 2 + (r & 1);
                        float sum = acc[i][j][r];
#pragma unroll 1
                        for (int kk = 0; kk < BK; kk++)
                            sum = fmaf(__uint_as_float(As[buf][kk][ml]), __uint_as_float(Bs[buf][kk][nl]), sum);
                        acc[i][j][r] = sum;
                    }
        } else {
#pragma unroll
            for (int ks = 0; ks < BK; ks += 8) {
                unsigned af[2][4], bf[4][2];
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    const int mr = wm * 32 + i * 16;
                    af[i][0] = As[buf][ks + t4][mr + g];
                    af[i][1] = As[buf][ks + t4][mr + g + 8];
                    af[i][2] = As[buf][ks + t4 + 4][mr + g];
                    af[i][3] = As[buf][ks + t4 + 4][mr + g + 8];
                }
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const int nc = wn * 32 + j * 8;
                    bf[j][0] = Bs[buf][ks + t4][nc + g];
                    bf[j][1] = Bs[buf][ks + t4 + 4][nc + g];
                }
#pragma unroll
                for (int i = 0; i < 2; i++)
#pragma unroll
                    for (int j = 0; j < 4; j++) mma_tf32(acc[i][j], af[i], bf[j]);
            }
        }
        // The other buffers were last read before the previous barrier.
        if (more) stash(buf ^ 1);
        fill_rows(buf, k0 + 2 * BK);
        __syncthreads();
        buf ^= 1;
    }

#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int r = 0; r < 4; r++) {
                const int m = m0 + wm * 32 + i * 16 + g + (r >= 2 ? 8 : 0);
                const int n = n0 + wn * 32 + j * 8 + t4 * 2 + (r & 1);
                if (m >= M || n >= N) continue;
                const float v = acc[i][j][r];
                if (mode == MODE_WGRAD) {
                    atomicAdd(&c[(long long)m * N + n], v);
                } else {
                    const int img = n / hw;
                    const long long at = ((long long)img * M + m) * hw + (n - img * hw);
                    c[at] = accumulate ? c[at] + v : v;
                }
            }
}

// The forward and data-gradient grids are one-dimensional, the channel
// tile fastest: the channel tiles of one pixel tile run side by side, so
// the gathered activations come from DRAM once and from L2 for the rest.
//
// Each pass has three kernels: conv1x1_*, conv3x3_* (the kernel size known
// at compile time) and conv_* for any other size. Separate kernels keep the
// registers of the general one from limiting the specialised ones.
#define CONV_KERNELS(NAME, KS)                                                                               \
    /* y = conv(x, w).  Grid ceil(cout / 64) * ceil(n*h*w / 64), 128 threads. */                             \
    extern "C" __global__ void __launch_bounds__(THREADS, MIN_BLOCKS)                                       \
        NAME##_fwd_f32(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y,     \
                       ConvArgs s) {                                                                         \
        __shared__ Smem sm;                                                                                  \
        const int K = s.cin * s.k * s.k, tiles = (s.cout + BM - 1) / BM;                                     \
        igemm<KS>(MODE_FWD, w, x, y, s, s.cout, s.n * s.h * s.w, K, 0, K, 0, (blockIdx.x % tiles) * BM,     \
                  (blockIdx.x / tiles) * BN, sm);                                                            \
    }                                                                                                        \
    /* dx (+)= conv_transpose(dy, w).  Grid ceil(cin / 64) * ceil(n*h*w / 64). */                           \
    extern "C" __global__ void __launch_bounds__(THREADS, MIN_BLOCKS)                                       \
        NAME##_bwd_data_f32(const float* __restrict__ dy, const float* __restrict__ w,                      \
                            float* __restrict__ dx, ConvArgs s, int accumulate) {                            \
        __shared__ Smem sm;                                                                                  \
        const int K = s.cout * s.k * s.k, tiles = (s.cin + BM - 1) / BM;                                     \
        igemm<KS>(MODE_DGRAD, w, dy, dx, s, s.cin, s.n * s.h * s.w, K, 0, K, accumulate,                    \
                  (blockIdx.x % tiles) * BM, (blockIdx.x / tiles) * BN, sm);                                 \
    }                                                                                                        \
    /* dw += dy (x) x over a slice of the pixels; dw must be zeroed first.                                   \
       Grid (ceil(cin*k*k / 64), ceil(cout / 64), splits); each z covers                                     \
       `chunk` pixels (a multiple of BK). */                                                                 \
    extern "C" __global__ void __launch_bounds__(THREADS, MIN_BLOCKS)                                       \
        NAME##_bwd_filter_f32(const float* __restrict__ x, const float* __restrict__ dy,                    \
                              float* __restrict__ dw, ConvArgs s, int chunk) {                               \
        __shared__ Smem sm;                                                                                  \
        const int K = s.n * s.h * s.w, kb = blockIdx.z * chunk;                                              \
        igemm<KS>(MODE_WGRAD, dy, x, dw, s, s.cout, s.cin * s.k * s.k, K, kb, min(K, kb + chunk), 0,        \
                  blockIdx.y * BM, blockIdx.x * BN, sm);                                                     \
    }

CONV_KERNELS(conv, 0)
CONV_KERNELS(conv1x1, 1)
CONV_KERNELS(conv3x3, 3)
