//! One dense layer on the engine's f32 GEMM, for the small heads that run
//! on the encoder's token states (a few hundred thousand multiply-adds per
//! token: a scalar loop would cost more than the encoder pass).

use crate::kernels::Isa;
use crate::kernels::gemm::{Format, Gemm, Prepared};

/// `y = x · Wᵀ + b`, optionally followed by ReLU, with `W` packed once.
#[derive(Debug)]
pub struct Dense {
    gemm: Gemm,
    inputs: usize,
    outputs: usize,
}

impl Dense {
    /// Packs `weight` (`outputs × inputs`, row-major) and `bias` (`outputs`)
    /// for this CPU. `None` when the sizes disagree.
    pub fn new(weight: &[f32], bias: &[f32], outputs: usize, inputs: usize) -> Option<Self> {
        if outputs == 0 || inputs == 0 || weight.len() != outputs * inputs || bias.len() != outputs
        {
            return None;
        }
        let gemm = Gemm::new(weight, bias, outputs, inputs, Format::F32, Isa::detect());
        Some(Self {
            gemm,
            inputs,
            outputs,
        })
    }

    /// Width of a row of input.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Width of a row of output.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// `rows × outputs` for `x` of `rows × inputs`; `relu` clamps at zero.
    /// An `x` whose length is not a multiple of `inputs` gets an empty
    /// result.
    pub fn forward(&self, x: &[f32], relu: bool) -> Vec<f32> {
        if !x.len().is_multiple_of(self.inputs) {
            return Vec::new();
        }
        let rows = x.len() / self.inputs;
        let mut y = vec![0.0f32; rows * self.outputs];
        self.gemm.forward(x, rows, &mut y, &mut Prepared::default());
        if relu {
            y.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::Dense;

    #[test]
    fn matches_a_plain_matrix_product_on_odd_sizes() {
        let (n, k, rows) = (37, 45, 11);
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 / 10.0 - 1.0).collect();
        let x: Vec<f32> = (0..rows * k)
            .map(|i| ((i * 104_729) % 89) as f32 / 89.0 - 0.5)
            .collect();
        let dense = Dense::new(&w, &b, n, k).expect("sizes agree");
        for relu in [false, true] {
            let y = dense.forward(&x, relu);
            assert_eq!(y.len(), rows * n);
            for r in 0..rows {
                for c in 0..n {
                    let mut want = b[c];
                    for i in 0..k {
                        want += x[r * k + i] * w[c * k + i];
                    }
                    if relu {
                        want = want.max(0.0);
                    }
                    let got = y[r * n + c];
                    assert!(
                        (got - want).abs() < 1e-4,
                        "row {r} col {c}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn misshapen_layers_and_inputs_are_refused() {
        assert!(Dense::new(&[0.0; 6], &[0.0; 2], 2, 4).is_none());
        let dense = Dense::new(&[0.0; 8], &[0.0; 2], 2, 4).expect("sizes agree");
        assert!(dense.forward(&[0.0; 5], false).is_empty());
        assert!(dense.forward(&[], false).is_empty());
    }
}
