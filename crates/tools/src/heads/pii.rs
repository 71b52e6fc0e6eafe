//! `train-pii-head`: a BIO token tagger for the kinds of personal data the
//! regular expressions cannot find (names, addresses, places, …), trained on
//! the encoder's token states of labelled spans (presidio's synthetic set in
//! `shared/data/pii/pii_train.jsonl`), measured per type on texts it never
//! saw, and written as a token head folder.
//!
//! Split (seeded, by text, so duplicate texts stay on one side): a text is a
//! test text iff `sha256("<seed>:<text>")` falls in the first `test_fraction`
//! of the range; of the rest, `sha256("<seed+1>:<text>")` picks
//! `val_fraction` for early stopping. Test texts are only measured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use routemesh_classifier_worker::heads::{
    Architecture, DataFile, DataInfo, HEAD_FORMAT, Head, HeadInfo, SHAPE_VERSION, SpanMetrics,
    SpanTypeScores, SplitInfo, TokenHead, TokenInput, TrainingInfo, bio_labels, token_features,
};
use routemesh_common::config::EncoderPrecision;
use routemesh_common::{PiiKind, PiiSpan};
use routemesh_signals::pii::{PiiDetector, merge};

use super::data::{self, is_validation};
use super::error::TrainError;
use super::train::{Fit, Rows, fit};
use crate::pii_eval::{Record, presidio_type};

/// The kinds the tagger learns: every kind the detectors do not cover.
pub fn tagged_kinds() -> Vec<PiiKind> {
    PiiKind::ALL
        .into_iter()
        .filter(|k| !k.is_structured())
        .collect()
}

/// Arguments of `train-pii-head`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainPiiArgs {
    /// JSONL with `text` and character-offset `spans` of presidio types.
    #[arg(long)]
    pub data: PathBuf,
    /// The encoder folder (scripts/fetch-model.sh).
    #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
    pub model_dir: PathBuf,
    /// Where to write the head folder.
    #[arg(long, default_value = "heads/pii")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Share of texts held out for measuring only.
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// Share of the remaining texts used for early stopping.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Neighbouring token states on each side a token's input includes.
    #[arg(long, default_value_t = 1)]
    pub context: usize,
    /// Hidden layer width (0: a linear tagger).
    #[arg(long, default_value_t = 128)]
    pub hidden: usize,
    #[arg(long, default_value_t = 60)]
    pub epochs: usize,
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 6)]
    pub patience: usize,
    /// Tokens read per text (one encoder window).
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
}

