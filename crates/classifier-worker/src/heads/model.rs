//! A trained head: loading and saving its folder, and inference in plain Rust.
//!
//! `head.safetensors` holds f32 tensors `layers.{i}.weight` `[out, in]` and
//! `layers.{i}.bias` `[out]`; ReLU runs between layers and the last layer
//! gives logits. Inference is a few thousand multiply-adds per prompt, so it
//! needs no candle (which is used only to read and write the file).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::error::HeadError;
use super::info::{ArchitectureKind, HeadInfo, WindowPooling};

/// File names inside a head folder.
pub const WEIGHTS_FILE: &str = "head.safetensors";
pub const INFO_FILE: &str = "head.json";

/// One dense layer: `out = weight · in + bias`.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub inputs: usize,
    pub outputs: usize,
    /// Row-major `[outputs][inputs]`.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Layer {
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        self.weight
            .chunks_exact(self.inputs)
            .zip(&self.bias)
            .map(|(row, b)| b + dot(row, x))
            .collect()
    }
}

/// A classifier over pooled embeddings.
#[derive(Debug, Clone)]
pub struct Head {
    info: HeadInfo,
    layers: Vec<Layer>,
}

impl Head {
    /// Builds a head from its description and layers, checking that they agree.
    pub fn new(info: HeadInfo, layers: Vec<Layer>) -> Result<Self, HeadError> {
        check(&info, &layers).map_err(|message| HeadError::Invalid {
            path: Path::new(&info.name).to_owned(),
            message,
        })?;
        Ok(Self { info, layers })
    }

    /// Reads `head.json` and `head.safetensors` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, HeadError> {
        let info_path = dir.join(INFO_FILE);
        let bytes = std::fs::read(&info_path).map_err(|source| HeadError::Io {
            path: info_path.clone(),
            source,
        })?;
        let info: HeadInfo = serde_json::from_slice(&bytes).map_err(|source| HeadError::Json {
            path: info_path,
            source,
        })?;
        let weights_path = dir.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&weights_path).map_err(|source| HeadError::Io {
            path: weights_path.clone(),
            source,
        })?;
        let layers = read_layers(&bytes).map_err(|message| HeadError::Safetensors {
            path: weights_path.clone(),
            message,
        })?;
        check(&info, &layers).map_err(|message| HeadError::Invalid {
            path: dir.to_owned(),
            message,
        })?;
        Ok(Self { info, layers })
    }

    /// Writes `head.json` and `head.safetensors` into `dir` (created if missing).
    pub fn save(&self, dir: &Path) -> Result<(), HeadError> {
        std::fs::create_dir_all(dir).map_err(|source| HeadError::Write {
            path: dir.to_owned(),
            source,
        })?;
        let weights_path = dir.join(WEIGHTS_FILE);
        let mut tensors = HashMap::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let as_tensor = |v: &[f32], shape: &[usize]| {
                Tensor::from_slice(v, shape, &Device::Cpu).map_err(|e| HeadError::Safetensors {
                    path: weights_path.clone(),
                    message: e.to_string(),
                })
            };
            let weight = as_tensor(&layer.weight, &[layer.outputs, layer.inputs])?;
            tensors.insert(format!("layers.{i}.weight"), weight);
            tensors.insert(
                format!("layers.{i}.bias"),
                as_tensor(&layer.bias, &[layer.outputs])?,
            );
        }
        candle_core::safetensors::save(&tensors, &weights_path).map_err(|e| {
            HeadError::Safetensors {
                path: weights_path.clone(),
                message: e.to_string(),
            }
        })?;
        let info_path = dir.join(INFO_FILE);
        let mut json = serde_json::to_vec_pretty(&self.info).map_err(|source| HeadError::Json {
            path: info_path.clone(),
            source,
        })?;
        json.push(b'\n');
        std::fs::write(&info_path, json).map_err(|source| HeadError::Write {
            path: info_path,
            source,
        })
    }

    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// Output labels, in the order of [`Head::predict`]'s probabilities.
    pub fn labels(&self) -> &[String] {
        &self.info.labels
    }

    /// Input width: the encoder's embedding width.
    pub fn dim(&self) -> usize {
        self.layers.first().map_or(0, |l| l.inputs)
    }

    /// The parsed `head.json` (encoder id and hash, threshold, training record).
    pub fn info(&self) -> &HeadInfo {
        &self.info
    }

    /// The layers, input first.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Softmax probabilities, one per label. An embedding whose width is not
    /// [`Head::dim`] gets an empty vector (check the width once, when the
    /// head is matched to its encoder).
    pub fn predict(&self, embedding: &[f32]) -> Vec<f32> {
        if embedding.len() != self.dim() {
            return Vec::new();
        }
        let mut x = embedding.to_vec();
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.apply(&x);
            if i < last {
                x.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
        softmax(&mut x);
        x
    }

    /// [`Head::predict`] for each embedding.
    pub fn predict_batch(&self, embeddings: &[Vec<f32>]) -> Vec<Vec<f32>> {
        embeddings.iter().map(|e| self.predict(e)).collect()
    }

    /// The label index to act on: for a binary head with a threshold,
    /// `positive_label` when its probability reaches the threshold; otherwise
    /// the most probable label. `None` for an empty `probs`.
    pub fn decide(&self, probs: &[f32]) -> Option<usize> {
        if probs.len() != self.info.labels.len() || probs.is_empty() {
            return None;
        }
        if let (Some(positive), Some(threshold)) = (self.positive_index(), self.info.threshold)
            && probs.len() == 2
        {
            let pos = probs[positive];
            return Some(if pos >= threshold {
                positive
            } else {
                1 - positive
            });
        }
        Some(argmax(probs))
    }

    /// Index of `positive_label`, if the head has one.
    pub fn positive_index(&self) -> Option<usize> {
        let label = self.info.positive_label.as_ref()?;
        self.info.labels.iter().position(|l| l == label)
    }
}

