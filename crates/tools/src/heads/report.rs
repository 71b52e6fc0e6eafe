//! Human-readable renderings of a head's record: its README.md and the
//! trainer's summary, and `eval-head`'s [`Evaluation`]. Pure functions of
//! [`HeadInfo`] / [`Metrics`] / [`Evaluation`].

use std::fmt::Write;

use routemesh_classifier_worker::heads::{HeadInfo, Metrics, Scores, WindowPooling};
use serde::Serialize;

/// What `eval-head` measured (printed as markdown, written with `--json`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Evaluation {
    /// The head folder, as given.
    pub head: String,
    pub name: String,
    pub data: String,
    pub data_sha256: String,
    /// `all`, `validation` or `train`.
    pub split: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_fraction: Option<f64>,
    /// As asked (`auto`, `f32`, `bf16`, `int8`).
    pub precision: String,
    /// What the forward pass ran in.
    pub precision_in_use: String,
    pub max_tokens: usize,
    pub cache_file: String,
    pub texts_embedded: usize,
    pub texts_cached: usize,
    pub embed_seconds: f64,
    pub metrics: Metrics,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_field: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupMetrics>,
    /// Against head.json's metrics, when these are the rows they were
    /// measured on.
    pub recorded: Option<Versus>,
}

/// The metrics of the rows whose `--group-field` has one value.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GroupMetrics {
    pub value: String,
    pub metrics: Metrics,
}

/// Measured against recorded, metric by metric.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Versus {
    /// Where head.json's metrics were measured, and on how many rows.
    pub on: String,
    pub rows: usize,
    pub lines: Vec<VersusLine>,
}

/// One metric, recorded and measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct VersusLine {
    /// `argmax` or `p(label) ≥ threshold`.
    pub decision: String,
    /// `accuracy` or `macro-F1`.
    pub metric: String,
    pub recorded: f64,
    pub measured: f64,
    /// (measured − recorded) × 100.
    pub points: f64,
}

impl Versus {
    /// Every metric both have: accuracy and macro-F1 at argmax and, for a
    /// binary head, at its threshold.
    pub(crate) fn of(recorded: &Metrics, measured: &Metrics) -> Self {
        let mut lines = Vec::new();
        let mut add = |decision: &str, r: &Scores, m: &Scores| {
            for (metric, a, b) in [
                ("accuracy", r.accuracy, m.accuracy),
                ("macro-F1", r.macro_f1, m.macro_f1),
            ] {
                // head.json's figures come back from JSON within an ulp or so
                // (serde_json's default float parsing): that is no difference.
                let points = (b - a) * 100.0;
                lines.push(VersusLine {
                    decision: decision.to_owned(),
                    metric: metric.to_owned(),
                    recorded: a,
                    measured: b,
                    points: if points.abs() < 1e-9 { 0.0 } else { points },
                });
            }
        };
        add("argmax", &recorded.argmax, &measured.argmax);
        if let (Some(r), Some(m)) = (&recorded.at_threshold, &measured.at_threshold) {
            let decision = format!("p({}) ≥ {:.4}", r.positive_label, r.threshold);
            add(&decision, &r.scores, &m.scores);
        }
        Self {
            on: recorded.on.clone(),
            rows: recorded.rows,
            lines,
        }
    }

    /// The largest |difference| in points.
    pub(crate) fn max_abs_points(&self) -> f64 {
        self.lines
            .iter()
            .map(|l| l.points.abs())
            .fold(0.0, f64::max)
    }
}

/// `eval-head`'s markdown: the metrics, the comparison with head.json and
/// the groups.
pub(crate) fn evaluation_markdown(e: &Evaluation) -> String {
    let mut s = format!(
        "Head `{}` ({}), encoder precision {} (asked {}), {} tokens per text; {} texts \
         embedded, {} from {}\n\n",
        e.name,
        e.head,
        e.precision_in_use,
        e.precision,
        e.max_tokens,
        e.texts_embedded,
        e.texts_cached,
        e.cache_file
    );
    s.push_str(&metrics_markdown(&e.metrics));
    match &e.recorded {
        Some(v) => {
            let _ = writeln!(
                s,
                "\nAgainst head.json (measured on {}, {} rows):\n\n\
                 | decision | metric | recorded | measured | Δ points |\n|---|---|--:|--:|--:|",
                v.on, v.rows
            );
            for l in &v.lines {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.4} | {:.4} | {:+.2} |",
                    l.decision, l.metric, l.recorded, l.measured, l.points
                );
            }
            let _ = writeln!(s, "\nLargest difference: {:.2} points.", v.max_abs_points());
        }
        None => s.push_str(
            "\nNot the rows head.json's metrics were measured on (another file, split, \
             seed or share): nothing to compare with.\n",
        ),
    }
    if let Some(field) = &e.group_field {
        match &e.metrics.at_threshold {
            Some(t) => detector_groups(&mut s, field, &t.positive_label, &e.groups),
            None => {
                let _ = write!(
                    s,
                    "\nBy `{field}`:\n\n| {field} | rows | accuracy | macro-F1 |\n|---|--:|--:|--:|\n"
                );
                for g in &e.groups {
                    let m = &g.metrics;
                    let _ = writeln!(
                        s,
                        "| {} | {} | {:.4} | {:.4} |",
                        g.value, m.rows, m.argmax.accuracy, m.argmax.macro_f1
                    );
                }
            }
        }
    }
    s
}

