//! `train-head` and `eval-head`: data → embeddings → candidate fits → the
//! chosen head, measured on held-out rows and written with its record.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use super::cache::{CacheIdentity, EmbedStats, EmbeddingCache, embed_all};
use super::cli::{ClassWeights, EvalHeadArgs, Split, ThresholdOn, TrainHeadArgs};
use super::data::{self, Dataset};
use super::error::TrainError;
use super::metrics::{Criterion, choose_threshold, scores};
use super::report::{Evaluation, GroupMetrics, Versus};
use super::train::{Fit, Rows, fit};
use routemesh_classifier_worker::heads::{
    Architecture, Candidate, DataFile, DataInfo, EncoderInfo, HEAD_FORMAT, Head, HeadInfo,
    LabelCount, Layer, Metrics, Scores, SplitInfo, ThresholdScores, TrainingInfo, WindowPooling,
    argmax,
};
use routemesh_classifier_worker::{Encoder, EncoderOptions};
use routemesh_common::config::EncoderPrecision;

/// Texts per forward pass while embedding the corpus.
const EMBED_BATCH: usize = 32;

/// Trains every candidate architecture, keeps the best on the validation
/// split, measures it, and writes the head folder. Returns its `head.json`.
pub(crate) fn train(args: &TrainHeadArgs, command: Vec<String>) -> Result<HeadInfo, TrainError> {
    let started = Instant::now();
    let candidates = parse_hidden(&args.hidden)?;
    check_args(args)?;
    let train_data = data::read_jsonl(&args.data, &args.text_field, &args.label_field)?;
    let eval_data = match &args.data_eval {
        Some(p) => Some(data::read_jsonl(p, &args.text_field, &args.label_field)?),
        None => None,
    };
    let labels: Vec<String> = train_data
        .labels
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if labels.len() < 2 {
        return Err(TrainError::Usage(format!(
            "{} has fewer than two labels",
            args.data.display()
        )));
    }
    if let Some(p) = &args.positive_label
        && (labels.len() != 2 || !labels.contains(p))
    {
        return Err(TrainError::Usage(format!(
            "--positive-label `{p}` needs a binary head with that label (labels: {labels:?})"
        )));
    }
    if args.windows == WindowPooling::Max && args.positive_label.is_none() {
        return Err(TrainError::Usage(
            "--windows max needs --positive-label (the label whose most probable window counts)"
                .into(),
        ));
    }
    let y = label_indices(&train_data, &labels)?;
    let eval_y = match &eval_data {
        Some(d) => Some(label_indices(d, &labels)?),
        None => None,
    };
    let is_val = data::validation_mask(args.seed, &train_data.texts, args.val_fraction);
    let val_rows = is_val.iter().filter(|v| **v).count();
    if val_rows == 0 || val_rows == is_val.len() {
        return Err(TrainError::Usage(format!(
            "--val-fraction {} leaves an empty train or validation split",
            args.val_fraction
        )));
    }

    let (encoder, encoder_info) =
        load_encoder(&args.model_dir, args.max_tokens, EncoderPrecision::F32)?;
    let mut cache = EmbeddingCache::open(
        &args.cache,
        &cache_identity(&encoder, &encoder_info),
        encoder_info.dim,
    )?;
    let mut texts: Vec<&str> = train_data.texts.iter().map(String::as_str).collect();
    if let Some(d) = &eval_data {
        texts.extend(d.texts.iter().map(String::as_str));
    }
    let (mut embeddings, stats) = embed_all(&encoder, &mut cache, &texts, EMBED_BATCH)?;
    drop(encoder);
    let eval_x = embeddings.split_off(train_data.texts.len());

    let (mut tx, mut ty, mut vx, mut vy) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((x, &c), &v) in embeddings.into_iter().zip(&y).zip(&is_val) {
        if v {
            vx.push(x);
            vy.push(c);
        } else {
            tx.push(x);
            ty.push(c);
        }
    }
    let weights = class_weights(args.class_weights, &ty, labels.len());

    let mut info = HeadInfo {
        format: HEAD_FORMAT,
        name: args.name.clone(),
        description: args.description.clone(),
        labels: labels.clone(),
        encoder: encoder_info,
        architecture: Architecture::default(),
        positive_label: args.positive_label.clone(),
        threshold: None,
        windows: args.windows,
        tokens: None,
        span_metrics: None,
        data: DataInfo::default(),
        metrics: Metrics::default(),
        training: TrainingInfo::default(),
    };
    let train_started = Instant::now();
    let mut fits: Vec<(Candidate, Vec<Layer>, Scores)> = Vec::new();
    for hidden in candidates {
        let cfg = Fit {
            hidden: hidden.clone(),
            max_epochs: args.epochs,
            learning_rate: args.lr,
            weight_decay: args.weight_decay,
            batch_size: args.batch_size,
            patience: args.patience,
            seed: args.seed,
        };
        let trained = fit(
            &cfg,
            Rows { x: &tx, y: &ty },
            Rows { x: &vx, y: &vy },
            &weights,
        )?;
        let mut stub = info.clone();
        stub.architecture = Architecture::from_hidden(hidden);
        let head = Head::new(stub, trained.layers.clone())?;
        let val_scores = scores(&labels, &vy, &predict_labels(&head, &vx));
        let candidate = Candidate {
            architecture: head.info().architecture.clone(),
            parameters: trained
                .layers
                .iter()
                .map(|l| l.weight.len() + l.bias.len())
                .sum(),
            epochs_run: trained.epochs_run,
            best_epoch: trained.best_epoch,
            val_loss: trained.best_val_loss,
            val_accuracy: val_scores.accuracy,
            val_macro_f1: val_scores.macro_f1,
            chosen: false,
        };
        eprintln!(
            "{}: {} epochs (best {}), validation loss {:.4}, accuracy {:.4}, macro-F1 {:.4}",
            candidate.architecture,
            candidate.epochs_run,
            candidate.best_epoch,
            candidate.val_loss,
            candidate.val_accuracy,
            candidate.val_macro_f1
        );
        fits.push((candidate, trained.layers, val_scores));
    }
    let train_seconds = train_started.elapsed().as_secs_f64();
    // Best validation macro-F1; on a tie the earlier (listed first, usually smaller) one.
    let mut best = 0;
    for (i, f) in fits.iter().enumerate() {
        if f.0.val_macro_f1 > fits[best].0.val_macro_f1 {
            best = i;
        }
    }
    fits[best].0.chosen = true;
    let chosen_arch = fits[best].0.architecture.clone();
    let layers = fits[best].1.clone();
    let validation = fits[best].2.clone();
    info.architecture = chosen_arch;
    let head = Head::new(info.clone(), layers.clone())?;

    // Measure on --data-eval, else on the validation split.
    let (on, ex, ey) = match (&eval_data, &eval_y) {
        (Some(d), Some(ey)) => (d.path.display().to_string(), &eval_x, ey),
        _ => (
            format!("validation split of {}", args.data.display()),
            &vx,
            &vy,
        ),
    };
    let probs = head.predict_batch(ex);
    let argmax_scores = scores(
        &labels,
        ey,
        &probs.iter().map(|p| argmax(p)).collect::<Vec<_>>(),
    );
    let at_threshold = match head.positive_index() {
        Some(pos) => {
            let positive = |probs: &[Vec<f32>], y: &[usize]| -> (Vec<f32>, Vec<bool>) {
                (
                    probs.iter().map(|p| p[pos]).collect(),
                    y.iter().map(|&c| c == pos).collect(),
                )
            };
            let (p, truth) = positive(&probs, ey);
            let chosen = match args.threshold_on {
                ThresholdOn::Eval => {
                    choose_threshold(&p, &truth, args.choose_threshold, args.max_fpr)
                }
                ThresholdOn::Validation => {
                    let (vp, vt) = positive(&head.predict_batch(&vx), &vy);
                    choose_threshold(&vp, &vt, args.choose_threshold, args.max_fpr)
                }
            };
            chosen.map(|t| {
                let pred: Vec<usize> = p
                    .iter()
                    .map(|&v| if v >= t { pos } else { 1 - pos })
                    .collect();
                ThresholdScores {
                    positive_label: labels[pos].clone(),
                    criterion: criterion_name(args),
                    threshold: t,
                    scores: scores(&labels, ey, &pred),
                }
            })
        }
        None => None,
    };
    info.threshold = at_threshold.as_ref().map(|t| t.threshold);
    info.metrics = Metrics {
        on,
        rows: ey.len(),
        argmax: argmax_scores,
        at_threshold,
    };
    info.data = data_info(
        args,
        &train_data,
        eval_data.as_ref(),
        &labels,
        (&ty, &vy, eval_y.as_deref()),
    );
    info.training = TrainingInfo {
        trainer: format!("routemesh-tools {}", env!("CARGO_PKG_VERSION")),
        optimizer:
            "AdamW (candle-nn), class-weighted cross-entropy, early stopping on validation loss"
                .into(),
        seed: args.seed,
        max_epochs: args.epochs,
        learning_rate: args.lr,
        weight_decay: args.weight_decay,
        batch_size: args.batch_size,
        patience: args.patience,
        class_weights: match args.class_weights {
            ClassWeights::Balanced => "balanced".into(),
            ClassWeights::None => "none".into(),
        },
        class_weight_values: weights.iter().map(|&w| f64::from(w)).collect(),
        candidates: fits.into_iter().map(|f| f.0).collect(),
        validation,
        texts_embedded: stats.embedded,
        texts_cached: stats.cached,
        embed_seconds: stats.elapsed.as_secs_f64(),
        train_seconds,
        wall_seconds: started.elapsed().as_secs_f64(),
        command,
    };
    let head = Head::new(info.clone(), head.layers().to_vec())?;
    head.save(&args.out)?;
    let readme = args.out.join("README.md");
    std::fs::write(&readme, super::report::readme(&info)).map_err(|source| TrainError::Write {
        path: readme,
        source,
    })?;
    Ok(info)
}

