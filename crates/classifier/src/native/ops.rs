//! The element-wise and row-wise steps of a BERT layer: layer norm (with
//! the residual added on the way in), GELU, softmax.
//!
//! Written so that LLVM vectorises them: fixed-width lanes for reductions
//! (float sums are not reordered otherwise) and branch-free exp/erf. Each
//! entry point is compiled twice, once with AVX2+FMA enabled and chosen at
//! run time, once portable.

const LANES: usize = 8;

/// Calls `$body` through an AVX2+FMA-compiled copy when the CPU has it.
macro_rules! dispatch {
    ($body:ident($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            /// # Safety
            /// The CPU has every feature enabled here (the caller checks
            /// with `is_x86_feature_detected!`). `f` itself is safe code.
            #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
            unsafe fn simd512(f: impl FnOnce()) {
                f()
            }
            let avx2_fma = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
            if avx2_fma && std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl") {
                // SAFETY: all four features `simd512` enables were detected
                // on this CPU just above (each check is a cached load).
                return unsafe { simd512(|| $body($($arg),*)) };
            }
            /// # Safety
            /// The CPU has AVX2 and FMA (the caller checks with
            /// `is_x86_feature_detected!`). `f` itself is safe code.
            #[target_feature(enable = "avx2,fma")]
            unsafe fn simd(f: impl FnOnce()) {
                f()
            }
            if avx2_fma {
                // SAFETY: AVX2 and FMA, all `simd` enables, were detected
                // on this CPU just above.
                return unsafe { simd(|| $body($($arg),*)) };
            }
        }
        $body($($arg),*)
    }};
}

/// `x = LayerNorm(x + residual)` for each of `rows` rows of width `dim`.
pub fn add_layer_norm(
    x: &mut [f32],
    residual: Option<&[f32]>,
    dim: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    dispatch!(add_layer_norm_body(x, residual, dim, gamma, beta, eps))
}

/// In place: exact GELU, `x · Φ(x)` with the error function (BERT's "gelu").
pub fn gelu_erf(x: &mut [f32]) {
    dispatch!(gelu_erf_body(x))
}

/// In place: the tanh approximation ("gelu_new", "gelu_pytorch_tanh").
pub fn gelu_tanh(x: &mut [f32]) {
    dispatch!(gelu_tanh_body(x))
}

/// In place: `softmax(scale · row)` for each row of width `cols`; rows start
/// every `ld` values.
pub fn softmax_rows(x: &mut [f32], rows: usize, cols: usize, ld: usize, scale: f32) {
    dispatch!(softmax_rows_body(x, rows, cols, ld, scale))
}

#[inline(always)]
fn add_layer_norm_body(
    x: &mut [f32],
    residual: Option<&[f32]>,
    dim: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let gamma = &gamma[..dim];
    let beta = &beta[..dim];
    for (r, row) in x.chunks_exact_mut(dim).enumerate() {
        if let Some(res) = residual {
            for (v, &add) in row.iter_mut().zip(&res[r * dim..(r + 1) * dim]) {
                *v += add;
            }
        }
        let mean = lane_sum(row, |v| v) / dim as f32;
        let var = lane_sum(row, |v| (v - mean) * (v - mean)) / dim as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, &g), &b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

/// Sum of `f(v)` over `row`, in [`LANES`] partial sums so it vectorises.
#[inline(always)]
fn lane_sum(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] += f(c[l]);
        }
    }
    let mut total: f32 = acc.iter().sum();
    for &v in chunks.remainder() {
        total += f(v);
    }
    total
}

