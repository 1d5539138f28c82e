//! Dense f32 products for the native encoder: `C = A · Bᵀ (+ bias)`, with B
//! packed once into panels of [`NR`] columns so the inner loop reads it
//! contiguously.
//!
//! Why our own kernel: at batch 1 an encoder pass is 24 small products
//! (18–256 rows), where a general-purpose GEMM spends as much time packing
//! and allocating as multiplying. Weights are packed at load time, A is read
//! in place, and the AVX2/FMA micro-kernel keeps a 6×16 tile of C in
//! registers. Other CPUs take a portable kernel of the same shape.

use super::bf16::PackedPairs;
use super::int8::PackedQuads;

/// Columns of C per packed panel (two 8-lane AVX registers).
pub const NR: usize = 16;
/// Rows of C per micro-kernel call.
pub const MR: usize = 6;
/// Depth of one k block.
const KC: usize = 256;

/// B packed for the kernels: panel `p` holds columns `p*NR..p*NR+NR` of Bᵀ
/// as `k` rows of `NR` values (zero beyond `n`).
#[derive(Debug, Clone, Default)]
pub struct PackedB {
    data: Vec<f32>,
    k: usize,
    n: usize,
    /// The same weights as bf16 pairs, when [`PackedB::use_bf16`] switched
    /// this product to the bf16 kernel (`data` is then dropped).
    pairs: Option<PackedPairs>,
    /// Or as int8 quads ([`PackedB::use_int8`]).
    quads: Option<PackedQuads>,
}

impl PackedB {
    /// Packs `n` rows of length `k` (row `j` starts at `src[j * ld]`): a
    /// Linear layer's weight `[out × in]`, or the keys of one attention head.
    pub fn pack_rows(&mut self, src: &[f32], ld: usize, n: usize, k: usize) {
        self.reset(n, k);
        for (p, panel) in self.data.chunks_exact_mut(k * NR).enumerate() {
            for j in 0..NR.min(n - p * NR) {
                let row = &src[(p * NR + j) * ld..][..k];
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * NR + j] = v;
                }
            }
        }
    }

    /// Packs a `[k × n]` block whose row `kk` starts at `src[kk * ld]`: the
    /// values of one attention head.
    pub fn pack_cols(&mut self, src: &[f32], ld: usize, k: usize, n: usize) {
        self.reset(n, k);
        for (p, panel) in self.data.chunks_exact_mut(k * NR).enumerate() {
            let width = NR.min(n - p * NR);
            for kk in 0..k {
                panel[kk * NR..kk * NR + width].copy_from_slice(&src[kk * ld + p * NR..][..width]);
            }
        }
    }

    /// Packs a row-major Linear weight `[n × k]`.
    pub fn from_rows(w: &[f32], n: usize, k: usize) -> PackedB {
        let mut b = PackedB::default();
        b.pack_rows(w, k, n, k);
        b
    }

    /// Switches this product to the AVX-512 BF16 kernel, dropping the f32
    /// copy. Returns false, and changes nothing, on CPUs without it.
    pub fn use_bf16(&mut self) -> bool {
        if !super::bf16::supported() {
            return false;
        }
        if self.pairs.is_none() && self.quads.is_none() {
            self.pairs = Some(PackedPairs::from_f32(self));
            self.data = Vec::new();
        }
        true
    }

    /// Switches this product to the AVX-512 VNNI int8 kernel, dropping the
    /// f32 copy. Returns false, and changes nothing, on CPUs without it.
    pub fn use_int8(&mut self) -> bool {
        if !super::int8::supported() {
            return false;
        }
        if self.pairs.is_none() && self.quads.is_none() {
            self.quads = Some(PackedQuads::from_f32(self));
            self.data = Vec::new();
        }
        true
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    fn reset(&mut self, n: usize, k: usize) {
        self.n = n;
        self.k = k;
        self.pairs = None;
        self.quads = None;
        self.data.clear();
        self.data.resize(n.div_ceil(NR) * NR * k, 0.0);
    }

    fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    pub(super) fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * self.k * NR..(p + 1) * self.k * NR]
    }
}

