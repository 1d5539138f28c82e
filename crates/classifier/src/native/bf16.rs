//! The bf16 path of the dense products, for CPUs with AVX-512 BF16 (AMD
//! Zen 4 and later, Intel Cooper Lake / Sapphire Rapids and later).
//!
//! Why: `vdpbf16ps` multiplies pairs of bf16 values and adds both products
//! into an f32 lane, twice the multiply-adds per instruction of an f32 FMA,
//! and bf16 weights take half the memory traffic. Inputs are rounded to bf16
//! (8 bits of mantissa, round to nearest even); products and sums stay f32.
//! Embeddings move by about 1e-3 (see tests/native_encoder.rs), so this is
//! opt-in where routing quality has been checked (docs/PERFORMANCE.md).
//!
//! Layout: B is packed in panels of [`NR`] columns like [`PackedB`], but
//! each step along k holds a *pair* of k values per column (`[k2][NR][2]`),
//! which is the operand order `vdpbf16ps` expects. A is converted to bf16
//! rows, one pair per 32-bit broadcast.

use std::cell::RefCell;

use super::gemm::{for_panels, OutPtr, PackedB, NR};

/// Rows of C per micro-kernel call (one 16-lane accumulator per row; 32
/// vector registers leave room for 12 plus the operands).
const MR: usize = 12;
/// Pairs of k per block: 256 values of k, as in the f32 path.
const KC2: usize = 128;

/// Weights as bf16 pairs, in panels of [`NR`] columns.
#[derive(Debug, Clone, Default)]
pub struct PackedPairs {
    data: Vec<u16>,
    /// Pairs along k (`k` rounded up to even, halved).
    k2: usize,
    n: usize,
}

impl PackedPairs {
    /// Re-packs f32 panels as bf16 pairs (an odd `k` gets a zero pair
    /// partner).
    pub fn from_f32(b: &PackedB) -> PackedPairs {
        let (k, n) = (b.k(), b.n());
        let k2 = k.div_ceil(2);
        let panels = n.div_ceil(NR);
        let mut data = vec![0u16; panels * k2 * NR * 2];
        for p in 0..panels {
            let src = b.panel(p);
            let dst = &mut data[p * k2 * NR * 2..(p + 1) * k2 * NR * 2];
            for kk in 0..k {
                for j in 0..NR {
                    dst[(kk / 2) * NR * 2 + j * 2 + kk % 2] = to_bf16(src[kk * NR + j]);
                }
            }
        }
        PackedPairs { data, k2, n }
    }

    fn panel(&self, p: usize) -> &[u16] {
        &self.data[p * self.k2 * NR * 2..(p + 1) * self.k2 * NR * 2]
    }
}

/// f32 to bf16, rounding to nearest even (NaN stays NaN).
pub fn to_bf16(x: f32) -> u16 {
    half::bf16::from_f32(x).to_bits()
}

/// Whether this CPU runs the bf16 kernel.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

thread_local! {
    /// A converted to bf16; grows to the largest product seen, then is
    /// reused, so steady-state passes allocate nothing.
    static A_BF16: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
}

/// `C[m × n] = A[m × k] · Bᵀ (+ bias)` with B as bf16 pairs; same contract
/// as [`super::gemm::gemm_into`].
///
/// # Safety
/// `c.0` is valid for reads and writes of `(m - 1) * ldc + b.n`
/// initialised values with `ldc >= b.n`, and no other code reads or
/// writes columns `0..b.n` of rows `0..m` while this runs (what
/// [`super::gemm::gemm_into`] asserts and is promised before calling).
/// A and bias are slices indexed with bounds checks, and the CPU check is
/// an `assert!`, so they need no promise.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_into(
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedPairs,
    k: usize,
    bias: Option<&[f32]>,
    c: OutPtr,
    ldc: usize,
    parallel: bool,
) {
    // The kernels below execute AVX-512 BF16 instructions: on a CPU without them
    // that is undefined behaviour, not a crash we could catch. The check is
    // a cached atomic load, so it stays on in release builds.
    assert!(
        supported(),
        "bf16::gemm_into called on a CPU without AVX-512 BF16"
    );
    // Taken out of the thread-local and put back after, so a nested call
    // on this thread (a rayon worker stealing work) gets its own buffer.
    let mut buf = A_BF16.with(|cell| cell.take());
    let lda2 = b.k2 * 2;
    if buf.len() < m * lda2 {
        buf.resize(m * lda2, 0);
    }
    for i in 0..m {
        convert_row(&a[i * lda..i * lda + k], &mut buf[i * lda2..(i + 1) * lda2]);
    }
    let a16: &[u16] = &buf;
    for_panels(b.n.div_ceil(NR), parallel, |p0, p1| {
        for kp0 in (0..b.k2).step_by(KC2) {
            let kc2 = KC2.min(b.k2 - kp0);
            for p in p0..p1 {
                // SAFETY: `panel_product`'s contract: p < panels and
                // kp0 + kc2 <= b.k2 by the loop bounds; `a16` holds at
                // least m * lda2 values (resized above) with lda2 = 2 * b.k2;
                // C is as our own contract says, and for_panels gives
                // panels p0..p1 to this thread alone; the CPU passed
                // `supported()` (asserted above).
                unsafe { panel_product(m, a16, lda2, b, p, kp0, kc2, bias, c, ldc) };
            }
        }
    });
    A_BF16.with(|cell| cell.replace(buf));
}

