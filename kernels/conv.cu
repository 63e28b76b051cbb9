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
// m16n8k8 tiles), stepping K by 32 through shared memory. Operands are
// rounded to TF32 (cvt.rna) when stored to shared memory; shared rows are
// padded by 4 floats so fragment reads are bank-conflict free. 1x1 kernels
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
#define A_STEP (THREADS / BK)  // rows between one thread's A loads
#define B_STEP (THREADS / BN)  // rows between one thread's B loads (forward, data gradient)

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
// Loads: thread t fills A elements (rows t/32 + 4i, column t%32) of each
// k-step, and B elements (rows t/64 + 2i, column t%64) for the forward and
// data gradient, whose B column (a pixel) is then fixed for the whole
// block and decomposed once; for the filter gradient, B elements (row
// t%32, columns t/32 + 4i), so that consecutive threads read consecutive
// pixels, with the columns' kernel taps decomposed once per block.
__device__ __forceinline__ void igemm(int mode, const float* __restrict__ a, const float* __restrict__ b,
                                      float* __restrict__ c, ConvArgs s, int M, int N, int K,
                                      int k_begin, int k_end, int accumulate) {
    __shared__ unsigned As[BK][BM + PAD];
    __shared__ unsigned Bs[BK][BN + PAD];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 1, wn = warp & 1;
    const int g = lane >> 2, t4 = lane & 3;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const int hw = s.h * s.w, kk2 = s.k * s.k, pad = s.k / 2;
    // A loads: column tid % BK, rows tid / BK + A_STEP i.
    const int acol = tid % BK, arow0 = tid / BK;
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
    // Filter gradient: the (ci, ky, kx, valid) of each of the block's 64 columns.
    __shared__ int Tap[BN][4];
    if (mode == MODE_WGRAD && tid < BN) {
        const int col = n0 + tid;
        const int ci = col / kk2, r = col - ci * kk2;
        Tap[tid][0] = ci;
        Tap[tid][1] = r / s.k;
        Tap[tid][2] = r - (r / s.k) * s.k;
        Tap[tid][3] = col < N;
    }
    __syncthreads();
    const float* bsrc = b;
    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int r = 0; r < 4; r++) acc[i][j][r] = 0.0f;

    for (int k0 = k_begin; k0 < k_end; k0 += BK) {
        // A: column kg fixed for this thread in this k-step.
        {
            const int kg = k0 + acol;
            const bool k_ok = kg < k_end;
            long long base = 0;
            if (mode == MODE_DGRAD && k_ok) {
                const int co = kg / kk2, r = kg - co * kk2, ky = r / s.k, kx = r - ky * s.k;
                base = ((long long)co * s.cin * s.k + (s.k - 1 - ky)) * s.k + (s.k - 1 - kx);
            } else if (mode == MODE_WGRAD && k_ok) {
                const int img = kg / hw;
                base = (long long)img * s.cout * hw + (kg - img * hw);
            }
#pragma unroll 4
            for (int i = 0; i < (BM * BK) / THREADS; i++) {
                const int m = m0 + arow0 + A_STEP * i;
                float v = 0.0f;
                if (k_ok && m < M) {
                    if (mode == MODE_FWD) v = a[(long long)m * K + kg];
                    else if (mode == MODE_DGRAD) v = a[base + (long long)m * kk2];
                    else v = a[base + (long long)m * hw];
                }
                As[acol][arow0 + A_STEP * i] = s.exact ? __float_as_uint(v) : to_tf32(v);
            }
        }
        if (mode != MODE_WGRAD) {
            // B: this thread's pixel column, rows brow0 + 2i; consecutive
            // threads read consecutive pixels.
#pragma unroll 4
            for (int i = 0; i < (BK * BN) / THREADS; i++) {
                const int kg = k0 + brow0 + B_STEP * i;
                float v = 0.0f;
                if (col_ok && kg < k_end) {
                    int ch = kg, ky = 0, kx = 0;
                    if (kk2 > 1) {
                        ch = kg / kk2;
                        const int r = kg - ch * kk2;
                        ky = r / s.k;
                        kx = r - ky * s.k;
                    }
                    const int y = p_y + ky - pad, x = p_x + kx - pad;
                    if (y >= 0 && y < s.h && x >= 0 && x < s.w)
                        v = bsrc[(((long long)p_img * bch + ch) * s.h + y) * s.w + x];
                }
                Bs[brow0 + B_STEP * i][bcol] = s.exact ? __float_as_uint(v) : to_tf32(v);
            }
        } else {
            // B of the filter gradient: this thread's row (a pixel) is
            // fixed in the k-step and its columns (kernel taps, decomposed
            // once per block in Tap) step by 8, so consecutive threads read
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
#pragma unroll 4
            for (int i = 0; i < (BK * BN) / THREADS; i++) {
                const int col = arow0 + A_STEP * i;
                float v = 0.0f;
                if (row_ok && Tap[col][3]) {
                    const int y = py + Tap[col][1] - pad, x = px + Tap[col][2] - pad;
                    if (y >= 0 && y < s.h && x >= 0 && x < s.w)
                        v = bsrc[(((long long)img * s.cin + Tap[col][0]) * s.h + y) * s.w + x];
                }
                Bs[acol][col] = s.exact ? __float_as_uint(v) : to_tf32(v);
            }
        }
        __syncthreads();
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
                            sum = fmaf(__uint_as_float(As[kk][ml]), __uint_as_float(Bs[kk][nl]), sum);
                        acc[i][j][r] = sum;
                    }
        } else {
#pragma unroll
            for (int ks = 0; ks < BK; ks += 8) {
                unsigned af[2][4], bf[4][2];
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    const int mr = wm * 32 + i * 16;
                    af[i][0] = As[ks + t4][mr + g];
                    af[i][1] = As[ks + t4][mr + g + 8];
                    af[i][2] = As[ks + t4 + 4][mr + g];
                    af[i][3] = As[ks + t4 + 4][mr + g + 8];
                }
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const int nc = wn * 32 + j * 8;
                    bf[j][0] = Bs[ks + t4][nc + g];
                    bf[j][1] = Bs[ks + t4 + 4][nc + g];
                }
