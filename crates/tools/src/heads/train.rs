//! Fitting a head with candle-nn: AdamW on class-weighted cross-entropy,
//! seeded initialisation and shuffling, early stopping on validation loss.

use candle_core::{D, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use super::data::SplitMix64;
use routemesh_classifier_worker::heads::{Architecture, Layer};

/// Rows of embeddings and their label indices.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rows<'a> {
    pub x: &'a [Vec<f32>],
    pub y: &'a [usize],
}

/// Hyper-parameters of one fit.
#[derive(Debug, Clone)]
pub(crate) struct Fit {
    /// Hidden layer widths; empty for logistic regression.
    pub hidden: Vec<usize>,
    pub max_epochs: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    /// Epochs without a lower validation loss before stopping.
    pub patience: usize,
    pub seed: u64,
}

/// The best weights found.
#[derive(Debug, Clone)]
pub(crate) struct Trained {
    pub layers: Vec<Layer>,
    pub epochs_run: usize,
    /// 1-based epoch of `layers`.
    pub best_epoch: usize,
    pub best_val_loss: f64,
}

/// Trains on `train`, keeps the weights with the lowest class-weighted
/// validation loss, stops after `patience` epochs without improvement.
/// `class_weights` has one entry per class.
pub(crate) fn fit(
    fit: &Fit,
    train: Rows<'_>,
    val: Rows<'_>,
    class_weights: &[f32],
) -> candle_core::Result<Trained> {
    let dev = Device::Cpu;
    let classes = class_weights.len();
    let dim = train.x.first().map_or(0, Vec::len);
    if dim == 0 || val.x.is_empty() || classes < 2 {
        candle_core::bail!("need training rows, validation rows and at least two classes");
    }
    let train_t = Tensors::new(train, class_weights, &dev)?;
    let val_t = Tensors::new(val, class_weights, &dev)?;

    let mut widths = vec![dim];
    widths.extend(&fit.hidden);
    widths.push(classes);
    let mut init = SplitMix64::new(fit.seed);
    let mut vars = Vec::new();
    for w in widths.windows(2) {
        let (inputs, outputs) = (w[0], w[1]);
        // PyTorch's nn.Linear default: U(-1/sqrt(in), 1/sqrt(in)).
        let bound = 1.0 / (inputs as f32).sqrt();
        let weight: Vec<f32> = (0..inputs * outputs).map(|_| init.uniform(bound)).collect();
        let bias: Vec<f32> = (0..outputs).map(|_| init.uniform(bound)).collect();
        vars.push((
            Var::from_vec(weight, (outputs, inputs), &dev)?,
            Var::from_vec(bias, outputs, &dev)?,
        ));
    }
    let params = ParamsAdamW {
        lr: fit.learning_rate,
        weight_decay: fit.weight_decay,
        ..ParamsAdamW::default()
    };
    let all: Vec<Var> = vars
        .iter()
        .flat_map(|(w, b)| [w.clone(), b.clone()])
        .collect();
    let mut opt = AdamW::new(all, params)?;

    let mut order: Vec<u32> = (0..train.x.len() as u32).collect();
    let mut shuffler = SplitMix64::new(fit.seed ^ 0x5EED_5EED_5EED_5EED);
    let label = Architecture::from_hidden(fit.hidden.clone()).to_string();
    let bar = super::progress::bar(fit.max_epochs as u64, &label);
    let mut best = Trained {
        layers: snapshot(&vars)?,
        epochs_run: 0,
        best_epoch: 0,
        best_val_loss: f64::INFINITY,
    };
    let mut stale = 0;
    for epoch in 1..=fit.max_epochs {
        shuffler.shuffle(&mut order);
        for chunk in order.chunks(fit.batch_size.max(1)) {
            let idx = Tensor::from_slice(chunk, chunk.len(), &dev)?;
            let loss = train_t.loss(&vars, Some(&idx))?;
            opt.backward_step(&loss)?;
        }
        let val_loss = f64::from(val_t.loss(&vars, None)?.to_scalar::<f32>()?);
        best.epochs_run = epoch;
        if val_loss < best.best_val_loss {
            best.best_val_loss = val_loss;
            best.best_epoch = epoch;
            best.layers = snapshot(&vars)?;
            stale = 0;
        } else {
            stale += 1;
        }
        bar.inc(1);
        bar.set_message(format!(
            "val loss {val_loss:.4} (best {:.4})",
            best.best_val_loss
        ));
        if stale >= fit.patience {
            break;
        }
    }
    bar.finish_and_clear();
    if !best.best_val_loss.is_finite() {
        candle_core::bail!("the validation loss never became finite; lower the learning rate");
    }
    Ok(best)
}

/// A split as tensors: inputs, targets and per-row loss weights.
struct Tensors {
    x: Tensor,
    y: Tensor,
    w: Tensor,
    row_weights: Vec<f32>,
}

