//! The int8 path of the dense products, for CPUs with AVX-512 VNNI (AMD
//! Zen 4 and later, Intel Ice Lake server and later) or with AVX2 and FMA
//! (x86-64 since Haswell and Zen 1).
//!
//! Why: `vpdpbusd` multiplies 64 pairs of 8-bit values per instruction into
//! 16 i32 sums, four times the products of an f32 FMA (the bf16 kernel has
//! twice). AVX2 has no 8-bit dot product that cannot saturate
//! (`vpmaddubsw` adds two u8 · i8 products into an i16), so its kernel
//! widens both operands to i16 and uses `vpmaddwd` (two products per i32
//! lane, exact): twice the multiply-adds of an f32 FMA per instruction, and
//! a quarter of the f32 weights' memory traffic. Quantisation is dynamic and
//! per row/column, as in ONNX Runtime's and PyTorch's dynamic int8 BERT:
//! - weights: per output column, symmetric, `w ≈ s_w[j] · q` with q in
//!   [-127, 127], done once at load;
//! - activations: per row of A, asymmetric, `a ≈ s_a[i] · (u − z_i)` with u in
//!   [0, 255], done for every product (a LayerNorm or GELU output is far
//!   from symmetric);
//! - `C[i, j] = s_a[i] s_w[j] (Σ u·q − z_i Σ_k q[j, k]) + bias[j]`, the sums in
//!   i32 (exact: 255 · 127 · k stays far below 2³¹ for any BERT width).
//!
//! Both kernels compute the same integer sums exactly and then the same
//! f32 operations in the same order, so they give the same bits: an
//! embedding does not depend on which of the two ran (tested below against
//! a scalar model of the product).
//!
//! Layout: panels of [`NR`] columns, 4 values of k per column and step
//! (`[k4][NR][4]`, the operand order of `vpdpbusd`) for VNNI; for AVX2 each
//! step holds the same values as two pairs (`[k4][2][NR][2]`), the operand
//! order of `vpmaddwd`.

use std::cell::RefCell;

use super::gemm::{for_panels, OutPtr, PackedB, NR};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod vnni;

/// Which int8 micro-kernel a product runs (and its weights are laid out
/// for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernel {
    /// AVX-512 F, BW, VL and VNNI: `vpdpbusd`, 12 rows a tile.
    #[default]
    Vnni,
    /// AVX2 and FMA: `vpmaddwd` on operands widened to i16, 6 rows a tile.
    Avx2,
}

impl Kernel {
    /// The fastest int8 kernel this CPU runs, if any.
    pub fn detect() -> Option<Kernel> {
        [Kernel::Vnni, Kernel::Avx2]
            .into_iter()
            .find(|k| k.runs_here())
    }

    /// Whether this CPU has every instruction the kernel (and its
    /// quantiser) executes. `is_x86_feature_detected!` caches, so this is
    /// a few atomic loads.
    pub fn runs_here(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Kernel::Vnni => {
                    std::is_x86_feature_detected!("avx512f")
                        && std::is_x86_feature_detected!("avx512bw")
                        && std::is_x86_feature_detected!("avx512vl")
                        && std::is_x86_feature_detected!("avx512vnni")
                }
                Kernel::Avx2 => {
                    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Vnni => "avx512-vnni",
            Kernel::Avx2 => "avx2",
        }
    }

    /// Rows of C per micro-kernel call: VNNI keeps one 16-lane accumulator
    /// per row in 32 registers, AVX2 two 8-lane ones in 16.
    fn rows(self) -> usize {
        match self {
            Kernel::Vnni => 12,
            Kernel::Avx2 => 6,
        }
    }

    /// Where value `kk` of column `j` sits in a panel laid out for this
    /// kernel.
    fn offset(self, kk: usize, j: usize) -> usize {
        let step = (kk / 4) * NR * 4;
        match self {
            Kernel::Vnni => step + j * 4 + kk % 4,
            Kernel::Avx2 => step + (kk % 4 / 2) * NR * 2 + j * 2 + kk % 2,
        }
    }
}

/// Weights as int8 with per-column scales, laid out for one kernel.
#[derive(Debug, Clone, Default)]
pub struct PackedQuads {
    data: Vec<i8>,
    /// `s_w` per column, padded to whole panels (zero beyond `n`).
    scales: Vec<f32>,
    /// `Σ_k q[j, k]` per column, padded like `scales`.
    col_sums: Vec<i32>,
    /// Steps of 4 along k (`k` rounded up to a multiple of 4, quartered).
    k4: usize,
    n: usize,
    kernel: Kernel,
}