/// Index of the largest value (the first one on ties); 0 for an empty slice:
/// what [`Head::decide`] predicts without a threshold.
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent sums let the compiler vectorise.
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0f32; 8];
    for (x, y) in a8.zip(b8) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    if sum > 0.0 {
        x.iter_mut().for_each(|v| *v /= sum);
    }
}

fn read_layers(bytes: &[u8]) -> Result<Vec<Layer>, String> {
    let mut tensors =
        candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(|e| e.to_string())?;
    let mut layers = Vec::new();
    for i in 0.. {
        let (w_name, b_name) = (format!("layers.{i}.weight"), format!("layers.{i}.bias"));
        let Some(weight) = tensors.remove(&w_name) else {
            break;
        };
        let bias = tensors
            .remove(&b_name)
            .ok_or_else(|| format!("{w_name} has no {b_name}"))?;
        for (name, t) in [(&w_name, &weight), (&b_name, &bias)] {
            if t.dtype() != DType::F32 {
                return Err(format!("{name} is {:?}, expected f32", t.dtype()));
            }
        }
        let (outputs, inputs) = weight
            .dims2()
            .map_err(|_| format!("{w_name} has shape {:?}, expected [out, in]", weight.dims()))?;
        if bias.dims() != [outputs] {
            return Err(format!(
                "{b_name} has shape {:?}, expected [{outputs}]",
                bias.dims()
            ));
        }
        let weight = weight.flatten_all().and_then(|t| t.to_vec1::<f32>());
        let bias = bias.to_vec1::<f32>();
        layers.push(Layer {
            inputs,
            outputs,
            weight: weight.map_err(|e| e.to_string())?,
            bias: bias.map_err(|e| e.to_string())?,
        });
    }
    if let Some(extra) = tensors.keys().min() {
        return Err(format!("unexpected tensor {extra}"));
    }
    Ok(layers)
}

