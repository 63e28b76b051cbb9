//! Lane-parallel MD5 and batched graph hashing: the dataset hash of up to [`LANES`] labelings of one shape at once.
//!
//! The graph hash is ~60 small MD5s per cell, and MD5 is a serial chain
//! within one message. Labelings of one unlabeled shape produce messages of
//! identical lengths at every step (lengths depend only on degrees), so
//! [`LANES`] of them run through one MD5 in lockstep, each in its own lane.
//! On x86-64 CPUs with AVX-512F (detected at run time) the 16 lanes are the
//! 16 words of one register, the 64 steps are unrolled, and each round
//! function and rotation is one instruction (`vpternlogd`, `vprold`). There
//! the whole graph hash stays in registers too: digests become hex digits,
//! each lane's neighbour hashes are ranked by vector compares and placed by
//! blends, and message words are written straight into MD5's lane-major
//! layout, so no lane is ever handled on its own.
//! Elsewhere the lane loops are plain Rust over fixed arrays, which the
//! compiler turns into the target's baseline SIMD. No mature crate offers
//! multi-buffer MD5 (md5-many is an alpha), hence this module; its tests
//! check both paths against the `md-5` crate and [`hash_module_with`].
//!
//! [`hash_module_with`]: crate::cell::graph::hash_module_with

use crate::cell::graph::{
    ModelHash, for_each_bit, hex32 as hex, md5_digest, push_fingerprint_message,
    push_initial_message,
};

/// Messages hashed at once.
pub const LANES: usize = 16;

type Lane = [u32; LANES];

/// Per-round shift amounts (RFC 1321).
const S: [u32; 64] = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9,
    14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15,
    21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
];

/// Per-round constants: floor(|sin(i + 1)| * 2^32) (RFC 1321).
const K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

const INIT: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

/// One 64-byte block of every lane.
#[inline(always)]
fn compress(state: &mut [Lane; 4], m: &[Lane; 16]) {
    let [mut a, mut b, mut c, mut d] = *state;
    for i in 0..64 {
        let g = match i / 16 {
            0 => i,
            1 => (5 * i + 1) % 16,
            2 => (3 * i + 5) % 16,
            _ => (7 * i) % 16,
        };
        let mut f = [0u32; LANES];
        for l in 0..LANES {
            f[l] = match i / 16 {
                0 => (b[l] & c[l]) | (!b[l] & d[l]),
                1 => (b[l] & d[l]) | (c[l] & !d[l]),
                2 => b[l] ^ c[l] ^ d[l],
                _ => c[l] ^ (b[l] | !d[l]),
            };
        }
        let mut nb = [0u32; LANES];
        for l in 0..LANES {
            let x = a[l]
                .wrapping_add(f[l])
                .wrapping_add(K[i])
                .wrapping_add(m[g][l]);
            nb[l] = b[l].wrapping_add(x.rotate_left(S[i]));
        }
        a = d;
        d = c;
        c = b;
        b = nb;
    }
    for l in 0..LANES {
        state[0][l] = state[0][l].wrapping_add(a[l]);
        state[1][l] = state[1][l].wrapping_add(b[l]);
        state[2][l] = state[2][l].wrapping_add(c[l]);
        state[3][l] = state[3][l].wrapping_add(d[l]);
    }
}

/// MD5 of `LANES` messages of one length at once. `bufs[l]` holds message
/// `l` in its first `len` bytes; the buffers are padded in place.
pub fn md5_lanes(bufs: &mut [Vec<u8>; LANES], len: usize) -> [[u8; 16]; LANES] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        pad(bufs, len);
        // SAFETY: the CPU has just been found to support AVX-512F, and
        // `pad` made every buffer a whole number of 64-byte blocks.
        return unsafe { x16::md5_padded(bufs) };
    }
    md5_lanes_body(bufs, len)
}

/// Appends MD5 padding and the bit length to each lane's first `len` bytes.
fn pad(bufs: &mut [Vec<u8>; LANES], len: usize) {
    let padded = (len + 8) / 64 * 64 + 64;
    for b in bufs.iter_mut() {
        b.truncate(len);
        b.push(0x80);
        b.resize(padded - 8, 0);
        b.extend_from_slice(&((len as u64) * 8).to_le_bytes());
    }
}