impl PackedQuads {
    /// Quantises f32 panels, one scale per column, for `kernel`'s layout.
    pub fn from_f32(b: &PackedB, kernel: Kernel) -> PackedQuads {
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
                    dst[kernel.offset(kk, j)] = q;
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
            kernel,
        }
    }

    fn panel(&self, p: usize) -> &[i8] {
        &self.data[p * self.k4 * NR * 4..(p + 1) * self.k4 * NR * 4]
    }
}

/// Whether this CPU runs an int8 kernel (either).
pub fn supported() -> bool {
    Kernel::detect().is_some()
}

/// A quantised A: each row's values (`u8` for VNNI; the same values as
/// i16 for AVX2, whose kernel multiplies i16), scale and zero point.
#[derive(Default)]
struct QuantisedA {
    values: Vec<u8>,
    wide: Vec<i16>,
    scales: Vec<f32>,
    zeros: Vec<i32>,
}

thread_local! {
    /// Reused between products so steady-state passes allocate nothing.
    static A_U8: RefCell<QuantisedA> = RefCell::new(QuantisedA::default());
}

/// `C[m × n] = A[m × k] · Bᵀ (+ bias)` with B as int8; same contract as
/// [`super::gemm::gemm_into`] (C is always overwritten).
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
    // The kernels below execute AVX-512 VNNI or AVX2 instructions: on a CPU
    // without them that is undefined behaviour, not a crash we could catch.
    // The check is a few cached atomic loads, so it stays on in release
    // builds.
    assert!(
        b.kernel.runs_here(),
        "int8::gemm_into: this CPU cannot run the {} kernel",
        b.kernel.name()
    );
    // Taken out and put back so a nested call on this thread (a rayon
    // worker stealing work) gets its own buffer.
    let mut q = A_U8.with(|cell| cell.take());
    let lda4 = b.k4 * 4;
    q.scales.resize(q.scales.len().max(m), 0.0);
    q.zeros.resize(q.zeros.len().max(m), 0);
    match b.kernel {
        Kernel::Vnni => q.values.resize(q.values.len().max(m * lda4), 0),
        Kernel::Avx2 => q.wide.resize(q.wide.len().max(m * lda4), 0),
    }
    for i in 0..m {
        let src = &a[i * lda..i * lda + k];
        let (s, z) = match b.kernel {
            Kernel::Vnni => quantise_row(src, &mut q.values[i * lda4..(i + 1) * lda4]),
            Kernel::Avx2 => quantise_row_wide(src, &mut q.wide[i * lda4..(i + 1) * lda4]),
        };
        q.scales[i] = s;
        q.zeros[i] = z;
    }
    let qa = &q;
    for_panels(b.n.div_ceil(NR), parallel, |p0, p1| {
        for p in p0..p1 {
            // SAFETY: `panel_product`'s contract: p < panels by the loop
            // bound; the buffer of b's kernel (`values` or `wide`) holds at
            // least m * lda4 values and `qa.scales`, `qa.zeros` at least m
            // (resized above), with lda4 = 4 * b.k4; C is as our own
            // contract says, and for_panels gives panels p0..p1 to this
            // thread alone; the CPU runs b's kernel (asserted above).
            unsafe { panel_product(m, qa, lda4, b, p, bias, c, ldc) };
        }
    });
    A_U8.with(|cell| cell.replace(q));
}

