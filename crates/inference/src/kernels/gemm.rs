//! `y = x · Wᵀ + b` for a weight `W` (`n` outputs × `k` inputs, PyTorch's
//! `Linear` layout) packed once at load time.
//!
//! Packing: the outputs are cut into panels of [`NR`] = 32 columns; a panel
//! holds, for each step along `k`, the 32 weights of that step next to each
//! other (for bf16 a pair of steps, for int8 a quad, interleaved per column
//! the way `vdpbf16ps` and `vpdpbusd` read them). A tile of up to [`MR`] = 8
//! rows × 32 columns keeps 16 accumulators in registers and streams one panel
//! from cache: no packing work per call, and nothing but the tile's rows of
//! activations is touched per step.
//!
//! Activations: f32 as they are; bf16 rounded to nearest even in pairs; int8
//! quantized per row, asymmetric (`x ≈ s·(q − z)`, `q` in 0..=255), so the
//! GELU outputs' one-sided range keeps all 256 levels. Weights in int8 are
//! symmetric per output channel; `Σ q·w − z·Σw` is exact in i32.

use rayon::prelude::*;

use super::{Isa, SendPtr};

/// Output columns per panel (two 16-lane registers).
pub(crate) const NR: usize = 32;
/// Most rows per register tile.
pub(crate) const MR: usize = 8;
/// Rows per task: 64 rows of activations stay in L2 while a task's panels
/// stream past them.
const ROWS_PER_TASK: usize = 64;
/// Below this many multiply-adds a GEMM runs on the calling thread: waking
/// the pool costs more than it saves.
const SERIAL_BELOW: usize = 1 << 19;

/// The weights of one linear layer in one of the packed formats.
#[derive(Debug)]
pub(crate) enum Packed {
    /// `panels × k × 32` f32.
    F32(Vec<f32>),
    /// `panels × k/2 × 32` pairs of bf16 in a u32 (low half: the even step).
    Bf16(Vec<u32>),
    /// `panels × k/4 × 32` quads of i8, per-column scales and column sums.
    Int8 {
        panels: Vec<i8>,
        scales: Vec<f32>,
        colsums: Vec<i32>,
    },
}

/// A packed linear layer.
#[derive(Debug)]
pub(crate) struct Gemm {
    n: usize,
    k: usize,
    /// `k` rounded up to the packed step (1, 2 or 4).
    kp: usize,
    panels: usize,
    /// `panels × 32`, zero past `n`.
    bias: Vec<f32>,
    packed: Packed,
    isa: Isa,
}

/// Which packed format to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    F32,
    Bf16,
    Int8,
}

/// Activations converted for one call; reused across calls.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    bf16: Vec<u32>,
    quads: Vec<u32>,
    scale: Vec<f32>,
    zero: Vec<i32>,
}

/// f32 → bf16, rounded to nearest even (NaN stays NaN: only finite weights
/// and activations reach here).
#[inline(always)]
pub(crate) fn bf16_bits(x: f32) -> u32 {
    let b = x.to_bits();
    (b.wrapping_add(0x7fff + ((b >> 16) & 1))) >> 16
}

/// bf16 bits → f32.
#[inline(always)]
pub(crate) fn bf16_value(h: u32) -> f32 {
    f32::from_bits(h << 16)
}

