//! Integer kernels of the neighbour search, each with a portable version
//! that defines its result and AVX-512 and AVX2 ones that must equal it
//! (tests below compare them on random inputs).
//!
//! Why by hand: a decision reads every stored prompt (2,225 × 384 bytes in
//! the shipped artifact), and `vpdpbusd` (AVX-512 VNNI) multiplies 64 byte
//! pairs into sixteen i32 sums per instruction; laid out 16 rows × 4 bytes
//! per 64-byte load ([`BlockedRows`](super::index::BlockedRows)), one
//! instruction serves sixteen rows and no horizontal sum is needed. The
//! auto-vectorised i16 loop ([`dot_i8`]) takes about three times as long.

/// Rows per block of the scan's layout: four 16-lane vectors of i32 sums.
pub(super) const BLOCK: usize = 64;

/// Which kernel scores the blocked layout ([`block_scores`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scan {
    /// `vpdpbusd`: AVX-512 F, BW and VNNI.
    Vnni,
    /// `vpmaddubsw` with the sign trick: AVX2. Exact only where no stored
    /// value is -128 (see [`block_scores_avx2`]).
    Avx2,
    Portable,
}

impl Scan {
    /// The fastest scan this CPU runs.
    pub(super) fn detect() -> Scan {
        if vnni() {
            Scan::Vnni
        } else if avx2() {
            Scan::Avx2
        } else {
            Scan::Portable
        }
    }
}

fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

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

/// Scores of every row of the blocked layout: `codes` holds whole blocks
/// of `groups` steps of [`BLOCK`] rows × 4 unsigned bytes (each step 256
/// contiguous bytes, so the scan reads one sequential stream); `quads` the
/// query's `groups` signed 4-byte groups (as i32). Row r of block b gets
/// Σ_g Σ_t codes[b][g][r][t] · quad_g[t], written to `out[b * BLOCK + r]`
/// (no i32 overflow below 66,000 dimensions).
///
/// `scan` must come from [`Scan::detect`] (or be `Portable`), and
/// `Scan::Avx2` only for codes without a 0 (a stored -128).
pub(super) fn block_scores(
    codes: &[u8],
    groups: usize,
    quads: &[i32],
    scan: Scan,
    out: &mut [i32],
) {
    let step = BLOCK * 4;
    let blocks = codes.len() / (groups * step).max(1);
    assert!(
        quads.len() == groups
            && codes.len() == blocks * groups * step
            && out.len() == blocks * BLOCK
    );
    #[cfg(target_arch = "x86_64")]
    match scan {
        // SAFETY: callers pass `Scan::Vnni` only as [`Scan::detect`]
        // returned it, so the CPU has AVX-512 F/BW/VNNI; lengths asserted
        // just above.
        Scan::Vnni => return unsafe { block_scores_vnni(codes, quads, out) },
        // SAFETY: likewise the CPU has AVX2, the lengths are asserted, and
        // callers pass `Scan::Avx2` only for codes without a 0.
        Scan::Avx2 => return unsafe { block_scores_avx2(codes, quads, out) },
        Scan::Portable => {}
    }
    let _ = scan;
    block_scores_portable(codes, groups, quads, out)
}

pub(super) fn block_scores_portable(codes: &[u8], groups: usize, quads: &[i32], out: &mut [i32]) {
    let step = BLOCK * 4;
    for (block, acc) in codes
        .chunks_exact(groups * step)
        .zip(out.chunks_exact_mut(BLOCK))
    {
        acc.fill(0);
        for (lanes, quad) in block.chunks_exact(step).zip(quads) {
            let q = quad.to_le_bytes();
            for (a, row) in acc.iter_mut().zip(lanes.chunks_exact(4)) {
                for t in 0..4 {
                    *a += row[t] as i32 * q[t] as i8 as i32;
                }
            }
        }
    }
}