/// One panel of C over the whole of k; see `gemm::panel_product`.
///
/// # Safety
/// - `p < b.n.div_ceil(NR)`;
/// - `lda4 == 4 * b.k4`, and `qa.values.len() >= m * lda4` (VNNI) or
///   `qa.wide.len() >= m * lda4` (AVX2), by `b.kernel`;
/// - `out` as in [`gemm_into`]'s contract, and columns `p * NR..p * NR + NR`
///   of rows `0..m` are this call's alone;
/// - the CPU runs `b.kernel` ([`Kernel::runs_here`]).
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
    let mr = b.kernel.rows();
    let mut row = 0;
    while row < m {
        let rows = mr.min(m - row);
        // SAFETY: for the `add`s and the tile contract's A and C: row < m,
        // so row * lda4 < m * lda4, within the kernel's buffer (our
        // contract); the other buffer is never read, so its pointer is just
        // its start (dangling when empty, never dereferenced). The last A
        // value the tile reads, (row + rows - 1) * lda4 + 4 * b.k4 - 1, is
        // at most m * lda4 - 1.
        // C as in gemm::panel_product: col < b.n, so the tile's values end
        // at (m - 1) * ldc + b.n - 1 at most, and those columns are ours.
        // B is the whole panel (bounds-checked slice).
        let tile = unsafe {
            let (a, a_wide) = match b.kernel {
                Kernel::Vnni => (qa.values.as_ptr().add(row * lda4), qa.wide.as_ptr()),
                Kernel::Avx2 => (qa.values.as_ptr(), qa.wide.as_ptr().add(row * lda4)),
            };
            Tile {
                k4: b.k4,
                a,
                a_wide,
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
        // SAFETY: `tile` meets the tile contract for `rows` rows and b's
        // layout, the CPU runs b's kernel (our contract), and by_rows!
        // calls the kernel with R == rows (rows is in 1..=mr, each its own
        // arm; mr is 12 or 6).
        unsafe {
            match b.kernel {
                Kernel::Vnni => by_rows!(rows, vnni_kernel(&tile); 12 11 10 9 8 7 6 5 4 3 2 1),
                Kernel::Avx2 => by_rows!(rows, avx2_kernel(&tile); 6 5 4 3 2 1),
            }
        };
        row += rows;
    }
}

/// What a micro-kernel call writes: `C = s_a s_w (A · B - z Σq) + bias`
/// for `R` rows and `width` columns, k in steps of 4.
///
/// The tile contract, which [`panel_product`] establishes and the kernels
/// rely on:
/// - A: for the VNNI kernel, `u8` values `r * lda4 + 4 * kq .. + 4` are
///   readable through `a` for `r < R`, `kq < k4`; for the AVX2 kernel the
///   same offsets of i16 values through `a_wide` (not necessarily 4-byte
///   aligned). The other pointer is never read;
/// - B: `b` is readable for `k4 * NR * 4` values in the kernel's layout,
///   immutable meanwhile;
/// - C: `c.add(r * ldc + j)` is writable for `r < R`, `j < width`, and
///   nothing else touches those values meanwhile;
/// - `1 <= width <= NR`; `a_scales` and `a_zeros` are slices (indexed
///   with bounds checks).
struct Tile<'a> {
    k4: usize,
    a: *const u8,
    a_wide: *const i16,
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
/// `t` meets the tile contract ([`Tile`]) for `R` rows in the VNNI layout,
/// and the CPU runs [`Kernel::Vnni`].
#[inline(always)]
unsafe fn vnni_kernel<const R: usize>(t: &Tile) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: exactly `vnni::kernel`'s contract, which is ours.
    unsafe {
        vnni::kernel::<R>(t)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!(
        "the int8 path is only enabled where `supported()`: {}",
        t.k4
    )
}

/// # Safety
/// `t` meets the tile contract ([`Tile`]) for `R` rows in the AVX2 layout,
/// and the CPU runs [`Kernel::Avx2`].
#[inline(always)]
unsafe fn avx2_kernel<const R: usize>(t: &Tile) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: exactly `avx2::kernel`'s contract, which is ours.
    unsafe {
        avx2::kernel::<R>(t)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!(
        "the int8 path is only enabled where `supported()`: {}",
        t.k4
    )
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
    if Kernel::Vnni.runs_here() {
        // SAFETY: the CPU has AVX-512 F, BW and VL (checked just above) and
        // dst.len() >= src.len() (asserted above): `vnni::quantise_row`'s
        // contract.
        return unsafe { vnni::quantise_row(src, dst) };
    }
    quantise_row_scalar(src, dst)
}

/// [`quantise_row`] into i16 (the values 0..=255 the AVX2 kernel reads).
fn quantise_row_wide(src: &[f32], dst: &mut [i16]) -> (f32, i32) {
    assert!(
        dst.len() >= src.len(),
        "quantised row shorter than its source"
    );
    #[cfg(target_arch = "x86_64")]
    if Kernel::Avx2.runs_here() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above) and
        // dst.len() >= src.len() (asserted above): `avx2::quantise_row`'s
        // contract.
        return unsafe { avx2::quantise_row(src, dst) };
    }
    let mut narrow = vec![0u8; dst.len()];
    let (s, z) = quantise_row_scalar(src, &mut narrow);
    for (d, &u) in dst.iter_mut().zip(&narrow) {
        *d = u as i16;
    }
    (s, z)
}