/// MD5 of 16 messages at once with AVX-512F: one 512-bit register holds a
/// state word of every lane, each round function is one `vpternlogd` and
/// each rotation one `vprold`, all 64 steps unrolled.
#[cfg(target_arch = "x86_64")]
mod x16 {
    use super::{INIT, K, LANES};
    use crate::cell::graph::for_each_bit;
    use std::arch::x86_64::*;

    const _: () = assert!(
        LANES == 16,
        "one lane per 32-bit element of a 512-bit register"
    );

    /// Lane `l`'s 64-byte block `block` as the 16 message words of every
    /// lane: `m[w]` holds word `w` of lanes 0..16 (a 16x16 transpose).
    ///
    /// # Safety
    /// AVX-512F; every buffer holds at least `(block + 1) * 64` bytes.
    #[target_feature(enable = "avx512f")]
    unsafe fn load_block(bufs: &[Vec<u8>; LANES], block: usize) -> [__m512i; 16] {
        let r: [__m512i; 16] = std::array::from_fn(|l| {
            let b = &bufs[l][block * 64..block * 64 + 64];
            // SAFETY: `b` is 64 readable bytes; the load is unaligned.
            unsafe { _mm512_loadu_si512(b.as_ptr().cast()) }
        });
        // Pairs of lanes, then quads, interleaved within each 128-bit chunk:
        // u[4i + j] chunk q = word 4q + j of lanes 4i..4i+4.
        let t: [__m512i; 16] = std::array::from_fn(|k| {
            let (a, b) = (r[k & !1], r[k | 1]);
            if k % 2 == 0 {
                _mm512_unpacklo_epi32(a, b)
            } else {
                _mm512_unpackhi_epi32(a, b)
            }
        });
        let u: [__m512i; 16] = std::array::from_fn(|k| {
            let (i, j) = (k / 4, k % 4);
            let (a, b) = (t[4 * i + j / 2], t[4 * i + j / 2 + 2]);
            if j % 2 == 0 {
                _mm512_unpacklo_epi64(a, b)
            } else {
                _mm512_unpackhi_epi64(a, b)
            }
        });
        // Gather chunk q of the four quads of lanes into word 4q + j.
        let mut m = [_mm512_setzero_si512(); 16];
        for j in 0..4 {
            let (a, b, c, d) = (u[j], u[4 + j], u[8 + j], u[12 + j]);
            let ab_lo = _mm512_shuffle_i32x4::<0x44>(a, b);
            let ab_hi = _mm512_shuffle_i32x4::<0xee>(a, b);
            let cd_lo = _mm512_shuffle_i32x4::<0x44>(c, d);
            let cd_hi = _mm512_shuffle_i32x4::<0xee>(c, d);
            m[j] = _mm512_shuffle_i32x4::<0x88>(ab_lo, cd_lo);
            m[4 + j] = _mm512_shuffle_i32x4::<0xdd>(ab_lo, cd_lo);
            m[8 + j] = _mm512_shuffle_i32x4::<0x88>(ab_hi, cd_hi);
            m[12 + j] = _mm512_shuffle_i32x4::<0xdd>(ab_hi, cd_hi);
        }
        m
    }

    /// One MD5 step on all lanes: `a = b + rotl(a + f(b, c, d) + m + k, s)`,
    /// with `f` given as a `vpternlogd` truth table.
    macro_rules! step {
        ($a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $i:literal, $s:literal, $f:literal) => {
            let f = _mm512_ternarylogic_epi32::<$f>($b, $c, $d);
            let x = _mm512_add_epi32(
                _mm512_add_epi32($a, f),
                _mm512_add_epi32($m, _mm512_set1_epi32(K[$i] as i32)),
            );
            $a = _mm512_add_epi32($b, _mm512_rol_epi32::<$s>(x));
        };
    }

    /// Four steps of one round, rotating the roles of a, b, c, d.
    macro_rules! quad {
        ($st:ident, $m:ident, $f:literal, [$i0:literal, $i1:literal, $i2:literal, $i3:literal],
         [$g0:literal, $g1:literal, $g2:literal, $g3:literal], [$s0:literal, $s1:literal, $s2:literal, $s3:literal]) => {
            let [mut a, mut b, mut c, mut d] = $st;
            step!(a, b, c, d, $m[$g0], $i0, $s0, $f);
            step!(d, a, b, c, $m[$g1], $i1, $s1, $f);
            step!(c, d, a, b, $m[$g2], $i2, $s2, $f);
            step!(b, c, d, a, $m[$g3], $i3, $s3, $f);
            $st = [a, b, c, d];
        };
    }