/// A binary detector's groups at its threshold: how many of each label,
/// the positive label's recall and the false-positive rate (the share of
/// the other label's rows called positive), which a group holding one
/// label only shows as its one figure.
fn detector_groups(s: &mut String, field: &str, positive: &str, groups: &[GroupMetrics]) {
    let _ = write!(
        s,
        "\nBy `{field}`, at the threshold:\n\n\
         | {field} | rows | {positive} rows | recall | other rows | false-positive rate |\n\
         |---|--:|--:|--:|--:|--:|\n"
    );
    let cell = |support: usize, value: f64| {
        if support == 0 {
            "".to_owned()
        } else {
            format!("{value:.4}")
        }
    };
    for g in groups {
        let Some(t) = &g.metrics.at_threshold else {
            continue;
        };
        let (mut pos, mut neg) = ((0, 0.0), (0, 0.0));
        for c in &t.scores.per_class {
            if c.label == positive {
                pos = (c.support, c.recall);
            } else {
                neg = (c.support, 1.0 - c.recall);
            }
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            g.value,
            g.metrics.rows,
            pos.0,
            cell(pos.0, pos.1),
            neg.0,
            cell(neg.0, neg.1)
        );
    }
}

/// The summary `train-head` prints on stdout.
pub(crate) fn summary(info: &HeadInfo) -> String {
    let m = &info.metrics;
    let mut s = format!(
        "{}: {} on {} ({} rows): accuracy {:.4}, macro-F1 {:.4}",
        info.name, info.architecture, m.on, m.rows, m.argmax.accuracy, m.argmax.macro_f1
    );
    if let Some(t) = &m.at_threshold {
        let _ = write!(
            s,
            "; threshold {:.4} ({}): accuracy {:.4}, macro-F1 {:.4}",
            t.threshold, t.criterion, t.scores.accuracy, t.scores.macro_f1
        );
    }
    let _ = writeln!(
        s,
        "\n{}: embedded {} texts ({} cached) in {:.1} s, trained in {:.1} s, {:.1} s in all",
        info.name,
        info.training.texts_embedded,
        info.training.texts_cached,
        info.training.embed_seconds,
        info.training.train_seconds,
        info.training.wall_seconds
    );
    s
}

/// Metrics as markdown tables (argmax, and the threshold when there is one).
pub(crate) fn metrics_markdown(m: &Metrics) -> String {
    let mut s = format!("Metrics on {} ({} rows)\n\n", m.on, m.rows);
    s.push_str("| decision | accuracy | macro-F1 |\n|---|--:|--:|\n");
    let _ = writeln!(
        s,
        "| argmax | {:.4} | {:.4} |",
        m.argmax.accuracy, m.argmax.macro_f1
    );
    if let Some(t) = &m.at_threshold {
        let _ = writeln!(
            s,
            "| p({}) ≥ {:.4} ({}) | {:.4} | {:.4} |",
            t.positive_label, t.threshold, t.criterion, t.scores.accuracy, t.scores.macro_f1
        );
    }
    s.push('\n');
    match &m.at_threshold {
        Some(t) => {
            let _ = writeln!(s, "At the threshold {:.4}:\n", t.threshold);
            s.push_str(&scores_tables(&t.scores));
            s.push_str("\nArgmax:\n\n");
            s.push_str(&scores_tables(&m.argmax));
        }
        None => s.push_str(&scores_tables(&m.argmax)),
    }
    s
}

