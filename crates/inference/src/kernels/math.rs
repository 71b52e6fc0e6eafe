//! Element-wise math: a vectorisable `exp`, exact-form GELU through a
//! polynomial `erf`, layer norm with the residual added in the same pass,
//! and attention over packed variable-length sequences.
//!
//! Each function is written once as plain loops the compiler vectorises, and
//! compiled three times: for the baseline CPU, for AVX2 + FMA and for
//! AVX-512 (chosen at run time).

use rayon::prelude::*;

use super::{Isa, SendPtr};

/// Declares `pub(crate) fn $name(isa, args)` that runs `$body` compiled for
/// AVX-512 when the CPU has it, else for AVX2 + FMA, else for the baseline.
macro_rules! multiversion {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$m])*
        pub(crate) fn $name(isa: Isa, $($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
            #[allow(clippy::too_many_arguments)]
            fn wide($($arg: $ty),*) {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            fn narrow($($arg: $ty),*) {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if isa.avx512 {
                // SAFETY: AVX-512 and FMA were detected.
                unsafe { wide($($arg),*) };
                return;
            }
            #[cfg(target_arch = "x86_64")]
            if isa.avx2 {
                // SAFETY: AVX2 and FMA were detected.
                unsafe { narrow($($arg),*) };
                return;
            }
            let _ = isa;
            body($($arg),*)
        }
    };
}

/// Rounds to the nearest integer, ties to even, for |x| < 2²²: adding and
/// taking away 1.5·2²³ leaves no fraction bits (the default rounding mode
/// does the rest). Vectorises, unlike a call to `rintf`.
#[inline(always)]
pub(crate) fn round(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

/// `e^x` within 2 ulp for x in [-87, 88] (Cephes' `expf` polynomial after
/// reduction by powers of two); branch-free and cast-free, so loops over it
/// vectorise.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = round(x * std::f32::consts::LOG2_E);
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2ⁿ: n + 127 is in 40..=254; adding 2²³ puts it in the low mantissa
    // bits, and the shift moves it into the exponent (the rest shifts out)
    let biased = (n + (127.0 + 8_388_608.0)).to_bits() << 23;
    y * f32::from_bits(biased)
}

/// `erf(x)` within 1.5e-7 (Abramowitz and Stegun 7.1.26).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152) * t + 1.421_413_8) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

multiversion! {
    /// GELU in place, the exact form `x·Φ(x)` that BERT uses.
    fn gelu(xs: &mut [f32]) {
        for x in xs.iter_mut() {
            *x = 0.5 * *x * (1.0 + erf(*x * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

multiversion! {
    /// `x ← LayerNorm(x + residual)` for each row of `gamma.len()` values.
    fn add_layer_norm(x: &mut [f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let h = gamma.len();
        for (row, res) in x.chunks_exact_mut(h).zip(residual.chunks_exact(h)) {
            for (v, r) in row.iter_mut().zip(res) {
                *v += r;
            }
            norm_row(row, gamma, beta, eps);
        }
    }
}

multiversion! {
    /// `x ← LayerNorm(x)` for each row.
    fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
        for row in x.chunks_exact_mut(gamma.len()) {
            norm_row(row, gamma, beta, eps);
        }
    }
}

#[inline(always)]
fn norm_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = sum(row) / n;
    let var = row
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .fold(0.0f32, |a, b| a + b)
        / n;
    // lanes of partial sums would vectorise better, but 384 values per row
    // are a rounding error next to the GEMMs
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// Sum in 16 lanes (vectorises; also closer to exact than one running sum).
#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += v;
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// Multi-head self-attention over packed sequences.
///
/// `qkv`: `t × 3h` (queries, keys, values side by side, as the fused
/// projection writes them); `spans`: each sequence's `(start, len)` rows;
/// `ctx`: `t × h`, written. No mask: sequences are packed without padding,
/// so each attends over exactly its own rows.
pub(crate) fn attention(
    isa: Isa,
    qkv: &[f32],
    spans: &[(usize, usize)],
    heads: usize,
    h: usize,
    ctx: &mut [f32],
) {
    let d = h / heads;
    let t: usize = spans.iter().map(|s| s.1).sum();
    assert_eq!(qkv.len(), t * 3 * h);
    assert_eq!(ctx.len(), t * h);
    let out = SendPtr(ctx.as_mut_ptr());
    let jobs: Vec<(usize, usize, usize)> = spans
        .iter()
        .flat_map(|&(start, len)| (0..heads).map(move |head| (start, len, head)))
        .collect();
    let run = |&(start, len, head): &(usize, usize, usize)| {
        let mut scratch = Vec::new();
        let mut o = vec![0.0f32; len * d];
        attend(isa, qkv, start, len, head * d, d, h, &mut scratch, &mut o);
        for (i, row) in o.chunks_exact(d).enumerate() {
            // SAFETY: row start+i, columns head·d..head·d+d of ctx (t × h):
            // inside the buffer, and no other job writes this (row, head).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    row.as_ptr(),
                    out.get().add((start + i) * h + head * d),
                    d,
                );
            }
        }
    };
    let work: usize = spans.iter().map(|s| s.1 * s.1).sum::<usize>() * h;
    if work < 1 << 18 || jobs.len() == 1 {
        jobs.iter().for_each(run);
    } else {
        jobs.par_iter().for_each(run);
    }
}

/// One head of one sequence: `o = softmax(q·kᵀ/√d)·v`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend(
    isa: Isa,
    qkv: &[f32],
    start: usize,
    len: usize,
    col: usize,
    d: usize,
    h: usize,
    scratch: &mut Vec<f32>,
    o: &mut [f32],
) {
    assert!(qkv.len() >= (start + len) * 3 * h && col + d <= h && o.len() >= len * d);
    #[cfg(target_arch = "x86_64")]
    if isa.avx512 && (d == 32 || d == 64) {
        // SAFETY: AVX-512 and FMA were detected; the bounds are asserted
        // above (rows start..start+len of qkv, columns col..col+d of each
        // third, len rows of o).
        unsafe {
            if d == 32 {
                attend_avx512::<32, 2>(qkv, start, len, col, h, scratch, o);
            } else {
                attend_avx512::<64, 4>(qkv, start, len, col, h, scratch, o);
            }
        }
        return;
    }
    attend_generic(isa, qkv, start, len, col, d, h, scratch, o);
}

/// [`attend`] on AVX-512 for a head of `D` = 16·`V` values: four queries
/// at a time against 32 keys at a time (eight FMA chains), then the
/// probabilities times the values with the four output rows in registers.
///
/// # Safety
/// AVX-512 F/BW/DQ/VL and FMA are available; `qkv` holds rows
/// `start..start + len` of `3h` values, `col + D ≤ h`, `o` holds `len × D`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
unsafe fn attend_avx512<const D: usize, const V: usize>(
    qkv: &[f32],
    start: usize,
    len: usize,
    col: usize,
    h: usize,
    scratch: &mut Vec<f32>,
    o: &mut [f32],
) {
    use std::arch::x86_64::*;
    let stride = 3 * h;
    let scale = 1.0 / (D as f32).sqrt();
    let padded = len.next_multiple_of(2 * KEYS);
    scratch.clear();
    scratch.resize(D * padded + QUERIES * padded, 0.0);
    let (kt, scores) = scratch.split_at_mut(D * padded);
    for j in 0..len {
        let key = &qkv[(start + j) * stride + h + col..][..D];
        for (c, &v) in key.iter().enumerate() {
            kt[c * padded + j] = v;
        }
    }
    for i0 in (0..len).step_by(QUERIES) {
        let mut q = [[0.0f32; D]; QUERIES];
        for (g, q) in q.iter_mut().enumerate() {
            let row = &qkv[(start + (i0 + g).min(len - 1)) * stride + col..][..D];
            for (a, b) in q.iter_mut().zip(row) {
                *a = b * scale;
            }
        }
        // SAFETY: kt is D × padded and scores QUERIES × padded (resized
        // above); jb + 32 ≤ padded.
        unsafe {
            for jb in (0..padded).step_by(2 * KEYS) {
                let mut acc = [[_mm512_setzero_ps(); 2]; QUERIES];
                for c in 0..D {
                    let k = kt.as_ptr().add(c * padded + jb);
                    let (k0, k1) = (_mm512_loadu_ps(k), _mm512_loadu_ps(k.add(KEYS)));
                    for g in 0..QUERIES {
                        let qv = _mm512_set1_ps(q[g][c]);
                        acc[g][0] = _mm512_fmadd_ps(qv, k0, acc[g][0]);
                        acc[g][1] = _mm512_fmadd_ps(qv, k1, acc[g][1]);
                    }
                }
                for (g, acc) in acc.iter().enumerate() {
                    let dst = scores.as_mut_ptr().add(g * padded + jb);
                    _mm512_storeu_ps(dst, acc[0]);
                    _mm512_storeu_ps(dst.add(KEYS), acc[1]);
                }
            }
        }
        let mut inv = [0.0f32; QUERIES];
        for (g, inv) in inv.iter_mut().enumerate() {
            let row = &mut scores[g * padded..g * padded + len];
            let max = lanes_max(row);
            for s in row.iter_mut() {
                *s = exp(*s - max);
            }
            *inv = 1.0 / sum(row);
        }
        // SAFETY: value rows start..start+len, columns 2h+col..2h+col+D of
        // qkv (asserted by the caller); output rows i0..i0+4 ≤ len of o.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); V]; QUERIES];
            for j in 0..len {
                let vp = qkv.as_ptr().add((start + j) * stride + 2 * h + col);
                let mut v = [_mm512_setzero_ps(); V];
                for (r, v) in v.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(vp.add(16 * r));
                }
                for g in 0..QUERIES {
                    let p = _mm512_set1_ps(*scores.get_unchecked(g * padded + j));
                    for r in 0..V {
                        acc[g][r] = _mm512_fmadd_ps(p, v[r], acc[g][r]);
                    }
                }
            }
            for g in 0..QUERIES.min(len - i0) {
                let dst = o.as_mut_ptr().add((i0 + g) * D);
                let s = _mm512_set1_ps(inv[g]);
                for r in 0..V {
                    _mm512_storeu_ps(dst.add(16 * r), _mm512_mul_ps(acc[g][r], s));
                }
            }
        }
    }
}

multiversion! {
    /// [`attend`] on plain loops the compiler vectorises.
    #[allow(clippy::too_many_arguments)]
    fn attend_generic(qkv: &[f32], start: usize, len: usize, col: usize, d: usize, h: usize, scratch: &mut Vec<f32>, o: &mut [f32]) {
        match d {
            32 => attend_d::<32>(qkv, start, len, col, h, scratch, o),
            64 => attend_d::<64>(qkv, start, len, col, h, scratch, o),
            _ => attend_any(qkv, start, len, col, d, h, scratch, o),
        }
    }
}

/// Queries per step: four independent chains of multiply-adds per block of
/// keys hide the FMA latency, and each key is loaded once for the four.
const QUERIES: usize = 4;
/// Keys per block (one 16-lane register).
const KEYS: usize = 16;

/// [`attend`] for a head width known at compile time: the accumulators of a
/// step stay in registers.
#[inline(always)]
fn attend_d<const D: usize>(
    qkv: &[f32],
    start: usize,
    len: usize,
    col: usize,
    h: usize,
    scratch: &mut Vec<f32>,
    o: &mut [f32],
) {
    let stride = 3 * h;
    let scale = 1.0 / (D as f32).sqrt();
    let padded = len.next_multiple_of(KEYS);
    // keys transposed (D × padded, zero past len) and QUERIES score rows
    scratch.clear();
    scratch.resize(D * padded + QUERIES * padded, 0.0);
    let (kt, scores) = scratch.split_at_mut(D * padded);
    for j in 0..len {
        let key = &qkv[(start + j) * stride + h + col..][..D];
        for (c, &v) in key.iter().enumerate() {
            kt[c * padded + j] = v;
        }
    }
    let value = |j: usize| -> &[f32] { &qkv[(start + j) * stride + 2 * h + col..][..D] };
    for i0 in (0..len).step_by(QUERIES) {
        // past the last query, repeat it (computed, never written)
        let mut q = [[0.0f32; D]; QUERIES];
        for (g, q) in q.iter_mut().enumerate() {
            let row = &qkv[(start + (i0 + g).min(len - 1)) * stride + col..][..D];
            for (a, b) in q.iter_mut().zip(row) {
                *a = b * scale;
            }
        }
        for jb in (0..padded).step_by(KEYS) {
            let mut acc = [[0.0f32; KEYS]; QUERIES];
            for c in 0..D {
                let k: &[f32; KEYS] = kt[c * padded + jb..][..KEYS]
                    .try_into()
                    .unwrap_or(&[0.0; KEYS]);
                for g in 0..QUERIES {
                    for l in 0..KEYS {
                        acc[g][l] += q[g][c] * k[l];
                    }
                }
            }
            for (g, acc) in acc.iter().enumerate() {
                scores[g * padded + jb..][..KEYS].copy_from_slice(acc);
            }
        }
        let mut out = [[0.0f32; D]; QUERIES];
        let mut inv = [0.0f32; QUERIES];
        for g in 0..QUERIES {
            let row = &mut scores[g * padded..g * padded + len];
            let max = lanes_max(row);
            for s in row.iter_mut() {
                *s = exp(*s - max);
            }
            inv[g] = 1.0 / sum(row);
        }
        for j in 0..len {
            let v = value(j);
            for g in 0..QUERIES {
                let p = scores[g * padded + j];
                for (a, b) in out[g].iter_mut().zip(v) {
                    *a += p * b;
                }
            }
        }
        for g in 0..QUERIES.min(len - i0) {
            for (dst, a) in o[(i0 + g) * D..(i0 + g + 1) * D].iter_mut().zip(&out[g]) {
                *dst = a * inv[g];
            }
        }
    }
}

/// [`attend`] for any head width, one query at a time.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn attend_any(
    qkv: &[f32],
    start: usize,
    len: usize,
    col: usize,
    d: usize,
    h: usize,
    scratch: &mut Vec<f32>,
    o: &mut [f32],
) {
    let stride = 3 * h;
    let scale = 1.0 / (d as f32).sqrt();
    scratch.clear();
    scratch.resize(len, 0.0);
    for i in 0..len {
        let query = &qkv[(start + i) * stride + col..][..d];
        for (j, s) in scratch.iter_mut().enumerate() {
            let key = &qkv[(start + j) * stride + h + col..][..d];
            *s = query.iter().zip(key).map(|(a, b)| a * b).sum::<f32>() * scale;
        }
        let max = lanes_max(scratch);
        for s in scratch.iter_mut() {
            *s = exp(*s - max);
        }
        let inv = 1.0 / sum(scratch);
        let out = &mut o[i * d..(i + 1) * d];
        out.fill(0.0);
        for (j, &p) in scratch.iter().enumerate() {
            let value = &qkv[(start + j) * stride + 2 * h + col..][..d];
            for (a, v) in out.iter_mut().zip(value) {
                *a += p * inv * v;
            }
        }
    }
}