    /// One 64-byte block (`m[w]`: word `w` of every lane) into every
    /// lane's state.
    ///
    /// # Safety
    /// AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn compress16(st: &mut [__m512i; 4], m: &[__m512i; 16]) {
        let start = *st;
        let mut state = *st;
        // F(b, c, d) = b ? c : d
        quad!(state, m, 0xca, [0, 1, 2, 3], [0, 1, 2, 3], [7, 12, 17, 22]);
        quad!(state, m, 0xca, [4, 5, 6, 7], [4, 5, 6, 7], [7, 12, 17, 22]);
        quad!(
            state,
            m,
            0xca,
            [8, 9, 10, 11],
            [8, 9, 10, 11],
            [7, 12, 17, 22]
        );
        quad!(
            state,
            m,
            0xca,
            [12, 13, 14, 15],
            [12, 13, 14, 15],
            [7, 12, 17, 22]
        );
        // G(b, c, d) = d ? b : c
        quad!(
            state,
            m,
            0xe4,
            [16, 17, 18, 19],
            [1, 6, 11, 0],
            [5, 9, 14, 20]
        );
        quad!(
            state,
            m,
            0xe4,
            [20, 21, 22, 23],
            [5, 10, 15, 4],
            [5, 9, 14, 20]
        );
        quad!(
            state,
            m,
            0xe4,
            [24, 25, 26, 27],
            [9, 14, 3, 8],
            [5, 9, 14, 20]
        );
        quad!(
            state,
            m,
            0xe4,
            [28, 29, 30, 31],
            [13, 2, 7, 12],
            [5, 9, 14, 20]
        );
        // H(b, c, d) = b ^ c ^ d
        quad!(
            state,
            m,
            0x96,
            [32, 33, 34, 35],
            [5, 8, 11, 14],
            [4, 11, 16, 23]
        );
        quad!(
            state,
            m,
            0x96,
            [36, 37, 38, 39],
            [1, 4, 7, 10],
            [4, 11, 16, 23]
        );
        quad!(
            state,
            m,
            0x96,
            [40, 41, 42, 43],
            [13, 0, 3, 6],
            [4, 11, 16, 23]
        );
        quad!(
            state,
            m,
            0x96,
            [44, 45, 46, 47],
            [9, 12, 15, 2],
            [4, 11, 16, 23]
        );
        // I(b, c, d) = c ^ (b | !d)
        quad!(
            state,
            m,
            0x39,
            [48, 49, 50, 51],
            [0, 7, 14, 5],
            [6, 10, 15, 21]
        );
        quad!(
            state,
            m,
            0x39,
            [52, 53, 54, 55],
            [12, 3, 10, 1],
            [6, 10, 15, 21]
        );
        quad!(
            state,
            m,
            0x39,
            [56, 57, 58, 59],
            [8, 15, 6, 13],
            [6, 10, 15, 21]
        );
        quad!(
            state,
            m,
            0x39,
            [60, 61, 62, 63],
            [4, 11, 2, 9],
            [6, 10, 15, 21]
        );
        for (s, s0) in state.iter_mut().zip(start) {
            *s = _mm512_add_epi32(*s, s0);
        }
        *st = state;
    }

    /// MD5 of every lane's padded buffer (a whole number of blocks, the
    /// same number in every lane).
    ///
    /// # Safety
    /// AVX-512F; the buffers are padded as [`super::pad`] leaves them.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn md5_padded(bufs: &[Vec<u8>; LANES]) -> [[u8; 16]; LANES] {
        let mut state = INIT.map(|x| _mm512_set1_epi32(x as i32));
        for block in 0..bufs[0].len() / 64 {
            // SAFETY: every buffer holds `len / 64` whole blocks.
            let m = unsafe { load_block(bufs, block) };
            // SAFETY: AVX-512F, as this function.
            unsafe { compress16(&mut state, &m) };
        }
        // SAFETY: AVX-512F, as this function.
        unsafe { digests(state) }
    }

    /// Every lane's 16-byte digest from the four state registers.
    ///
    /// # Safety
    /// AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn digests(state: [__m512i; 4]) -> [[u8; 16]; LANES] {
        let mut words = [[0u32; LANES]; 4];
        for (out, x) in words.iter_mut().zip(state) {
            // SAFETY: `out` is 16 writable u32s; the store is unaligned.
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), x) };
        }
        std::array::from_fn(|l| {
            let mut out = [0u8; 16];
            for (k, w) in words.iter().enumerate() {
                out[4 * k..4 * k + 4].copy_from_slice(&w[l].to_le_bytes());
            }
            out
        })
    }

    /// Vertices the vectorised graph hash handles; larger graphs take the
    /// portable path.
    pub const MAX_VERTICES: usize = 16;

    /// Longest message in words: at most 15 neighbour hashes plus the
    /// vertex's own (or 16 quoted hashes in the fingerprint), padded.
    const MAX_WORDS: usize = 10 * 16;

    /// A message of every lane being written word by word: `words[w]` holds
    /// word `w` of lanes 0..16. The lanes' messages have one length, so a
    /// byte that does not end a word waits in `acc` for all of them alike.
    struct Writer {
        words: [__m512i; MAX_WORDS],
        len: usize,
        acc: __m512i,
        /// Bytes waiting in `acc` (0..4).
        pending: u32,
    }

    impl Writer {
        #[target_feature(enable = "avx512f")]
        fn new() -> Self {
            Writer {
                words: [_mm512_setzero_si512(); MAX_WORDS],
                len: 0,
                acc: _mm512_setzero_si512(),
                pending: 0,
            }
        }

        /// Appends four bytes of every lane (little-endian in `w`).
        #[target_feature(enable = "avx512f")]
        #[inline]
        fn word(&mut self, w: __m512i) {
            let shift = 8 * self.pending;
            if shift == 0 {
                self.words[self.len] = w;
            } else {
                let up = _mm512_sllv_epi32(w, _mm512_set1_epi32(shift as i32));
                self.words[self.len] = _mm512_or_si512(self.acc, up);
                self.acc = _mm512_srlv_epi32(w, _mm512_set1_epi32(32 - shift as i32));
            }
            self.len += 1;
        }

        /// Appends the byte `b` to every lane.
        #[target_feature(enable = "avx512f")]
        #[inline]
        fn byte(&mut self, b: u8) {
            let v = _mm512_set1_epi32(i32::from(b) << (8 * self.pending));
            self.acc = _mm512_or_si512(self.acc, v);
            self.pending += 1;
            if self.pending == 4 {
                self.words[self.len] = self.acc;
                self.len += 1;
                self.acc = _mm512_setzero_si512();
                self.pending = 0;
            }
        }

        /// Appends a 32-digit hex hash of every lane.
        #[target_feature(enable = "avx512f")]
        #[inline]
        fn hex(&mut self, h: &[__m512i; 8]) {
            for &w in h {
                self.word(w);
            }
        }

        /// Pads as MD5 requires, returns every lane's digest and empties
        /// the writer for the next message.
        #[target_feature(enable = "avx512f")]
        fn digest(&mut self) -> [__m512i; 4] {
            let bits = (4 * self.len as u64 + u64::from(self.pending)) * 8;
            self.byte(0x80);
            if self.pending > 0 {
                self.words[self.len] = self.acc;
                self.len += 1;
            }
            while self.len % 16 != 14 {
                self.words[self.len] = _mm512_setzero_si512();
                self.len += 1;
            }
            self.words[self.len] = _mm512_set1_epi32(bits as u32 as i32);
            self.words[self.len + 1] = _mm512_set1_epi32((bits >> 32) as u32 as i32);
            self.len += 2;
            let mut state = INIT.map(|x| _mm512_set1_epi32(x as i32));
            for block in self.words[..self.len].as_chunks::<16>().0 {
                // SAFETY: AVX-512F, as this function.
                unsafe { compress16(&mut state, block) };
            }
            self.len = 0;
            self.acc = _mm512_setzero_si512();
            self.pending = 0;
            state
        }
    }

    /// The 32 lowercase hex digits of every lane's digest, as 8 words.
    #[target_feature(enable = "avx512f")]
    fn hex_words(d: &[__m512i; 4]) -> [__m512i; 8] {
        let nib = _mm512_set1_epi32(0x0f);
        let mut out = [_mm512_setzero_si512(); 8];
        for (k, &x) in d.iter().enumerate() {
            for half in 0..2 {
                // Bytes b0, b1 of this half, as the digits hi(b0) lo(b0) hi(b1) lo(b1).
                let y = if half == 0 {
                    x
                } else {
                    _mm512_srli_epi32::<16>(x)
                };
                let n = _mm512_or_si512(
                    _mm512_or_si512(
                        _mm512_and_si512(_mm512_srli_epi32::<4>(y), nib),
                        _mm512_slli_epi32::<8>(_mm512_and_si512(y, nib)),
                    ),
                    _mm512_or_si512(
                        _mm512_slli_epi32::<16>(_mm512_and_si512(_mm512_srli_epi32::<12>(y), nib)),
                        _mm512_slli_epi32::<24>(_mm512_and_si512(_mm512_srli_epi32::<8>(y), nib)),
                    ),
                );
                // Digit n (per byte) is '0' + n, plus 39 more ('a' - '9' - 1)
                // where n > 9, which bit 4 of n + 6 tells.
                let over = _mm512_and_si512(
                    _mm512_srli_epi32::<4>(_mm512_add_epi32(n, _mm512_set1_epi32(0x0606_0606))),
                    _mm512_set1_epi32(0x0101_0101),
                );
                let ascii = _mm512_add_epi32(
                    _mm512_add_epi32(n, _mm512_set1_epi32(0x3030_3030)),
                    _mm512_mullo_epi32(over, _mm512_set1_epi32(39)),
                );
                out[2 * k + half] = ascii;
            }
        }
        out
    }

    /// `before[a][b]`: the lanes where vertex `a`'s hash sorts before `b`'s
    /// (by digest bytes, as their hex sorts; ties by vertex number).
    #[target_feature(enable = "avx512f")]
    fn order(d: &[[__m512i; 4]], before: &mut [[u16; MAX_VERTICES]; MAX_VERTICES]) {
        // Digest bytes in order = each word byte-swapped, words in order.
        let swap = |x: __m512i| {
            _mm512_ternarylogic_epi32::<0xca>(
                _mm512_set1_epi32(0x00ff_00ff),
                _mm512_rol_epi32::<8>(x),
                _mm512_rol_epi32::<24>(x),
            )
        };
        let mut keys = [[_mm512_setzero_si512(); 4]; MAX_VERTICES];
        for (k, dv) in keys.iter_mut().zip(d) {
            for w in 0..4 {
                k[w] = swap(dv[w]);
            }
        }
        for a in 0..d.len() {
            for b in a + 1..d.len() {
                let (x, y) = (&keys[a], &keys[b]);
                let lt = |w: usize| _mm512_cmplt_epu32_mask(x[w], y[w]);
                let eq = |w: usize| _mm512_cmpeq_epu32_mask(x[w], y[w]);
                let le3 = _mm512_cmple_epu32_mask(x[3], y[3]);
                let ab = lt(0) | (eq(0) & (lt(1) | (eq(1) & (lt(2) | (eq(2) & le3)))));
                before[a][b] = ab;
                before[b][a] = !ab;
            }
        }
    }

    /// Appends the hex hashes of the vertices in `mask`, sorted in every
    /// lane, each wrapped in `open` and `close` and joined by `sep`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn sorted(
        w: &mut Writer,
        hex: &[[__m512i; 8]],
        before: &[[u16; MAX_VERTICES]; MAX_VERTICES],
        mask: u64,
        (open, sep, close): (&[u8], &[u8], &[u8]),
    ) {
        let mut members = [0usize; MAX_VERTICES];
        let mut k = 0;
        for_each_bit(mask, |v| {
            members[k] = v;
            k += 1;
        });
        let members = &members[..k];
        // Each member's place in the sorted order, per lane.
        let mut rank = [_mm512_setzero_si512(); MAX_VERTICES];
        for (r, &v) in rank.iter_mut().zip(members) {
            for &u in members {
                if u != v {
                    *r = _mm512_mask_add_epi32(*r, before[u][v], *r, _mm512_set1_epi32(1));
                }
            }
        }
        for slot in 0..k {
            if slot > 0 {
                sep.iter().for_each(|&b| w.byte(b));
            }
            open.iter().for_each(|&b| w.byte(b));
            let mut h = hex[members[0]];
            for (r, &v) in rank.iter().zip(members).skip(1) {
                let here = _mm512_cmpeq_epi32_mask(*r, _mm512_set1_epi32(slot as i32));
                for (x, &y) in h.iter_mut().zip(&hex[v]) {
                    *x = _mm512_mask_blend_epi32(here, *x, y);
                }
            }
            // Lanes where members[0] holds the slot kept its digits.
            w.hex(&h);
            close.iter().for_each(|&b| w.byte(b));
        }
    }

    /// [`super::hash_batch`] for graphs of at most [`MAX_VERTICES`]
    /// vertices: every step of the hash runs on all 16 lanes at once, from
    /// digests to hex digits, the per-lane sorting of neighbour hashes
    /// (ranks from vector compares, slots by blends) and the message words
    /// (written straight into MD5's lane-major layout).
    ///
    /// # Safety
    /// AVX-512F; `rows.len() <= MAX_VERTICES`, `cols` the transposed rows,
    /// `initial[v]` lane `l`'s first digest of vertex `v`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn hash_graph(
        rows: &[u64],
        cols: &[u64],
        initial: &[[[u32; LANES]; 4]],
    ) -> [[u8; 16]; LANES] {
        let n = rows.len();
        let mut cur = [[_mm512_setzero_si512(); 4]; MAX_VERTICES];
        for (c, words) in cur.iter_mut().zip(initial) {
            for (x, w) in c.iter_mut().zip(words) {
                // SAFETY: `w` is 16 readable u32s; the load is unaligned.
                *x = unsafe { _mm512_loadu_si512(w.as_ptr().cast()) };
            }
        }
        let mut hex = [[_mm512_setzero_si512(); 8]; MAX_VERTICES];
        let mut before = [[0u16; MAX_VERTICES]; MAX_VERTICES];
        let mut next = cur;
        let mut w = Writer::new();
        for _ in 0..n {
            for v in 0..n {
                hex[v] = hex_words(&cur[v]);
            }
            order(&cur[..n], &mut before);
            for v in 0..n {
                sorted(&mut w, &hex[..n], &before, cols[v], (b"", b"", b""));
                w.byte(b'|');
                sorted(&mut w, &hex[..n], &before, rows[v], (b"", b"", b""));
                w.byte(b'|');
                w.hex(&hex[v]);
                next[v] = w.digest();
            }
            cur = next;
        }
        for v in 0..n {
            hex[v] = hex_words(&cur[v]);
        }
        order(&cur[..n], &mut before);
        // Python's str(sorted(hashes)): ['h0', 'h1', ...]
        w.byte(b'[');
        let all = (1u64 << n) - 1;
        sorted(&mut w, &hex[..n], &before, all, (b"'", b", ", b"'"));
        w.byte(b']');
        // SAFETY: AVX-512F, as this function.
        unsafe { digests(w.digest()) }
    }
}