/// Per-class table and confusion matrix.
fn scores_tables(sc: &Scores) -> String {
    let mut s =
        String::from("| label | precision | recall | F1 | support |\n|---|--:|--:|--:|--:|\n");
    for c in &sc.per_class {
        let _ = writeln!(
            s,
            "| {} | {:.3} | {:.3} | {:.3} | {} |",
            c.label, c.precision, c.recall, c.f1, c.support
        );
    }
    s.push_str("\nConfusion matrix (rows: true label, columns: predicted; columns numbered as the rows):\n\n");
    let n = sc.confusion.len();
    s.push_str("| true \\ predicted |");
    for j in 0..n {
        let _ = write!(s, " {} |", j + 1);
    }
    s.push_str("\n|---|");
    s.push_str(&"--:|".repeat(n));
    s.push('\n');
    for (i, row) in sc.confusion.iter().enumerate() {
        let label = sc.per_class.get(i).map_or("?", |c| c.label.as_str());
        let _ = write!(s, "| {} {} |", i + 1, label);
        for v in row {
            let _ = write!(s, " {v} |");
        }
        s.push('\n');
    }
    s
}

/// The head folder's README.md.
pub(crate) fn readme(info: &HeadInfo) -> String {
    let t = &info.training;
    let d = &info.data;
    let mut s = format!("# Head `{}`\n\n", info.name);
    if !info.description.is_empty() {
        let _ = writeln!(s, "{}\n", info.description);
    }
    s.push_str(
        "Generated by `routemesh-tools train-head` (do not edit; `head.json` holds the same \
         record). Reproduce with `scripts/train-heads.sh`.\n\n",
    );
    s.push_str("| | |\n|---|---|\n");
    let _ = writeln!(s, "| labels | {} |", info.labels.join(", "));
    let _ = writeln!(
        s,
        "| encoder | {} ({} dims, max {} tokens; model.safetensors sha256 `{}`) |",
        info.encoder.name,
        info.encoder.dim,
        info.encoder
            .max_tokens
            .map_or_else(|| "?".into(), |m| m.to_string()),
        info.encoder.sha256
    );
    let chosen = t.candidates.iter().find(|c| c.chosen);
    let _ = writeln!(
        s,
        "| architecture | {} ({} parameters) |",
        info.architecture,
        chosen.map_or(0, |c| c.parameters)
    );
    if let (Some(p), Some(th)) = (&info.positive_label, info.threshold) {
        let _ = writeln!(
            s,
            "| decision | `{p}` when p({p}) ≥ {th:.4}, else the other label |"
        );
    } else {
        s.push_str("| decision | the most probable label |\n");
    }
    match (info.windows, &info.positive_label) {
        (WindowPooling::Max, Some(p)) => {
            let _ = writeln!(
                s,
                "| long prompts | `windows: max`: the window with the highest p({p}) |"
            );
        }
        _ => s.push_str(
            "| long prompts | `windows: mean`: the windows' probabilities, weighted by tokens |\n",
        ),
    }
    if let Some(f) = &d.train {
        let _ = writeln!(
            s,
            "| training data | `{}` ({} rows, sha256 `{}`); text `{}`, label `{}` |",
            f.path, f.rows, f.sha256, d.text_field, d.label_field
        );
    }
    let _ = writeln!(
        s,
        "| split | seed {}, {:.0}% held out for validation: {} train / {} validation rows |",
        d.split.seed,
        d.split.val_fraction * 100.0,
        d.split.train_rows,
        d.split.val_rows
    );
    if let Some(f) = &d.eval {
        let _ = writeln!(
            s,
            "| evaluation data | `{}` ({} rows, sha256 `{}`) |",
            f.path, f.rows, f.sha256
        );
    }
    s.push_str("\n## Metrics\n\n");
    s.push_str(&metrics_markdown(&info.metrics));
    if d.eval.is_some() {
        let v = &t.validation;
        let _ = writeln!(
            s,
            "\nOn the validation split (argmax): accuracy {:.4}, macro-F1 {:.4}.",
            v.accuracy, v.macro_f1
        );
    }
    match &info.metrics.at_threshold {
        Some(t) if t.criterion.ends_with(" on validation") => s.push_str(
            "\nThe threshold was chosen on the validation split of the training data, so \
             these rows measure it unseen.\n",
        ),
        Some(_) => s.push_str(
            "\nThe threshold was chosen on these same rows, so the thresholded figures are \
             slightly optimistic.\n",
        ),
        None => {}
    }
    s.push_str("\n## Training\n\n");
    s.push_str("Candidates (validation split; the chosen one has the best macro-F1):\n\n");
    s.push_str("| architecture | parameters | epochs run | best epoch | val loss | val accuracy | val macro-F1 | chosen |\n");
    s.push_str("|---|--:|--:|--:|--:|--:|--:|---|\n");
    for c in &t.candidates {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.4} | {:.4} | {:.4} | {} |",
            c.architecture,
            c.parameters,
            c.epochs_run,
            c.best_epoch,
            c.val_loss,
            c.val_accuracy,
            c.val_macro_f1,
            if c.chosen { "yes" } else { "" }
        );
    }
    let _ = writeln!(
        s,
        "\n{}; up to {} epochs, learning rate {}, weight decay {}, batch {}, patience {}, \
         class weights {} ({}), seed {}.",
        t.optimizer,
        t.max_epochs,
        t.learning_rate,
        t.weight_decay,
        t.batch_size,
        t.patience,
        t.class_weights,
        t.class_weight_values
            .iter()
            .map(|w| format!("{w:.3}"))
            .collect::<Vec<_>>()
            .join(", "),
        t.seed
    );
    s.push_str(
        "\nRows per label:\n\n| label | train | validation | evaluation |\n|---|--:|--:|--:|\n",
    );
    for c in &d.label_counts {
        let eval = c.eval.map_or_else(|| "–".into(), |e| e.to_string());
        let _ = writeln!(s, "| {} | {} | {} | {} |", c.label, c.train, c.val, eval);
    }
    let _ = writeln!(
        s,
        "\nEmbedded {} texts ({} from the cache) in {:.1} s; trained in {:.1} s; {:.1} s in all \
         (2-core CPU).",
        t.texts_embedded, t.texts_cached, t.embed_seconds, t.train_seconds, t.wall_seconds
    );
    if !t.command.is_empty() {
        let _ = writeln!(s, "\n## Command\n\n```sh\n{}\n```", shell_words(&t.command));
    }
    s
}

