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
use super::int8::{Kernel, PackedQuads};

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

    /// Switches this product to the int8 kernel this CPU runs (AVX-512
    /// VNNI, else AVX2), dropping the f32 copy. Returns false, and changes
    /// nothing, on CPUs with neither.
    pub fn use_int8(&mut self) -> bool {
        match Kernel::detect() {
            Some(kernel) => self.use_int8_kernel(kernel),
            None => false,
        }
    }

    /// [`PackedB::use_int8`] with a chosen kernel (tests compare them);
    /// false, changing nothing, where the CPU cannot run it.
    pub fn use_int8_kernel(&mut self, kernel: Kernel) -> bool {
        if !kernel.runs_here() {
            return false;
        }
        if self.pairs.is_none() && self.quads.is_none() {
            self.quads = Some(PackedQuads::from_f32(self, kernel));
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
// SAFETY: an `OutPtr` is only an address; moving it to another thread does
// nothing by itself. Every write through it goes through `gemm_into` (or
// the bf16/int8 variants), whose contract gives each thread of a product
// its own column panels, so the threads never touch the same value.
unsafe impl Send for OutPtr {}
// SAFETY: as for `Send`: shared `&OutPtr`s only copy the address; the
// disjoint-columns rule of `gemm_into` is what keeps the writes apart.
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
    // SAFETY: `c` is an exclusive borrow of `c.len()` initialised values,
    // so nothing else can touch any of them while this runs.
    unsafe { gemm_into(m, a, lda, b, bias, c.as_mut_ptr(), c.len(), ldc, parallel) }
}

/// [`gemm`] into `c_len` values at `c`. Several calls may write the same
/// buffer at once when their column ranges are disjoint.
///
/// # Safety
/// `c` must be valid for reads and writes of `c_len` initialised values
/// (later k blocks add to what the first wrote), and no other code may
/// read or write the columns `0..b.n()` of the rows this call writes while
/// it runs. The sizes of A, C and bias are asserted here, so a caller
/// only vouches for `c` and `c_len`.
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
        // SAFETY: C's size was asserted above and our caller owns columns
        // 0..n of its rows (this function's contract), which is all
        // bf16::gemm_into asks of `out`; A and bias are slices it indexes
        // with bounds checks. `pairs` exists only if `use_bf16` saw
        // `bf16::supported()`, and bf16::gemm_into asserts it again.
        return unsafe { super::bf16::gemm_into(m, a, lda, pairs, k, bias, out, ldc, parallel) };
    }
    if let Some(quads) = &b.quads {
        // SAFETY: as for the bf16 call above, with `use_int8` and
        // `int8::supported()`.
        return unsafe { super::int8::gemm_into(m, a, lda, quads, k, bias, out, ldc, parallel) };
    }
    for_panels(b.panels(), parallel, |p0, p1| {
        // Blocks of KC along k keep the rows of A being read in L2 while
        // this thread sweeps its panels; each panel slice sits in L1.
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            for p in p0..p1 {
                // SAFETY: `panel_product`'s contract: p < b.panels() and
                // k0 + kc <= k by the loop bounds; A and C were asserted
                // big enough above (`lda >= k`, `a.len() >= (m-1)*lda + k`,
                // `ldc >= n`, `c_len >= (m-1)*ldc + n`) and `c` is valid
                // for `c_len` values by our contract; for_panels gives
                // panels p0..p1 to this thread alone, so no other thread of
                // this call writes their columns.
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
///
/// # Safety
/// - `p < b.panels()` and `k0 + kc <= b.k`;
/// - `lda >= b.k` and `a.len() >= (m - 1) * lda + b.k` (when `m > 0`);
/// - `out.0` is valid for reads and writes of `(m - 1) * ldc + b.n` values,
///   initialised, with `ldc >= b.n`;
/// - no other code reads or writes columns `p * NR..p * NR + NR` (those
///   below `b.n`) of rows `0..m` while this runs.
///
/// `gemm_into` asserts the sizes; this builds tiles that meet the tile
/// contract ([`Tile`]) from them.
#[allow(clippy::too_many_arguments)]
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
    let panel = b.panel(p);
    // SAFETY: k0 < b.k (k0 + kc <= b.k and kc >= 1), so k0 * NR is inside
    // the panel's b.k * NR values; the tile then reads kc steps of NR
    // values, ending at (k0 + kc) * NR <= the panel's length.
    let panel_k0 = unsafe { panel.as_ptr().add(k0 * NR) };
    let mut row = 0;
    while row < m {
        let rows = MR.min(m - row);
        // SAFETY: for both `add`s and the tile contract's A and C: row < m
        // and k0 < b.k <= lda, so row * lda + k0 < (m - 1) * lda + b.k <= a.len();
        // the tile reads A up to (row + rows - 1) * lda + k0 + kc - 1 <=
        // (m - 1) * lda + b.k - 1, still inside `a`. Likewise col < b.n, so
        // row * ldc + col < (m - 1) * ldc + b.n, the values `out.0` is valid
        // for, and the tile's last value (row + rows - 1) * ldc + col +
        // width - 1 is at most (m - 1) * ldc + b.n - 1. Those columns are
        // ours alone by the contract above.
        let tile = unsafe {
            Tile {
                k: kc,
                a: a.as_ptr().add(row * lda + k0),
                lda,
                b: panel_k0,
                c: out.0.add(row * ldc + col),
                ldc,
                bias: &bias_tile,
                width,
                accumulate: k0 > 0,
            }
        };
        // SAFETY: `tile` meets the tile contract for `rows` rows (above),
        // and by_rows! calls `kernel::<R>` with R == rows: rows is in 1..=MR
        // (MR = 6) and every one of those values has its own arm.
        unsafe { by_rows!(rows, kernel(&tile); 6 5 4 3 2 1) };
        row += rows;
    }
}

/// What a micro-kernel call reads and writes: `C (+)= A · B + bias` for
/// `R` rows and `width` columns.
///
/// The tile contract, which [`panel_product`] establishes and every kernel
/// relies on (their SAFETY comments cite it):
/// - A: `a.add(r * lda + kk)` is readable for `r < R`, `kk < k`;
/// - B: `b` is readable for `k * NR` values (one packed panel's k block,
///   immutable while the kernel runs);
/// - C: `c.add(r * ldc + j)` is initialised, readable and writable for
///   `r < R`, `j < width`, and nothing else touches those values meanwhile;
/// - `1 <= width <= NR`.
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

/// # Safety
/// `t` meets the tile contract ([`Tile`]) for `R` rows.
#[inline(always)]
unsafe fn kernel<const R: usize>(t: &Tile) {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: AVX2 and FMA were detected just above; `t` is passed on
        // under our own contract.
        return unsafe { kernel_avx2::<R>(t) };
    }
    // SAFETY: `t` is passed on under our own contract.
    unsafe { kernel_portable::<R>(t) }
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

/// # Safety
/// The CPU has AVX2 and FMA, and `t` meets the tile contract ([`Tile`])
/// for `R` rows. The loads and stores are all unaligned (`loadu`/`storeu`),
/// so only their bounds need arguing.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2<const R: usize>(t: &Tile) {
    use std::arch::x86_64::*;
    let mut lo = [_mm256_setzero_ps(); R];
    let mut hi = [_mm256_setzero_ps(); R];
    for kk in 0..t.k {
        // The panel streams from memory on its first row block; ask for it
        // 8 steps (512 bytes) ahead of use. A prefetch never faults, so
        // an address past the panel is harmless (hence `wrapping_add`).
        _mm_prefetch::<_MM_HINT_T0>(t.b.wrapping_add(kk * NR + 8 * NR) as *const i8);
        // SAFETY: kk < t.k, so values kk * NR .. kk * NR + 16 (both 8-lane
        // halves of step kk) lie inside B's t.k * NR (tile contract).
        let (b0, b1) = unsafe {
            (
                _mm256_loadu_ps(t.b.add(kk * NR)),
                _mm256_loadu_ps(t.b.add(kk * NR + 8)),
            )
        };
        for r in 0..R {
            // SAFETY: r < R and kk < t.k: A value (r, kk), readable by the
            // tile contract.
            let av = _mm256_broadcast_ss(unsafe { &*t.a.add(r * t.lda + kk) });
            lo[r] = _mm256_fmadd_ps(av, b0, lo[r]);
            hi[r] = _mm256_fmadd_ps(av, b1, hi[r]);
        }
    }
    // SAFETY: `t.bias` is a `[f32; NR]` (16 values): values 0..8 and 8..16.
    let (bias_lo, bias_hi) = unsafe {
        (
            _mm256_loadu_ps(t.bias.as_ptr()),
            _mm256_loadu_ps(t.bias.as_ptr().add(8)),
        )
    };
    for r in 0..R {
        let v0 = _mm256_add_ps(lo[r], bias_lo);
        let v1 = _mm256_add_ps(hi[r], bias_hi);
        let mut tmp = [0.0f32; NR];
        // SAFETY: r < R, so row r of C starts at `dst` and values
        // 0..t.width of it are readable and writable (tile contract). The
        // 16-lane loads and stores of C run only when t.width == NR (16);
        // otherwise the row goes through `tmp`, a local [f32; 16], and
        // store_partial touches only t.width values of C.
        unsafe {
            let dst = t.c.add(r * t.ldc);
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
}

/// # Safety
/// `t` meets the tile contract ([`Tile`]) for `R` rows.
unsafe fn kernel_portable<const R: usize>(t: &Tile) {
    let mut acc = [[0.0f32; NR]; R];
    for kk in 0..t.k {
        // SAFETY: kk < t.k, so values kk * NR .. kk * NR + NR lie inside
        // B's t.k * NR, which nothing writes while the kernel runs (tile
        // contract); `t.b` comes from a `&[f32]`, so it is aligned.
        let b = unsafe { std::slice::from_raw_parts(t.b.add(kk * NR), NR) };
        for (r, acc_row) in acc.iter_mut().enumerate() {
            // SAFETY: r < R and kk < t.k: A value (r, kk) (tile contract).
            let av = unsafe { *t.a.add(r * t.lda + kk) };
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
        // SAFETY: r < R: values 0..t.width of row r of C are initialised,
        // readable, writable and ours alone (tile contract), which is
        // store_partial's contract.
        unsafe { store_partial(&tile, t.c.add(r * t.ldc), t.width, t.accumulate) };
    }
}

/// Writes (or adds) the first `width` values of a tile row.
///
/// # Safety
/// `dst` is aligned for f32 and valid for reads and writes of `width`
/// initialised values that nothing else accesses while this runs.
#[inline(always)]
unsafe fn store_partial(tile: &[f32; NR], dst: *mut f32, width: usize, accumulate: bool) {
    // SAFETY: exactly this function's contract, which is what
    // `from_raw_parts_mut` needs for a `&mut [f32]` of `width` values.
    let dst = unsafe { std::slice::from_raw_parts_mut(dst, width) };
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
