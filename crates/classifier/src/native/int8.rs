//! The int8 path of the dense products, for CPUs with AVX-512 VNNI (AMD
//! Zen 4 and later, Intel Ice Lake server and later).
//!
//! Why: `vpdpbusd` multiplies 64 pairs of 8-bit values per instruction into
//! 16 i32 sums, four times the products of an f32 FMA (the bf16 kernel has
//! twice). Quantisation is dynamic and per row/column, as in ONNX Runtime's
//! and PyTorch's dynamic int8 BERT:
//! - weights: per output column, symmetric, `w ≈ s_w[j] · q` with q in
//!   [-127, 127], done once at load;
//! - activations: per row of A, asymmetric, `a ≈ s_a[i] · (u − z_i)` with u in
//!   [0, 255], done for every product (a LayerNorm or GELU output is far
//!   from symmetric);
//! - `C[i, j] = s_a[i] s_w[j] (Σ u·q − z_i Σ_k q[j, k]) + bias[j]`, the sums in
//!   i32 (exact: 255 · 127 · k stays far below 2³¹ for any BERT width).
//!
//! Layout: panels of [`NR`] columns holding quads of k per column
//! (`[k4][NR][4]`), the operand order of `vpdpbusd`.

use std::cell::RefCell;

use super::gemm::{for_panels, OutPtr, PackedB, NR};

/// Rows of C per micro-kernel call.
const MR: usize = 12;

/// Weights as int8 quads with per-column scales.
#[derive(Debug, Clone, Default)]
pub struct PackedQuads {
    data: Vec<i8>,
    /// `s_w` per column, padded to whole panels (zero beyond `n`).
    scales: Vec<f32>,
    /// `Σ_k q[j, k]` per column, padded like `scales`.
    col_sums: Vec<i32>,
    /// Quads along k (`k` rounded up to a multiple of 4, quartered).
    k4: usize,
    n: usize,
}

impl PackedQuads {
    /// Quantises f32 panels, one scale per column.
    pub fn from_f32(b: &PackedB) -> PackedQuads {
        let (k, n) = (b.k(), b.n());
        let k4 = k.div_ceil(4);
        let panels = n.div_ceil(NR);
        let mut data = vec![0i8; panels * k4 * NR * 4];
        let mut scales = vec![0.0f32; panels * NR];
        let mut col_sums = vec![0i32; panels * NR];
        for p in 0..panels {
            let src = b.panel(p);
            let dst = &mut data[p * k4 * NR * 4..(p + 1) * k4 * NR * 4];
            for j in 0..NR {
                let max = (0..k)
                    .map(|kk| src[kk * NR + j].abs())
                    .fold(0.0f32, f32::max);
                let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
                let mut sum = 0i32;
                for kk in 0..k {
                    let q = (src[kk * NR + j] / scale).round().clamp(-127.0, 127.0) as i8;
                    dst[(kk / 4) * NR * 4 + j * 4 + kk % 4] = q;
                    sum += q as i32;
                }
                scales[p * NR + j] = if p * NR + j < n { scale } else { 0.0 };
                col_sums[p * NR + j] = sum;
            }
        }
        PackedQuads {
            data,
            scales,
            col_sums,
            k4,
            n,
        }
    }

    fn panel(&self, p: usize) -> &[i8] {
        &self.data[p * self.k4 * NR * 4..(p + 1) * self.k4 * NR * 4]
    }
}

/// Whether this CPU runs the int8 kernel.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A quantised A: `u8` rows plus each row's scale and zero point.
#[derive(Default)]
struct QuantisedA {
    values: Vec<u8>,
    scales: Vec<f32>,
    zeros: Vec<i32>,
}

thread_local! {
    /// Reused between products so steady-state passes allocate nothing.
    static A_U8: RefCell<QuantisedA> = RefCell::new(QuantisedA::default());
}