/// # Safety
/// The CPU has AVX-512 F, BW and VNNI; `codes.len() == blocks *
/// quads.len() * 256` and `out.len() == blocks * 64` for some whole
/// `blocks`.
const PREFETCH: usize = 2048;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn block_scores_vnni(codes: &[u8], quads: &[i32], out: &mut [i32]) {
    use std::arch::x86_64::*;
    const LANES: usize = BLOCK / 16;
    let blocks = out.len() / BLOCK;
    let mut src = codes.as_ptr();
    for b in 0..blocks {
        // Four independent accumulator chains (16 rows each) hide the
        // instruction's latency; each broadcast query group serves all four.
        let mut acc = [_mm512_setzero_si512(); LANES];
        for &quad in quads {
            // A prefetch never faults: past the end it is harmless.
            for line in 0..4 {
                _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(PREFETCH + line * 64) as *const i8);
            }
            let q = _mm512_set1_epi32(quad);
            for (j, a) in acc.iter_mut().enumerate() {
                // SAFETY: `src` advances 256 bytes per (block, group), so
                // it has passed b * groups + g whole steps; the 64 bytes at
                // j * 64 < 256 lie inside codes (blocks * groups * 256).
                let v = unsafe { _mm512_loadu_si512(src.add(j * 64) as *const _) };
                *a = _mm512_dpbusd_epi32(*a, v, q);
            }
            // SAFETY: stays within (or one past the end of) `codes`.
            src = unsafe { src.add(BLOCK * 4) };
        }
        for (j, a) in acc.iter().enumerate() {
            // SAFETY: b * 64 + j * 16 + 16 <= blocks * 64 = out.len().
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(b * BLOCK + j * 16) as *mut _, *a) };
        }
    }
}