/// How the threshold was chosen, as head.json records it: `f1`,
/// `accuracy` or `fpr<=0.01`, and `on validation` when the validation
/// split chose it.
fn criterion_name(args: &TrainHeadArgs) -> String {
    let mut name = match args.choose_threshold {
        Criterion::Fpr => format!("fpr<={}", args.max_fpr),
        c => c.name().to_owned(),
    };
    if args.threshold_on == ThresholdOn::Validation {
        name.push_str(" on validation");
    }
    name
}

/// Measures a saved head on labelled rows (through the embedding cache), in
/// the asked precision, on all rows or one side of the trainer's split, and
/// compares with the metrics head.json records when the rows are the ones
/// they were measured on.
pub(crate) fn evaluate(args: &EvalHeadArgs) -> Result<Evaluation, TrainError> {
    let head = Head::load(&args.head)?;
    let info = head.info().clone();
    let max_tokens = args.max_tokens.or(info.encoder.max_tokens).unwrap_or(256);
    let d = data::read_jsonl_grouped(
        &args.data,
        &args.text_field,
        &args.label_field,
        args.group_field.as_deref(),
    )?;
    let labels = head.labels().to_vec();
    let (seed, val_fraction) = (
        args.seed.unwrap_or(info.data.split.seed),
        args.val_fraction.unwrap_or(info.data.split.val_fraction),
    );
    if args.split != Split::All && !(val_fraction > 0.0 && val_fraction < 1.0) {
        return Err(TrainError::Usage(format!(
            "--split {}: the validation share {val_fraction} must be in (0, 1) (--val-fraction)",
            args.split.name()
        )));
    }
    let rows = select_rows(&d.texts, args.split, seed, val_fraction);
    if rows.is_empty() {
        return Err(TrainError::Usage(format!(
            "--split {} leaves no rows of {}",
            args.split.name(),
            args.data.display()
        )));
    }
    let all_y = label_indices(&d, &labels)?;
    let y: Vec<usize> = rows.iter().map(|&i| all_y[i]).collect();
    let recorded = recorded_rows(&info, &d, args.split, seed, val_fraction);
    if recorded && args.split == Split::Validation {
        check_split_counts(&info, &labels, &y)?;
    }

    let (encoder, encoder_info) = load_encoder(&args.model_dir, max_tokens, args.precision)?;
    if encoder_info.sha256 != info.encoder.sha256 || encoder_info.dim != head.dim() {
        return Err(TrainError::Usage(format!(
            "{} was trained on encoder {} (sha256 {}), not on {} (sha256 {})",
            args.head.display(),
            info.encoder.name,
            info.encoder.sha256,
            args.model_dir.display(),
            encoder_info.sha256
        )));
    }
    let identity = cache_identity(&encoder, &encoder_info);
    let mut cache = EmbeddingCache::open(&args.cache, &identity, encoder_info.dim)?;
    let texts: Vec<&str> = rows.iter().map(|&i| d.texts[i].as_str()).collect();
    let (x, stats): (Vec<Vec<f32>>, EmbedStats) =
        embed_all(&encoder, &mut cache, &texts, EMBED_BATCH)?;
    drop(encoder);
    let probs = head.predict_batch(&x);

    let on = match args.split {
        Split::All => args.data.display().to_string(),
        split => format!(
            "{} split of {}, seed {seed}, {val_fraction} held out",
            split.name(),
            args.data.display()
        ),
    };
    let metrics = measure(&head, &y, &probs, on);
    let mut groups = Vec::new();
    if let Some(field) = &args.group_field {
        let mut values: Vec<&str> = rows.iter().map(|&i| d.groups[i].as_str()).collect();
        values.sort_unstable();
        values.dedup();
        for value in values {
            let part: Vec<usize> = (0..rows.len())
                .filter(|&k| d.groups[rows[k]] == value)
                .collect();
            let gy: Vec<usize> = part.iter().map(|&k| y[k]).collect();
            let gp: Vec<Vec<f32>> = part.iter().map(|&k| probs[k].clone()).collect();
            groups.push(GroupMetrics {
                value: value.to_owned(),
                metrics: measure(&head, &gy, &gp, format!("{field} = {value}")),
            });
        }
    }
    let versus = recorded.then(|| Versus::of(&info.metrics, &metrics));
    Ok(Evaluation {
        head: args.head.display().to_string(),
        name: info.name.clone(),
        data: args.data.display().to_string(),
        data_sha256: d.sha256.clone(),
        split: args.split.name().to_owned(),
        seed: (args.split != Split::All).then_some(seed),
        val_fraction: (args.split != Split::All).then_some(val_fraction),
        precision: args.precision.to_string(),
        precision_in_use: identity.precision.clone(),
        max_tokens,
        cache_file: args.cache.join(identity.file_name()).display().to_string(),
        texts_embedded: stats.embedded,
        texts_cached: stats.cached,
        embed_seconds: stats.elapsed.as_secs_f64(),
        metrics,
        group_field: args.group_field.clone(),
        groups,
        recorded: versus,
    })
}

