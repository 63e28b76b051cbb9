//! Lane-parallel MD5 and batched graph hashing: the dataset hash of up to [`LANES`] labelings of one shape at once.
//!
//! The graph hash is ~60 small MD5s per cell, and MD5 is a serial chain
//! within one message. Labelings of one unlabeled shape produce messages of
//! identical lengths at every step (lengths depend only on degrees), so
//! [`LANES`] of them run through one MD5 in lockstep, each in its own lane.
//! On x86-64 CPUs with AVX-512F (detected at run time) the 16 lanes are the
//! 16 words of one register, the 64 steps are unrolled, and each round
//! function and rotation is one instruction (`vpternlogd`, `vprold`).
//! Elsewhere the lane loops are plain Rust over fixed arrays, which the
//! compiler turns into the target's baseline SIMD. No mature crate offers
//! multi-buffer MD5 (md5-many is an alpha), hence this module; its tests
//! check both paths against the `md-5` crate and [`hash_module_with`].
//!
//! [`hash_module_with`]: crate::graph::hash_module_with

use crate::graph::{
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
            let start = state;
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
        }
        let words: [[u32; 16]; 4] = state.map(|s| {
            let mut w = [0u32; 16];
            // SAFETY: `w` is 64 writable bytes; the store is unaligned.
            unsafe { _mm512_storeu_si512(w.as_mut_ptr().cast(), s) };
            w
        });
        std::array::from_fn(|l| {
            let mut out = [0u8; 16];
            for (k, w) in words.iter().enumerate() {
                out[4 * k..4 * k + 4].copy_from_slice(&w[l].to_le_bytes());
            }
            out
        })
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
    /// Hex and key of each initial (out-degree, in-degree, label) hash.
    initial: rustc_hash::FxHashMap<(u32, u32, i64), ([u8; 32], u128)>,
}

/// The dataset hash (as [`crate::graph::hash_module_with`] computes it) of
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
    s.cur.clear();
    s.cur.resize(n, [[0; 32]; LANES]);
    s.next.clear();
    s.next.resize(n, [[0; 32]; LANES]);
    s.keys.clear();
    s.keys.resize(n, [0; LANES]);
    let mut next_keys = vec![[0u128; LANES]; n];
    // The first hashes depend only on (out-degree, in-degree, label): a
    // handful of values, hashed once and kept in the scratch.
    for v in 0..n {
        let (out_deg, in_deg) = (rows[v].count_ones(), cols[v].count_ones());
        for l in 0..LANES {
            let label = lane_labels(l)[v];
            let (h, k) = *s
                .initial
                .entry((out_deg, in_deg, label))
                .or_insert_with(|| {
                    let mut b = Vec::new();
                    push_initial_message(&mut b, rows[v], cols[v], label);
                    let d = md5_digest(&b);
                    (hex(&d), u128::from_be_bytes(d))
                });
            s.cur[v][l] = h;
            s.keys[v][l] = k;
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
    use crate::graph::{HashScratch, hash_module_with};

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
}