/// Trains, measures and writes the head; prints the per-type table.
pub fn train_pii_head(args: &TrainPiiArgs, command: Vec<String>) -> Result<HeadInfo, TrainError> {
    let started = Instant::now();
    let records = read_records(&args.data)?;
    let kinds = tagged_kinds();
    let entities: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    let labels = bio_labels(&entities);
    let (encoder, encoder_info) =
        super::trainer::load_encoder(&args.model_dir, args.max_tokens, EncoderPrecision::F32)?;

    // each text's token features and BIO targets
    eprintln!(
        "train-pii-head: reading {} texts' token states",
        records.len()
    );
    let bar = super::progress::bar(records.len() as u64, "tokens");
    let mut per_text = Vec::with_capacity(records.len());
    let embed_started = Instant::now();
    for chunk in records.chunks(32) {
        let texts: Vec<&str> = chunk.iter().map(|r| r.text.as_str()).collect();
        let encoded = encoder
            .encode_with_tokens(&texts)
            .map_err(TrainError::Encoding)?;
        for (r, tokens) in chunk.iter().zip(&encoded.tokens) {
            let f = token_features(&r.text, tokens, args.context);
            let gold = gold_spans(r);
            let y = targets(&f.offsets, &gold, &kinds);
            per_text.push((f, y));
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let embed_seconds = embed_started.elapsed().as_secs_f64();

    let test: Vec<bool> = records
        .iter()
        .map(|r| is_validation(args.seed, &r.text, args.test_fraction))
        .collect();
    let val: Vec<bool> = records
        .iter()
        .map(|r| is_validation(args.seed + 1, &r.text, args.val_fraction))
        .collect();
    let (mut tx, mut ty, mut vx, mut vy) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut train_texts, mut val_texts, mut test_texts) = (0, 0, 0);
    for (i, (f, y)) in per_text.iter().enumerate() {
        if test[i] {
            test_texts += 1;
            continue;
        }
        let (xs, ys) = if val[i] {
            val_texts += 1;
            (&mut vx, &mut vy)
        } else {
            train_texts += 1;
            (&mut tx, &mut ty)
        };
        for (row, &label) in f.x.chunks_exact(f.width).zip(y) {
            xs.push(row.to_vec());
            ys.push(label);
        }
    }
    // class weights: sqrt of balanced, so rare tags count without swamping O
    let mut counts = vec![0usize; labels.len()];
    ty.iter().for_each(|&y| counts[y] += 1);
    let n = ty.len() as f64;
    let weights: Vec<f32> = counts
        .iter()
        .map(|&c| ((n / (labels.len() as f64 * c.max(1) as f64)).sqrt()).min(10.0) as f32)
        .collect();
    eprintln!(
        "train-pii-head: {} train tokens ({train_texts} texts), {} validation tokens ({val_texts} texts), {test_texts} test texts",
        tx.len(),
        vx.len()
    );
    let hidden = if args.hidden == 0 {
        vec![]
    } else {
        vec![args.hidden]
    };
    let train_started = Instant::now();
    let trained = fit(
        &Fit {
            hidden: hidden.clone(),
            max_epochs: args.epochs,
            learning_rate: args.lr,
            weight_decay: args.weight_decay,
            batch_size: args.batch_size,
            patience: args.patience,
            seed: args.seed,
        },
        Rows { x: &tx, y: &ty },
        Rows { x: &vx, y: &vy },
        &weights,
    )?;
    let train_seconds = train_started.elapsed().as_secs_f64();

    let mut info = HeadInfo {
        format: HEAD_FORMAT,
        name: "pii".into(),
        description: "Personal data the regexes cannot find: BIO tags over the encoder's token states".into(),
        labels: labels.clone(),
        encoder: encoder_info,
        architecture: Architecture::from_hidden(hidden),
        positive_label: None,
        threshold: None,
        windows: Default::default(),
        tokens: Some(TokenInput {
            context: args.context,
            shape: SHAPE_VERSION.into(),
        }),
        span_metrics: None,
        data: DataInfo {
            train: Some(DataFile {
                path: args.data.display().to_string(),
                sha256: data::sha256_file(&args.data)?,
                rows: records.len(),
            }),
            eval: None,
            text_field: "text".into(),
            label_field: "spans".into(),
            split: SplitInfo {
                method: format!(
                    "by text: test iff sha256(\"{}:<text>\") < {}·2^64; of the rest, validation (early stopping) iff sha256(\"{}:<text>\") < {}·2^64",
                    args.seed, args.test_fraction, args.seed + 1, args.val_fraction
                ),
                seed: args.seed,
                val_fraction: args.val_fraction,
                train_rows: train_texts,
                val_rows: val_texts,
            },
            label_counts: Vec::new(),
        },
        metrics: Default::default(),
        training: TrainingInfo {
            trainer: format!("routemesh-tools {}", env!("CARGO_PKG_VERSION")),
            optimizer: "AdamW (candle-nn), class-weighted cross-entropy per token, early stopping on validation loss".into(),
            seed: args.seed,
            max_epochs: args.epochs,
            learning_rate: args.lr,
            weight_decay: args.weight_decay,
            batch_size: args.batch_size,
            patience: args.patience,
            class_weights: "sqrt(balanced), at most 10".into(),
            class_weight_values: weights.iter().map(|&w| f64::from(w)).collect(),
            candidates: Vec::new(),
            validation: Default::default(),
            texts_embedded: records.len(),
            texts_cached: 0,
            embed_seconds,
            train_seconds,
            wall_seconds: 0.0,
            command,
        },
    };
    let head = TokenHead::new(Head::new(info.clone(), trained.layers.clone())?)
        .map_err(TrainError::Usage)?;

    // measured on the test texts: the tagger alone, and merged with the detectors
    let detector = PiiDetector::new();
    let mut tagger_counts = Counts::default();
    let mut merged_counts = Counts::default();
    let mut regex_counts = Counts::default();
    let mut k = 0;
    for chunk_start in (0..records.len()).step_by(32) {
        let chunk: Vec<usize> = (chunk_start..(chunk_start + 32).min(records.len()))
            .filter(|&i| test[i])
            .collect();
        if chunk.is_empty() {
            continue;
        }
        let texts: Vec<&str> = chunk.iter().map(|&i| records[i].text.as_str()).collect();
        let encoded = encoder
            .encode_with_tokens(&texts)
            .map_err(TrainError::Encoding)?;
        for (&i, tokens) in chunk.iter().zip(&encoded.tokens) {
            let r = &records[i];
            let gold = gold_spans(r);
            let tagged: Vec<PiiSpan> = head
                .tag(&r.text, tokens)
                .into_iter()
                .filter_map(|s| {
                    Some(PiiSpan {
                        kind: PiiKind::from_name(&s.label)?,
                        start: s.start,
                        end: s.end,
                    })
                })
                .collect();
            let detected = detector.detect(&r.text);
            tagger_counts.add(&gold, &tagged);
            regex_counts.add(&gold, &detected);
            merged_counts.add(&gold, &merge(&r.text, detected, tagged));
            k += 1;
        }
    }
    let on = format!(
        "{k} test texts of {} (never trained on)",
        args.data.display()
    );
    info.span_metrics = Some(merged_counts.metrics(&on));
    info.training.wall_seconds = started.elapsed().as_secs_f64();
    let head = Head::new(info.clone(), trained.layers)?;
    head.save(&args.out)?;
    let readme = readme(&info, &tagger_counts, &regex_counts, &merged_counts);
    std::fs::write(args.out.join("README.md"), &readme).map_err(|source| TrainError::Write {
        path: args.out.join("README.md"),
        source,
    })?;
    println!("{}", merged_counts.table());
    Ok(info)
}

fn read_records(path: &Path) -> Result<Vec<Record>, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
        path: path.to_owned(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<Record>(l).map_err(|e| TrainError::Data {
                path: path.to_owned(),
                line: i + 1,
                message: e.to_string(),
            })
        })
        .collect()
}

