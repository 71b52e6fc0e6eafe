//! The classification heads on candle-transformers' BERT and ModernBERT.
//!
//! Weight names follow the HF classes exactly: `bert.*`,
//! `bert.pooler.dense.*` and `classifier.*` for BERT; `model.*`, `head.*`
//! and `classifier.*` for ModernBERT. candle's `BertModel` has no pooler and
//! candle has no ModernBERT token head, so both are written here.

use candle_core::{IndexOp, Module, Result, Tensor};
use candle_nn::ops::{sigmoid, softmax_last_dim};
use candle_nn::{LayerNorm, Linear, VarBuilder, layer_norm_no_bias, linear, linear_no_bias};
use candle_transformers::models::bert::BertModel;
use candle_transformers::models::modernbert::{
    self, ModernBert, ModernBertForSequenceClassification,
};

use super::config::{ModelConfig, Spec};

/// A loaded model: a sequence head or a token head.
pub(super) enum Model {
    Sequence(SequenceModel),
    Token(TokenModel),
}

/// Text in, one probability per label out.
pub(super) enum SequenceModel {
    /// `BertForSequenceClassification`: [CLS] → pooler (dense + tanh) → classifier.
    Bert {
        bert: BertModel,
        pooler: Linear,
        classifier: Linear,
        multi_label: bool,
    },
    /// candle's own head (returns probabilities).
    ModernBert(ModernBertForSequenceClassification),
}

/// Text in, one probability per label for every token out.
pub(super) enum TokenModel {
    /// `BertForTokenClassification`: classifier on every hidden state.
    Bert { bert: BertModel, classifier: Linear },
    /// `ModernBertForTokenClassification`: head (dense, gelu, norm), classifier.
    ModernBert {
        model: ModernBert,
        head: ModernBertHead,
        classifier: Linear,
    },
}

/// HF's `ModernBertPredictionHead` (candle's is not constructible from outside).
pub(super) struct ModernBertHead {
    dense: Linear,
    norm: LayerNorm,
}

impl ModernBertHead {
    fn load(vb: VarBuilder<'_>, config: &modernbert::Config) -> Result<Self> {
        let h = config.hidden_size;
        Ok(Self {
            dense: linear_no_bias(h, h, vb.pp("dense"))?,
            norm: layer_norm_no_bias(h, config.layer_norm_eps, vb.pp("norm"))?,
        })
    }
}

impl Module for ModernBertHead {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        xs.apply(&self.dense)?.gelu_erf()?.apply(&self.norm)
    }
}

impl Model {
    /// Builds the model from `vb` (weights at the root, HF names).
    pub(super) fn load(vb: VarBuilder<'_>, config: &ModelConfig) -> Result<Self> {
        let n = config.labels.len();
        Ok(match &config.spec {
            Spec::BertSequence(c) => {
                let h = c.hidden_size;
                Self::Sequence(SequenceModel::Bert {
                    bert: BertModel::load(vb.pp("bert"), c)?,
                    pooler: linear(h, h, vb.pp("bert.pooler.dense"))?,
                    classifier: linear(h, n, vb.pp("classifier"))?,
                    multi_label: config.multi_label,
                })
            }
            Spec::BertToken(c) => Self::Token(TokenModel::Bert {
                bert: BertModel::load(vb.pp("bert"), c)?,
                classifier: linear(c.hidden_size, n, vb.pp("classifier"))?,
            }),
            Spec::ModernBertSequence(c) => Self::Sequence(SequenceModel::ModernBert(
                ModernBertForSequenceClassification::load(vb, c)?,
            )),
            Spec::ModernBertToken(c) => Self::Token(TokenModel::ModernBert {
                model: ModernBert::load(vb.clone(), c)?,
                head: ModernBertHead::load(vb.pp("head"), c)?,
                classifier: linear(c.hidden_size, n, vb.pp("classifier"))?,
            }),
        })
    }
}

impl SequenceModel {
    /// `(batch, seq)` ids and mask → `(batch, labels)` probabilities.
    pub(super) fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        match self {
            Self::Bert {
                bert,
                pooler,
                classifier,
                multi_label,
            } => {
                let hidden = bert.forward(ids, &ids.zeros_like()?, Some(mask))?;
                let cls = hidden.i((.., 0))?.contiguous()?;
                let logits = pooler.forward(&cls)?.tanh()?.apply(classifier)?;
                if *multi_label {
                    sigmoid(&logits)
                } else {
                    softmax_last_dim(&logits)
                }
            }
            Self::ModernBert(model) => model.forward(ids, mask),
        }
    }
}

impl TokenModel {
    /// `(batch, seq)` ids and mask → `(batch, seq, labels)` probabilities.
    pub(super) fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let logits = match self {
            Self::Bert { bert, classifier } => bert
                .forward(ids, &ids.zeros_like()?, Some(mask))?
                .apply(classifier)?,
            Self::ModernBert {
                model,
                head,
                classifier,
            } => model.forward(ids, mask)?.apply(head)?.apply(classifier)?,
        };
        softmax_last_dim(&logits)
    }
}