#[inline(always)]
fn gelu_erf_body(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

#[inline(always)]
fn gelu_tanh_body(x: &mut [f32]) {
    const C: f32 = 0.797_884_6; // sqrt(2 / pi)
    for v in x.iter_mut() {
        let u = C * (*v + 0.044715 * *v * *v * *v);
        // tanh(u) = 1 - 2 / (exp(2u) + 1)
        let t = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
        *v = 0.5 * *v * (1.0 + t);
    }
}

#[inline(always)]
fn softmax_rows_body(x: &mut [f32], rows: usize, cols: usize, ld: usize, scale: f32) {
    for r in 0..rows {
        let row = &mut x[r * ld..r * ld + cols];
        let mut max = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            for l in 0..LANES {
                max[l] = max[l].max(c[l]);
            }
        }
        let mut m = max.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for &v in chunks.remainder() {
            m = m.max(v);
        }
        for v in row.iter_mut() {
            *v = exp((*v - m) * scale);
        }
        let inv = 1.0 / lane_sum(row, |v| v);
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

/// e^x for f32, branch-free (Cephes' expf polynomial, ~1 ulp on the range
/// that matters; inputs are clamped to avoid overflow).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.3, 88.7);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * C1 - n * C2;
    let z = r * r;
    let p = 1.987_569_1e-4_f32
        .mul_add(r, 1.398_199_9e-3)
        .mul_add(r, 8.333_452e-3)
        .mul_add(r, 4.166_579_6e-2)
        .mul_add(r, 1.666_666_5e-1)
        .mul_add(r, 5e-1);
    let y = p.mul_add(z, r) + 1.0;
    // 2^n from the bits of n + 127 + 2^23 (an integer below 2^23 sits in
    // the low mantissa bits of that sum). `n as i32` would be exact too,
    // but Rust's saturating float-to-int cast does not vectorise: it cost
    // GELU and softmax three quarters of their time.
    let biased = (n + (127.0 + 8_388_608.0)).to_bits() - 0x4b00_0000;
    let scale = f32::from_bits(biased << 23);
    y * scale
}

/// The error function, branch-free: Numerical Recipes' erfc Chebyshev fit
/// (fractional error below 1.2e-7), mirrored for negative x.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = 0.170_872_77_f32
        .mul_add(t, -0.822_152_23)
        .mul_add(t, 1.488_515_9)
        .mul_add(t, -1.135_204)
        .mul_add(t, 0.278_868_07)
        .mul_add(t, -0.186_288_06)
        .mul_add(t, 0.096_784_18)
        .mul_add(t, 0.374_091_96)
        .mul_add(t, 1.000_023_7)
        .mul_add(t, -1.265_512_2);
    let erfc = t * exp(-z * z + poly);
    (1.0 - erfc).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_are_accurate() {
        let mut x = -20.0f32;
        while x < 20.0 {
            let e = exp(x) as f64;
            let want = (x as f64).exp();
            assert!(((e - want) / want).abs() < 3e-7, "exp({x}) = {e} vs {want}");
            x += 0.0137;
        }
        // Reference values of erf (to 7 digits).
        for &(x, want) in &[
            (0.0f32, 0.0f64),
            (0.1, 0.112_462_9),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (-1.5, -0.966_105_1),
            (2.5, 0.999_593_0),
            (4.0, 0.999_999_98),
        ] {
            assert!((erf(x) as f64 - want).abs() < 4e-7, "erf({x}) = {}", erf(x));
        }
    }

    #[test]
    fn layer_norm_with_residual() {
        let mut x = vec![1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0];
        let res = vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 5.0];
        add_layer_norm(&mut x, Some(&res), 4, &[1.0; 4], &[0.5; 4], 0.0);
        // Row 0: mean 2.5, var 1.25.
        let sd = 1.25f32.sqrt();
        for (v, raw) in x[..4].iter().zip([1.0, 2.0, 3.0, 4.0]) {
            assert!((v - ((raw - 2.5) / sd + 0.5)).abs() < 1e-6);
        }
        // Row 1 is the residual alone: mean 2, var 3.
        let sd = 3f32.sqrt();
        assert!((x[7] - (3.0 / sd + 0.5)).abs() < 1e-6);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_respect_stride() {
        let mut x = vec![1.0, 2.0, 3.0, 99.0, 0.0, 0.0, 0.0, 99.0];
        softmax_rows(&mut x, 2, 3, 4, 0.5);
        let z: f32 = [0.5f32, 1.0, 1.5].iter().map(|v| v.exp()).sum();
        assert!((x[2] - 1.5f32.exp() / z).abs() < 1e-6);
        assert!((x[4] - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(x[3], 99.0);
        assert_eq!(x[7], 99.0);
    }

    #[test]
    fn gelu_matches_definition() {
        let mut x = vec![-3.0, -0.5, 0.0, 0.7, 2.0];
        let want: Vec<f64> = x
            .iter()
            .map(|&v: &f32| {
                let v = v as f64;
                // Φ via erf from a 7-digit table is enough at this tolerance.
                0.5 * v * (1.0 + erf_f64(v / 2f64.sqrt()))
            })
            .collect();
        gelu_erf(&mut x);
        for (g, w) in x.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{g} vs {w}");
        }
    }

    /// erf in f64 by its Taylor series (fine for |x| < 3).
    fn erf_f64(x: f64) -> f64 {
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