/// The scalar model every vector quantiser matches to the bit: a fused
/// multiply-add, a clamp to 0..=255, rounding to nearest even.
fn quantise_row_scalar(src: &[f32], dst: &mut [u8]) -> (f32, i32) {
    let (lo, hi) = src
        .iter()
        .fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let (scale, zero) = row_range(lo, hi);
    let inv = 1.0 / scale;
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = v.mul_add(inv, zero).clamp(0.0, 255.0).round_ties_even() as u8;
    }
    dst[src.len()..].fill(zero as u8);
    (scale, zero as i32)
}

/// Scale and zero point for values in `lo..=hi` (`lo <= 0 <= hi`).
fn row_range(lo: f32, hi: f32) -> (f32, f32) {
    let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    (scale, (-lo / scale).round_ties_even().clamp(0.0, 255.0))
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
            eprintln!("skipped: this CPU runs no int8 kernel");
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

    /// Deterministic values in -1..1 (a small LCG), some exactly 0.
    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                if i % 11 == 0 {
                    0.0
                } else {
                    (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0
                }
            })
            .collect()
    }

    #[test]
    fn vector_quantisers_match_the_scalar_model_to_the_bit() {
        for len in [1, 7, 8, 9, 16, 17, 37, 384, 1536] {
            let src: Vec<f32> = values(len, len as u32)
                .iter()
                .map(|v| v * 3.0 + 0.4)
                .collect();
            let padded = len.div_ceil(4) * 4;
            let mut want = vec![0u8; padded];
            let want_sz = quantise_row_scalar(&src, &mut want);
            if Kernel::Vnni.runs_here() {
                let mut got = vec![0u8; padded];
                assert_eq!(quantise_row(&src, &mut got), want_sz, "VNNI, length {len}");
                assert_eq!(got, want, "VNNI, length {len}");
            }
            if Kernel::Avx2.runs_here() {
                let mut got = vec![0i16; padded];
                assert_eq!(
                    quantise_row_wide(&src, &mut got),
                    want_sz,
                    "AVX2, length {len}"
                );
                let want_wide: Vec<i16> = want.iter().map(|&u| u as i16).collect();
                assert_eq!(got, want_wide, "AVX2, length {len}");
            }
        }
    }

    /// The int8 product as the module doc states it, in scalar code: rows
    /// quantised by the scalar model, columns as `PackedQuads::from_f32`
    /// does, exact integer sums, then the kernels' f32 steps in their order.
    fn scalar_model(m: usize, n: usize, k: usize, a: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; m * n];
        let columns: Vec<(f32, Vec<i32>)> = (0..n)
            .map(|j| {
                let col = &w[j * k..(j + 1) * k];
                let max = col.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
                let q = col
                    .iter()
                    .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i32)
                    .collect();
                (scale, q)
            })
            .collect();
        for i in 0..m {
            let mut u = vec![0u8; k];
            let (s_a, z) = quantise_row_scalar(&a[i * k..(i + 1) * k], &mut u);
            for (j, (s_w, q)) in columns.iter().enumerate() {
                let dot: i32 = u.iter().zip(q).map(|(&u, &q)| u as i32 * q).sum();
                let centred = dot - z * q.iter().sum::<i32>();
                out[i * n + j] = (centred as f32).mul_add(s_a * s_w, bias[j]);
            }
        }
        out
    }

    #[test]
    fn every_kernel_matches_the_scalar_model_to_the_bit() {
        let kernels: Vec<Kernel> = [Kernel::Vnni, Kernel::Avx2]
            .into_iter()
            .filter(|k| k.runs_here())
            .collect();
        if kernels.is_empty() {
            eprintln!("skipped: this CPU runs no int8 kernel");
            return;
        }
        // Ragged shapes: rows past a tile, columns past a panel, k not a
        // multiple of 4; and a BERT-sized one.
        for (m, n, k) in [(1, 1, 1), (7, 17, 5), (14, 35, 67), (13, 40, 384)] {
            let a = values(m * k, 7 + k as u32);
            let w = values(n * k, 11 + n as u32);
            let bias = values(n, 3);
            let want = scalar_model(m, n, k, &a, &w, &bias);
            for &kernel in &kernels {
                let mut b = PackedB::from_rows(&w, n, k);
                assert!(b.use_int8_kernel(kernel));
                for parallel in [false, true] {
                    let mut c = vec![f32::NAN; m * n];
                    super::super::gemm::gemm(m, &a, k, &b, Some(&bias), &mut c, n, parallel);
                    for (idx, (got, want)) in c.iter().zip(&want).enumerate() {
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{} kernel, {m}x{n}x{k}, C[{}, {}]: {got} against {want}",
                            kernel.name(),
                            idx / n,
                            idx % n
                        );
                    }
                }
            }
        }
    }
}