/// Indices of the rows `split` keeps, in file order: the trainer's own
/// split ([`data::validation_mask`]), so `validation` is exactly the rows a
/// head trained on this file with this seed and share was measured on.
fn select_rows(texts: &[String], split: Split, seed: u64, val_fraction: f64) -> Vec<usize> {
    if split == Split::All {
        return (0..texts.len()).collect();
    }
    let want = split == Split::Validation;
    data::validation_mask(seed, texts, val_fraction)
        .into_iter()
        .enumerate()
        .filter(|&(_, v)| v == want)
        .map(|(i, _)| i)
        .collect()
}

/// Whether these are the rows head.json's metrics were measured on: the
/// validation split of the very training file (same bytes, seed and share),
/// or all of the very evaluation file.
fn recorded_rows(info: &HeadInfo, d: &Dataset, split: Split, seed: u64, val_fraction: f64) -> bool {
    let on_validation = info.metrics.on.starts_with("validation split");
    fn sha(f: &Option<DataFile>) -> Option<&str> {
        f.as_ref().map(|f| f.sha256.as_str())
    }
    match split {
        Split::Validation => {
            on_validation
                && sha(&info.data.train) == Some(d.sha256.as_str())
                && seed == info.data.split.seed
                && val_fraction == info.data.split.val_fraction
        }
        Split::All => !on_validation && sha(&info.data.eval) == Some(d.sha256.as_str()),
        Split::Train => false,
    }
}