/// Checks that the layers chain, match the encoder width and the labels,
/// and agree with the declared architecture.
fn check(info: &HeadInfo, layers: &[Layer]) -> Result<(), String> {
    let (Some(first), Some(last)) = (layers.first(), layers.last()) else {
        return Err("no layers (expected layers.0.weight)".into());
    };
    match &info.tokens {
        None if first.inputs != info.encoder.dim => {
            return Err(format!(
                "layers.0 takes {} inputs but encoder.dim is {}",
                first.inputs, info.encoder.dim
            ));
        }
        Some(t) if t.shape != crate::heads::SHAPE_VERSION => {
            return Err(format!(
                "tokens.shape `{}` is unknown (this build has `{}`)",
                t.shape,
                crate::heads::SHAPE_VERSION
            ));
        }
        Some(t) if first.inputs != t.width(info.encoder.dim) => {
            return Err(format!(
                "layers.0 takes {} inputs but a token of encoder.dim {} with context {} is {}",
                first.inputs,
                info.encoder.dim,
                t.context,
                t.width(info.encoder.dim)
            ));
        }
        _ => {}
    }
    if last.outputs != info.labels.len() {
        return Err(format!(
            "the last layer has {} outputs for {} labels",
            last.outputs,
            info.labels.len()
        ));
    }
    if info.labels.len() < 2 {
        return Err("a head needs at least two labels".into());
    }
    let positive = info.positive_label.as_ref();
    if info.windows == WindowPooling::Max && !positive.is_some_and(|p| info.labels.contains(p)) {
        return Err("`windows: max` needs a `positive_label` among the labels".into());
    }
    for (i, l) in layers.iter().enumerate() {
        if l.inputs == 0 || l.weight.len() != l.inputs * l.outputs || l.bias.len() != l.outputs {
            return Err(format!("layers.{i} has inconsistent sizes"));
        }
        if l.weight.iter().chain(&l.bias).any(|v| !v.is_finite()) {
            return Err(format!("layers.{i} holds a non-finite value"));
        }
    }
    for (i, pair) in layers.windows(2).enumerate() {
        if pair[0].outputs != pair[1].inputs {
            return Err(format!(
                "layers.{i} gives {} outputs but layers.{} takes {}",
                pair[0].outputs,
                i + 1,
                pair[1].inputs
            ));
        }
    }
    let hidden: Vec<usize> = layers[..layers.len() - 1]
        .iter()
        .map(|l| l.outputs)
        .collect();
    let arch = &info.architecture;
    let kind_ok = match arch.kind {
        ArchitectureKind::Linear => hidden.is_empty(),
        ArchitectureKind::Mlp => !hidden.is_empty(),
    };
    if !kind_ok || arch.hidden != hidden {
        return Err(format!(
            "architecture says {arch} but the weights have hidden layers {hidden:?}"
        ));
    }
    match (&info.positive_label, info.threshold) {
        (Some(label), _) if !info.labels.contains(label) => {
            return Err(format!("positive_label `{label}` is not one of the labels"));
        }
        (Some(_), _) if info.labels.len() != 2 => {
            return Err("positive_label needs exactly two labels".into());
        }
        (None, Some(_)) => return Err("threshold without positive_label".into()),
        (_, Some(t)) if !(0.0..=1.0).contains(&t) => {
            return Err(format!("threshold {t} is outside 0..=1"));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::heads::info::{Architecture, EncoderInfo};

    fn info(labels: &[&str], hidden: Vec<usize>, dim: usize) -> HeadInfo {
        HeadInfo {
            format: 1,
            name: "tiny".into(),
            description: String::new(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            encoder: EncoderInfo {
                name: "test".into(),
                sha256: "00".into(),
                dim,
                max_tokens: None,
            },
            architecture: Architecture::from_hidden(hidden),
            positive_label: None,
            threshold: None,
            windows: Default::default(),
            tokens: None,
            span_metrics: None,
            data: Default::default(),
            metrics: Default::default(),
            training: Default::default(),
        }
    }

    /// A linear head on 3-wide inputs where label i answers input axis i.
    fn identity_head() -> Head {
        let layer = Layer {
            inputs: 3,
            outputs: 3,
            weight: vec![4.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 4.0],
            bias: vec![0.0, 0.1, -0.1],
        };
        Head::new(info(&["a", "b", "c"], vec![], 3), vec![layer]).unwrap()
    }

    fn check_probs(probs: &[f32], expected_argmax: usize) {
        let sum: f32 = probs.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "sum {sum}");
        assert_eq!(argmax(probs), expected_argmax, "{probs:?}");
    }

    #[test]
    fn a_linear_head_round_trips_through_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let head = identity_head();
        head.save(dir.path()).unwrap();
        let loaded = Head::load(dir.path()).unwrap();
        assert_eq!(loaded.name(), "tiny");
        assert_eq!(loaded.labels(), ["a", "b", "c"]);
        assert_eq!(loaded.dim(), 3);
        assert_eq!(loaded.layers(), head.layers());
        assert_eq!(loaded.info(), head.info());
        for axis in 0..3 {
            let mut x = vec![0.0; 3];
            x[axis] = 1.0;
            check_probs(&loaded.predict(&x), axis);
        }
        let batch = loaded.predict_batch(&[vec![0.0, 0.0, 1.0], vec![1.0, 0.0, 0.0]]);
        assert_eq!(batch.iter().map(|p| argmax(p)).collect::<Vec<_>>(), [2, 0]);
        assert!(loaded.predict(&[1.0, 0.0]).is_empty(), "wrong width");
    }

    #[test]
    fn an_mlp_applies_relu_between_layers() {
        // Hidden unit 0 = relu(x0 - x1), unit 1 = relu(x1 - x0); logits copy them.
        let hidden = Layer {
            inputs: 2,
            outputs: 2,
            weight: vec![1.0, -1.0, -1.0, 1.0],
            bias: vec![0.0, 0.0],
        };
        let out = Layer {
            inputs: 2,
            outputs: 2,
            weight: vec![3.0, 0.0, 0.0, 3.0],
            bias: vec![0.0, 0.0],
        };
        let mut info = info(&["left", "right"], vec![2], 2);
        info.positive_label = Some("right".into());
        info.threshold = Some(0.9);
        let dir = tempfile::tempdir().unwrap();
        Head::new(info, vec![hidden, out])
            .unwrap()
            .save(dir.path())
            .unwrap();
        let head = Head::load(dir.path()).unwrap();
        let p = head.predict(&[0.2, 0.8]);
        check_probs(&p, 1);
        // Without ReLU the logits would be (-1.8, 1.8); with it (0, 1.8).
        let expected = 1.0 / (1.0 + (-1.8f32).exp());
        assert!((p[1] - expected).abs() < 1e-6, "{p:?}");
        // p(right) ≈ 0.858 < 0.9: the threshold says `left`.
        assert_eq!(head.decide(&p), Some(0));
        assert_eq!(head.decide(&head.predict(&[0.0, 1.0])), Some(1));
    }

    #[test]
    fn loading_refuses_weights_that_disagree_with_head_json() {
        let dir = tempfile::tempdir().unwrap();
        identity_head().save(dir.path()).unwrap();
        let mut wrong = info(&["a", "b"], vec![], 3);
        wrong.name = "wrong".into();
        std::fs::write(
            dir.path().join(INFO_FILE),
            serde_json::to_vec(&wrong).unwrap(),
        )
        .unwrap();
        let err = Head::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("3 outputs for 2 labels"), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");

        let layer = identity_head().layers()[0].clone();
        let err = Head::new(info(&["a", "b", "c"], vec![], 4), vec![layer]).unwrap_err();
        assert!(err.to_string().contains("encoder.dim is 4"), "{err}");
    }

    #[test]
    fn the_committed_heads_load_and_predict() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../heads");
        for name in ["domain", "injection", "difficulty"] {
            let head = Head::load(&root.join(name)).unwrap();
            assert_eq!(head.name(), name);
            assert_eq!(head.dim(), 384, "{name}: MiniLM width");
            assert_eq!(head.info().encoder.dim, 384);
            let x = vec![1.0 / (384f32).sqrt(); 384];
            let p = head.predict(&x);
            assert_eq!(p.len(), head.labels().len());
            check_probs(&p, argmax(&p));
            let binary = head.info().positive_label.is_some();
            assert_eq!(binary, head.info().threshold.is_some(), "{name}");
            assert!(head.decide(&p).is_some());
        }
    }

    #[test]
    fn a_missing_folder_names_the_file() {
        let err = Head::load(Path::new("/nonexistent/head")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/head/head.json"),
            "{err}"
        );
    }
}
