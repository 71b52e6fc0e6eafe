//! `make-difficulty-data`: labels MMLU-Pro prompts `hard` or `easy` from
//! how many cheap models answered them correctly.
//!
//! A prompt is `hard` when at most `max_cheap_correct` of the cheap models
//! got it right (default: at most 1 of the 4 models that cost under $0.1 per
//! 1k queries in shared/data's table), `easy` otherwise. Rows keep the input
//! order, so the output is byte-for-byte reproducible.

use std::fmt;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::TrainError;

/// The models under $0.1 per 1k queries on the training file.
pub const DEFAULT_CHEAP: [&str; 4] = [
    "gemini-1.5-flash-002",
    "llama-3.1-8b-instruct",
    "phi-3-mini-4k-instruct",
    "mistral-7b-instruct-v0.2",
];

#[derive(Debug, Deserialize)]
struct InRow {
    id: String,
    category: String,
    question: String,
    models: std::collections::BTreeMap<String, ModelResult>,
}

/// One output row.
#[derive(Debug, Serialize)]
struct OutRow<'a> {
    id: &'a str,
    question: &'a str,
    category: &'a str,
    cheap_correct: usize,
    label: &'a str,
}

#[derive(Debug, Deserialize)]
struct ModelResult {
    correct: bool,
}

/// Rows written per label, and per number of cheap models correct.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DifficultyCounts {
    pub hard: usize,
    pub easy: usize,
    /// `by_correct[k]` = rows that exactly k cheap models answered correctly.
    pub by_correct: Vec<usize>,
}

impl fmt::Display for DifficultyCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = (self.hard + self.easy).max(1) as f64;
        writeln!(
            f,
            "hard {} ({:.1}%), easy {} ({:.1}%)",
            self.hard,
            100.0 * self.hard as f64 / total,
            self.easy,
            100.0 * self.easy as f64 / total
        )?;
        for (k, n) in self.by_correct.iter().enumerate() {
            writeln!(f, "  {k} cheap models correct: {n}")?;
        }
        Ok(())
    }
}

/// Reads MMLU-Pro rows from `input` and writes `{id, question, category,
/// cheap_correct, label}` rows to `output`.
pub fn convert(
    input: &Path,
    output: &Path,
    cheap: &[String],
    max_cheap_correct: usize,
) -> Result<DifficultyCounts, TrainError> {
    if cheap.is_empty() {
        return Err(TrainError::Usage("--cheap names no model".into()));
    }
    let text = std::fs::read_to_string(input).map_err(|source| TrainError::Io {
        path: input.to_owned(),
        source,
    })?;
    let mut out = Vec::with_capacity(text.len() / 2);
    let mut counts = DifficultyCounts {
        by_correct: vec![0; cheap.len() + 1],
        ..Default::default()
    };
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| TrainError::Data {
            path: input.to_owned(),
            line: i + 1,
            message,
        };
        let row: InRow = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let mut correct = 0;
        for m in cheap {
            let r = row
                .models
                .get(m)
                .ok_or_else(|| bad(format!("no result for model `{m}`")))?;
            correct += usize::from(r.correct);
        }
        counts.by_correct[correct] += 1;
        let label = if correct <= max_cheap_correct {
            counts.hard += 1;
            "hard"
        } else {
            counts.easy += 1;
            "easy"
        };
        let record = OutRow {
            id: &row.id,
            question: &row.question,
            category: &row.category,
            cheap_correct: correct,
            label,
        };
        serde_json::to_writer(&mut out, &record).map_err(|e| bad(e.to_string()))?;
        out.push(b'\n');
    }
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| TrainError::Write {
            path: parent.to_owned(),
            source,
        })?;
    }
    std::fs::File::create(output)
        .and_then(|mut f| f.write_all(&out))
        .map_err(|source| TrainError::Write {
            path: output.to_owned(),
            source,
        })?;
    Ok(counts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(id: &str, correct: [bool; 3]) -> String {
        format!(
            r#"{{"id":"{id}","category":"math","question":"q {id}","answer":"A","models":{{"a":{{"correct":{},"out_tokens":1}},"b":{{"correct":{},"out_tokens":1}},"c":{{"correct":{},"out_tokens":1}}}}}}"#,
            correct[0], correct[1], correct[2]
        )
    }

    #[test]
    fn labels_follow_the_cheap_models_and_keep_row_order() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        let output = dir.path().join("out/difficulty.jsonl");
        let rows = [
            row("1", [false, false, true]),
            row("2", [true, true, false]),
            row("3", [true, false, false]),
        ];
        std::fs::write(&input, rows.join("\n")).unwrap();
        // Only a and b are cheap; c (the strong model) is ignored.
        let cheap = vec!["a".to_string(), "b".to_string()];
        let counts = convert(&input, &output, &cheap, 1).unwrap();
        assert_eq!(
            counts,
            DifficultyCounts {
                hard: 2,
                easy: 1,
                by_correct: vec![1, 1, 1]
            }
        );
        let written = std::fs::read_to_string(&output).unwrap();
        let labels: Vec<String> = written
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["label"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(labels, ["hard", "easy", "hard"]);
        assert!(written.starts_with(
            r#"{"id":"1","question":"q 1","category":"math","cheap_correct":0,"label":"hard"}"#
        ));

        let err = convert(&input, &output, &["zzz".to_string()], 1)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("in.jsonl:1: no result for model `zzz`"),
            "{err}"
        );
    }
}