/// The validation rows per label must be the ones head.json counted: if
/// not, the split function has changed and nothing here is comparable.
fn check_split_counts(info: &HeadInfo, labels: &[String], y: &[usize]) -> Result<(), TrainError> {
    let recorded: Vec<usize> = labels
        .iter()
        .map(|l| {
            info.data
                .label_counts
                .iter()
                .find(|c| &c.label == l)
                .map_or(0, |c| c.val)
        })
        .collect();
    let now: Vec<usize> = (0..labels.len())
        .map(|c| y.iter().filter(|&&v| v == c).count())
        .collect();
    if now == recorded && y.len() == info.data.split.val_rows {
        Ok(())
    } else {
        Err(TrainError::Usage(format!(
            "the validation split has {} rows per label {now:?}, head.json records {} rows \
             {recorded:?}: the split is not the trainer's",
            y.len(),
            info.data.split.val_rows
        )))
    }
}

/// Accuracy and macro-F1 at argmax and, for a binary head, at its recorded
/// threshold.
fn measure(head: &Head, y: &[usize], probs: &[Vec<f32>], on: String) -> Metrics {
    let labels = head.labels();
    let argmax_pred: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
    let at_threshold = match (head.positive_index(), head.info().threshold) {
        (Some(pos), Some(t)) => {
            let pred: Vec<usize> = probs.iter().map(|p| head.decide(p).unwrap_or(0)).collect();
            Some(ThresholdScores {
                positive_label: labels[pos].clone(),
                criterion: "as recorded in head.json".into(),
                threshold: t,
                scores: scores(labels, y, &pred),
            })
        }
        _ => None,
    };
    Metrics {
        on,
        rows: y.len(),
        argmax: scores(labels, y, &argmax_pred),
        at_threshold,
    }
}

