//! A head on a text read in several windows: every window is predicted and
//! the probabilities are pooled as the head's `windows` says
//! ([`WindowPooling`]).

use super::info::WindowPooling;
use super::model::Head;

impl Head {
    /// Probabilities for a text from its windows' embeddings (`tokens[i]`
    /// tokens in window `i`): with `mean`, the token-weighted mean of the
    /// windows' probabilities; with `max`, the probabilities of the window
    /// where `positive_label` is most probable (the first on ties). One
    /// window gives exactly [`Head::predict`]; no window, or a wrong-width
    /// one, an empty vector.
    pub fn predict_windows(&self, windows: &[Vec<f32>], tokens: &[usize]) -> Vec<f32> {
        if let [one] = windows {
            return self.predict(one);
        }
        let mut probs: Vec<Vec<f32>> = windows.iter().map(|w| self.predict(w)).collect();
        if probs.is_empty() || probs.iter().any(Vec::is_empty) {
            return Vec::new();
        }
        match (self.info().windows, self.positive_index()) {
            (WindowPooling::Max, Some(positive)) => {
                let mut best = 0;
                for (i, p) in probs.iter().enumerate() {
                    if p[positive] > probs[best][positive] {
                        best = i;
                    }
                }
                probs.swap_remove(best)
            }
            _ => weighted_mean(&probs, tokens),
        }
    }
}

/// The mean of `probs` weighted by `tokens` (each at least 1; a missing
/// weight counts 1).
fn weighted_mean(probs: &[Vec<f32>], tokens: &[usize]) -> Vec<f32> {
    let labels = probs[0].len();
    let mut sum = vec![0f64; labels];
    let mut total = 0f64;
    for (i, p) in probs.iter().enumerate() {
        let w = tokens.get(i).copied().unwrap_or(1).max(1) as f64;
        total += w;
        for (s, x) in sum.iter_mut().zip(p) {
            *s += w * f64::from(*x);
        }
    }
    sum.iter().map(|s| (s / total) as f32).collect()
}

#[cfg(test)]
mod tests {
    use crate::heads::info::{Architecture, EncoderInfo, HeadInfo, WindowPooling};
    use crate::heads::{Head, Layer};

    /// A linear head on 2-wide inputs: label i follows input axis i.
    fn head(windows: WindowPooling) -> Head {
        let info = HeadInfo {
            format: 1,
            name: "detector".into(),
            description: String::new(),
            labels: vec!["benign".into(), "attack".into()],
            encoder: EncoderInfo {
                name: "test".into(),
                sha256: "00".into(),
                dim: 2,
                max_tokens: None,
            },
            architecture: Architecture::from_hidden(Vec::new()),
            positive_label: Some("attack".into()),
            threshold: Some(0.5),
            windows,
            tokens: None,
            span_metrics: None,
            data: Default::default(),
            metrics: Default::default(),
            training: Default::default(),
        };
        let layer = Layer {
            inputs: 2,
            outputs: 2,
            weight: vec![4.0, 0.0, 0.0, 4.0],
            bias: vec![0.0, 0.0],
        };
        match Head::new(info, vec![layer]) {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        }
    }

    const BENIGN: [f32; 2] = [1.0, 0.0];
    const ATTACK: [f32; 2] = [0.0, 1.0];

    #[test]
    fn one_window_is_the_plain_prediction() {
        for pooling in [WindowPooling::Mean, WindowPooling::Max] {
            let h = head(pooling);
            assert_eq!(
                h.predict_windows(&[ATTACK.to_vec()], &[9]),
                h.predict(&ATTACK)
            );
        }
        assert!(
            head(WindowPooling::Max)
                .predict_windows(&[], &[])
                .is_empty()
        );
    }

    #[test]
    fn a_detector_fires_when_any_window_does() {
        let h = head(WindowPooling::Max);
        let windows = [BENIGN.to_vec(), BENIGN.to_vec(), ATTACK.to_vec()];
        let p = h.predict_windows(&windows, &[254, 254, 20]);
        assert_eq!(p, h.predict(&ATTACK), "the attack window's probabilities");
        assert_eq!(h.decide(&p), Some(1));
        let all_benign = h.predict_windows(&[BENIGN.to_vec(), BENIGN.to_vec()], &[5, 5]);
        assert_eq!(h.decide(&all_benign), Some(0));
    }

    #[test]
    fn a_mean_head_weighs_windows_by_their_tokens() {
        let h = head(WindowPooling::Mean);
        let (b, a) = (h.predict(&BENIGN), h.predict(&ATTACK));
        let p = h.predict_windows(&[BENIGN.to_vec(), ATTACK.to_vec()], &[30, 10]);
        for k in 0..2 {
            let want = (30.0 * b[k] + 10.0 * a[k]) / 40.0;
            assert!((p[k] - want).abs() < 1e-6, "label {k}: {p:?}");
        }
        assert_eq!(h.decide(&p), Some(0), "mostly benign text");
    }

    #[test]
    fn max_pooling_needs_a_positive_label() {
        let mut info = head(WindowPooling::Max).info().clone();
        info.positive_label = None;
        let layers = head(WindowPooling::Max).layers().to_vec();
        let err = Head::new(info, layers)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(
            err.as_ref().is_err_and(|e| e.contains("positive_label")),
            "{err:?}"
        );
    }
}
