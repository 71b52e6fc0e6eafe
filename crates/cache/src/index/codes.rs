//! Sign-bit codes and their Hamming distances: the first pass of the flat
//! scan. A vector's code has bit `i` set when component `i` is positive
//! (384 dimensions: six `u64` words, 48 bytes, against 1,536 for the f32
//! vector), and the Hamming distance between two codes estimates the angle
//! between the vectors (the fraction of differing bits is about angle / π).
//! A scan over 100k codes reads 4.8 MB; over their f32 vectors it would
//! read 154 MB, which is what kept the old flat scan at ~150 ms.
//!
//! The one unsafe block of this crate is the call of the kernel compiled
//! with `popcnt` (checked at run time first): without the instruction,
//! `count_ones` is a dozen shifts and masks per word, 2.5× slower here.
#![allow(unsafe_code)]

/// `u64` words of a code for `dim` dimensions.
pub(crate) const fn words(dim: usize) -> usize {
    dim.div_ceil(64)
}

/// Appends the sign-bit code of `v` (`words(v.len())` words) to `out`.
pub(crate) fn push_code(v: &[f32], out: &mut Vec<u64>) {
    for chunk in v.chunks(64) {
        let mut w = 0u64;
        for (i, x) in chunk.iter().enumerate() {
            w |= u64::from(*x > 0.0) << i;
        }
        out.push(w);
    }
}

/// Writes the Hamming distance of `query` to each code of `codes` (codes of
/// `query.len()` words, end to end) into `out` (cleared first), and returns
/// the histogram of the distances (`hist[d]` = codes at distance `d`), which
/// the caller uses to find a cut-off without sorting.
pub(crate) fn distances(query: &[u64], codes: &[u64], out: &mut Vec<u16>, hist: &mut Vec<u32>) {
    let words = query.len();
    out.clear();
    hist.clear();
    if words == 0 {
        return;
    }
    hist.resize(words * 64 + 1, 0);
    out.resize(codes.len() / words, 0);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("popcnt") {
        // SAFETY: the CPU has `popcnt` (checked just above), the only
        // feature the function is compiled for; it takes only safe slices.
        unsafe { distances_popcnt(query, codes, out, hist) };
        return;
    }
    distances_portable(query, codes, out, hist);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn distances_popcnt(query: &[u64], codes: &[u64], out: &mut [u16], hist: &mut [u32]) {
    match query.len() {
        // MiniLM (384) and the 768-dimensional encoders: unrolled
        6 => kernel::<6>(query, codes, out, hist),
        12 => kernel::<12>(query, codes, out, hist),
        _ => kernel_any(query, codes, out, hist),
    }
}

fn distances_portable(query: &[u64], codes: &[u64], out: &mut [u16], hist: &mut [u32]) {
    match query.len() {
        6 => kernel::<6>(query, codes, out, hist),
        12 => kernel::<12>(query, codes, out, hist),
        _ => kernel_any(query, codes, out, hist),
    }
}

#[inline(always)]
fn kernel<const W: usize>(query: &[u64], codes: &[u64], out: &mut [u16], hist: &mut [u32]) {
    let Ok(q) = <&[u64; W]>::try_from(query) else {
        return kernel_any(query, codes, out, hist);
    };
    for (c, o) in codes.chunks_exact(W).zip(out.iter_mut()) {
        let mut d = 0u32;
        for i in 0..W {
            d += (c[i] ^ q[i]).count_ones();
        }
        // d ≤ 64 W < hist.len(), and ≤ 768 fits u16
        *o = d as u16;
        if let Some(h) = hist.get_mut(d as usize) {
            *h += 1;
        }
    }
}

#[inline(always)]
fn kernel_any(query: &[u64], codes: &[u64], out: &mut [u16], hist: &mut [u32]) {
    for (c, o) in codes.chunks_exact(query.len()).zip(out.iter_mut()) {
        let d: u32 = c.iter().zip(query).map(|(a, b)| (a ^ b).count_ones()).sum();
        *o = u16::try_from(d).unwrap_or(u16::MAX);
        if let Some(h) = hist.get_mut(d as usize) {
            *h += 1;
        }
    }
}

/// The largest distance `cut` such that the codes at distance `< cut`
/// number fewer than `k`: taking every code below `cut` and then codes at
/// exactly `cut` until `k` gives the `k` nearest (ties in index order).
pub(crate) fn cut_off(hist: &[u32], k: usize) -> usize {
    let mut below = 0usize;
    for (d, &n) in hist.iter().enumerate() {
        if below + n as usize >= k {
            return d;
        }
        below += n as usize;
    }
    hist.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[u64], b: &[u64]) -> u16 {
        let mut d = 0;
        for (x, y) in a.iter().zip(b) {
            for bit in 0..64 {
                d += u16::from((x >> bit) & 1 != (y >> bit) & 1);
            }
        }
        d
    }

    #[test]
    fn codes_take_the_sign_of_each_component() {
        let mut out = Vec::new();
        let v: Vec<f32> = (0..70)
            .map(|i| if i % 3 == 0 { 0.5 } else { -0.5 })
            .collect();
        push_code(&v, &mut out);
        assert_eq!(out.len(), words(70));
        for (i, x) in v.iter().enumerate() {
            assert_eq!(
                (out[i / 64] >> (i % 64)) & 1 == 1,
                *x > 0.0,
                "component {i}"
            );
        }
        // zero and NaN are not positive
        out.clear();
        push_code(&[0.0, f32::NAN, 1.0], &mut out);
        assert_eq!(out, vec![0b100]);
    }

    #[test]
    fn distances_match_a_bit_by_bit_count_for_every_width() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for words in [1, 5, 6, 12] {
            let query: Vec<u64> = (0..words).map(|_| next()).collect();
            let codes: Vec<u64> = (0..words * 37).map(|_| next()).collect();
            let (mut out, mut hist) = (Vec::new(), Vec::new());
            distances(&query, &codes, &mut out, &mut hist);
            assert_eq!(out.len(), 37);
            for (i, d) in out.iter().enumerate() {
                assert_eq!(*d, naive(&query, &codes[i * words..(i + 1) * words]));
            }
            assert_eq!(hist.iter().sum::<u32>(), 37);
            // the portable body computes the same
            let (mut out2, mut hist2) = (vec![0; 37], vec![0; words * 64 + 1]);
            distances_portable(&query, &codes, &mut out2, &mut hist2);
            assert_eq!((out2, hist2), (out, hist));
        }
    }

    #[test]
    fn cut_off_keeps_at_least_k() {
        // distances 0:1, 1:0, 2:3, 3:2
        let hist = [1, 0, 3, 2];
        assert_eq!(cut_off(&hist, 1), 0);
        assert_eq!(cut_off(&hist, 2), 2);
        assert_eq!(cut_off(&hist, 4), 2);
        assert_eq!(cut_off(&hist, 5), 3);
        assert_eq!(cut_off(&hist, 99), 4);
    }
}