/// Largest value, in 16 lanes (vectorises; no NaN reaches here).
#[inline(always)]
fn lanes_max(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = if v > *l { v } else { *l };
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    lanes.iter().fold(tail, |m, &v| if v > m { v } else { m })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_are_accurate_to_float_precision() {
        for i in -8000..8000 {
            let x = i as f32 / 100.0;
            let (got, want) = (exp(x), f64::from(x).exp());
            let rel = ((f64::from(got) - want) / want).abs();
            assert!(rel < 3e-7, "exp({x}) = {got}, want {want}");
        }
        // erf against its odd symmetry and known values
        for (x, want) in [
            (0.0f32, 0.0f64),
            (0.5, 0.520_499_877_8),
            (1.0, 0.842_700_792_9),
            (2.0, 0.995_322_265),
            (-1.0, -0.842_700_792_9),
        ] {
            assert!(
                (f64::from(erf(x)) - want).abs() < 2e-7,
                "erf({x}) = {}",
                erf(x)
            );
        }
    }

    #[test]
    fn gelu_and_layer_norm_match_their_definitions_on_every_kernel() {
        for isa in [Isa::portable(), Isa::detect()] {
            let mut xs: Vec<f32> = (-300..300).map(|i| i as f32 / 50.0).collect();
            let want: Vec<f32> = xs
                .iter()
                .map(|&x| 0.5 * x * (1.0 + erf(x / 2f32.sqrt())))
                .collect();
            gelu(isa, &mut xs);
            assert!(xs.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6));
            assert_eq!(xs[300], 0.0);

            let (gamma, beta) = (vec![2.0f32; 8], vec![1.0f32; 8]);
            let mut x = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
            add_layer_norm(isa, &mut x, &[1.0; 8], &gamma, &beta, 1e-12);
            // (2..=9): mean 5.5, variance 5.25
            for (i, v) in x.iter().enumerate() {
                let want = ((i as f32 + 2.0) - 5.5) / 5.25f32.sqrt() * 2.0 + 1.0;
                assert!((v - want).abs() < 1e-5, "{i}: {v} vs {want}");
            }
        }
    }

    #[test]
    fn attention_attends_within_each_packed_sequence() {
        // two sequences, 1 head of width 2 (h = 2): the second's values are
        // all 10s, so if it leaked into the first one's context we'd see it
        let h = 2;
        let rows: Vec<[f32; 6]> = vec![
            [1.0, 0.0, 1.0, 0.0, 1.0, 2.0],
            [0.0, 1.0, 0.0, 1.0, 3.0, 4.0],
            [1.0, 1.0, 1.0, 1.0, 10.0, 10.0],
        ];
        let qkv: Vec<f32> = rows.iter().flatten().copied().collect();
        for isa in [Isa::portable(), Isa::detect()] {
            let mut ctx = vec![0.0; 3 * h];
            attention(isa, &qkv, &[(0, 2), (2, 1)], 1, h, &mut ctx);
            // query row 0 (1,0) scores keys (1,0),(0,1): 1/√2 and 0
            let s = (1.0f32 / 2f32.sqrt()).exp();
            let p0 = s / (s + 1.0);
            assert!((ctx[0] - (p0 * 1.0 + (1.0 - p0) * 3.0)).abs() < 1e-6);
            assert!((ctx[1] - (p0 * 2.0 + (1.0 - p0) * 4.0)).abs() < 1e-6);
            // a sequence of one token attends to itself only
            assert_eq!(&ctx[4..], &[10.0, 10.0]);
        }
    }

    #[test]
    fn the_register_blocked_heads_match_the_plain_one() {
        // 12 heads of 32 (MiniLM) and 6 of 64 (BERT-base): lengths that
        // leave partial groups of queries and blocks of keys
        for (heads, h) in [(12, 384), (6, 384)] {
            for len in [1, 3, 5, 16, 17, 37] {
                let qkv: Vec<f32> = (0..len * 3 * h)
                    .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
                    .collect();
                let d = h / heads;
                for head in 0..heads {
                    let (mut fast, mut plain) = (vec![0.0; len * d], vec![0.0; len * d]);
                    attend(
                        Isa::detect(),
                        &qkv,
                        0,
                        len,
                        head * d,
                        d,
                        h,
                        &mut Vec::new(),
                        &mut fast,
                    );
                    attend_any(&qkv, 0, len, head * d, d, h, &mut Vec::new(), &mut plain);
                    let worst = fast
                        .iter()
                        .zip(&plain)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f32::max);
                    assert!(worst < 1e-5, "heads {heads} len {len} head {head}: {worst}");
                }
            }
        }
    }
}