/// The command line, quoted where needed.
fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=,:".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use routemesh_classifier_worker::heads::HeadInfo;

    /// The committed heads' README.md say how they read long prompts as
    /// `train-head` writes it from their head.json's `windows`.
    #[test]
    fn the_committed_readmes_say_how_windows_are_pooled() {
        let heads = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../heads");
        for (name, pooling) in [
            ("domain", "mean"),
            ("injection", "max"),
            ("difficulty", "mean"),
        ] {
            let read = |file: &str| {
                std::fs::read_to_string(heads.join(name).join(file))
                    .unwrap_or_else(|e| panic!("{name}/{file}: {e}"))
            };
            let info: HeadInfo =
                serde_json::from_str(&read("head.json")).unwrap_or_else(|e| panic!("{name}: {e}"));
            let row = |text: &str| {
                text.lines()
                    .find(|l| l.starts_with("| long prompts |"))
                    .map(str::to_owned)
            };
            let generated = row(&super::readme(&info));
            assert_eq!(generated, row(&read("README.md")), "{name}");
            assert!(
                generated.is_some_and(|r| r.contains(&format!("`windows: {pooling}`"))),
                "{name}"
            );
        }
    }

    /// Differences in points, per metric and decision; an ulp is none.
    #[test]
    fn measured_against_recorded_in_points() {
        use routemesh_classifier_worker::heads::{Metrics, Scores, ThresholdScores};
        let sc = |accuracy: f64, macro_f1: f64| Scores {
            accuracy,
            macro_f1,
            ..Scores::default()
        };
        let m = |a: Scores, t: Option<Scores>| Metrics {
            on: "validation split of d.jsonl".into(),
            rows: 864,
            argmax: a,
            at_threshold: t.map(|scores| ThresholdScores {
                positive_label: "hard".into(),
                criterion: "accuracy".into(),
                threshold: 0.5645,
                scores,
            }),
        };
        let recorded = m(sc(0.8137, 0.8245), Some(sc(0.6296, 0.6168)));
        let measured = m(
            sc(0.8125, 0.8245 + 1e-16),
            Some(sc(0.6273, 0.6168 + 0.0031)),
        );
        let v = super::Versus::of(&recorded, &measured);
        let points: Vec<(&str, &str, f64)> = v
            .lines
            .iter()
            .map(|l| (l.decision.as_str(), l.metric.as_str(), l.points))
            .collect();
        assert_eq!(points.len(), 4);
        assert_eq!((points[0].0, points[0].1), ("argmax", "accuracy"));
        assert!((points[0].2 + 0.12).abs() < 1e-9, "{points:?}");
        assert_eq!(points[1].2, 0.0, "an ulp is no difference");
        assert_eq!(points[2].0, "p(hard) ≥ 0.5645");
        assert!((points[3].2 - 0.31).abs() < 1e-9, "{points:?}");
        assert!((v.max_abs_points() - 0.31).abs() < 1e-9);
        assert_eq!(
            (v.rows, v.on.as_str()),
            (864, "validation split of d.jsonl")
        );
        // No threshold on either side: argmax only.
        let v = super::Versus::of(&m(sc(0.5, 0.5), None), &m(sc(0.5, 0.5), None));
        assert_eq!(v.lines.len(), 2);
    }
}