/// The portable path: plain loops over lane arrays, vectorised by the
/// compiler for the target's baseline SIMD.
fn md5_lanes_body(bufs: &mut [Vec<u8>; LANES], len: usize) -> [[u8; 16]; LANES] {
    pad(bufs, len);
    let mut state = [[0u32; LANES]; 4];
    for (s, init) in state.iter_mut().zip(INIT) {
        *s = [init; LANES];
    }
    let mut m = [[0u32; LANES]; 16];
    for block in 0..bufs[0].len() / 64 {
        for (w, word) in m.iter_mut().enumerate() {
            for (l, b) in bufs.iter().enumerate() {
                let at = block * 64 + w * 4;
                word[l] = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            }
        }
        compress(&mut state, &m);
    }
    let mut out = [[0u8; 16]; LANES];
    for (l, o) in out.iter_mut().enumerate() {
        for (k, s) in state.iter().enumerate() {
            o[4 * k..4 * k + 4].copy_from_slice(&s[l].to_le_bytes());
        }
    }
    out
}

/// Reusable buffers for [`hash_batch`].
#[derive(Default)]
pub struct BatchScratch {
    bufs: [Vec<u8>; LANES],
    cur: Vec<[[u8; 32]; LANES]>,
    next: Vec<[[u8; 32]; LANES]>,
    /// Each digest as a big-endian integer, which orders like its hex.
    keys: Vec<[u128; LANES]>,
    idx: Vec<usize>,
    /// The digest of each initial (out-degree, in-degree, label) message.
    initial: rustc_hash::FxHashMap<(u32, u32, i64), [u8; 16]>,
}

