//! Classification metrics and the choice of a binary decision threshold. Pure.

use routemesh_classifier_worker::heads::{ClassScores, Scores};

/// Accuracy, macro-F1, per-class precision / recall / F1 and the confusion
/// matrix of `predicted` against `truth` (label indices into `labels`).
pub(crate) fn scores(labels: &[String], truth: &[usize], predicted: &[usize]) -> Scores {
    let n = labels.len();
    let mut confusion = vec![vec![0usize; n]; n];
    for (&t, &p) in truth.iter().zip(predicted) {
        if t < n && p < n {
            confusion[t][p] += 1;
        }
    }
    let total: usize = confusion.iter().flatten().sum();
    let correct: usize = (0..n).map(|i| confusion[i][i]).sum();
    let per_class: Vec<ClassScores> = labels
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let tp = confusion[i][i];
            let support: usize = confusion[i].iter().sum();
            let predicted: usize = confusion.iter().map(|row| row[i]).sum();
            let precision = ratio(tp, predicted);
            let recall = ratio(tp, support);
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            ClassScores {
                label: label.clone(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let macro_f1 = if n == 0 {
        0.0
    } else {
        per_class.iter().map(|c| c.f1).sum::<f64>() / n as f64
    };
    Scores {
        accuracy: ratio(correct, total),
        macro_f1,
        per_class,
        confusion,
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// What a binary threshold should maximise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Criterion {
    /// F1 of the positive label.
    F1,
    Accuracy,
    /// The recall of the positive label, with at most `--max-fpr` of the
    /// negative rows called positive.
    Fpr,
}

impl Criterion {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::F1 => "f1",
            Self::Accuracy => "accuracy",
            Self::Fpr => "fpr",
        }
    }
}

/// The threshold on the positive probability that maximises `criterion`
/// when rows with `p >= threshold` are called positive. Candidates lie
/// halfway between consecutive distinct probabilities; ties go to the
/// threshold nearest 0.5. `None` without rows. [`Criterion::Fpr`]
/// maximises recall with a false-positive rate of at most `max_fpr` (the
/// other criteria ignore it); of the thresholds with the same recall the
/// highest is taken, so the bound holds with the most margin.
pub(crate) fn choose_threshold(
    p_positive: &[f32],
    is_positive: &[bool],
    criterion: Criterion,
    max_fpr: f64,
) -> Option<f32> {
    if p_positive.is_empty() {
        return None;
    }
    let mut rows: Vec<(f32, bool)> = p_positive
        .iter()
        .copied()
        .zip(is_positive.iter().copied())
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let positives = rows.iter().filter(|r| r.1).count();
    let n = rows.len();
    let negatives = n - positives;
    let score = |tp: usize, fp: usize| -> f64 {
        let fn_ = positives - tp;
        match criterion {
            Criterion::F1 => ratio(2 * tp, 2 * tp + fp + fn_),
            Criterion::Accuracy => ratio(tp + (n - positives - fp), n),
            // Over the bound scores below calling nothing positive.
            Criterion::Fpr if fp as f64 > max_fpr * negatives as f64 => -1.0,
            Criterion::Fpr => ratio(tp, positives),
        }
    };
    // Start with nothing called positive: threshold above every probability.
    let mut best_t = f64::midpoint(1.0, f64::from(rows[0].0)).max(f64::from(rows[0].0));
    let mut best = score(0, 0);
    let (mut tp, mut fp) = (0, 0);
    let mut i = 0;
    while i < n {
        let p = rows[i].0;
        // Take every row with this probability at once.
        while i < n && rows[i].0 == p {
            if rows[i].1 {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        let t = match rows.get(i) {
            Some(next) => f64::midpoint(f64::from(p), f64::from(next.0)),
            None => f64::from(p) / 2.0,
        };
        let s = score(tp, fp);
        let tie = (s - best).abs() <= 1e-12;
        let better = s > best + 1e-12
            || (tie && criterion != Criterion::Fpr && (t - 0.5).abs() < (best_t - 0.5).abs());
        if better {
            best = s;
            best_t = t;
        }
    }
    Some(best_t as f32)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn scores_match_a_hand_computed_example() {
        // truth a a a b b c ; predicted a a b b c c
        let s = scores(
            &labels(&["a", "b", "c"]),
            &[0, 0, 0, 1, 1, 2],
            &[0, 0, 1, 1, 2, 2],
        );
        assert_eq!(
            s.confusion,
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]
        );
        assert!((s.accuracy - 4.0 / 6.0).abs() < 1e-12);
        let a = &s.per_class[0];
        assert_eq!((a.precision, a.support), (1.0, 3));
        assert!((a.recall - 2.0 / 3.0).abs() < 1e-12);
        let b = &s.per_class[1];
        assert_eq!((b.precision, b.recall, b.f1), (0.5, 0.5, 0.5));
        let c = &s.per_class[2];
        assert_eq!((c.precision, c.recall), (0.5, 1.0));
        let f1_a = 2.0 * (2.0 / 3.0) / (1.0 + 2.0 / 3.0);
        let f1_c = 2.0 * 0.5 / 1.5;
        assert!((s.macro_f1 - (f1_a + 0.5 + f1_c) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn a_label_never_predicted_has_zero_precision_not_nan() {
        let s = scores(&labels(&["a", "b"]), &[0, 1], &[0, 0]);
        assert_eq!(s.per_class[1].precision, 0.0);
        assert_eq!(s.per_class[1].f1, 0.0);
    }

    #[test]
    fn the_threshold_separates_separable_scores() {
        let p = [0.9, 0.8, 0.35, 0.3, 0.1];
        let y = [true, true, true, false, false];
        for c in [Criterion::F1, Criterion::Accuracy] {
            let t = choose_threshold(&p, &y, c, 1.0).unwrap();
            assert!((t - 0.325).abs() < 1e-6, "{c:?}: {t}");
        }
    }

    #[test]
    fn f1_and_accuracy_can_choose_different_thresholds() {
        let p = [0.9, 0.5, 0.4, 0.3, 0.2];
        // Only the top row positive: F1 2/3 and accuracy 0.8, both best.
        let y = [true, false, false, false, true];
        let f1 = choose_threshold(&p, &y, Criterion::F1, 1.0).unwrap();
        let acc = choose_threshold(&p, &y, Criterion::Accuracy, 1.0).unwrap();
        assert!((f1 - 0.7).abs() < 1e-6, "{f1}");
        assert!((acc - 0.7).abs() < 1e-6, "{acc}");
        // Everything positive has the best F1 (6/8); accuracy ties at 0.6 for
        // the top 1, 3 or 5 rows and takes the threshold nearest 0.5.
        let y = [true, false, true, false, true];
        let f1 = choose_threshold(&p, &y, Criterion::F1, 1.0).unwrap();
        let acc = choose_threshold(&p, &y, Criterion::Accuracy, 1.0).unwrap();
        assert!((f1 - 0.1).abs() < 1e-6, "{f1}");
        assert!((acc - 0.35).abs() < 1e-6, "{acc}");
    }

    #[test]
    fn the_fpr_criterion_keeps_the_false_positives_under_the_bound() {
        // Negatives at 0.9 and 0.2..; positives at 0.95, 0.8, 0.7, 0.1.
        let p = [0.95, 0.9, 0.8, 0.7, 0.25, 0.2, 0.15, 0.1, 0.05, 0.01];
        let y = [
            true, false, true, true, false, false, false, true, false, false,
        ];
        let negatives = y.iter().filter(|v| !**v).count() as f64;
        let fpr =
            |t: f32| p.iter().zip(&y).filter(|(p, y)| !**y && **p >= t).count() as f64 / negatives;
        let recall =
            |t: f32| p.iter().zip(&y).filter(|(p, y)| **y && **p >= t).count() as f64 / 4.0;
        // No false positive allowed: only the row above the 0.9 negative.
        let strict = choose_threshold(&p, &y, Criterion::Fpr, 0.0).unwrap();
        assert_eq!((fpr(strict), recall(strict)), (0.0, 0.25));
        // One of six negatives allowed: three positives, not the fourth.
        let loose = choose_threshold(&p, &y, Criterion::Fpr, 0.2).unwrap();
        assert!(fpr(loose) <= 0.2, "{loose}");
        assert_eq!(recall(loose), 0.75);
        assert!(
            loose > 0.25 && loose <= 0.7,
            "the highest threshold of that recall: {loose}"
        );
        // Everything allowed: every positive.
        let all = choose_threshold(&p, &y, Criterion::Fpr, 1.0).unwrap();
        assert_eq!(recall(all), 1.0);
    }

    #[test]
    fn no_rows_no_threshold() {
        assert_eq!(choose_threshold(&[], &[], Criterion::F1, 1.0), None);
    }
}