/// One panel of C, pairs `kp0..kp0 + kc2` of k; see
/// `gemm::panel_product`.
///
/// # Safety
/// - `p < b.n.div_ceil(NR)` and `kp0 + kc2 <= b.k2`;
/// - `lda2 == 2 * b.k2` and `a.len() >= m * lda2`;
/// - `out` as in [`gemm_into`]'s contract, and columns `p * NR..p * NR + NR`
///   of rows `0..m` are this call's alone;
/// - the CPU passes [`supported`].
///
/// From these it builds tiles that meet the tile contract ([`Tile`]).
#[allow(clippy::too_many_arguments)]
unsafe fn panel_product(
    m: usize,
    a: &[u16],
    lda2: usize,
    b: &PackedPairs,
    p: usize,
    kp0: usize,
    kc2: usize,
    bias: Option<&[f32]>,
    out: OutPtr,
    ldc: usize,
) {
    let col = p * NR;
    let width = NR.min(b.n - col);
    let mut bias_tile = [0.0f32; NR];
    if let (Some(bias), 0) = (bias, kp0) {
        bias_tile[..width].copy_from_slice(&bias[col..col + width]);
    }
    let panel = b.panel(p);
    // SAFETY: kp0 < b.k2 and the panel holds b.k2 steps of NR pairs
    // (2 * NR values each), so the offset is inside it; the tile reads
    // kc2 steps from there, ending at (kp0 + kc2) * 2 * NR <= its length.
    let panel_kp0 = unsafe { panel.as_ptr().add(kp0 * NR * 2) };
    let mut row = 0;
    while row < m {
        let rows = MR.min(m - row);
        // SAFETY: for both `add`s and the tile contract's A and C: row < m
        // and kp0 < b.k2, so row * lda2 + 2 * kp0 < m * lda2 <= a.len(), and
        // the last A value the tile reads, (row + rows - 1) * lda2 +
        // 2 * (kp0 + kc2) - 1, is at most m * lda2 - 1. C as in
        // gemm::panel_product: col < b.n, so the tile's values end at
        // (m - 1) * ldc + b.n - 1 at most, and those columns are ours.
        let tile = unsafe {
            Tile {
                k2: kc2,
                a: a.as_ptr().add(row * lda2 + kp0 * 2),
                lda2,
                b: panel_kp0,
                c: out.0.add(row * ldc + col),
                ldc,
                bias: &bias_tile,
                width,
                accumulate: kp0 > 0,
            }
        };
        // SAFETY: `tile` meets the tile contract for `rows` rows, the CPU
        // passes `supported()` (our contract), and by_rows! calls
        // `kernel::<R>` with R == rows (rows is in 1..=12, each its own arm).
        unsafe { by_rows!(rows, kernel(&tile); 12 11 10 9 8 7 6 5 4 3 2 1) };
        row += rows;
    }
}

/// What a micro-kernel call reads and writes: `C (+)= A · B + bias` for
/// `R` rows and `width` columns, k in pairs.
///
/// The tile contract, which [`panel_product`] establishes and the kernel
/// relies on:
/// - A: values `r * lda2 + 2 * kp` and `+ 1` are readable for `r < R`,
///   `kp < k2` (through `a`; not necessarily 4-byte aligned);
/// - B: `b` is readable for `k2 * NR * 2` values, immutable meanwhile;
/// - C: `c.add(r * ldc + j)` is initialised, readable and writable for
///   `r < R`, `j < width`, and nothing else touches those values meanwhile;
/// - `1 <= width <= NR`.
struct Tile<'a> {
    k2: usize,
    a: *const u16,
    lda2: usize,
    b: *const u16,
    c: *mut f32,
    ldc: usize,
    bias: &'a [f32; NR],
    width: usize,
    accumulate: bool,
}

/// # Safety
/// `t` meets the tile contract ([`Tile`]) for `R` rows, and the CPU
/// passes [`supported`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn kernel<const R: usize>(t: &Tile) {
    // SAFETY: exactly `kernel_avx512`'s contract, which is ours: the
    // features it enables are the ones `supported()` detects.
    unsafe { kernel_avx512::<R>(t) }
}

/// # Safety
/// Never callable: the bf16 path is off wherever [`supported`] is false.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn kernel<const R: usize>(_: &Tile) {
    unreachable!("the bf16 path is only enabled where `supported()`")
}