/// A raw output pointer shared by the threads of one product; each writes
/// its own columns.
#[derive(Clone, Copy)]
pub(super) struct OutPtr(pub(super) *mut f32);
// SAFETY: threads of one `gemm` call write disjoint column ranges of C.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// `C[m × n] = A[m × k] · Bᵀ (+ bias)`, with A row `i` at `a[i * lda]` and C
/// row `i` at `c[i * ldc]`. `bias` has at least `n` values. With `parallel`
/// the column panels are split over rayon's threads.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    bias: Option<&[f32]>,
    c: &mut [f32],
    ldc: usize,
    parallel: bool,
) {
    // SAFETY: `c` is an exclusive borrow of `c.len()` values.
    unsafe { gemm_into(m, a, lda, b, bias, c.as_mut_ptr(), c.len(), ldc, parallel) }
}

/// [`gemm`] into `c_len` values at `c`. Several calls may write the same
/// buffer at once when their column ranges are disjoint.
///
/// # Safety
/// `c` must be valid for writes of `c_len` values, and no other code may
/// read or write the columns `0..b.n()` of the rows this call writes while
/// it runs.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_into(
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    bias: Option<&[f32]>,
    c: *mut f32,
    c_len: usize,
    ldc: usize,
    parallel: bool,
) {
    let (k, n) = (b.k, b.n);
    if m == 0 || n == 0 {
        return;
    }
    assert!(lda >= k && a.len() >= (m - 1) * lda + k, "A too small");
    assert!(ldc >= n && c_len >= (m - 1) * ldc + n, "C too small");
    if let Some(bias) = bias {
        assert!(bias.len() >= n, "bias too short");
    }
    let out = OutPtr(c);
    if let Some(pairs) = &b.pairs {
        return super::bf16::gemm_into(m, a, lda, pairs, k, bias, out, ldc, parallel);
    }
    if let Some(quads) = &b.quads {
        return super::int8::gemm_into(m, a, lda, quads, k, bias, out, ldc, parallel);
    }
    for_panels(b.panels(), parallel, |p0, p1| {
        // Blocks of KC along k keep the rows of A being read in L2 while
        // this thread sweeps its panels; each panel slice sits in L1.
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            for p in p0..p1 {
                // SAFETY: sizes were checked above; panels p0..p1 cover
                // columns no other thread of this call writes.
                unsafe { panel_product(m, a, lda, b, p, k0, kc, bias, out, ldc) };
            }
        }
    });
}

/// Runs `run(p0, p1)` over `0..panels`, split into one contiguous range
/// per rayon thread when `parallel`.
pub(super) fn for_panels(panels: usize, parallel: bool, run: impl Fn(usize, usize) + Sync) {
    let threads = if parallel {
        rayon::current_num_threads().min(panels)
    } else {
        1
    };
    if threads <= 1 {
        run(0, panels);
    } else {
        use rayon::prelude::*;
        (0..threads).into_par_iter().for_each(|t| {
            run(t * panels / threads, (t + 1) * panels / threads);
        });
    }
}

/// One panel of C, k range `k0..k0 + kc`: every row block of A against
/// that slice of panel `p`. The first k block writes C (plus bias), later
/// ones add to it.
#[allow(clippy::too_many_arguments)]
/// # Safety
/// As the module's `gemm_into`: the output rows this panel covers are valid for writes and owned by this call.
unsafe fn panel_product(
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    p: usize,
    k0: usize,
    kc: usize,
    bias: Option<&[f32]>,
    out: OutPtr,
    ldc: usize,
) {
    let col = p * NR;
    let width = NR.min(b.n - col);
    let mut bias_tile = [0.0f32; NR];
    if let (Some(bias), 0) = (bias, k0) {
        bias_tile[..width].copy_from_slice(&bias[col..col + width]);
    }
    let panel = b.panel(p).as_ptr().add(k0 * NR);
    let mut row = 0;
    while row < m {
        let rows = MR.min(m - row);
        let tile = Tile {
            k: kc,
            a: a.as_ptr().add(row * lda + k0),
            lda,
            b: panel,
            c: out.0.add(row * ldc + col),
            ldc,
            bias: &bias_tile,
            width,
            accumulate: k0 > 0,
        };
        by_rows!(rows, kernel(&tile); 6 5 4 3 2 1);
        row += rows;
    }
}