/// Parses `0,256,256x128` into hidden-width lists (`0` = none).
fn parse_hidden(spec: &str) -> Result<Vec<Vec<usize>>, TrainError> {
    let bad = || {
        TrainError::Usage(format!(
            "--hidden `{spec}`: use e.g. 0, 256 or 0,256,256x128"
        ))
    };
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim) {
        let widths: Vec<usize> = item
            .split('x')
            .map(|w| w.trim().parse::<usize>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        match widths.as_slice() {
            [0] => out.push(Vec::new()),
            ws if ws.iter().all(|&w| w > 0) => out.push(ws.to_vec()),
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

fn check_args(args: &TrainHeadArgs) -> Result<(), TrainError> {
    let problem = if args.name.trim().is_empty() {
        Some("--name must not be empty".to_owned())
    } else if !(args.val_fraction > 0.0 && args.val_fraction < 1.0) {
        Some(format!(
            "--val-fraction {} must be in (0, 1)",
            args.val_fraction
        ))
    } else if args.epochs == 0 || args.batch_size == 0 {
        Some("--epochs and --batch-size must be at least 1".to_owned())
    } else if !(args.lr > 0.0 && args.lr.is_finite())
        || args.weight_decay.is_nan()
        || args.weight_decay < 0.0
    {
        Some("--lr must be positive and --weight-decay not negative".to_owned())
    } else if !(0.0..=1.0).contains(&args.max_fpr) {
        Some(format!("--max-fpr {} must be in [0, 1]", args.max_fpr))
    } else {
        None
    };
    problem.map_or(Ok(()), |p| Err(TrainError::Usage(p)))
}

fn label_indices(d: &Dataset, labels: &[String]) -> Result<Vec<usize>, TrainError> {
    d.labels
        .iter()
        .map(|l| {
            labels
                .iter()
                .position(|x| x == l)
                .ok_or_else(|| TrainError::Data {
                    path: d.path.clone(),
                    line: 0,
                    message: format!("label `{l}` is not among the head's labels {labels:?}"),
                })
        })
        .collect()
}

/// The encoder and its identity (folder name, weights sha256, width). Heads
/// are trained and measured on one window per text (the first `max_tokens`
/// tokens: what the serving encoder scores each window on); training runs in
/// f32, the reference precision, so the recorded metrics stay the same
/// whatever the serving encoder's precision; `eval-head` may ask for another.
pub(crate) fn load_encoder(
    dir: &Path,
    max_tokens: usize,
    precision: EncoderPrecision,
) -> Result<(Encoder, EncoderInfo), TrainError> {
    let sha256 = data::sha256_file(&dir.join("model.safetensors"))?;
    let opts = EncoderOptions {
        max_tokens,
        max_total_tokens: max_tokens,
        precision,
    };
    let encoder = Encoder::load(dir, &opts).map_err(|source| TrainError::Encoder {
        path: dir.to_owned(),
        source,
    })?;
    let name = dir
        .file_name()
        .map_or_else(|| "model".to_owned(), |n| n.to_string_lossy().into_owned());
    let info = EncoderInfo {
        name,
        sha256,
        dim: encoder.dim(),
        max_tokens: Some(max_tokens),
    };
    Ok((encoder, info))
}

/// The embedding cache's identity of this encoder: its weights, window and
/// the precision it actually runs (`auto` resolved).
fn cache_identity(encoder: &Encoder, info: &EncoderInfo) -> CacheIdentity {
    CacheIdentity {
        model_sha256: info.sha256.clone(),
        max_tokens: encoder.max_tokens(),
        precision: encoder.precision_in_use(),
    }
}

fn class_weights(mode: ClassWeights, y: &[usize], classes: usize) -> Vec<f32> {
    match mode {
        ClassWeights::None => vec![1.0; classes],
        ClassWeights::Balanced => {
            let mut counts = vec![0usize; classes];
            y.iter().for_each(|&c| counts[c] += 1);
            counts
                .iter()
                .map(|&n| {
                    if n == 0 {
                        1.0
                    } else {
                        y.len() as f32 / (classes * n) as f32
                    }
                })
                .collect()
        }
    }
}

fn predict_labels(head: &Head, x: &[Vec<f32>]) -> Vec<usize> {
    x.iter().map(|e| argmax(&head.predict(e))).collect()
}

fn data_info(
    args: &TrainHeadArgs,
    train: &Dataset,
    eval: Option<&Dataset>,
    labels: &[String],
    (ty, vy, ey): (&[usize], &[usize], Option<&[usize]>),
) -> DataInfo {
    let count = |ys: &[usize], c: usize| ys.iter().filter(|&&y| y == c).count();
    let file = |d: &Dataset| DataFile {
        path: d.path.display().to_string(),
        sha256: d.sha256.clone(),
        rows: d.texts.len(),
    };
    DataInfo {
        train: Some(file(train)),
        eval: eval.map(file),
        text_field: args.text_field.clone(),
        label_field: args.label_field.clone(),
        split: SplitInfo {
            method: data::SPLIT_METHOD.into(),
            seed: args.seed,
            val_fraction: args.val_fraction,
            train_rows: ty.len(),
            val_rows: vy.len(),
        },
        label_counts: labels
            .iter()
            .enumerate()
            .map(|(c, label)| LabelCount {
                label: label.clone(),
                train: count(ty, c),
                val: count(vy, c),
                eval: ey.map(|ey| count(ey, c)),
            })
            .collect(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hidden_specs_parse() {
        assert_eq!(parse_hidden("0").unwrap(), vec![Vec::<usize>::new()]);
        assert_eq!(
            parse_hidden("0, 256,256x64").unwrap(),
            vec![vec![], vec![256], vec![256, 64]]
        );
        assert!(parse_hidden("0x5").is_err());
        assert!(parse_hidden("abc").is_err());
    }

    #[test]
    fn eval_splits_are_the_trainers() {
        let texts: Vec<String> = (0..2_000).map(|i| format!("question {i}")).collect();
        let val = select_rows(&texts, Split::Validation, 42, 0.1);
        let train = select_rows(&texts, Split::Train, 42, 0.1);
        assert_eq!(select_rows(&texts, Split::All, 42, 0.1).len(), texts.len());
        assert_eq!(val.len() + train.len(), texts.len());
        // Exactly the rows `train` holds out (the same call it makes).
        let held_out: Vec<usize> = (0..texts.len())
            .filter(|&i| data::is_validation(42, &texts[i], 0.1))
            .collect();
        assert_eq!(val, held_out);
        assert!(train.iter().all(|i| !held_out.contains(i)));
        assert_ne!(val, select_rows(&texts, Split::Validation, 7, 0.1));
    }

    fn shipped(head: &str) -> HeadInfo {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../heads/{head}/head.json"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn recorded_rows_need_the_same_file_seed_and_share() {
        let d = |sha: &str| Dataset {
            path: "d.jsonl".into(),
            sha256: sha.into(),
            texts: Vec::new(),
            labels: Vec::new(),
            groups: Vec::new(),
        };
        // domain: measured on the validation split of its training file.
        let info = shipped("domain");
        let train = info.data.train.clone().unwrap().sha256;
        assert!(recorded_rows(&info, &d(&train), Split::Validation, 42, 0.1));
        assert!(!recorded_rows(
            &info,
            &d("other"),
            Split::Validation,
            42,
            0.1
        ));
        assert!(!recorded_rows(&info, &d(&train), Split::Validation, 7, 0.1));
        assert!(!recorded_rows(
            &info,
            &d(&train),
            Split::Validation,
            42,
            0.2
        ));
        assert!(!recorded_rows(&info, &d(&train), Split::All, 42, 0.1));
        assert!(!recorded_rows(&info, &d(&train), Split::Train, 42, 0.1));
        // injection: measured on all of a separate evaluation file.
        let info = shipped("injection");
        let eval = info.data.eval.clone().unwrap().sha256;
        let train = info.data.train.clone().unwrap().sha256;
        assert!(recorded_rows(&info, &d(&eval), Split::All, 42, 0.1));
        assert!(!recorded_rows(&info, &d(&eval), Split::Validation, 42, 0.1));
        assert!(!recorded_rows(&info, &d(&train), Split::All, 42, 0.1));
    }

    #[test]
    fn the_recorded_split_counts_are_checked() {
        let info = shipped("difficulty");
        let labels = info.labels.clone();
        // 460 easy, 404 hard, as recorded.
        let mut y = vec![0; 460];
        y.extend(vec![1; 404]);
        check_split_counts(&info, &labels, &y).unwrap();
        y.pop();
        y.push(0);
        assert!(check_split_counts(&info, &labels, &y).is_err());
    }

    #[test]
    fn balanced_weights_even_out_the_classes() {
        let w = class_weights(ClassWeights::Balanced, &[0, 0, 0, 1], 2);
        assert_eq!(w, vec![4.0 / 6.0, 2.0]);
        // Each class then contributes the same total weight.
        assert!((3.0 * w[0] - w[1]).abs() < 1e-6);
    }
}
