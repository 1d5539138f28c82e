//! The AVX2 int8 kernel and its row quantiser, for x86-64 CPUs without
//! AVX-512 VNNI.
//!
//! `vpmaddwd` multiplies 16 pairs of i16 and adds each pair into an i32
//! lane, exactly (255 · 127 · 2 is far from i32's range). Each step of 4
//! along k is two pairs; for one pair a 32-bit broadcast of A's two values
//! (i16) against B's 16 columns (the pair widened from i8 to i16, two
//! 8-lane registers) adds both products of every column into its lane.
//! Two 8-lane accumulators per row and 6 rows fill 12 of the 16 registers,
//! as in the f32 kernel.

use std::arch::x86_64::*;

use super::Tile;
use crate::native::gemm::NR;

/// # Safety
/// The CPU has AVX2 and FMA (it runs [`super::Kernel::Avx2`]), and `t`
/// meets the tile contract ([`Tile`]) for `R` rows in the AVX2 layout. All
/// loads and stores are unaligned, so only their bounds need arguing.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn kernel<const R: usize>(t: &Tile) {
    let mut lo = [_mm256_setzero_si256(); R];
    let mut hi = [_mm256_setzero_si256(); R];
    for kp in 0..2 * t.k4 {
        // A prefetch never faults: past the panel's end it is harmless.
        _mm_prefetch::<_MM_HINT_T0>(t.b.wrapping_add((kp + 16) * NR * 2));
        // SAFETY: kp < 2 * t.k4: pair kp of B is values kp * 32 .. kp * 32
        // + 32 (columns 0..8, then 8..16, two values each), inside its
        // t.k4 * NR * 4 (tile contract); each load reads 16 of them.
        let (b_lo, b_hi) = unsafe {
            let at = t.b.add(kp * NR * 2);
            (
                _mm256_cvtepi8_epi16(_mm_loadu_si128(at as *const __m128i)),
                _mm256_cvtepi8_epi16(_mm_loadu_si128(at.add(16) as *const __m128i)),
            )
        };
        for r in 0..R {
            // SAFETY: r < R and kp < 2 * t.k4: A values r * lda4 + 2 * kp
            // .. + 2 lie within row r's r * lda4 + 4 * kq .. + 4 for kq =
            // kp / 2, readable by the tile contract; read as one unaligned
            // i32 (two i16).
            let pair =
                unsafe { (t.a_wide.add(r * t.lda4 + kp * 2) as *const i32).read_unaligned() };
            let a = _mm256_set1_epi32(pair);
            lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(a, b_lo));
            hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(a, b_hi));
        }
    }
    // The same operations as the VNNI kernel's epilogue, lane for lane, so
    // C gets the same bits. SAFETY: `b_scales`, `b_sums` and `bias` are
    // `[_; NR]` arrays of 16 4-byte values: lanes 0..8 and 8..16.
    let (scales, sums, bias) = unsafe {
        let (s, m, b) = (t.b_scales.as_ptr(), t.b_sums.as_ptr(), t.bias.as_ptr());
        (
            [_mm256_loadu_ps(s), _mm256_loadu_ps(s.add(8))],
            [
                _mm256_loadu_si256(m as *const __m256i),
                _mm256_loadu_si256(m.add(8) as *const __m256i),
            ],
            [_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8))],
        )
    };
    for r in 0..R {
        let zero = _mm256_set1_epi32(t.a_zeros[r]);
        let a_scale = _mm256_set1_ps(t.a_scales[r]);
        let mut row = [0.0f32; NR];
        for (half, acc) in [lo[r], hi[r]].into_iter().enumerate() {
            let centred = _mm256_sub_epi32(acc, _mm256_mullo_epi32(zero, sums[half]));
            let scale = _mm256_mul_ps(a_scale, scales[half]);
            let v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(centred), scale, bias[half]);
            // SAFETY: `row` is a local [f32; 16]; half is 0 or 1, so the 8
            // values written start at 0 or 8.
            unsafe { _mm256_storeu_ps(row.as_mut_ptr().add(half * 8), v) };
        }
        // SAFETY: r < R, so values 0..t.width of C's row r are writable
        // (tile contract), and t.width <= NR = row.len().
        unsafe {
            std::ptr::copy_nonoverlapping(row.as_ptr(), t.c.add(r * t.ldc), t.width);
        }
    }
}

/// # Safety
/// The CPU has AVX2 and FMA (it runs [`super::Kernel::Avx2`]), and
/// `dst.len() >= src.len()`. Vector loads and stores run only over whole
/// chunks of 8 inside `src.len()`; the tail is scalar.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn quantise_row(src: &[f32], dst: &mut [i16]) -> (f32, i32) {
    let whole = src.len() / 8 * 8;
    let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for i in (0..whole).step_by(8) {
        // SAFETY: i + 8 <= whole <= src.len().
        let v = unsafe { _mm256_loadu_ps(src.as_ptr().add(i)) };
        lo = _mm256_min_ps(lo, v);
        hi = _mm256_max_ps(hi, v);
    }
    let (mut lows, mut highs) = ([0.0f32; 8], [0.0f32; 8]);
    // SAFETY: two local [f32; 8], 8 values each.
    unsafe {
        _mm256_storeu_ps(lows.as_mut_ptr(), lo);
        _mm256_storeu_ps(highs.as_mut_ptr(), hi);
    }
    let tail = &src[whole..];
    let lo = lows.iter().chain(tail).fold(0.0f32, |m, &v| m.min(v));
    let hi = highs.iter().chain(tail).fold(0.0f32, |m, &v| m.max(v));
    let (scale, zero) = super::row_range(lo, hi);
    let inv = 1.0 / scale;
    let (vinv, vzero) = (_mm256_set1_ps(inv), _mm256_set1_ps(zero));
    let (floor, ceil) = (_mm256_setzero_ps(), _mm256_set1_ps(255.0));
    for i in (0..whole).step_by(8) {
        // SAFETY: i + 8 <= whole <= src.len().
        let v = unsafe { _mm256_loadu_ps(src.as_ptr().add(i)) };
        let q = _mm256_min_ps(_mm256_max_ps(_mm256_fmadd_ps(v, vinv, vzero), floor), ceil);
        // Rounds to nearest even (the default MXCSR mode), as the scalar
        // model; 8 i32 packed to 8 i16 (in range: 0..=255).
        let words = _mm256_packs_epi32(_mm256_cvtps_epi32(q), _mm256_setzero_si256());
        let words = _mm256_permute4x64_epi64::<0b00_00_10_00>(words);
        // SAFETY: i + 8 <= src.len() <= dst.len() (our contract): 8 i16.
        unsafe {
            _mm_storeu_si128(
                dst.as_mut_ptr().add(i) as *mut __m128i,
                _mm256_castsi256_si128(words),
            )
        };
    }
    for (d, &v) in dst[whole..].iter_mut().zip(tail) {
        // With FMA enabled `mul_add` is one fused instruction, like the
        // vector path's.
        *d = v.mul_add(inv, zero).clamp(0.0, 255.0).round_ties_even() as i16;
    }
    dst[src.len()..].fill(zero as i16);
    (scale, zero as i32)
}