/// What a micro-kernel call reads and writes: `C (+)= A · B + bias` for
/// `R` rows and `width` columns.
struct Tile<'a> {
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    bias: &'a [f32; NR],
    width: usize,
    /// Add to C instead of overwriting it (k blocks after the first).
    accumulate: bool,
}

#[inline(always)]
/// # Safety
/// The pointers in `t` are valid for the tile it describes (its rows of A and C, one packed panel of B).
unsafe fn kernel<const R: usize>(t: &Tile) {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        return kernel_avx2::<R>(t);
    }
    kernel_portable::<R>(t)
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// Whether the SIMD kernels run on this CPU (for logs and benches).
pub fn simd_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        return "avx2+fma";
    }
    "portable"
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
/// # Safety
/// The CPU has AVX2 and FMA (the caller checked), and `t` is valid as for `kernel`.
unsafe fn kernel_avx2<const R: usize>(t: &Tile) {
    use std::arch::x86_64::*;
    let mut lo = [_mm256_setzero_ps(); R];
    let mut hi = [_mm256_setzero_ps(); R];
    for kk in 0..t.k {
        // The panel streams from memory on its first row block; ask for it
        // 8 steps (512 bytes) ahead of use.
        _mm_prefetch::<_MM_HINT_T0>(t.b.wrapping_add(kk * NR + 8 * NR) as *const i8);
        let b0 = _mm256_loadu_ps(t.b.add(kk * NR));
        let b1 = _mm256_loadu_ps(t.b.add(kk * NR + 8));
        for r in 0..R {
            let av = _mm256_broadcast_ss(&*t.a.add(r * t.lda + kk));
            lo[r] = _mm256_fmadd_ps(av, b0, lo[r]);
            hi[r] = _mm256_fmadd_ps(av, b1, hi[r]);
        }
    }
    let bias_lo = _mm256_loadu_ps(t.bias.as_ptr());
    let bias_hi = _mm256_loadu_ps(t.bias.as_ptr().add(8));
    for r in 0..R {
        let v0 = _mm256_add_ps(lo[r], bias_lo);
        let v1 = _mm256_add_ps(hi[r], bias_hi);
        let dst = t.c.add(r * t.ldc);
        let mut tmp = [0.0f32; NR];
        if t.width == NR && !t.accumulate {
            _mm256_storeu_ps(dst, v0);
            _mm256_storeu_ps(dst.add(8), v1);
        } else if t.width == NR {
            _mm256_storeu_ps(dst, _mm256_add_ps(v0, _mm256_loadu_ps(dst)));
            _mm256_storeu_ps(dst.add(8), _mm256_add_ps(v1, _mm256_loadu_ps(dst.add(8))));
        } else {
            _mm256_storeu_ps(tmp.as_mut_ptr(), v0);
            _mm256_storeu_ps(tmp.as_mut_ptr().add(8), v1);
            store_partial(&tmp, dst, t.width, t.accumulate);
        }
    }
}