impl Gemm {
    /// Packs `weight` (`n × k`, row-major) and `bias` (`n`) into `format`.
    pub(crate) fn new(
        weight: &[f32],
        bias: &[f32],
        n: usize,
        k: usize,
        format: Format,
        isa: Isa,
    ) -> Self {
        assert_eq!(weight.len(), n * k, "weight is n × k");
        assert_eq!(bias.len(), n, "one bias per output");
        let panels = n.div_ceil(NR);
        let mut padded_bias = vec![0.0; panels * NR];
        padded_bias[..n].copy_from_slice(bias);
        let w = |col: usize, step: usize| -> f32 {
            if col < n && step < k {
                weight[col * k + step]
            } else {
                0.0
            }
        };
        let (kp, packed) = match format {
            Format::F32 => {
                let mut out = Vec::with_capacity(panels * k * NR);
                for p in 0..panels {
                    for step in 0..k {
                        out.extend((0..NR).map(|j| w(p * NR + j, step)));
                    }
                }
                (k, Packed::F32(out))
            }
            Format::Bf16 => {
                let kp = k.next_multiple_of(2);
                let mut out = Vec::with_capacity(panels * kp / 2 * NR);
                for p in 0..panels {
                    for pair in 0..kp / 2 {
                        out.extend((0..NR).map(|j| {
                            let c = p * NR + j;
                            bf16_bits(w(c, 2 * pair)) | bf16_bits(w(c, 2 * pair + 1)) << 16
                        }));
                    }
                }
                (kp, Packed::Bf16(out))
            }
            Format::Int8 => {
                let kp = k.next_multiple_of(4);
                let mut scales = vec![0.0f32; panels * NR];
                let mut colsums = vec![0i32; panels * NR];
                let mut q = vec![0i8; panels * NR * kp];
                for c in 0..n {
                    let row = &weight[c * k..(c + 1) * k];
                    let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
                    scales[c] = scale;
                    let (p, j) = (c / NR, c % NR);
                    for (step, v) in row.iter().enumerate() {
                        let qv = (v / scale).round_ties_even().clamp(-127.0, 127.0) as i8;
                        colsums[c] += i32::from(qv);
                        // panel p, quad step/4, column j, byte step%4
                        q[((p * (kp / 4) + step / 4) * NR + j) * 4 + step % 4] = qv;
                    }
                }
                (
                    kp,
                    Packed::Int8 {
                        panels: q,
                        scales,
                        colsums,
                    },
                )
            }
        };
        Self {
            n,
            k,
            kp,
            panels,
            bias: padded_bias,
            packed,
            isa,
        }
    }

    /// `y[t × n] = x[t × k] · Wᵀ + b`.
    pub(crate) fn forward(&self, x: &[f32], t: usize, y: &mut [f32], prep: &mut Prepared) {
        assert_eq!(x.len(), t * self.k, "x is t × k");
        assert_eq!(y.len(), t * self.n, "y is t × n");
        if t == 0 {
            return;
        }
        match &self.packed {
            Packed::F32(_) => {}
            Packed::Bf16(_) => prepare_bf16(x, t, self.k, self.kp, &mut prep.bf16, self.isa),
            Packed::Int8 { .. } => prepare_int8(x, t, self.k, self.kp, prep, self.isa),
        }
        let row_chunks = t.div_ceil(ROWS_PER_TASK);
        let work = t * self.n * self.k;
        let threads = rayon::current_num_threads().max(1);
        let wanted = if work < SERIAL_BELOW { 1 } else { 4 * threads };
        let panel_chunk = self
            .panels
            .div_ceil(wanted.div_ceil(row_chunks).max(1))
            .max(1);
        let panel_chunks = self.panels.div_ceil(panel_chunk);
        let out = SendPtr(y.as_mut_ptr());
        let prep = &*prep;
        let task = |i: usize| {
            let rows =
                (i / panel_chunks) * ROWS_PER_TASK..((i / panel_chunks + 1) * ROWS_PER_TASK).min(t);
            let first = (i % panel_chunks) * panel_chunk;
            let panels = first..(first + panel_chunk).min(self.panels);
            for p in panels {
                let mut r = rows.start;
                while r < rows.end {
                    let mr = (rows.end - r).min(MR);
                    // SAFETY: rows r..r+mr and panel p's columns lie inside
                    // x (t × k, checked above) and y (t × n); tasks cover
                    // disjoint (rows, panels) blocks of y.
                    unsafe { self.tile(x, prep, r, mr, p, out) };
                    r += mr;
                }
            }
        };
        let tasks = row_chunks * panel_chunks;
        if tasks == 1 {
            task(0);
        } else {
            (0..tasks).into_par_iter().for_each(task);
        }
    }

