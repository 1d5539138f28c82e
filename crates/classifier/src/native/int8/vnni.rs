//! The AVX-512 VNNI int8 kernel and its row quantiser.

use super::Tile;
use crate::native::gemm::NR;

/// # Safety
/// The CPU has AVX-512 F, BW and VNNI (it runs [`super::Kernel::Vnni`]), and `t`
/// meets the tile contract ([`Tile`]) for `R` rows in the VNNI layout. All loads and stores
/// are unaligned, so only their bounds need arguing.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn kernel<const R: usize>(t: &Tile) {
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

/// # Safety
/// The CPU has AVX-512 F, BW and VL (it runs [`super::Kernel::Vnni`]), and
/// `dst.len() >= src.len()`. Every access below is masked with `tail(i)`,
/// which keeps only lanes `i..src.len()`; masked-off lanes are not
/// accessed (AVX-512 fault suppression).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn quantise_row(src: &[f32], dst: &mut [u8]) -> (f32, i32) {
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
    let (scale, zero) = super::row_range(_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi));
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
