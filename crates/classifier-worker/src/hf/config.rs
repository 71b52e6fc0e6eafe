//! `config.json` of an HF classifier folder: architecture, labels, backbone.
//!
//! Only what decides how the folder is run is read here; the backbone's own
//! keys are parsed by candle-transformers' config structs.

use std::collections::HashMap;
use std::path::Path;

use candle_transformers::models::{bert, modernbert};
use serde::Deserialize;
use serde_json::Value;

use super::HfError;

/// The `architectures[0]` values an [`super::HfClassifier`] can run.
pub const SUPPORTED: [&str; 4] = [
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "ModernBertForSequenceClassification",
    "ModernBertForTokenClassification",
];

/// A supported architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Architecture {
    BertSequence,
    BertToken,
    ModernBertSequence,
    ModernBertToken,
}

impl Architecture {
    const ALL: [Self; 4] = [
        Self::BertSequence,
        Self::BertToken,
        Self::ModernBertSequence,
        Self::ModernBertToken,
    ];

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The HF class name, as in `config.json`.
    fn name(self) -> &'static str {
        match self {
            Self::BertSequence => SUPPORTED[0],
            Self::BertToken => SUPPORTED[1],
            Self::ModernBertSequence => SUPPORTED[2],
            Self::ModernBertToken => SUPPORTED[3],
        }
    }

    fn is_sequence(self) -> bool {
        matches!(self, Self::BertSequence | Self::ModernBertSequence)
    }
}

/// The architecture with its backbone's config: the combination is fixed
/// by construction.
#[derive(Debug, Clone)]
pub(super) enum Spec {
    BertSequence(bert::Config),
    BertToken(bert::Config),
    ModernBertSequence(modernbert::Config),
    ModernBertToken(modernbert::Config),
}

/// Everything `config.json` says about how to run the folder.
#[derive(Debug, Clone)]
pub(super) struct ModelConfig {
    pub(super) spec: Spec,
    /// Label names in output order (`id2label` sorted by id).
    pub(super) labels: Vec<String>,
    /// `problem_type: multi_label_classification`: independent sigmoids.
    pub(super) multi_label: bool,
}

impl ModelConfig {
    /// The HF class name, as in `config.json`.
    pub(super) fn architecture(&self) -> &'static str {
        match self.spec {
            Spec::BertSequence(_) => Architecture::BertSequence.name(),
            Spec::BertToken(_) => Architecture::BertToken.name(),
            Spec::ModernBertSequence(_) => Architecture::ModernBertSequence.name(),
            Spec::ModernBertToken(_) => Architecture::ModernBertToken.name(),
        }
    }

    /// Longest input the position embeddings / rotary tables cover.
    pub(super) fn max_positions(&self) -> usize {
        match &self.spec {
            Spec::BertSequence(c) | Spec::BertToken(c) => c.max_position_embeddings,
            Spec::ModernBertSequence(c) | Spec::ModernBertToken(c) => c.max_position_embeddings,
        }
    }

    /// Token id used for padding.
    pub(super) fn pad_id(&self) -> u32 {
        match &self.spec {
            Spec::BertSequence(c) | Spec::BertToken(c) => {
                u32::try_from(c.pad_token_id).unwrap_or(0)
            }
            Spec::ModernBertSequence(c) | Spec::ModernBertToken(c) => c.pad_token_id,
        }
    }
}

/// The keys every classification config shares.
#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    id2label: Option<HashMap<String, String>>,
    #[serde(default)]
    num_labels: Option<usize>,
    #[serde(default)]
    problem_type: Option<String>,
}

/// Parses `config.json` (read from `path`).
pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<ModelConfig, HfError> {
    let err = |message: String| HfError::Config {
        path: path.to_owned(),
        message,
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))?;
    let head = Head::deserialize(&value).map_err(|e| err(e.to_string()))?;
    let name = head.architectures.first().ok_or_else(|| {
        err(format!(
            "no `architectures` entry, so the model class is unknown; supported architectures: {}",
            SUPPORTED.join(", ")
        ))
    })?;
    let architecture =
        Architecture::from_name(name).ok_or_else(|| HfError::UnsupportedArchitecture {
            path: path.to_owned(),
            found: name.clone(),
        })?;
    let labels = labels(head.id2label, head.num_labels).map_err(err)?;
    let multi_label = architecture.is_sequence()
        && match head.problem_type.as_deref() {
            None | Some("single_label_classification") => false,
            Some("multi_label_classification") => true,
            Some(other) => {
                return Err(err(format!(
                    "problem_type {other:?} is not supported (only single- and multi-label classification)"
                )));
            }
        };
    if !multi_label && labels.len() < 2 {
        return Err(err(format!(
            "{} label(s): a softmax classifier needs at least 2 (one output means regression)",
            labels.len()
        )));
    }
    let bert = || bert::Config::deserialize(&value).map_err(|e| err(e.to_string()));
    let spec = match architecture {
        Architecture::BertSequence => Spec::BertSequence(bert()?),
        Architecture::BertToken => Spec::BertToken(bert()?),
        Architecture::ModernBertSequence if multi_label => {
            return Err(err(
                "multi-label ModernBERT sequence classifiers are not supported (candle's head applies a softmax)".into(),
            ));
        }
        Architecture::ModernBertSequence => {
            Spec::ModernBertSequence(modernbert_config(value.clone(), &labels).map_err(err)?)
        }
        Architecture::ModernBertToken => {
            Spec::ModernBertToken(modernbert_config(value.clone(), &labels).map_err(err)?)
        }
    };
    Ok(ModelConfig {
        spec,
        labels,
        multi_label,
    })
}