/// A record's gold spans as kinds and byte offsets (unknown types dropped).
fn gold_spans(r: &Record) -> Vec<PiiSpan> {
    r.spans
        .iter()
        .filter_map(|s| {
            let kind = PiiKind::ALL
                .into_iter()
                .find(|k| presidio_type(*k) == s.kind)?;
            Some(PiiSpan {
                kind,
                start: byte_offset(&r.text, s.start)?,
                end: byte_offset(&r.text, s.end)?,
            })
        })
        .collect()
}

fn byte_offset(text: &str, index: usize) -> Option<usize> {
    text.char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(text.len()))
        .nth(index)
}

/// BIO label index per token: `B-k` for the first token overlapping a gold
/// span of a tagged kind, `I-k` for the others, `O` elsewhere.
fn targets(offsets: &[(usize, usize)], gold: &[PiiSpan], kinds: &[PiiKind]) -> Vec<usize> {
    let mut y = vec![0usize; offsets.len()];
    for g in gold {
        let Some(k) = kinds.iter().position(|&x| x == g.kind) else {
            continue;
        };
        let mut first = true;
        for (t, &(s, e)) in offsets.iter().enumerate() {
            if s < g.end && g.start < e {
                y[t] = 1 + 2 * k + usize::from(!first);
                first = false;
            }
        }
    }
    y
}

/// Overlap matching per kind.
#[derive(Debug, Default)]
struct Counts(BTreeMap<PiiKind, SpanTypeScores>);

impl Counts {
    fn add(&mut self, gold: &[PiiSpan], predicted: &[PiiSpan]) {
        let overlaps =
            |a: &PiiSpan, b: &PiiSpan| a.kind == b.kind && a.start < b.end && b.start < a.end;
        for g in gold {
            let c = self.entry(g.kind);
            c.gold += 1;
            if predicted.iter().any(|p| overlaps(p, g)) {
                c.found += 1;
            }
        }
        for p in predicted {
            let c = self.entry(p.kind);
            c.predicted += 1;
            if gold.iter().any(|g| overlaps(p, g)) {
                c.correct += 1;
            }
            if gold
                .iter()
                .any(|g| g.kind == p.kind && (g.start, g.end) == (p.start, p.end))
            {
                c.exact += 1;
            }
        }
    }

    fn entry(&mut self, kind: PiiKind) -> &mut SpanTypeScores {
        self.0.entry(kind).or_insert_with(|| SpanTypeScores {
            label: kind.name().into(),
            ..SpanTypeScores::default()
        })
    }

    fn finished(&self) -> Vec<SpanTypeScores> {
        self.0
            .values()
            .map(|c| SpanTypeScores {
                precision: ratio(c.correct, c.predicted),
                recall: ratio(c.found, c.gold),
                ..c.clone()
            })
            .collect()
    }

    fn metrics(&self, on: &str) -> SpanMetrics {
        SpanMetrics {
            on: on.into(),
            texts: 0,
            matching: "overlap, same type".into(),
            per_type: self.finished(),
        }
    }