impl Tensors {
    fn new(rows: Rows<'_>, class_weights: &[f32], dev: &Device) -> candle_core::Result<Self> {
        let dim = rows.x.first().map_or(0, Vec::len);
        let flat: Vec<f32> = rows.x.iter().flatten().copied().collect();
        if flat.len() != dim * rows.x.len() || rows.y.len() != rows.x.len() {
            candle_core::bail!("ragged embeddings or labels");
        }
        let targets: Vec<u32> = rows.y.iter().map(|&c| c as u32).collect();
        let row_weights: Vec<f32> = rows
            .y
            .iter()
            .map(|&c| class_weights.get(c).copied().unwrap_or(1.0))
            .collect();
        Ok(Self {
            x: Tensor::from_vec(flat, (rows.x.len(), dim), dev)?,
            y: Tensor::from_vec(targets, rows.y.len(), dev)?,
            w: Tensor::from_slice(&row_weights, row_weights.len(), dev)?,
            row_weights,
        })
    }

    /// Class-weighted mean cross-entropy over the rows in `idx` (all rows
    /// when `None`): Σ wᵢ·(−log pᵢ[yᵢ]) / Σ wᵢ.
    fn loss(&self, vars: &[(Var, Var)], idx: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let (x, y, w, total) = match idx {
            Some(idx) => {
                let total: f64 = idx
                    .to_vec1::<u32>()?
                    .iter()
                    .map(|&i| f64::from(self.row_weights[i as usize]))
                    .sum();
                (
                    self.x.index_select(idx, 0)?,
                    self.y.index_select(idx, 0)?,
                    self.w.index_select(idx, 0)?,
                    total,
                )
            }
            None => {
                let total = self.row_weights.iter().map(|&v| f64::from(v)).sum();
                (self.x.clone(), self.y.clone(), self.w.clone(), total)
            }
        };
        let logits = forward(vars, &x)?;
        let log_p = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let picked = log_p.gather(&y.unsqueeze(1)?, 1)?.squeeze(1)?;
        (picked * w)?
            .sum_all()?
            .affine(-1.0 / total.max(f64::MIN_POSITIVE), 0.0)
    }
}

fn forward(vars: &[(Var, Var)], x: &Tensor) -> candle_core::Result<Tensor> {
    let mut h = x.clone();
    for (i, (w, b)) in vars.iter().enumerate() {
        h = h
            .matmul(&w.as_tensor().t()?)?
            .broadcast_add(b.as_tensor())?;
        if i + 1 < vars.len() {
            h = h.relu()?;
        }
    }
    Ok(h)
}

fn snapshot(vars: &[(Var, Var)]) -> candle_core::Result<Vec<Layer>> {
    vars.iter()
        .map(|(w, b)| {
            let (outputs, inputs) = w.as_tensor().dims2()?;
            Ok(Layer {
                inputs,
                outputs,
                weight: w.as_tensor().flatten_all()?.to_vec1::<f32>()?,
                bias: b.as_tensor().to_vec1::<f32>()?,
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Two blobs on the plane, one per class.
    fn blobs(n: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut rng = SplitMix64::new(seed);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let c = i % 2;
            let centre = if c == 0 { -1.0 } else { 1.0 };
            x.push(vec![
                centre + rng.uniform(0.8),
                rng.uniform(1.0),
                rng.uniform(1.0),
            ]);
            y.push(c);
        }
        (x, y)
    }

    fn fit_blobs(hidden: Vec<usize>) -> Trained {
        let (x, y) = blobs(400, 1);
        let (vx, vy) = blobs(100, 2);
        let cfg = Fit {
            hidden,
            max_epochs: 60,
            learning_rate: 0.05,
            weight_decay: 0.0,
            batch_size: 32,
            patience: 5,
            seed: 3,
        };
        fit(
            &cfg,
            Rows { x: &x, y: &y },
            Rows { x: &vx, y: &vy },
            &[1.0, 1.0],
        )
        .unwrap()
    }

    #[test]
    fn a_linear_fit_separates_blobs_and_is_reproducible() {
        let a = fit_blobs(vec![]);
        assert!(a.best_val_loss < 0.2, "{}", a.best_val_loss);
        assert_eq!(a.layers.len(), 1);
        // The decisive weight points from class 0 to class 1.
        let w = &a.layers[0].weight;
        assert!(w[3] - w[0] > 1.0, "{w:?}");
        let b = fit_blobs(vec![]);
        assert_eq!(a.layers, b.layers);
        assert_eq!(a.best_epoch, b.best_epoch);
    }

    #[test]
    fn an_mlp_fit_has_the_hidden_layer() {
        let t = fit_blobs(vec![8]);
        assert_eq!(t.layers.len(), 2);
        assert_eq!((t.layers[0].outputs, t.layers[1].inputs), (8, 8));
        assert!(t.best_val_loss < 0.2, "{}", t.best_val_loss);
    }
}