/// Label names by id: `id2label`, else `LABEL_<i>` for `num_labels`
/// (HF's default when neither is written: two labels).
fn labels(
    id2label: Option<HashMap<String, String>>,
    num_labels: Option<usize>,
) -> Result<Vec<String>, String> {
    let Some(map) = id2label.filter(|m| !m.is_empty()) else {
        let n = num_labels.unwrap_or(2);
        return Ok((0..n).map(|i| format!("LABEL_{i}")).collect());
    };
    let n = map.len();
    let mut slots: Vec<Option<String>> = vec![None; n];
    for (key, label) in map {
        let id: usize = key
            .trim()
            .parse()
            .map_err(|_| format!("id2label key {key:?} is not an integer"))?;
        let slot = slots
            .get_mut(id)
            .ok_or_else(|| format!("id2label ids must be 0..{n}; found {id}"))?;
        if slot.replace(label).is_some() {
            return Err(format!("id2label names id {id} twice"));
        }
    }
    slots
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("id2label ids must be exactly 0..{n}"))
}

/// candle's ModernBERT config, checked against what candle implements, with
/// the classifier part filled from our labels: candle expects `label2id`
/// values as strings where HF writes integers, and silently drops the whole
/// classifier config (zero outputs) when they do not parse.
fn modernbert_config(mut value: Value, labels: &[String]) -> Result<modernbert::Config, String> {
    for key in ["attention_bias", "mlp_bias", "norm_bias", "classifier_bias"] {
        if value.get(key).and_then(Value::as_bool) == Some(true) {
            return Err(format!(
                "{key}: true is not supported (candle's ModernBERT has no bias there)"
            ));
        }
    }
    for key in ["hidden_activation", "classifier_activation"] {
        match value.get(key).and_then(Value::as_str) {
            None | Some("gelu") => {}
            Some(other) => {
                return Err(format!(
                    "{key}: {other:?} is not supported (candle's ModernBERT uses exact gelu)"
                ));
            }
        }
    }
    let pooling = match value.get("classifier_pooling") {
        None | Some(Value::Null) => modernbert::ClassifierPooling::default(),
        Some(v) => modernbert::ClassifierPooling::deserialize(v)
            .map_err(|e| format!("classifier_pooling: {e} (expected \"cls\" or \"mean\")"))?,
    };
    // HF's ModernBERT normalises with `norm_eps`; candle reads `layer_norm_eps`.
    if let (Some(eps), Some(obj)) = (value.get("norm_eps").cloned(), value.as_object_mut()) {
        obj.insert("layer_norm_eps".into(), eps);
    }
    let mut config = modernbert::Config::deserialize(&value).map_err(|e| e.to_string())?;
    if config.global_attn_every_n_layers == 0 || config.num_attention_heads == 0 {
        return Err("global_attn_every_n_layers and num_attention_heads must be positive".into());
    }
    config.classifier_config = Some(modernbert::ClassifierConfig {
        id2label: labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), l.clone()))
            .collect(),
        label2id: labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), i.to_string()))
            .collect(),
        classifier_pooling: pooling,
    });
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::labels;

    fn check(id2label: &[(&str, &str)], num_labels: Option<usize>, want: Result<&[&str], &str>) {
        let map = (!id2label.is_empty()).then(|| {
            id2label
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        });
        let got = labels(map, num_labels);
        match want {
            Ok(names) => assert_eq!(got, Ok(names.iter().map(|s| (*s).to_owned()).collect())),
            Err(fragment) => {
                let message = got.err().unwrap_or_default();
                assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
            }
        }
    }

    #[test]
    fn labels_come_from_id2label_in_id_order() {
        check(
            &[("1", "b"), ("0", "a"), ("2", "c")],
            None,
            Ok(&["a", "b", "c"]),
        );
        check(&[("0", "a"), ("1", "b")], Some(5), Ok(&["a", "b"]));
    }

    #[test]
    fn labels_fall_back_to_num_labels_then_two() {
        check(&[], Some(3), Ok(&["LABEL_0", "LABEL_1", "LABEL_2"]));
        check(&[], None, Ok(&["LABEL_0", "LABEL_1"]));
    }

    #[test]
    fn bad_id2label_is_refused() {
        check(&[("0", "a"), ("2", "c")], None, Err("must be 0..2"));
        check(&[("0", "a"), ("x", "c")], None, Err("not an integer"));
        check(&[("0", "a"), ("00", "c")], None, Err("twice"));
    }
}
