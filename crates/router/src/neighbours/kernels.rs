//! Integer kernels of the neighbour search, each with a portable version
//! that defines its result and an AVX-512 one that must equal it (tests
//! below compare them on random inputs).
//!
//! Why by hand: a decision reads every stored prompt (2,225 × 384 bytes in
//! the shipped artifact), and `vpdpbusd` (AVX-512 VNNI) multiplies 64 byte
//! pairs into sixteen i32 sums per instruction; laid out 16 rows × 4 bytes
//! per 64-byte step ([`BlockedRows`](super::index::BlockedRows)), one
//! instruction serves sixteen rows and no horizontal sum is needed. The
//! auto-vectorised i16 loop ([`dot_i8`]) takes about three times as long.

/// Rows per block of the scan's layout (one i32 lane each).
pub(super) const BLOCK: usize = 16;

/// Whether the VNNI kernels may run on this CPU.
pub(super) fn vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// (dot product with `q`, row index) for every `dim`-wide row of `rows`,
/// into `out` (cleared first): the exhaustive search.
pub(super) fn all_dots(rows: &[i8], dim: usize, q: &[i8], out: &mut Vec<(i32, u32)>) {
    out.clear();
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512bw") {
        // SAFETY: `all_dots_avx512` only requires AVX-512F/BW, which the
        // CPU was just detected to support; it is otherwise safe code.
        return unsafe { all_dots_avx512(rows, dim, q, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: `all_dots_avx2` only requires AVX2, which the CPU was
        // just detected to support; it is otherwise safe code.
        return unsafe { all_dots_avx2(rows, dim, q, out) };
    }
    all_dots_portable(rows, dim, q, out)
}

/// [`all_dots_portable`] compiled for AVX2: the same code, vectorised into
/// 256-bit lanes (about 15 ns per 384-d row against 140 ns for the
/// baseline x86-64 build, measured on a Xeon).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn all_dots_avx2(rows: &[i8], dim: usize, q: &[i8], out: &mut Vec<(i32, u32)>) {
    all_dots_portable(rows, dim, q, out)
}

/// The same for AVX-512 (about 8 ns per 384-d row).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn all_dots_avx512(rows: &[i8], dim: usize, q: &[i8], out: &mut Vec<(i32, u32)>) {
    all_dots_portable(rows, dim, q, out)
}

/// Plain loops, not iterator adapters: `collect` or `fold` would run in a
/// generic function compiled without the caller's target features.
#[inline(always)]
pub(super) fn all_dots_portable(rows: &[i8], dim: usize, q: &[i8], out: &mut Vec<(i32, u32)>) {
    for (i, row) in rows.chunks_exact(dim).enumerate() {
        out.push((dot_i8(row, q), i as u32));
    }
}

/// i8 dot product in i32 (384 × 127² fits easily): sixteen lanes of i16
/// products (127² fits i16) widened into i32, a shape the compiler
/// vectorises.
#[inline(always)]
pub(super) fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; 16];
    let (ac, bc) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: i32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(&x, &y)| x as i32 * y as i32)
        .sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..16 {
            acc[l] += (x[l] as i16 * y[l] as i16) as i32;
        }
    }
    acc.iter().sum::<i32>() + tail
}

/// Scores of every row of the blocked layout: `codes` holds `blocks`
/// blocks of `groups` steps of [`BLOCK`] rows × 4 unsigned bytes; `quads`
/// the query's `groups` signed 4-byte groups (as i32). Row r of block b
/// gets Σ_g Σ_t codes[b][g][r][t] · quad_g[t], written to `out[b * 16 + r]`
/// (i32 cannot overflow for any dimension below 66,000).
pub(super) fn block_scores(
    codes: &[u8],
    groups: usize,
    quads: &[i32],
    use_vnni: bool,
    out: &mut [i32],
) {
    let step = BLOCK * 4;
    let blocks = codes.len() / (groups * step);
    assert!(
        quads.len() == groups
            && codes.len() == blocks * groups * step
            && out.len() == blocks * BLOCK
    );
    #[cfg(target_arch = "x86_64")]
    if use_vnni {
        // SAFETY: callers pass `use_vnni` only as [`vnni()`] returned it,
        // so the CPU has AVX-512 F/BW/VNNI; lengths asserted just above.
        return unsafe { block_scores_vnni(codes, groups, quads, out) };
    }
    let _ = use_vnni;
    block_scores_portable(codes, groups, quads, out)
}

