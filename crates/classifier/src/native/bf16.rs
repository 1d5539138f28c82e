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
/// As `gemm_into`: `c` valid for `c_len` writes, columns `0..n` of the rows
/// written owned by this call. The CPU must pass [`supported`].
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
                // SAFETY: the caller's contract; panels p0..p1 are this
                // thread's columns.
                unsafe { panel_product(m, a16, lda2, b, p, kp0, kc2, bias, c, ldc) };
            }
        }
    });
    A_BF16.with(|cell| cell.replace(buf));
}

#[allow(clippy::too_many_arguments)]
/// # Safety
/// As the module's `gemm_into`: the output rows this panel covers are valid for writes and owned by this call and the CPU passes [`supported`].
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
    let panel = b.panel(p).as_ptr().add(kp0 * NR * 2);
    let mut row = 0;
    while row < m {
        let rows = MR.min(m - row);
        let tile = Tile {
            k2: kc2,
            a: a.as_ptr().add(row * lda2 + kp0 * 2),
            lda2,
            b: panel,
            c: out.0.add(row * ldc + col),
            ldc,
            bias: &bias_tile,
            width,
            accumulate: kp0 > 0,
        };
        by_rows!(rows, kernel(&tile); 12 11 10 9 8 7 6 5 4 3 2 1);
        row += rows;
    }
}

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

#[cfg(target_arch = "x86_64")]
#[inline(always)]
/// # Safety
/// The pointers in `t` are valid for the tile it describes (its rows of A and C, one packed panel of B) and the CPU passes [`supported`].
unsafe fn kernel<const R: usize>(t: &Tile) {
    kernel_avx512::<R>(t)
}

#[cfg(not(target_arch = "x86_64"))]
/// # Safety
/// The pointers in `t` are valid for the tile it describes (its rows of A and C, one packed panel of B) and the CPU passes [`supported`].
unsafe fn kernel<const R: usize>(_: &Tile) {
    unreachable!("the bf16 path is only enabled where `supported()`")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
/// # Safety
/// The CPU has the features enabled below (the caller checked [`supported`]), and `t` is valid as for `kernel`.
unsafe fn kernel_avx512<const R: usize>(t: &Tile) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); R];
    for kp in 0..t.k2 {
        _mm_prefetch::<_MM_HINT_T0>(t.b.wrapping_add((kp + 8) * NR * 2) as *const i8);
        let bv: __m512bh =
            std::mem::transmute(_mm512_loadu_si512(t.b.add(kp * NR * 2) as *const _));
        for (r, acc) in acc.iter_mut().enumerate() {
            let pair = (t.a.add(r * t.lda2 + kp * 2) as *const i32).read_unaligned();
            let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
            *acc = _mm512_dpbf16_ps(*acc, av, bv);
        }
    }
    let bias = _mm512_loadu_ps(t.bias.as_ptr());
    let mask: __mmask16 = if t.width == NR {
        0xffff
    } else {
        (1u16 << t.width) - 1
    };
    for (r, acc) in acc.iter().enumerate() {
        let dst = t.c.add(r * t.ldc);
        let mut v = _mm512_add_ps(*acc, bias);
        if t.accumulate {
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, dst));
        }
        _mm512_mask_storeu_ps(dst, mask, v);
    }
}

/// One row of A to bf16, zero-padded to the pair-aligned length of `dst`.
fn convert_row(src: &[f32], dst: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if supported() {
        // SAFETY: the CPU has AVX-512 BF16 (checked just above).
        unsafe { convert_row_avx512(src, dst) };
        return;
    }
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = to_bf16(s);
    }
    dst[src.len()..].fill(0);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
/// # Safety
/// The CPU has the features enabled below (the caller checked [`supported`]).
unsafe fn convert_row_avx512(src: &[f32], dst: &mut [u16]) {
    use std::arch::x86_64::*;
    let mut i = 0;
    while i + 16 <= src.len() {
        let v = _mm512_loadu_ps(src.as_ptr().add(i));
        let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
        _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut __m256i, h);
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