impl BatchScratch {
    /// The first-round digest of a vertex: it depends only on the vertex's
    /// degrees and label, so each is hashed once per scratch.
    fn initial(&mut self, out_mask: u64, in_mask: u64, label: i64) -> [u8; 16] {
        *self
            .initial
            .entry((out_mask.count_ones(), in_mask.count_ones(), label))
            .or_insert_with(|| {
                let mut b = Vec::new();
                push_initial_message(&mut b, out_mask, in_mask, label);
                md5_digest(&b)
            })
    }
}

/// The dataset hash (as [`crate::cell::graph::hash_module_with`] computes it) of
/// one shape `rows` under each labeling in `labelings` (at most [`LANES`];
/// each a label per vertex). Returns one hash per labeling, in order.
pub fn hash_batch(rows: &[u64], labelings: &[&[i64]], s: &mut BatchScratch) -> Vec<ModelHash> {
    let n = rows.len();
    let count = labelings.len();
    assert!(
        (1..=LANES).contains(&count),
        "1..={LANES} labelings per batch"
    );
    assert!(
        labelings.iter().all(|l| l.len() == n),
        "one label per vertex"
    );
    let lane_labels = |l: usize| labelings[l.min(count - 1)];
    let mut cols = [0u64; 64];
    for (v, &row) in rows.iter().enumerate() {
        for_each_bit(row, |w| cols[w] |= 1 << v);
    }
    #[cfg(target_arch = "x86_64")]
    if n <= x16::MAX_VERTICES && std::arch::is_x86_feature_detected!("avx512f") {
        let mut initial = [[[0u32; LANES]; 4]; x16::MAX_VERTICES];
        for (v, words) in initial.iter_mut().enumerate().take(n) {
            for l in 0..LANES {
                let d = s.initial(rows[v], cols[v], lane_labels(l)[v]);
                for (k, w) in words.iter_mut().enumerate() {
                    w[l] = u32::from_le_bytes([d[4 * k], d[4 * k + 1], d[4 * k + 2], d[4 * k + 3]]);
                }
            }
        }
        // SAFETY: the CPU has just been found to support AVX-512F; `n` is
        // within the limit; `cols` and `initial` are as required.
        let d = unsafe { x16::hash_graph(rows, &cols[..n], &initial[..n]) };
        return d[..count].iter().map(|&x| ModelHash(x)).collect();
    }
    hash_batch_portable(rows, &cols[..n], labelings, s)
}