pub(super) fn block_scores_portable(codes: &[u8], groups: usize, quads: &[i32], out: &mut [i32]) {
    let step = BLOCK * 4;
    for (b, block) in codes.chunks_exact(groups * step).enumerate() {
        let mut acc = [0i32; BLOCK];
        for (g, lanes) in block.chunks_exact(step).enumerate() {
            let q = quads[g].to_le_bytes();
            for (r, a) in acc.iter_mut().enumerate() {
                for t in 0..4 {
                    *a += lanes[r * 4 + t] as i32 * q[t] as i8 as i32;
                }
            }
        }
        out[b * BLOCK..(b + 1) * BLOCK].copy_from_slice(&acc);
    }
}

/// # Safety
/// The CPU has AVX-512 F, BW and VNNI; `quads.len() == groups`, `codes.len() == blocks * groups * 64` and
/// `out.len() == blocks * 16` for some whole `blocks`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn block_scores_vnni(codes: &[u8], groups: usize, quads: &[i32], out: &mut [i32]) {
    use std::arch::x86_64::*;
    let stride = groups * 64;
    let blocks = out.len() / BLOCK;
    let base = codes.as_ptr();
    let mut b = 0;
    // Four blocks at a time: four independent accumulator chains hide the
    // instruction's latency, and each broadcast query group serves four.
    while b + 4 <= blocks {
        let mut acc = [_mm512_setzero_si512(); 4];
        for (g, &quad) in quads.iter().enumerate() {
            let qg = _mm512_set1_epi32(quad);
            for (j, a) in acc.iter_mut().enumerate() {
                // SAFETY: b + j < blocks and g < groups: the 64 bytes at
                // (b + j) * stride + g * 64 lie inside codes (length
                // blocks * stride).
                let v =
                    unsafe { _mm512_loadu_si512(base.add((b + j) * stride + g * 64) as *const _) };
                *a = _mm512_dpbusd_epi32(*a, v, qg);
            }
        }
        for (j, a) in acc.iter().enumerate() {
            // SAFETY: (b + j) * 16 + 16 <= blocks * 16 = out.len().
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().add((b + j) * BLOCK) as *mut _, *a) };
        }
        b += 4;
    }
    while b < blocks {
        let mut a = _mm512_setzero_si512();
        for (g, &quad) in quads.iter().enumerate() {
            // SAFETY: b < blocks, g < groups, as above.
            let v = unsafe { _mm512_loadu_si512(base.add(b * stride + g * 64) as *const _) };
            a = _mm512_dpbusd_epi32(a, v, _mm512_set1_epi32(quad));
        }
        // SAFETY: b * 16 + 16 <= out.len().
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(b * BLOCK) as *mut _, a) };
        b += 1;
    }
}

/// How many of `scores` are at least `threshold`.
pub(super) fn count_at_least(scores: &[i32], threshold: i32) -> usize {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: `count_at_least_avx512` only requires AVX-512F, which
        // the CPU was just detected to support; it is otherwise safe code.
        return unsafe { count_at_least_avx512(scores, threshold) };
    }
    count_at_least_portable(scores, threshold)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn count_at_least_avx512(scores: &[i32], threshold: i32) -> usize {
    count_at_least_portable(scores, threshold)
}

/// A plain loop of compares the compiler vectorises.
#[inline(always)]
fn count_at_least_portable(scores: &[i32], threshold: i32) -> usize {
    let mut c = 0u32;
    for &s in scores {
        c += (s >= threshold) as u32;
    }
    c as usize
}

/// Indices i < `n` with `scores[i] >= threshold`, in increasing order,
/// into `out` (cleared first).
pub(super) fn at_least(
    scores: &[i32],
    n: usize,
    threshold: i32,
    use_vnni: bool,
    out: &mut Vec<u32>,
) {
    out.clear();
    let scores = &scores[..n];
    #[cfg(target_arch = "x86_64")]
    if use_vnni {
        // SAFETY: `use_vnni` comes from [`vnni()`], which includes
        // AVX-512 F (all this kernel needs).
        return unsafe { at_least_avx512(scores, threshold, out) };
    }
    let _ = use_vnni;
    out.extend((0..n as u32).filter(|&i| scores[i as usize] >= threshold));
}