/// # Safety
/// The pointers in `t` are valid for the tile it describes.
unsafe fn kernel_portable<const R: usize>(t: &Tile) {
    let mut acc = [[0.0f32; NR]; R];
    for kk in 0..t.k {
        let b = std::slice::from_raw_parts(t.b.add(kk * NR), NR);
        for (r, acc_row) in acc.iter_mut().enumerate() {
            let av = *t.a.add(r * t.lda + kk);
            for (x, &bv) in acc_row.iter_mut().zip(b) {
                *x = av.mul_add(bv, *x);
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate() {
        let mut tile = [0.0f32; NR];
        for (j, v) in tile.iter_mut().enumerate() {
            *v = acc_row[j] + t.bias[j];
        }
        store_partial(&tile, t.c.add(r * t.ldc), t.width, t.accumulate);
    }
}

/// Writes (or adds) the first `width` values of a tile row.
#[inline(always)]
/// # Safety
/// `dst` is valid for `width` writes (and reads, when `accumulate`).
unsafe fn store_partial(tile: &[f32; NR], dst: *mut f32, width: usize, accumulate: bool) {
    let dst = std::slice::from_raw_parts_mut(dst, width);
    for (d, &v) in dst.iter_mut().zip(tile) {
        *d = if accumulate { *d + v } else { v };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|kk| a[i * k + kk] as f64 * w[j * k + kk] as f64)
                    .sum();
                c[i * n + j] = dot as f32 + bias[j];
            }
        }
        c
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        // A small LCG: deterministic values in [-1, 1).
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_naive_product_for_ragged_shapes() {
        for &(m, n, k) in &[
            (1, 16, 8),
            (7, 40, 33),
            (13, 5, 64),
            (6, 384, 384),
            (19, 48, 1),
            (33, 40, 1536),
            (8, 17, 300),
        ] {
            let a = values(m * k, 1);
            let w = values(n * k, 2);
            let bias = values(n, 3);
            let want = naive(m, n, k, &a, &w, &bias);
            let b = PackedB::from_rows(&w, n, k);
            for parallel in [false, true] {
                let mut c = vec![f32::NAN; m * n];
                gemm(m, &a, k, &b, Some(&bias), &mut c, n, parallel);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-4, "{m}x{n}x{k}: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn bf16_kernel_matches_product_of_rounded_inputs() {
        if !super::super::bf16::supported() {
            eprintln!("skipped: this CPU has no AVX-512 BF16");
            return;
        }
        let round = |v: &[f32]| -> Vec<f32> {
            v.iter()
                .map(|&x| half::bf16::from_bits(super::super::bf16::to_bf16(x)).to_f32())
                .collect()
        };
        for &(m, n, k) in &[
            (1, 16, 8),
            (7, 40, 33),
            (13, 5, 64),
            (25, 384, 384),
            (33, 40, 1536),
            (8, 17, 301),
        ] {
            let a = values(m * k, 11);
            let w = values(n * k, 12);
            let bias = values(n, 13);
            // The kernel rounds A and B to bf16 and sums in f32: compare
            // with the exact product of the rounded inputs.
            let want = naive(m, n, k, &round(&a), &round(&w), &bias);
            let mut b = PackedB::from_rows(&w, n, k);
            assert!(b.use_bf16());
            for parallel in [false, true] {
                let mut c = vec![f32::NAN; m * n];
                gemm(m, &a, k, &b, Some(&bias), &mut c, n, parallel);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-3, "{m}x{n}x{k}: {x} vs {y}");
                }
            }
            // And it stays close to the f32 product (bf16 keeps 8 bits).
            let exact = naive(m, n, k, &a, &w, &bias);
            let mut c = vec![0.0; m * n];
            gemm(m, &a, k, &b, Some(&bias), &mut c, n, true);
            let err = c
                .iter()
                .zip(&exact)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(
                err < 0.02 * (k as f32).sqrt(),
                "{m}x{n}x{k}: bf16 error {err}"
            );
        }
    }

    #[test]
    fn strided_operands_and_column_packing() {
        // C = A · V where V is [k × n] inside a wider buffer; C is written
        // into the middle columns of a wider output.
        let (m, k, n, ld) = (5, 9, 20, 32);
        let a = values(m * k, 4);
        let v = values(k * ld, 5);
        let mut b = PackedB::default();
        b.pack_cols(&v[3..], ld, k, n);
        let mut c = vec![7.0; m * 64];
        gemm(m, &a, k, &b, None, &mut c[10..], 64, true);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|kk| a[i * k + kk] * v[kk * ld + 3 + j]).sum();
                assert!((c[i * 64 + 10 + j] - want).abs() < 1e-4);
            }
            assert_eq!(c[i * 64 + 9], 7.0, "column before the block untouched");
            assert_eq!(c[i * 64 + 10 + n], 7.0, "column after the block untouched");
        }
    }
}