    fn table(&self) -> String {
        let mut out = String::from(
            "| type | gold | found | recall | predicted | correct | precision | exact offsets |\n|---|--:|--:|--:|--:|--:|--:|--:|\n",
        );
        let mut new = (0, 0, 0, 0);
        for c in self.finished() {
            out.push_str(&format!(
                "| {} | {} | {} | {:.3} | {} | {} | {:.3} | {} |\n",
                c.label, c.gold, c.found, c.recall, c.predicted, c.correct, c.precision, c.exact
            ));
            if PiiKind::from_name(&c.label).is_some_and(|k| !k.is_structured()) {
                new.0 += c.gold;
                new.1 += c.found;
                new.2 += c.predicted;
                new.3 += c.correct;
            }
        }
        out.push_str(&format!(
            "| **tagged kinds, all** | {} | {} | {:.3} | {} | {} | {:.3} | |\n",
            new.0,
            new.1,
            ratio(new.1, new.0),
            new.2,
            new.3,
            ratio(new.3, new.2)
        ));
        out
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn readme(info: &HeadInfo, tagger: &Counts, regex: &Counts, merged: &Counts) -> String {
    let t = &info.training;
    format!(
        "# pii — personal data the regular expressions cannot find\n\n\
         A token head (generated by `routemesh-tools train-pii-head`; do not edit):\n\
         BIO tags for {kinds} over the encoder's token states ({enc}, f32, sha256 `{sha}`),\n\
         each token's input being its state, {ctx} neighbour(s) each side and {shape} shape\n\
         flags; architecture {arch}. Served by the classifier worker in the same encoder pass\n\
         as every other head; the gateway merges its spans with the regex detectors'\n\
         (a detector's span wins an overlap).\n\n\
         Data: `{data}` (sha256 `{dsha}`, {rows} texts; presidio-research's synthetic set, MIT).\n\
         Split: {split}. Train {tr} texts, validation {va} texts.\n\n\
         ## Measured on the test texts (never trained on; overlap of the same type)\n\n\
         Merged (what `/v1/route` reports and `redact_pii` replaces):\n\n{m}\n\
         The tagger alone:\n\n{tg}\n\
         The regex detectors alone (as before this head):\n\n{rx}\n\
         Caveat: one source only (presidio's templates filled with fake values), so test texts\n\
         share templates with training texts; real traffic will score lower.\n\n\
         ## Record\n\n\
         {opt}; lr {lr}, weight decay {wd}, batch {bs}, at most {ep} epochs, patience {pa};\n\
         class weights {cw}. Token states {es:.0} s, training {ts:.0} s, wall {ws:.0} s.\n\n\
         Reproduce: `{cmd}`\n",
        kinds = tagged_kinds()
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", "),
        enc = info.encoder.name,
        sha = info.encoder.sha256,
        ctx = info.tokens.as_ref().map_or(0, |x| x.context),
        shape = routemesh_classifier_worker::heads::SHAPE_FEATURES,
        arch = info.architecture,
        data = info.data.train.as_ref().map_or("", |d| d.path.as_str()),
        dsha = info.data.train.as_ref().map_or("", |d| d.sha256.as_str()),
        rows = info.data.train.as_ref().map_or(0, |d| d.rows),
        split = info.data.split.method,
        tr = info.data.split.train_rows,
        va = info.data.split.val_rows,
        m = merged.table(),
        tg = tagger.table(),
        rx = regex.table(),
        opt = t.optimizer,
        lr = t.learning_rate,
        wd = t.weight_decay,
        bs = t.batch_size,
        ep = t.max_epochs,
        pa = t.patience,
        cw = t.class_weights,
        es = t.embed_seconds,
        ts = t.train_seconds,
        ws = t.wall_seconds,
        cmd = t.command.join(" "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_mark_the_first_overlapping_token_begin() {
        let kinds = tagged_kinds();
        let person = kinds
            .iter()
            .position(|&k| k == PiiKind::Person)
            .unwrap_or(0);
        let offsets = [(0, 2), (3, 7), (7, 10), (11, 13)];
        let gold = [
            PiiSpan {
                kind: PiiKind::Person,
                start: 3,
                end: 10,
            },
            PiiSpan {
                kind: PiiKind::Email,
                start: 11,
                end: 13,
            }, // the regexes' kind: O
        ];
        let y = targets(&offsets, &gold, &kinds);
        assert_eq!(y, vec![0, 1 + 2 * person, 2 + 2 * person, 0]);
    }

    #[test]
    fn counts_match_by_overlap_and_type() {
        let mut c = Counts::default();
        let g = [PiiSpan {
            kind: PiiKind::Person,
            start: 0,
            end: 5,
        }];
        let p = [
            PiiSpan {
                kind: PiiKind::Person,
                start: 2,
                end: 5,
            },
            PiiSpan {
                kind: PiiKind::Location,
                start: 0,
                end: 5,
            },
        ];
        c.add(&g, &p);
        let f = c.finished();
        let person = f
            .iter()
            .find(|s| s.label == "person")
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            (
                person.gold,
                person.found,
                person.predicted,
                person.correct,
                person.exact
            ),
            (1, 1, 1, 1, 0)
        );
        let loc = f
            .iter()
            .find(|s| s.label == "location")
            .cloned()
            .unwrap_or_default();
        assert_eq!((loc.predicted, loc.correct), (1, 0));
        assert_eq!(loc.precision, 0.0);
    }
}