/// `C[m × n] = A[m × k] · Bᵀ (+ bias)` with B as int8 quads; same contract
/// as [`super::gemm::gemm_into`] (C is always overwritten).
///
/// # Safety
/// `c.0` is valid for writes of `(m - 1) * ldc + b.n` initialised values
/// with `ldc >= b.n`, and no other code reads or writes columns `0..b.n`
/// of rows `0..m` while this runs (what [`super::gemm::gemm_into`]
/// asserts and is promised before calling). A and bias are slices indexed
/// with bounds checks, and the CPU check is an `assert!`, so they need no
/// promise.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_into(
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedQuads,
    k: usize,
    bias: Option<&[f32]>,
    c: OutPtr,
    ldc: usize,
    parallel: bool,
) {
    // The kernels below execute AVX-512 VNNI instructions: on a CPU without them
    // that is undefined behaviour, not a crash we could catch. The check is
    // a cached atomic load, so it stays on in release builds.
    assert!(
        supported(),
        "int8::gemm_into called on a CPU without AVX-512 VNNI"
    );
    // Taken out and put back so a nested call on this thread (a rayon
    // worker stealing work) gets its own buffer.
    let mut q = A_U8.with(|cell| cell.take());
    let lda4 = b.k4 * 4;
    q.values.resize(q.values.len().max(m * lda4), 0);
    q.scales.resize(q.scales.len().max(m), 0.0);
    q.zeros.resize(q.zeros.len().max(m), 0);
    for i in 0..m {
        let (s, z) = quantise_row(
            &a[i * lda..i * lda + k],
            &mut q.values[i * lda4..(i + 1) * lda4],
        );
        q.scales[i] = s;
        q.zeros[i] = z;
    }
    let qa = &q;
    for_panels(b.n.div_ceil(NR), parallel, |p0, p1| {
        for p in p0..p1 {
            // SAFETY: `panel_product`'s contract: p < panels by the loop
            // bound; `qa.values` holds at least m * lda4 values and
            // `qa.scales`, `qa.zeros` at least m (resized above), with
            // lda4 = 4 * b.k4; C is as our own contract says, and
            // for_panels gives panels p0..p1 to this thread alone; the CPU
            // passed `supported()` (asserted above).
            unsafe { panel_product(m, qa, lda4, b, p, bias, c, ldc) };
        }
    });
    A_U8.with(|cell| cell.replace(q));
}

/// One panel of C over the whole of k; see `gemm::panel_product`.
///
/// # Safety
/// - `p < b.n.div_ceil(NR)`;
/// - `lda4 == 4 * b.k4` and `qa.values.len() >= m * lda4`;
/// - `out` as in [`gemm_into`]'s contract, and columns `p * NR..p * NR + NR`
///   of rows `0..m` are this call's alone;
/// - the CPU passes [`supported`].
///
/// From these it builds tiles that meet the tile contract ([`Tile`]).
#[allow(clippy::too_many_arguments)]
unsafe fn panel_product(
    m: usize,
    qa: &QuantisedA,
    lda4: usize,
    b: &PackedQuads,
    p: usize,
    bias: Option<&[f32]>,
    out: OutPtr,
    ldc: usize,
) {
    let col = p * NR;
    let width = NR.min(b.n - col);
    let mut bias_tile = [0.0f32; NR];
    if let Some(bias) = bias {
        bias_tile[..width].copy_from_slice(&bias[col..col + width]);
    }
    // Whole panels of scales and sums: `scales` and `col_sums` are padded
    // to panels * NR, and the arrays let the kernel load 16 lanes of each.
    let b_scales: &[f32; NR] = b.scales[col..col + NR].try_into().expect("NR values");
    let b_sums: &[i32; NR] = b.col_sums[col..col + NR].try_into().expect("NR values");
    let mut row = 0;
    while row < m {
        let rows = MR.min(m - row);
        // SAFETY: for both `add`s and the tile contract's A and C: row < m,
        // so row * lda4 < m * lda4 <= qa.values.len(), and the last A value
        // the tile reads, (row + rows - 1) * lda4 + 4 * b.k4 - 1, is at most
        // m * lda4 - 1. C as in gemm::panel_product: col < b.n, so the
        // tile's values end at (m - 1) * ldc + b.n - 1 at most, and those
        // columns are ours. B is the whole panel (bounds-checked slice).
        let tile = unsafe {
            Tile {
                k4: b.k4,
                a: qa.values.as_ptr().add(row * lda4),
                lda4,
                a_scales: &qa.scales[row..row + rows],
                a_zeros: &qa.zeros[row..row + rows],
                b: b.panel(p).as_ptr(),
                b_scales,
                b_sums,
                c: out.0.add(row * ldc + col),
                ldc,
                bias: &bias_tile,
                width,
            }
        };
        // SAFETY: `tile` meets the tile contract for `rows` rows, the CPU
        // passes `supported()` (our contract), and by_rows! calls
        // `kernel::<R>` with R == rows (rows is in 1..=12, each its own arm).
        unsafe { by_rows!(rows, kernel(&tile); 12 11 10 9 8 7 6 5 4 3 2 1) };
        row += rows;
    }
}

