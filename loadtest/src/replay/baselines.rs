//! Baselines the router is measured against, computed from the recorded answers: every single
//! model, uniform random choice, per-category static routing (a table fitted on the data, used
//! with the true category and with the domain head's label) and the per-question oracle.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::data::Dataset;

/// Accuracy and cost of some policy over a set of queries.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    pub queries: usize,
    pub accuracy: f64,
    /// USD per 1000 queries.
    pub cost_per_1k: f64,
}

/// Running counts behind a [`Score`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub queries: usize,
    pub correct: usize,
    pub cost_usd: f64,
}

impl Tally {
    pub fn record(&mut self, correct: bool, cost_usd: f64) {
        self.queries += 1;
        self.correct += usize::from(correct);
        self.cost_usd += cost_usd;
    }

    pub fn score(&self) -> Score {
        let n = self.queries.max(1) as f64;
        Score {
            queries: self.queries,
            accuracy: self.correct as f64 / n,
            cost_per_1k: self.cost_usd / n * 1000.0,
        }
    }
}

/// How a per-category table picks its model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum TableRule {
    /// The most accurate model (ties: the cheaper).
    BestAccuracy,
    /// The cheapest model whose accuracy is within `epsilon` of the category's best.
    CheapestWithin { epsilon: f64 },
    /// The model maximising accuracy − λ·(USD per 1k queries).
    CostWeighted { lambda: f64 },
}

impl TableRule {
    /// A short name for tables and plots.
    pub fn label(&self) -> String {
        match *self {
            Self::BestAccuracy => "best accuracy".into(),
            Self::CheapestWithin { epsilon } => format!("cheapest within {epsilon} of best"),
            Self::CostWeighted { lambda } => format!("max acc − {lambda}·cost"),
        }
    }
}

/// A per-category static routing table and what it scores.
#[derive(Debug, Clone, Serialize)]
pub struct StaticRouting {
    #[serde(flatten)]
    pub rule: TableRule,
    /// Category → model name.
    pub table: BTreeMap<String, String>,
    /// Routed by the dataset's true category.
    pub true_category: Score,
    /// Routed by the classifier's predicted label (`None` without predictions).
    pub predicted_label: Option<Score>,
}

/// Every baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Baselines {
    /// One entry per model, in price-list order.
    pub single: Vec<(String, Score)>,
    /// Uniform random model per query, one seeded draw.
    pub random: Score,
    /// Uniform random model per query, in expectation (the mean of the single models).
    pub random_expected: Score,
    pub static_routing: Vec<StaticRouting>,
    /// Per query the cheapest correct model, or the cheapest model when none is correct.
    pub oracle: Score,
}

/// What the baselines need beyond the data.
#[derive(Debug, Clone, Default)]
pub struct BaselineOptions {
    pub seed: u64,
    /// Per row, the classifier's label (same order as the data's rows).
    pub predicted: Option<Vec<String>>,
    /// ε of the "cheapest within ε" tables.
    pub epsilons: Vec<f64>,
    /// λ of the cost-weighted tables.
    pub lambdas: Vec<f64>,
}

impl Baselines {
    pub fn compute(data: &Dataset, opts: &BaselineOptions) -> Self {
        let single: Vec<(String, Score)> = (0..data.models.len())
            .map(|m| (data.models[m].name.clone(), single_model(data, m)))
            .collect();
        let mut rules = vec![TableRule::BestAccuracy];
        rules.extend(
            opts.epsilons
                .iter()
                .map(|&epsilon| TableRule::CheapestWithin { epsilon }),
        );
        rules.extend(
            opts.lambdas
                .iter()
                .map(|&lambda| TableRule::CostWeighted { lambda }),
        );
        let static_routing = rules
            .into_iter()
            .map(|rule| static_routing(data, rule, opts.predicted.as_deref()))
            .collect();
        Self {
            random: random(data, opts.seed),
            random_expected: mean(&single),
            single,
            static_routing,
            oracle: oracle(data),
        }
    }

    /// The single-model score of `model`.
    pub fn single(&self, model: &str) -> Option<Score> {
        self.single
            .iter()
            .find(|(n, _)| n == model)
            .map(|(_, s)| *s)
    }
}

/// Always `model`.
pub fn single_model(data: &Dataset, model: usize) -> Score {
    let mut t = Tally::default();
    for (i, row) in data.rows.iter().enumerate() {
        t.record(row.answers[model].correct, data.cost_usd(i, model));
    }
    t.score()
}