    /// One tile: rows `r..r + mr` (mr ≤ 8) × panel `p`.
    ///
    /// # Safety
    /// `r + mr ≤ t` and `p < panels` for the `t` of the call; `out` points at
    /// a `t × n` buffer that nothing else writes inside this tile.
    unsafe fn tile(
        &self,
        x: &[f32],
        prep: &Prepared,
        r: usize,
        mr: usize,
        p: usize,
        out: SendPtr<f32>,
    ) {
        let cols = (self.n - p * NR).min(NR);
        let bias = &self.bias[p * NR..(p + 1) * NR];
        // SAFETY (all arms): the row offsets stay inside the prepared
        // activations (t rows) and the output (t × n); each kernel reads
        // `mr` rows and one panel, writes `mr` rows × `cols` columns.
        unsafe {
            let c = out.get().add(r * self.n + p * NR);
            match &self.packed {
                Packed::F32(w) => {
                    let b = &w[p * self.k * NR..(p + 1) * self.k * NR];
                    let a = &x[r * self.k..];
                    f32_tile(self.isa, mr, a, self.k, b, self.k, bias, c, self.n, cols);
                }
                Packed::Bf16(w) => {
                    let pairs = self.kp / 2;
                    let b = &w[p * pairs * NR..(p + 1) * pairs * NR];
                    let a = &prep.bf16[r * pairs..];
                    bf16_tile(self.isa, mr, a, pairs, b, pairs, bias, c, self.n, cols);
                }
                Packed::Int8 {
                    panels,
                    scales,
                    colsums,
                } => {
                    let quads = self.kp / 4;
                    let b = &panels[p * quads * NR * 4..(p + 1) * quads * NR * 4];
                    let a = &prep.quads[r * quads..];
                    let rows = Rows {
                        scale: &prep.scale[r..r + mr],
                        zero: &prep.zero[r..r + mr],
                    };
                    let cols_q = Cols {
                        scale: &scales[p * NR..(p + 1) * NR],
                        sum: &colsums[p * NR..(p + 1) * NR],
                        bias,
                    };
                    int8_tile(
                        self.isa, mr, a, quads, b, quads, rows, cols_q, c, self.n, cols,
                    );
                }
            }
        }
    }
}

/// Per-row quantization of a tile's activations.
#[derive(Clone, Copy)]
struct Rows<'a> {
    scale: &'a [f32],
    zero: &'a [i32],
}

/// Per-column scales, sums and bias of an int8 panel.
#[derive(Clone, Copy)]
struct Cols<'a> {
    scale: &'a [f32],
    sum: &'a [i32],
    bias: &'a [f32],
}