/// # Safety
/// The CPU has AVX2; `codes.len() == blocks * quads.len() * 256` and
/// `out.len() == blocks * 64` for some whole `blocks`; no code is 0.
///
/// AVX2 has no unsigned × signed byte product into i32 that cannot
/// saturate: `vpmaddubsw` adds two u8 · i8 products into an i16, and
/// 2 · 255 · 127 overflows it. So each code is read as the signed value
/// it stores (x = code − 128, in −127..=127 when no code is 0), the query
/// byte's sign moves onto x (`vpsignb`) and its magnitude (at most 127:
/// queries are quantised to ±127) is the unsigned operand: the pair
/// sums stay within 2 · 127 · 127 < 2¹⁵, exact. `vpmaddwd` with ones adds
/// the pairs into one i32 per row (8 rows a register, 8 registers a
/// block), and 128 · Σq, added at the end, makes Σ x·q the portable
/// kernel's Σ code·q.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn block_scores_avx2(codes: &[u8], quads: &[i32], out: &mut [i32]) {
    use std::arch::x86_64::*;
    const LANES: usize = BLOCK / 8;
    let blocks = out.len() / BLOCK;
    let q_sum: i32 = quads
        .iter()
        .flat_map(|q| q.to_le_bytes())
        .map(|b| b as i8 as i32)
        .sum();
    let offset = _mm256_set1_epi32(128 * q_sum);
    let (flip, ones) = (_mm256_set1_epi8(i8::MIN), _mm256_set1_epi16(1));
    let mut src = codes.as_ptr();
    for b in 0..blocks {
        let mut acc = [_mm256_setzero_si256(); LANES];
        for &quad in quads {
            // A prefetch never faults: past the end it is harmless.
            for line in 0..4 {
                _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(PREFETCH + line * 64) as *const i8);
            }
            let q = _mm256_set1_epi32(quad);
            let magnitude = _mm256_abs_epi8(q);
            for (j, a) in acc.iter_mut().enumerate() {
                // SAFETY: `src` advances 256 bytes per (block, group), so
                // it has passed b * groups + g whole steps; the 32 bytes at
                // j * 32 < 256 lie inside codes (blocks * groups * 256).
                let v = unsafe { _mm256_loadu_si256(src.add(j * 32) as *const __m256i) };
                let x = _mm256_xor_si256(v, flip);
                let pairs = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(x, q));
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(pairs, ones));
            }
            // SAFETY: stays within (or one past the end of) `codes`.
            src = unsafe { src.add(BLOCK * 4) };
        }
        for (j, a) in acc.iter().enumerate() {
            // SAFETY: b * 64 + j * 8 + 8 <= blocks * 64 = out.len().
            unsafe {
                _mm256_storeu_si256(
                    out.as_mut_ptr().add(b * BLOCK + j * 8) as *mut __m256i,
                    _mm256_add_epi32(*a, offset),
                )
            };
        }
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
pub(super) fn at_least(scores: &[i32], n: usize, threshold: i32, scan: Scan, out: &mut Vec<u32>) {
    out.clear();
    let scores = &scores[..n];
    #[cfg(target_arch = "x86_64")]
    if scan == Scan::Vnni {
        // SAFETY: `Scan::Vnni` comes from [`Scan::detect`], which checked
        // AVX-512 F (all this kernel needs).
        return unsafe { at_least_avx512(scores, threshold, out) };
    }
    let _ = scan;
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
        // 384, 64, 32 and 12 dimensions; 1 to 9 blocks.
        for groups in [96, 16, 8, 3] {
            for blocks in [1, 4, 9] {
                let codes = bytes(&mut rng, blocks * groups * BLOCK * 4);
                let quads: Vec<i32> = (0..groups)
                    .map(|_| i32::from_le_bytes(bytes(&mut rng, 4).try_into().unwrap()))
                    .collect();
                let (mut a, mut b) = (vec![0; blocks * BLOCK], vec![0; blocks * BLOCK]);
                block_scores(&codes, groups, &quads, Scan::Vnni, &mut a);
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
            at_least(&scores, n, 50, Scan::Vnni, &mut a);
            at_least(&scores, n, 50, Scan::Portable, &mut b);
            assert_eq!(a, b, "n {n}");
        }
    }

    #[test]
    fn avx2_scan_equals_the_portable_one() {
        if !avx2() {
            eprintln!("no AVX2 here: only the portable kernels run");
            return;
        }
        let mut rng = SplitMix(13);
        // Codes 1..=255 (stored values -127..=127, as BlockedRows holds
        // them), and the extremes in every lane: all 1s, all 255s against
        // queries of ±127, the largest pair sums the sign trick meets.
        for groups in [96, 16, 8, 3] {
            for blocks in [1, 4, 9] {
                let n = blocks * groups * BLOCK * 4;
                let mut cases: Vec<(Vec<u8>, Vec<i32>)> = Vec::new();
                let random: Vec<u8> = bytes(&mut rng, n).iter().map(|&c| c.max(1)).collect();
                let quads = |rng: &mut SplitMix| -> Vec<i32> {
                    (0..groups)
                        .map(|_| {
                            i32::from_le_bytes(
                                signed(rng, 4)
                                    .iter()
                                    .map(|&x| x as u8)
                                    .collect::<Vec<_>>()
                                    .try_into()
                                    .unwrap(),
                            )
                        })
                        .collect()
                };
                cases.push((random, quads(&mut rng)));
                for code in [1u8, 255] {
                    for q in [127i8, -127] {
                        let quad = i32::from_le_bytes([q as u8; 4]);
                        cases.push((vec![code; n], vec![quad; groups]));
                    }
                }
                for (codes, quads) in cases {
                    let (mut a, mut b) = (vec![0; blocks * BLOCK], vec![0; blocks * BLOCK]);
                    block_scores(&codes, groups, &quads, Scan::Avx2, &mut a);
                    block_scores_portable(&codes, groups, &quads, &mut b);
                    assert_eq!(a, b, "groups {groups}, blocks {blocks}");
                }
            }
        }
    }
}