/// What a micro-kernel call writes: `C = s_a s_w (A · B - z Σq) + bias`
/// for `R` rows and `width` columns, k in quads.
///
/// The tile contract, which [`panel_product`] establishes and the kernel
/// relies on:
/// - A: values `r * lda4 + 4 * kq .. + 4` are readable for `r < R`,
///   `kq < k4` (through `a`; not necessarily 4-byte aligned);
/// - B: `b` is readable for `k4 * NR * 4` values, immutable meanwhile;
/// - C: `c.add(r * ldc + j)` is writable for `r < R`, `j < width`, and
///   nothing else touches those values meanwhile;
/// - `1 <= width <= NR`; `a_scales` and `a_zeros` are slices (indexed
///   with bounds checks).
struct Tile<'a> {
    k4: usize,
    a: *const u8,
    lda4: usize,
    a_scales: &'a [f32],
    a_zeros: &'a [i32],
    b: *const i8,
    b_scales: &'a [f32; NR],
    b_sums: &'a [i32; NR],
    c: *mut f32,
    ldc: usize,
    bias: &'a [f32; NR],
    width: usize,
}

/// # Safety
/// `t` meets the tile contract ([`Tile`]) for `R` rows, and the CPU
/// passes [`supported`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn kernel<const R: usize>(t: &Tile) {
    // SAFETY: exactly `kernel_avx512`'s contract, which is ours:
    // `supported()` detects every feature it enables (and more).
    unsafe { kernel_avx512::<R>(t) }
}

/// # Safety
/// Never callable: the int8 path is off wherever [`supported`] is false.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn kernel<const R: usize>(_: &Tile) {
    unreachable!("the int8 path is only enabled where `supported()`")
}

/// # Safety
/// The CPU has AVX-512 F, BW and VNNI (it passes [`supported`]), and `t`
/// meets the tile contract ([`Tile`]) for `R` rows. All loads and stores
/// are unaligned, so only their bounds need arguing.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn kernel_avx512<const R: usize>(t: &Tile) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_si512(); R];
    for kq in 0..t.k4 {
        // A prefetch never faults: past the panel's end it is harmless.
        _mm_prefetch::<_MM_HINT_T0>(t.b.wrapping_add((kq + 8) * NR * 4));
        // SAFETY: kq < t.k4: step kq of B, values kq * 64 .. kq * 64 + 64
        // (one 64-byte load), lies inside its t.k4 * NR * 4 (tile contract).
        let bv = unsafe { _mm512_loadu_si512(t.b.add(kq * NR * 4) as *const _) };
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: r < R and kq < t.k4: A values r * lda4 + 4 * kq .. + 4,
            // readable by the tile contract, read as one unaligned i32.
            let quad = unsafe { (t.a.add(r * t.lda4 + kq * 4) as *const i32).read_unaligned() };
            *acc = _mm512_dpbusd_epi32(*acc, _mm512_set1_epi32(quad), bv);
        }
    }
    // SAFETY: `b_scales`, `b_sums` and `bias` are `[_; NR]` arrays of
    // 4-byte values: exactly the 16 lanes each load reads.
    let (b_scales, b_sums, bias) = unsafe {
        (
            _mm512_loadu_ps(t.b_scales.as_ptr()),
            _mm512_loadu_si512(t.b_sums.as_ptr() as *const _),
            _mm512_loadu_ps(t.bias.as_ptr()),
        )
    };
    let mask: __mmask16 = if t.width == NR {
        0xffff
    } else {
        (1u16 << t.width) - 1
    };
    for (r, acc) in acc.iter().enumerate() {
        let centred = _mm512_sub_epi32(
            *acc,
            _mm512_mullo_epi32(_mm512_set1_epi32(t.a_zeros[r]), b_sums),
        );
        let scale = _mm512_mul_ps(_mm512_set1_ps(t.a_scales[r]), b_scales);
        let v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(centred), scale, bias);
        // SAFETY: r < R, so values 0..t.width of C's row r are writable
        // (tile contract); `mask` has exactly the low t.width bits set and
        // masked-off lanes are not accessed (AVX-512 fault suppression).
        unsafe { _mm512_mask_storeu_ps(t.c.add(r * t.ldc), mask, v) };
    }
}

/// Quantises one row of A to `u8` (padded with the zero point to the
/// quad-aligned length of `dst`); returns its scale and zero point. The
/// range always includes 0, so a zero (and the padding) is exact.
fn quantise_row(src: &[f32], dst: &mut [u8]) -> (f32, i32) {
    // The vector path writes through a raw pointer at the offsets of
    // `src`: this is what keeps those writes inside `dst`.
    assert!(
        dst.len() >= src.len(),
        "quantised row shorter than its source"
    );
    #[cfg(target_arch = "x86_64")]
    if supported() {
        // SAFETY: the CPU has AVX-512 F, BW and VL (checked just above) and
        // dst.len() >= src.len() (asserted above): `quantise_row_avx512`'s
        // contract.
        return unsafe { quantise_row_avx512(src, dst) };
    }
    let (lo, hi) = src
        .iter()
        .fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let (scale, zero) = row_range(lo, hi);
    let inv = 1.0 / scale;
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = (v * inv + zero).clamp(0.0, 255.0).round_ties_even() as u8;
    }
    dst[src.len()..].fill(zero as u8);
    (scale, zero as i32)
}

