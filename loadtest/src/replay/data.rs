//! The replay dataset: questions with every model's recorded answer (correct or not, output
//! tokens), the price list, and the cost formula the simulated upstream charges.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::ReplayError;

/// One model's price, USD per million tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    pub name: String,
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

impl Price {
    /// USD for one request: `prompt_tokens·in/1e6 + out_tokens·out/1e6`.
    pub fn cost_usd(&self, prompt_tokens: u32, out_tokens: u32) -> f64 {
        (f64::from(prompt_tokens) * self.input_per_mtok
            + f64::from(out_tokens) * self.output_per_mtok)
            / 1e6
    }
}

/// What one model answered to one question (recorded, replayed by the simulated upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub correct: bool,
    pub out_tokens: u32,
}

/// One question of the dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    /// The dataset's (true) category.
    pub category: String,
    pub question: String,
    /// `ceil(chars / 4)` of the question: the tokens a deployed router would send.
    pub prompt_tokens: u32,
    /// One answer per model, in [`Dataset::models`] order.
    pub answers: Vec<Answer>,
}

/// Questions and prices, models in price-list order.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub models: Vec<Price>,
    pub rows: Vec<Row>,
    /// sha256 of the data file (hex); empty for a dataset built in memory.
    pub sha256: String,
    /// sha256 of the price file (hex); empty for a dataset built in memory.
    pub prices_sha256: String,
}

/// The prompt token estimate of the dataset: `ceil(chars / 4)`.
pub fn prompt_tokens(question: &str) -> u32 {
    u32::try_from(question.chars().count().div_ceil(4)).unwrap_or(u32::MAX)
}

impl Dataset {
    /// Reads a JSON-lines data file and a `models.json` price file. Every row must carry an
    /// answer for every priced model; models in rows but not priced are ignored.
    pub fn load(data: &Path, prices: &Path) -> Result<Self, ReplayError> {
        let price_bytes = read(prices)?;
        let models = parse_prices(&price_bytes).map_err(|message| ReplayError::Data {
            path: prices.to_owned(),
            message,
        })?;
        let bytes = read(data)?;
        let text = std::str::from_utf8(&bytes).map_err(|e| ReplayError::Data {
            path: data.to_owned(),
            message: format!("not UTF-8: {e}"),
        })?;
        let mut rows = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let row = parse_row(line, &models).map_err(|message| ReplayError::Data {
                path: data.to_owned(),
                message: format!("line {}: {message}", i + 1),
            })?;
            rows.push(row);
        }
        if rows.is_empty() {
            return Err(ReplayError::Data {
                path: data.to_owned(),
                message: "no rows".into(),
            });
        }
        Ok(Self {
            models,
            rows,
            sha256: sha256_hex(&bytes),
            prices_sha256: sha256_hex(&price_bytes),
        })
    }

    /// Index of a model by name.
    pub fn model_index(&self, name: &str) -> Option<usize> {
        self.models.iter().position(|m| m.name == name)
    }

    /// USD the simulated upstream charges for `model` answering row `row`.
    pub fn cost_usd(&self, row: usize, model: usize) -> f64 {
        let r = &self.rows[row];
        self.models[model].cost_usd(r.prompt_tokens, r.answers[model].out_tokens)
    }

    /// The categories in sorted order.
    pub fn categories(&self) -> Vec<String> {
        let mut c: Vec<String> = self.rows.iter().map(|r| r.category.clone()).collect();
        c.sort();
        c.dedup();
        c
    }
}

/// Lowercase hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn read(path: &Path) -> Result<Vec<u8>, ReplayError> {
    std::fs::read(path).map_err(|source| ReplayError::Read {
        path: path.to_owned(),
        source,
    })
}

#[derive(Deserialize)]
struct RawPrices {
    models: Vec<RawPrice>,
}

#[derive(Deserialize)]
struct RawPrice {
    name: String,
    input_usd_per_mtok: f64,
    output_usd_per_mtok: f64,
}

fn parse_prices(bytes: &[u8]) -> Result<Vec<Price>, String> {
    let raw: RawPrices = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if raw.models.is_empty() {
        return Err("no models".into());
    }
    Ok(raw
        .models
        .into_iter()
        .map(|m| Price {
            name: m.name,
            input_per_mtok: m.input_usd_per_mtok,
            output_per_mtok: m.output_usd_per_mtok,
        })
        .collect())
}

#[derive(Deserialize)]
struct RawRow {
    id: String,
    category: String,
    question: String,
    models: BTreeMap<String, RawAnswer>,
}

#[derive(Deserialize)]
struct RawAnswer {
    correct: bool,
    out_tokens: u32,
}

fn parse_row(line: &str, models: &[Price]) -> Result<Row, String> {
    let raw: RawRow = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let answers = models
        .iter()
        .map(|m| {
            raw.models
                .get(&m.name)
                .map(|a| Answer {
                    correct: a.correct,
                    out_tokens: a.out_tokens,
                })
                .ok_or_else(|| format!("row {} has no answer from model {}", raw.id, m.name))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Row {
        prompt_tokens: prompt_tokens(&raw.question),
        id: raw.id,
        category: raw.category,
        question: raw.question,
        answers,
    })
}