/// # Safety
/// The CPU has AVX-512 F and BF16 (it passes [`supported`]), and `t`
/// meets the tile contract ([`Tile`]) for `R` rows. All loads and stores
/// are unaligned, so only their bounds need arguing. The two transmutes
/// reinterpret 512 bits of i32 lanes as 32 bf16 lanes: same size, and
/// every bit pattern is a valid value of both plain vector types.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel_avx512<const R: usize>(t: &Tile) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); R];
    for kp in 0..t.k2 {
        // A prefetch never faults: past the panel's end it is harmless.
        _mm_prefetch::<_MM_HINT_T0>(t.b.wrapping_add((kp + 8) * NR * 2) as *const i8);
        // SAFETY: kp < t.k2: step kp of B, values kp * 32 .. kp * 32 + 32
        // (64 bytes, one load), lies inside its t.k2 * NR * 2 values (tile
        // contract); the transmute as in the doc above.
        let bv: __m512bh =
            unsafe { std::mem::transmute(_mm512_loadu_si512(t.b.add(kp * NR * 2) as *const _)) };
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: r < R and kp < t.k2: A values r * lda2 + 2 * kp and
            // + 1, readable by the tile contract, read as one unaligned
            // i32; the transmute as in the doc above.
            let av: __m512bh = unsafe {
                let pair = (t.a.add(r * t.lda2 + kp * 2) as *const i32).read_unaligned();
                std::mem::transmute(_mm512_set1_epi32(pair))
            };
            *acc = _mm512_dpbf16_ps(*acc, av, bv);
        }
    }
    // SAFETY: `t.bias` is a `[f32; NR]`, exactly the 16 lanes loaded.
    let bias = unsafe { _mm512_loadu_ps(t.bias.as_ptr()) };
    let mask: __mmask16 = if t.width == NR {
        0xffff
    } else {
        (1u16 << t.width) - 1
    };
    for (r, acc) in acc.iter().enumerate() {
        let mut v = _mm512_add_ps(*acc, bias);
        // SAFETY: r < R, so values 0..t.width of C's row r, starting at
        // `dst`, are readable and writable (tile contract). `mask` has
        // exactly the low t.width bits set, and masked-off lanes of
        // `maskz_loadu` / `mask_storeu` are not accessed (AVX-512 fault
        // suppression), so nothing past t.width is touched.
        unsafe {
            let dst = t.c.add(r * t.ldc);
            if t.accumulate {
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, dst));
            }
            _mm512_mask_storeu_ps(dst, mask, v);
        }
    }
}

/// One row of A to bf16, zero-padded to the pair-aligned length of `dst`.
fn convert_row(src: &[f32], dst: &mut [u16]) {
    // The vector path writes 16 values at a time through a raw pointer:
    // this is what keeps those writes inside `dst`.
    assert!(dst.len() >= src.len(), "bf16 row shorter than its source");
    #[cfg(target_arch = "x86_64")]
    if supported() {
        // SAFETY: the CPU has AVX-512 F and BF16 (checked just above) and
        // dst.len() >= src.len() (asserted above): `convert_row_avx512`'s
        // contract.
        unsafe { convert_row_avx512(src, dst) };
        return;
    }
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = to_bf16(s);
    }
    dst[src.len()..].fill(0);
}

/// # Safety
/// The CPU has AVX-512 F and BF16 (it passes [`supported`]), and
/// `dst.len() >= src.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn convert_row_avx512(src: &[f32], dst: &mut [u16]) {
    use std::arch::x86_64::*;
    let mut i = 0;
    while i + 16 <= src.len() {
        // SAFETY: i + 16 <= src.len() <= dst.len() (the loop condition and
        // our contract): the 16 f32 read and the 16 u16 written are inside
        // `src` and `dst`; both accesses are unaligned. The transmute
        // reinterprets 16 bf16 lanes as 256 integer bits: same size, any
        // bit pattern valid.
        unsafe {
            let v = _mm512_loadu_ps(src.as_ptr().add(i));
            let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
            _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut __m256i, h);
        }
        i += 16;
    }
    for (d, &s) in dst[i..].iter_mut().zip(&src[i..]) {
        *d = to_bf16(s);
    }
    dst[src.len()..].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between two bf16 values: ties go to even.
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert!(half::bf16::from_bits(to_bf16(f32::NAN)).is_nan());
    }

    #[test]
    fn vector_conversion_matches_scalar() {
        if !supported() {
            eprintln!("skipped: this CPU has no AVX-512 BF16");
            return;
        }
        let src: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let mut fast = vec![7u16; 38];
        convert_row(&src, &mut fast);
        let slow: Vec<u16> = src.iter().map(|&x| to_bf16(x)).chain([0]).collect();
        assert_eq!(fast, slow);
    }
}