/// Scale and zero point for values in `lo..=hi` (`lo <= 0 <= hi`).
fn row_range(lo: f32, hi: f32) -> (f32, f32) {
    let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    (scale, (-lo / scale).round_ties_even().clamp(0.0, 255.0))
}

/// # Safety
/// The CPU has AVX-512 F, BW and VL (it passes [`supported`]), and
/// `dst.len() >= src.len()`. Every access below is masked with `tail(i)`,
/// which keeps only lanes `i..src.len()`; masked-off lanes are not
/// accessed (AVX-512 fault suppression).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn quantise_row_avx512(src: &[f32], dst: &mut [u8]) -> (f32, i32) {
    use std::arch::x86_64::*;
    let tail = |i: usize| -> __mmask16 {
        let left = src.len() - i;
        if left >= 16 {
            0xffff
        } else {
            (1u16 << left) - 1
        }
    };
    let (mut lo, mut hi) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut i = 0;
    while i < src.len() {
        // Masked-off lanes read as 0, which the range includes anyway.
        // SAFETY: i < src.len(), so the offset is inside `src`, and the
        // mask keeps only lanes below src.len() (see the doc above).
        let v = unsafe { _mm512_maskz_loadu_ps(tail(i), src.as_ptr().add(i)) };
        lo = _mm512_min_ps(lo, v);
        hi = _mm512_max_ps(hi, v);
        i += 16;
    }
    let (scale, zero) = row_range(_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi));
    let (inv, z) = (_mm512_set1_ps(1.0 / scale), _mm512_set1_ps(zero));
    let (floor, ceil) = (_mm512_setzero_ps(), _mm512_set1_ps(255.0));
    let mut i = 0;
    while i < src.len() {
        let mask = tail(i);
        // SAFETY: as in the first loop.
        let v = unsafe { _mm512_maskz_loadu_ps(mask, src.as_ptr().add(i)) };
        let q = _mm512_min_ps(_mm512_max_ps(_mm512_fmadd_ps(v, inv, z), floor), ceil);
        // Rounds to nearest even (the default MXCSR mode), as the scalar path.
        let bytes = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(q));
        // SAFETY: i < src.len() <= dst.len() (our contract), so the offset
        // is inside `dst`, and the mask keeps only bytes below src.len().
        unsafe { _mm_mask_storeu_epi8(dst.as_mut_ptr().add(i) as *mut i8, mask, bytes) };
        i += 16;
    }
    dst[src.len()..].fill(zero as u8);
    (scale, zero as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantised_row_reconstructs_within_half_a_step() {
        let src: Vec<f32> = (0..37)
            .map(|i| (i as f32 * 0.41).sin() * 2.0 + 0.3)
            .collect();
        let mut q = vec![0u8; 40];
        let (s, z) = quantise_row(&src, &mut q);
        for (&v, &u) in src.iter().zip(&q) {
            let back = s * (u as i32 - z) as f32;
            assert!((back - v).abs() <= 0.5 * s + 1e-6, "{v} -> {u} -> {back}");
        }
        assert!(
            q[37..].iter().all(|&u| u as i32 == z),
            "padding reads as zero"
        );
    }

    #[test]
    fn kernel_is_exact_on_representable_values() {
        if !supported() {
            eprintln!("skipped: this CPU has no AVX-512 VNNI");
            return;
        }
        // A in 0..=255 with min 0 and max 255 quantises with scale 1 and
        // zero point 0; W in -127..=127 with 127 in every column with scale
        // 1: the int8 product must then be exact.
        let (m, n, k) = (14, 35, 67);
        let a: Vec<f32> = (0..m * k)
            .map(|i| match i % k {
                0 => 0.0,
                1 => 255.0,
                _ => ((i * 37) % 256) as f32,
            })
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| {
                if i % k == 0 {
                    127.0
                } else {
                    ((i * 53) % 255) as f32 - 127.0
                }
            })
            .collect();
        let bias: Vec<f32> = (0..n).map(|j| j as f32).collect();
        let mut b = PackedB::from_rows(&w, n, k);
        assert!(b.use_int8());
        let mut c = vec![f32::NAN; m * n];
        super::super::gemm::gemm(m, &a, k, &b, Some(&bias), &mut c, n, true);
        for i in 0..m {
            for j in 0..n {
                let want: f64 = (0..k)
                    .map(|kk| a[i * k + kk] as f64 * w[j * k + kk] as f64)
                    .sum::<f64>()
                    + j as f64;
                assert_eq!(c[i * n + j] as f64, want, "C[{i}, {j}]");
            }
        }
    }
}