fn mean(scores: &[(String, Score)]) -> Score {
    let n = scores.len().max(1) as f64;
    Score {
        queries: scores.first().map_or(0, |(_, s)| s.queries),
        accuracy: scores.iter().map(|(_, s)| s.accuracy).sum::<f64>() / n,
        cost_per_1k: scores.iter().map(|(_, s)| s.cost_per_1k).sum::<f64>() / n,
    }
}

/// A uniformly random model per query.
pub fn random(data: &Dataset, seed: u64) -> Score {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = Tally::default();
    for (i, row) in data.rows.iter().enumerate() {
        let m = rng.random_range(0..data.models.len());
        t.record(row.answers[m].correct, data.cost_usd(i, m));
    }
    t.score()
}

/// Per query: the cheapest correct model, else the cheapest model.
pub fn oracle(data: &Dataset) -> Score {
    let mut t = Tally::default();
    for (i, row) in data.rows.iter().enumerate() {
        let cheapest = |want_correct: bool| {
            (0..data.models.len())
                .filter(|&m| !want_correct || row.answers[m].correct)
                .map(|m| data.cost_usd(i, m))
                .min_by(f64::total_cmp)
        };
        match cheapest(true) {
            Some(cost) => t.record(true, cost),
            None => t.record(false, cheapest(false).unwrap_or(0.0)),
        }
    }
    t.score()
}

/// Each model's score within each category: category → per-model scores.
pub fn per_category(data: &Dataset) -> BTreeMap<String, Vec<Score>> {
    let mut tallies: BTreeMap<String, Vec<Tally>> = BTreeMap::new();
    for (i, row) in data.rows.iter().enumerate() {
        let t = tallies
            .entry(row.category.clone())
            .or_insert_with(|| vec![Tally::default(); data.models.len()]);
        for (m, tally) in t.iter_mut().enumerate() {
            tally.record(row.answers[m].correct, data.cost_usd(i, m));
        }
    }
    tallies
        .into_iter()
        .map(|(c, t)| (c, t.iter().map(Tally::score).collect()))
        .collect()
}

/// The model `rule` picks from per-model scores (ties: the cheaper, then the earlier).
pub fn pick(scores: &[Score], rule: TableRule) -> usize {
    let better = |a: &Score, b: &Score, ka: f64, kb: f64| {
        ka > kb || (ka == kb && a.cost_per_1k < b.cost_per_1k)
    };
    let best_acc = scores.iter().map(|s| s.accuracy).fold(f64::MIN, f64::max);
    let mut best: Option<usize> = None;
    for (m, s) in scores.iter().enumerate() {
        let key = |s: &Score| match rule {
            TableRule::BestAccuracy => s.accuracy,
            TableRule::CheapestWithin { .. } => -s.cost_per_1k,
            TableRule::CostWeighted { lambda } => s.accuracy - lambda * s.cost_per_1k,
        };
        if let TableRule::CheapestWithin { epsilon } = rule
            && s.accuracy < best_acc - epsilon - 1e-12
        {
            continue;
        }
        match best {
            Some(b) if !better(s, &scores[b], key(s), key(&scores[b])) => {}
            _ => best = Some(m),
        }
    }
    best.unwrap_or(0)
}

/// The table `rule` fits on the whole data set, scored by true category and by label.
pub fn static_routing(
    data: &Dataset,
    rule: TableRule,
    predicted: Option<&[String]>,
) -> StaticRouting {
    let per_cat = per_category(data);
    let table: BTreeMap<String, usize> = per_cat
        .iter()
        .map(|(c, scores)| (c.clone(), pick(scores, rule)))
        .collect();
    // A label outside the table (not a dataset category) goes to the overall pick.
    let overall: Vec<Score> = (0..data.models.len())
        .map(|m| single_model(data, m))
        .collect();
    let fallback = pick(&overall, rule);
    let route = |label: &str| table.get(label).copied().unwrap_or(fallback);
    let score_by = |label: &dyn Fn(usize) -> String| {
        let mut t = Tally::default();
        for (i, row) in data.rows.iter().enumerate() {
            let m = route(&label(i));
            t.record(row.answers[m].correct, data.cost_usd(i, m));
        }
        t.score()
    };
    let true_category = score_by(&|i| data.rows[i].category.clone());
    let predicted_label = predicted
        .filter(|p| p.len() == data.rows.len())
        .map(|p| score_by(&|i| p[i].clone()));
    StaticRouting {
        rule,
        table: table
            .into_iter()
            .map(|(c, m)| (c, data.models[m].name.clone()))
            .collect(),
        true_category,
        predicted_label,
    }
}