/// [`hash_batch`] on any CPU: messages built per lane, MD5 by [`md5_lanes`].
fn hash_batch_portable(
    rows: &[u64],
    cols: &[u64],
    labelings: &[&[i64]],
    s: &mut BatchScratch,
) -> Vec<ModelHash> {
    let n = rows.len();
    let count = labelings.len();
    let lane_labels = |l: usize| labelings[l.min(count - 1)];
    s.cur.clear();
    s.cur.resize(n, [[0; 32]; LANES]);
    s.next.clear();
    s.next.resize(n, [[0; 32]; LANES]);
    s.keys.clear();
    s.keys.resize(n, [0; LANES]);
    let mut next_keys = vec![[0u128; LANES]; n];
    for v in 0..n {
        for l in 0..LANES {
            let d = s.initial(rows[v], cols[v], lane_labels(l)[v]);
            s.cur[v][l] = hex(&d);
            s.keys[v][l] = u128::from_be_bytes(d);
        }
    }
    // Every later message's length depends only on degrees: lanes agree.
    for _ in 0..n {
        for v in 0..n {
            let mut len = 0;
            for l in 0..LANES {
                let b = &mut s.bufs[l];
                b.clear();
                push_sorted(b, &mut s.idx, &s.cur, &s.keys, l, cols[v]);
                b.push(b'|');
                push_sorted(b, &mut s.idx, &s.cur, &s.keys, l, rows[v]);
                b.push(b'|');
                b.extend_from_slice(&s.cur[v][l]);
                len = b.len();
            }
            let d = md5_lanes(&mut s.bufs, len);
            s.next[v] = d.map(|x| hex(&x));
            next_keys[v] = d.map(u128::from_be_bytes);
        }
        std::mem::swap(&mut s.cur, &mut s.next);
        std::mem::swap(&mut s.keys, &mut next_keys);
    }
    let mut len = 0;
    for l in 0..LANES {
        let mut sorted: Vec<[u8; 32]> = s.cur.iter().map(|h| h[l]).collect();
        sorted.sort_unstable();
        let b = &mut s.bufs[l];
        b.clear();
        push_fingerprint_message(b, &sorted);
        len = b.len();
    }
    let d = md5_lanes(&mut s.bufs, len);
    d[..count].iter().map(|&x| ModelHash(x)).collect()
}