/// # Safety
/// The CPU has AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn at_least_avx512(scores: &[i32], threshold: i32, out: &mut Vec<u32>) {
    use std::arch::x86_64::*;
    let n = scores.len();
    out.reserve(n + 16);
    let dst = out.as_mut_ptr();
    let t = _mm512_set1_epi32(threshold);
    let step = _mm512_set1_epi32(16);
    let mut idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let mut len = 0usize;
    let mut i = 0;
    while i < n {
        let lanes = (n - i).min(16);
        let live: __mmask16 = if lanes == 16 {
            0xffff
        } else {
            (1u16 << lanes) - 1
        };
        // SAFETY: the masked load reads only lanes i .. i + lanes <= n of
        // `scores` (masked-off lanes are not accessed).
        let s = unsafe { _mm512_maskz_loadu_epi32(live, scores.as_ptr().add(i)) };
        let m = _mm512_mask_cmpge_epi32_mask(live, s, t);
        let packed = _mm512_maskz_compress_epi32(m, idx);
        // SAFETY: len <= i (at most one index per score seen), so the 16
        // lanes written at len end by i + 16 <= n + 16 <= capacity
        // (reserved above); the written prefix is initialised u32s.
        unsafe { _mm512_storeu_si512(dst.add(len) as *mut _, packed) };
        len += m.count_ones() as usize;
        idx = _mm512_add_epi32(idx, step);
        i += 16;
    }
    // SAFETY: the first `len` values were written above (each store wrote
    // its m.count_ones() selected indices first) and len <= capacity.
    unsafe { out.set_len(len) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::SplitMix;

    fn bytes(rng: &mut SplitMix, n: usize) -> Vec<u8> {
        (0..n).map(|_| (rng.next_f32() * 256.0) as u8).collect()
    }

    fn signed(rng: &mut SplitMix, n: usize) -> Vec<i8> {
        // -127..=127, as quantised embeddings are.
        (0..n)
            .map(|_| ((rng.next_f32() * 255.0) as i32 - 127) as i8)
            .collect()
    }

    #[test]
    fn vnni_kernels_equal_the_portable_ones() {
        if !vnni() {
            eprintln!("no AVX-512 VNNI here: only the portable kernels run");
            return;
        }
        let mut rng = SplitMix(7);
        // 384, 64, 32 and 12 dimensions; 1..9 blocks (the 4-block loop
        // and its remainder).
        for groups in [96, 16, 8, 3] {
            for blocks in [1, 4, 5, 9] {
                let codes = bytes(&mut rng, blocks * groups * 64);
                let quads: Vec<i32> = (0..groups)
                    .map(|_| i32::from_le_bytes(bytes(&mut rng, 4).try_into().unwrap()))
                    .collect();
                let (mut a, mut b) = (vec![0; blocks * 16], vec![0; blocks * 16]);
                block_scores(&codes, groups, &quads, true, &mut a);
                block_scores_portable(&codes, groups, &quads, &mut b);
                assert_eq!(a, b, "groups {groups}, blocks {blocks}");
            }
        }
        // The row-by-row reference, as dispatched and as written.
        for dim in [384, 100, 7] {
            let rows = signed(&mut rng, 50 * dim);
            let q = signed(&mut rng, dim);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            all_dots(&rows, dim, &q, &mut a);
            all_dots_portable(&rows, dim, &q, &mut b);
            assert_eq!(a, b, "dim {dim}");
        }
        // Threshold filter, lengths around whole vectors.
        for n in [0, 1, 15, 16, 17, 100] {
            let scores: Vec<i32> = (0..n).map(|_| (rng.next_f32() * 100.0) as i32).collect();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            at_least(&scores, n, 50, true, &mut a);
            at_least(&scores, n, 50, false, &mut b);
            assert_eq!(a, b, "n {n}");
        }
    }
}