#pragma unroll
                for (int i = 0; i < 2; i++)
#pragma unroll
                    for (int j = 0; j < 4; j++) mma_tf32(acc[i][j], af[i], bf[j]);
            }
        }
        __syncthreads();
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

// y = conv(x, w).  Grid (ceil(n*h*w / 64), ceil(cout / 64)), 128 threads.
extern "C" __global__ void __launch_bounds__(THREADS) conv_fwd_f32(const float* __restrict__ x, const float* __restrict__ w,
                                                                   float* __restrict__ y, ConvArgs s) {
    const int K = s.cin * s.k * s.k;
    igemm(MODE_FWD, w, x, y, s, s.cout, s.n * s.h * s.w, K, 0, K, 0);
}

// dx (+)= conv_transpose(dy, w).  Grid (ceil(n*h*w / 64), ceil(cin / 64)).
extern "C" __global__ void __launch_bounds__(THREADS) conv_bwd_data_f32(const float* __restrict__ dy, const float* __restrict__ w,
                                                                        float* __restrict__ dx, ConvArgs s, int accumulate) {
    const int K = s.cout * s.k * s.k;
    igemm(MODE_DGRAD, w, dy, dx, s, s.cin, s.n * s.h * s.w, K, 0, K, accumulate);
}

// dw += dy (x) x over a slice of the pixels; dw must be zeroed first.
// Grid (ceil(cin*k*k / 64), ceil(cout / 64), splits); each z covers
// `chunk` pixels (a multiple of BK).
extern "C" __global__ void __launch_bounds__(THREADS) conv_bwd_filter_f32(const float* __restrict__ x, const float* __restrict__ dy,
                                                                          float* __restrict__ dw, ConvArgs s, int chunk) {
    const int K = s.n * s.h * s.w;
    const int kb = blockIdx.z * chunk;
    const int ke = min(K, kb + chunk);
    igemm(MODE_WGRAD, dy, x, dw, s, s.cout, s.cin * s.k * s.k, K, kb, ke, 0);
}