fn prepare_bf16(x: &[f32], t: usize, k: usize, kp: usize, out: &mut Vec<u32>, isa: Isa) {
    out.clear();
    out.resize(t * kp / 2, 0);
    #[inline(always)]
    fn body(x: &[f32], k: usize, kp: usize, out: &mut [u32]) {
        for (row, dst) in x.chunks_exact(k).zip(out.chunks_exact_mut(kp / 2)) {
            let pairs = k / 2;
            for i in 0..pairs {
                dst[i] = bf16_bits(row[2 * i]) | bf16_bits(row[2 * i + 1]) << 16;
            }
            if k % 2 == 1 {
                dst[pairs] = bf16_bits(row[k - 1]);
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
    fn wide(x: &[f32], k: usize, kp: usize, out: &mut [u32]) {
        body(x, k, kp, out)
    }
    /// 32 values at a time with `vcvtne2ps2bf16` (round to nearest even,
    /// as [`bf16_bits`]): its 32 halves come out in order, so as u32 they
    /// are exactly the (even, odd) pairs the panels expect.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")]
    fn native(x: &[f32], k: usize, kp: usize, out: &mut [u32]) {
        use std::arch::x86_64::*;
        for (row, dst) in x.chunks_exact(k).zip(out.chunks_exact_mut(kp / 2)) {
            let full = k / 32;
            for i in 0..full {
                // SAFETY: values 32i..32i+32 of a row of k, pairs 16i..16i+16
                // of a row of kp/2 ≥ k/2.
                unsafe {
                    let lo = _mm512_loadu_ps(row.as_ptr().add(32 * i));
                    let hi = _mm512_loadu_ps(row.as_ptr().add(32 * i + 16));
                    let packed: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                    _mm512_storeu_si512(dst.as_mut_ptr().add(16 * i).cast(), packed);
                }
            }
            let done = full * 32;
            for i in done / 2..k / 2 {
                dst[i] = bf16_bits(row[2 * i]) | bf16_bits(row[2 * i + 1]) << 16;
            }
            if k % 2 == 1 {
                dst[k / 2] = bf16_bits(row[k - 1]);
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    if isa.bf16 {
        // SAFETY: AVX-512 BF16 was detected.
        unsafe { native(x, k, kp, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if isa.avx512 {
        // SAFETY: AVX-512 was detected.
        unsafe { wide(x, k, kp, out) };
        return;
    }
    let _ = isa;
    body(x, k, kp, out);
}

/// Quantizes each row to u8 quads with its own scale and zero point.
fn prepare_int8(x: &[f32], t: usize, k: usize, kp: usize, prep: &mut Prepared, isa: Isa) {
    prep.quads.clear();
    prep.quads.resize(t * kp / 4, 0);
    prep.scale.clear();
    prep.scale.resize(t, 0.0);
    prep.zero.clear();
    prep.zero.resize(t, 0);
    #[inline(always)]
    fn row(x: &[f32], dst: &mut [u32], scale: &mut f32, zero: &mut i32) {
        let (lo, hi) = x
            .iter()
            .fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let s = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
        let z = super::math::round(-lo / s).clamp(0.0, 255.0);
        let inv = 1.0 / s;
        *scale = s;
        *zero = z as i32;
        // in 0..=255 after the clamp, so the cast is exact
        let q = |v: f32| super::math::round(v * inv + z).clamp(0.0, 255.0) as u32;
        let mut quads = x.chunks_exact(4);
        for (d, c) in dst.iter_mut().zip(&mut quads) {
            *d = q(c[0]) | q(c[1]) << 8 | q(c[2]) << 16 | q(c[3]) << 24;
        }
        let rest = quads.remainder();
        if !rest.is_empty() {
            let mut d = 0u32;
            for (i, &v) in rest.iter().enumerate() {
                d |= q(v) << (8 * i);
            }
            // the padded steps hold the zero point: (q − z)·0 for any weight,
            // and their weights are 0 anyway
            for i in rest.len()..4 {
                d |= (z as u32) << (8 * i);
            }
            dst[x.len() / 4] = d;
        }
    }
    #[inline(always)]
    fn body(
        x: &[f32],
        k: usize,
        kp: usize,
        quads: &mut [u32],
        scale: &mut [f32],
        zero: &mut [i32],
    ) {
        for (((xs, dst), s), z) in x
            .chunks_exact(k)
            .zip(quads.chunks_exact_mut(kp / 4))
            .zip(scale.iter_mut())
            .zip(zero.iter_mut())
        {
            row(xs, dst, s, z);
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
    fn wide(
        x: &[f32],
        k: usize,
        kp: usize,
        quads: &mut [u32],
        scale: &mut [f32],
        zero: &mut [i32],
    ) {
        body(x, k, kp, quads, scale, zero)
    }
    let run = |x: &[f32], quads: &mut [u32], scale: &mut [f32], zero: &mut [i32]| {
        #[cfg(target_arch = "x86_64")]
        if isa.avx512 {
            // SAFETY: AVX-512 was detected.
            unsafe { wide(x, k, kp, quads, scale, zero) };
            return;
        }
        body(x, k, kp, quads, scale, zero);
    };
    let rows_per = 32;
    if t * k < SERIAL_BELOW / 8 {
        run(x, &mut prep.quads, &mut prep.scale, &mut prep.zero);
    } else {
        x.par_chunks(rows_per * k)
            .zip(prep.quads.par_chunks_mut(rows_per * kp / 4))
            .zip(prep.scale.par_chunks_mut(rows_per))
            .zip(prep.zero.par_chunks_mut(rows_per))
            .for_each(|(((x, q), s), z)| run(x, q, s, z));
    }
}

/// Masks for the valid columns of a 32-column tile.
#[inline(always)]
fn masks(cols: usize) -> (u16, u16) {
    let lo = if cols >= 16 {
        u16::MAX
    } else {
        (1u16 << cols) - 1
    };
    let hi = if cols >= 32 {
        u16::MAX
    } else if cols > 16 {
        (1u16 << (cols - 16)) - 1
    } else {
        0
    };
    (lo, hi)
}

macro_rules! by_rows {
    ($mr:expr, $f:ident, $($arg:expr),*) => {
        match $mr {
            1 => $f::<1>($($arg),*),
            2 => $f::<2>($($arg),*),
            3 => $f::<3>($($arg),*),
            4 => $f::<4>($($arg),*),
            5 => $f::<5>($($arg),*),
            6 => $f::<6>($($arg),*),
            7 => $f::<7>($($arg),*),
            _ => $f::<8>($($arg),*),
        }
    };
}

/// f32 tile. `a`: rows of `lda` f32 from the tile's first row; `b`: the
/// panel (`k × 32`); `c`: the output at the tile's corner, rows `ldc` apart.
///
/// # Safety
/// `a` holds `mr` rows, `c` has room for `mr` rows × `cols` columns.
#[allow(clippy::too_many_arguments)]
unsafe fn f32_tile(
    isa: Isa,
    mr: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    k: usize,
    bias: &[f32],
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    debug_assert!(a.len() >= (mr - 1) * lda + k && b.len() >= k * NR);
    #[cfg(target_arch = "x86_64")]
    if isa.avx512 {
        // SAFETY: AVX-512 was detected; bounds as documented.
        unsafe {
            by_rows!(
                mr,
                f32_avx512,
                a.as_ptr(),
                lda,
                b.as_ptr(),
                k,
                bias.as_ptr(),
                c,
                ldc,
                cols
            )
        };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if isa.avx2 {
        // Three rows at a time: 12 accumulators, 3 broadcasts and one
        // panel load fill the 16 ymm registers.
        let mut r = 0;
        while r < mr {
            let rows = (mr - r).min(3);
            // SAFETY: AVX2 and FMA were detected; rows r..r + rows lie
            // inside the tile's a and c.
            unsafe {
                let (a, c) = (a.as_ptr().add(r * lda), c.add(r * ldc));
                match rows {
                    3 => f32_avx2::<3>(a, lda, b.as_ptr(), k, bias.as_ptr(), c, ldc, cols),
                    2 => f32_avx2::<2>(a, lda, b.as_ptr(), k, bias.as_ptr(), c, ldc, cols),
                    _ => f32_avx2::<1>(a, lda, b.as_ptr(), k, bias.as_ptr(), c, ldc, cols),
                }
            }
            r += rows;
        }
        return;
    }
    let _ = isa;
    for r in 0..mr {
        let mut acc = [0.0f32; NR];
        for step in 0..k {
            let av = a[r * lda + step];
            for (j, acc) in acc.iter_mut().enumerate() {
                *acc += av * b[step * NR + j];
            }
        }
        for j in 0..cols {
            // SAFETY: inside the tile's rows × cols.
            unsafe { *c.add(r * ldc + j) = acc[j] + bias[j] };
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
#[allow(clippy::too_many_arguments)]
unsafe fn f32_avx512<const R: usize>(
    a: *const f32,
    lda: usize,
    b: *const f32,
    k: usize,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    use std::arch::x86_64::*;
    let mut lo = [_mm512_setzero_ps(); R];
    let mut hi = [_mm512_setzero_ps(); R];
    // SAFETY: the caller's bounds: a holds R rows of k, b holds k × 32.
    unsafe {
        for step in 0..k {
            let b0 = _mm512_loadu_ps(b.add(step * NR));
            let b1 = _mm512_loadu_ps(b.add(step * NR + 16));
            for r in 0..R {
                let av = _mm512_set1_ps(*a.add(r * lda + step));
                lo[r] = _mm512_fmadd_ps(av, b0, lo[r]);
                hi[r] = _mm512_fmadd_ps(av, b1, hi[r]);
            }
        }
        store_with_bias(&lo, &hi, bias, c, ldc, cols);
    }
}

/// The f32 tile on AVX2 + FMA: `R` ≤ 3 rows × the panel's 32 columns as
/// four 8-wide accumulators per row.
///
/// # Safety
/// AVX2 and FMA are available; `a` holds `R` rows of `k` (rows `lda`
/// apart), `b` holds `k × 32`, `bias` 32 values, `c` room for `R` rows ×
/// `cols` columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn f32_avx2<const R: usize>(
    a: *const f32,
    lda: usize,
    b: *const f32,
    k: usize,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 4]; R];
    // SAFETY: the caller's bounds.
    unsafe {
        for step in 0..k {
            let mut av = [_mm256_setzero_ps(); R];
            for (r, av) in av.iter_mut().enumerate() {
                *av = _mm256_set1_ps(*a.add(r * lda + step));
            }
            let panel = b.add(step * NR);
            #[allow(clippy::needless_range_loop)] // q indexes the panel too
            for q in 0..4 {
                let bq = _mm256_loadu_ps(panel.add(q * 8));
                for r in 0..R {
                    acc[r][q] = _mm256_fmadd_ps(av[r], bq, acc[r][q]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let mut row = [0.0f32; NR];
            for (q, acc) in acc.iter().enumerate() {
                let v = _mm256_add_ps(*acc, _mm256_loadu_ps(bias.add(q * 8)));
                _mm256_storeu_ps(row.as_mut_ptr().add(q * 8), v);
            }
            std::ptr::copy_nonoverlapping(row.as_ptr(), c.add(r * ldc), cols);
        }
    }
}

/// Writes an f32 tile's accumulators plus the bias: `R` rows × the valid
/// `cols` of 32, rows `ldc` apart.
///
/// # Safety
/// AVX-512 is available; `bias` holds 32 values, `c` room for `R` rows ×
/// `cols` columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
#[inline]
unsafe fn store_with_bias<const R: usize>(
    lo: &[std::arch::x86_64::__m512; R],
    hi: &[std::arch::x86_64::__m512; R],
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    use std::arch::x86_64::*;
    let (m0, m1) = masks(cols);
    // SAFETY: the caller's bounds.
    unsafe {
        let bias0 = _mm512_loadu_ps(bias);
        let bias1 = _mm512_loadu_ps(bias.add(16));
        for r in 0..R {
            _mm512_mask_storeu_ps(c.add(r * ldc), m0, _mm512_add_ps(lo[r], bias0));
            _mm512_mask_storeu_ps(c.add(r * ldc + 16), m1, _mm512_add_ps(hi[r], bias1));
        }
    }
}

/// bf16 tile: `a` rows of `lda` bf16 pairs, `b` the panel (`pairs × 32`).
///
/// # Safety
/// As [`f32_tile`].
#[allow(clippy::too_many_arguments)]
unsafe fn bf16_tile(
    isa: Isa,
    mr: usize,
    a: &[u32],
    lda: usize,
    b: &[u32],
    pairs: usize,
    bias: &[f32],
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    debug_assert!(a.len() >= (mr - 1) * lda + pairs && b.len() >= pairs * NR);
    #[cfg(target_arch = "x86_64")]
    if isa.bf16 {
        // SAFETY: AVX-512 BF16 was detected; bounds as documented.
        unsafe {
            by_rows!(
                mr,
                bf16_avx512,
                a.as_ptr(),
                lda,
                b.as_ptr(),
                pairs,
                bias.as_ptr(),
                c,
                ldc,
                cols
            )
        };
        return;
    }
    let _ = isa;
    for r in 0..mr {
        let mut acc = [0.0f32; NR];
        for step in 0..pairs {
            let av = a[r * lda + step];
            let (a0, a1) = (bf16_value(av & 0xffff), bf16_value(av >> 16));
            for (j, acc) in acc.iter_mut().enumerate() {
                let bv = b[step * NR + j];
                *acc += a0 * bf16_value(bv & 0xffff) + a1 * bf16_value(bv >> 16);
            }
        }
        for j in 0..cols {
            // SAFETY: inside the tile's rows × cols.
            unsafe { *c.add(r * ldc + j) = acc[j] + bias[j] };
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn bf16_avx512<const R: usize>(
    a: *const u32,
    lda: usize,
    b: *const u32,
    pairs: usize,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    use std::arch::x86_64::*;
    let mut lo = [_mm512_setzero_ps(); R];
    let mut hi = [_mm512_setzero_ps(); R];
    // SAFETY: the caller's bounds; `__m512bh` and `__m512i` are both 64
    // bytes of plain bits.
    unsafe {
        for step in 0..pairs {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(step * NR).cast()));
            let b1: __m512bh =
                std::mem::transmute(_mm512_loadu_si512(b.add(step * NR + 16).cast()));
            for r in 0..R {
                let av: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(*a.add(r * lda + step) as i32));
                lo[r] = _mm512_dpbf16_ps(lo[r], av, b0);
                hi[r] = _mm512_dpbf16_ps(hi[r], av, b1);
            }
        }
        store_with_bias(&lo, &hi, bias, c, ldc, cols);
    }
}

/// int8 tile: `a` rows of `lda` u8 quads, `b` the panel (`quads × 32 × 4`).
///
/// # Safety
/// As [`f32_tile`].
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
unsafe fn int8_tile(
    isa: Isa,
    mr: usize,
    a: &[u32],
    lda: usize,
    b: &[i8],
    quads: usize,
    rows: Rows<'_>,
    cols_q: Cols<'_>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    debug_assert!(a.len() >= (mr - 1) * lda + quads && b.len() >= quads * NR * 4);
    #[cfg(target_arch = "x86_64")]
    if isa.vnni {
        // SAFETY: AVX-512 VNNI was detected; bounds as documented.
        unsafe {
            by_rows!(
                mr,
                int8_avx512,
                a.as_ptr(),
                lda,
                b.as_ptr(),
                quads,
                rows.scale.as_ptr(),
                rows.zero.as_ptr(),
                cols_q.scale.as_ptr(),
                cols_q.sum.as_ptr(),
                cols_q.bias.as_ptr(),
                c,
                ldc,
                cols
            )
        };
        return;
    }
    let _ = isa;
    for r in 0..mr {
        let mut acc = [0i32; NR];
        for step in 0..quads {
            let av = a[r * lda + step].to_le_bytes();
            for (j, acc) in acc.iter_mut().enumerate() {
                let w = &b[(step * NR + j) * 4..(step * NR + j) * 4 + 4];
                *acc += (0..4)
                    .map(|i| i32::from(av[i]) * i32::from(w[i]))
                    .sum::<i32>();
            }
        }
        for j in 0..cols {
            let v = (acc[j] - rows.zero[r] * cols_q.sum[j]) as f32;
            // SAFETY: inside the tile's rows × cols.
            unsafe { *c.add(r * ldc + j) = v * (rows.scale[r] * cols_q.scale[j]) + cols_q.bias[j] };
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
#[allow(clippy::too_many_arguments)]
unsafe fn int8_avx512<const R: usize>(
    a: *const u32,
    lda: usize,
    b: *const i8,
    quads: usize,
    row_scale: *const f32,
    row_zero: *const i32,
    col_scale: *const f32,
    col_sum: *const i32,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    use std::arch::x86_64::*;
    let mut lo = [_mm512_setzero_si512(); R];
    let mut hi = [_mm512_setzero_si512(); R];
    // SAFETY: the caller's bounds: a holds R rows of `quads` u32, b holds
    // quads × 32 × 4 bytes, the per-row and per-column arrays R and 32.
    unsafe {
        for step in 0..quads {
            let b0 = _mm512_loadu_si512(b.add(step * NR * 4).cast());
            let b1 = _mm512_loadu_si512(b.add(step * NR * 4 + 64).cast());
            for r in 0..R {
                let av = _mm512_set1_epi32(*a.add(r * lda + step) as i32);
                lo[r] = _mm512_dpbusd_epi32(lo[r], av, b0);
                hi[r] = _mm512_dpbusd_epi32(hi[r], av, b1);
            }
        }
        let (m0, m1) = masks(cols);
        let s0 = _mm512_loadu_ps(col_scale);
        let s1 = _mm512_loadu_ps(col_scale.add(16));
        let sum0 = _mm512_loadu_si512(col_sum.cast());
        let sum1 = _mm512_loadu_si512(col_sum.add(16).cast());
        let bias0 = _mm512_loadu_ps(bias);
        let bias1 = _mm512_loadu_ps(bias.add(16));
        for r in 0..R {
            let z = _mm512_set1_epi32(*row_zero.add(r));
            let s = _mm512_set1_ps(*row_scale.add(r));
            let v0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(lo[r], _mm512_mullo_epi32(z, sum0)));
            let v1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(hi[r], _mm512_mullo_epi32(z, sum1)));
            let y0 = _mm512_fmadd_ps(v0, _mm512_mul_ps(s, s0), bias0);
            let y1 = _mm512_fmadd_ps(v1, _mm512_mul_ps(s, s1), bias1);
            _mm512_mask_storeu_ps(c.add(r * ldc), m0, y0);
            _mm512_mask_storeu_ps(c.add(r * ldc + 16), m1, y1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], w: &[f32], b: &[f32], t: usize, n: usize, k: usize) -> Vec<f32> {
        let mut y = vec![0.0; t * n];
        for r in 0..t {
            for c in 0..n {
                let dot: f64 = (0..k)
                    .map(|i| f64::from(x[r * k + i]) * f64::from(w[c * k + i]))
                    .sum();
                y[r * n + c] = dot as f32 + b[c];
            }
        }
        y
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        // a small LCG: deterministic, no dependency
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    /// Largest |error| relative to the largest |reference| value.
    fn worst(y: &[f32], want: &[f32]) -> f32 {
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        y.iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
            / scale
    }

    fn check(format: Format, isa: Isa, tol: f32) {
        // odd sizes: partial panels, partial tiles, k not a multiple of 4,
        // and enough rows for several tasks
        for &(t, n, k) in &[
            (1, 32, 16),
            (5, 45, 37),
            (19, 96, 64),
            (130, 70, 130),
            (9, 384, 384),
        ] {
            let (x, w, b) = (data(t * k, 1), data(n * k, 2), data(n, 3));
            let g = Gemm::new(&w, &b, n, k, format, isa);
            let mut y = vec![f32::NAN; t * n];
            g.forward(&x, t, &mut y, &mut Prepared::default());
            let err = worst(&y, &reference(&x, &w, &b, t, n, k));
            assert!(
                err < tol,
                "{format:?} {isa:?} t={t} n={n} k={k}: relative error {err}"
            );
        }
    }

    #[test]
    fn every_format_matches_a_plain_matrix_product_on_every_kernel() {
        let here = Isa::detect();
        let avx2 = Isa {
            avx2: here.avx2,
            ..Isa::portable()
        };
        for isa in [Isa::portable(), avx2, here] {
            check(Format::F32, isa, 1e-5);
            check(Format::Bf16, isa, 2e-2);
            check(Format::Int8, isa, 3e-2);
        }
    }

    #[test]
    fn the_simd_kernels_compute_what_the_portable_ones_do() {
        let here = Isa::detect();
        let (t, n, k) = (13, 64, 100);
        let (x, w, b) = (data(t * k, 4), data(n * k, 5), data(n, 6));
        for format in [Format::F32, Format::Bf16, Format::Int8] {
            let run = |isa| {
                let mut y = vec![0.0; t * n];
                Gemm::new(&w, &b, n, k, format, isa).forward(
                    &x,
                    t,
                    &mut y,
                    &mut Prepared::default(),
                );
                y
            };
            let (simd, portable) = (run(here), run(Isa::portable()));
            // same products, summed in another order
            assert!(worst(&simd, &portable) < 1e-5, "{format:?}");
            let avx2 = run(Isa {
                avx2: here.avx2,
                ..Isa::portable()
            });
            assert!(worst(&avx2, &portable) < 1e-5, "{format:?} on AVX2");
        }
    }

    #[test]
    fn activations_convert_to_the_same_bf16_pairs_on_every_kernel() {
        for (t, k) in [(3, 384), (2, 70), (1, 33)] {
            let x = data(t * k, 9);
            let kp = k.next_multiple_of(2);
            let (mut here, mut portable) = (Vec::new(), Vec::new());
            prepare_bf16(&x, t, k, kp, &mut here, Isa::detect());
            prepare_bf16(&x, t, k, kp, &mut portable, Isa::portable());
            assert_eq!(here, portable, "t={t} k={k}");
        }
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(bf16_value(bf16_bits(1.0)), 1.0);
        // 1 + 2^-8 is halfway between two bf16 values: ties go to even (1.0)
        assert_eq!(bf16_value(bf16_bits(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(bf16_value(bf16_bits(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        assert_eq!(bf16_value(bf16_bits(-2.5)), -2.5);
    }
}