/// Appends lane `l`'s hashes of the vertices in `mask`, sorted, to `buf`.
fn push_sorted(
    buf: &mut Vec<u8>,
    idx: &mut Vec<usize>,
    hashes: &[[[u8; 32]; LANES]],
    keys: &[[u128; LANES]],
    l: usize,
    mask: u64,
) {
    idx.clear();
    for_each_bit(mask, |w| idx.push(w));
    idx.sort_unstable_by_key(|&w| keys[w][l]);
    for &w in idx.iter() {
        buf.extend_from_slice(&hashes[w][l]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::graph::{HashScratch, hash_module_with};

    #[test]
    fn md5_lanes_equals_md5_crate_at_every_length() {
        // Lengths around every padding boundary.
        for len in 0..200 {
            let mut bufs: [Vec<u8>; LANES] = Default::default();
            for (l, b) in bufs.iter_mut().enumerate() {
                *b = (0..len).map(|i| (i * 31 + l * 7 + len) as u8).collect();
            }
            let expect: Vec<[u8; 16]> = bufs.iter().map(|b| md5_digest(b)).collect();
            // The portable path, whatever the CPU.
            let got = md5_lanes_body(&mut bufs.clone(), len);
            assert_eq!(got.to_vec(), expect, "portable, length {len}");
            // The dispatched path (AVX-512 where the CPU has it).
            let got = md5_lanes(&mut bufs, len);
            assert_eq!(got.to_vec(), expect, "length {len}");
        }
    }

    #[test]
    fn batch_equals_scalar_hash() {
        // A 7-vertex shape under several labelings, and a partial batch.
        let rows = [
            0b0101110u64,
            0b1000000,
            0b1000000,
            0b0010000,
            0b1000000,
            0b1000000,
            0,
        ];
        let labelings: Vec<Vec<i64>> = (0..11)
            .map(|k| {
                let mut l = vec![-1i64];
                l.extend((0..5).map(|v| (k + v * (k % 3)) as i64 % 3));
                l.push(-2);
                l
            })
            .collect();
        for chunk in labelings.chunks(LANES) {
            let refs: Vec<&[i64]> = chunk.iter().map(|l| l.as_slice()).collect();
            let got = hash_batch(&rows, &refs, &mut BatchScratch::default());
            for (l, h) in chunk.iter().zip(got) {
                assert_eq!(h, hash_module_with(&rows, l, &mut HashScratch::default()));
            }
        }
    }

    /// Random upper-triangular graphs of 1..=20 vertices (the vectorised
    /// path takes up to 16, the portable one the rest), random labels with
    /// repeats (equal neighbour hashes), partial and full batches: both
    /// paths agree with the scalar hash.
    #[test]
    fn both_paths_equal_scalar_hash_on_random_graphs() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |m: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % m
        };
        for trial in 0..120 {
            let n = 1 + trial % 20;
            let rows: Vec<u64> = (0..n)
                .map(|v| {
                    let mut r = 0u64;
                    for w in v + 1..n {
                        if next(3) == 0 {
                            r |= 1 << w;
                        }
                    }
                    r
                })
                .collect();
            let count = 1 + next(LANES as u64) as usize;
            let labelings: Vec<Vec<i64>> = (0..count)
                .map(|_| (0..n).map(|_| next(3) as i64 - 1).collect())
                .collect();
            let refs: Vec<&[i64]> = labelings.iter().map(|l| l.as_slice()).collect();
            let mut cols = vec![0u64; n];
            for (v, &row) in rows.iter().enumerate() {
                for_each_bit(row, |w| cols[w] |= 1 << v);
            }
            let expect: Vec<ModelHash> = labelings
                .iter()
                .map(|l| hash_module_with(&rows, l, &mut HashScratch::default()))
                .collect();
            let mut s = BatchScratch::default();
            assert_eq!(hash_batch(&rows, &refs, &mut s), expect, "{n} vertices");
            assert_eq!(
                hash_batch_portable(&rows, &cols, &refs, &mut s),
                expect,
                "portable, {n} vertices"
            );
        }
    }
}
