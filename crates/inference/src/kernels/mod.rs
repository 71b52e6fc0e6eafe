//! The SIMD kernels: GEMM tiles for packed f32, bf16 and int8 weights, and the
//! element-wise math (exp, GELU, layer norm, softmax) the forward pass needs.
//!
//! Every kernel has an AVX-512 body, chosen at run time from what the CPU
//! reports (the f32 GEMM and the element-wise math also an AVX2 + FMA one,
//! for CPUs without AVX-512), and a portable body that computes the same thing (more slowly) on
//! any other CPU. This module is the only place in the workspace with unsafe
//! code: raw-pointer loads and stores inside bounds the callers check, and
//! calls into functions compiled for CPU features that were detected first.
#![allow(unsafe_code)]

pub(crate) mod gemm;
pub(crate) mod math;

use std::sync::OnceLock;

/// What the CPU can run, detected once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Isa {
    /// AVX-512 F, BW, DQ and VL: the f32 kernels and the element-wise math.
    pub avx512: bool,
    /// AVX2 and FMA (every x86-64 CPU since 2013-2015, AMD's Zen 1-3
    /// among them, which have no AVX-512): the f32 GEMM.
    pub avx2: bool,
    /// AVX-512 BF16: `vdpbf16ps`, the bf16 GEMM.
    pub bf16: bool,
    /// AVX-512 VNNI: `vpdpbusd`, the int8 GEMM.
    pub vnni: bool,
}

impl Isa {
    /// The running CPU's features; `ROUTEMESH_NO_AVX512=1` pretends there
    /// are none (to run the portable kernels on this CPU, e.g. in tests),
    /// `ROUTEMESH_NO_AVX512=avx2` keeps AVX2 (to run what a CPU without
    /// AVX-512 runs).
    pub fn detect() -> Self {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            match std::env::var_os("ROUTEMESH_NO_AVX512") {
                Some(v) if v == "1" => return Self::portable(),
                Some(v) if v == "avx2" => {
                    return Self {
                        avx2: Self::probe().avx2,
                        ..Self::portable()
                    };
                }
                _ => {}
            }
            Self::probe()
        })
    }

    /// No SIMD extensions: every kernel's portable body.
    pub const fn portable() -> Self {
        Self {
            avx512: false,
            avx2: false,
            bf16: false,
            vnni: false,
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn probe() -> Self {
        let avx512 = std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("fma");
        Self {
            avx512,
            avx2: std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma"),
            bf16: avx512 && std::arch::is_x86_feature_detected!("avx512bf16"),
            vnni: avx512 && std::arch::is_x86_feature_detected!("avx512vnni"),
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn probe() -> Self {
        Self::portable()
    }
}

/// A pointer that may cross to another rayon task: the tasks of one GEMM or
/// one attention pass write disjoint parts of one output buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendPtr<T>(pub(crate) *mut T);

impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the `SendPtr`, not the
    /// bare pointer field).
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

// SAFETY: a `SendPtr` is only handed to tasks that write disjoint elements
// of a buffer the spawning call holds `&mut` to until every task has ended
// (rayon's scoped parallel iterators join before returning).
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above; no task reads what another one writes.
unsafe impl<T> Sync for SendPtr<T> {}
