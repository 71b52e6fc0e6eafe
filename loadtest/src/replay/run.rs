//! The learning replay: every question, in a seeded order, goes through the real decision engine
//! and the real learner; the simulated upstream answers from the recorded outputs and the
//! harness feeds correctness back as the reward. Pure apart from the learner's memory: the RNG
//! is seeded, nothing is read or written.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use routemesh_common::Signals;
use routemesh_common::config::{Config, DecisionAction, ModelId};
use routemesh_common::wire::{OutcomeEvent, WIRE_VERSION};
use routemesh_decision::{Action, Learner, decide};
use serde::Serialize;

use super::ReplayError;
use super::baselines::{Score, Tally};
use super::data::Dataset;

/// How one replay runs.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub seed: u64,
    /// Times through the data (each pass in a fresh order), learning all along.
    pub passes: usize,
    /// Queries per learning-curve window.
    pub window: usize,
}

/// One point of the learning curve, at the end of a window.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CurvePoint {
    /// Queries replayed so far.
    pub queries: usize,
    /// This window only.
    pub window: Score,
    /// Everything so far.
    pub cumulative: Score,
}

/// What the router did with one decision's queries.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DecisionUse {
    pub queries: usize,
    /// Model → times chosen, over the last pass.
    pub last_pass_models: BTreeMap<String, usize>,
}

/// The result of one replay.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub seed: u64,
    /// Every query of every pass, exploration included.
    pub overall: Score,
    /// The last pass only (equal to `overall` with one pass).
    pub last_pass: Score,
    /// The last `window` queries: roughly where learning has settled.
    pub last_window: Score,
    /// Queries of the last pass refused by a block decision (counted wrong, free).
    pub blocked: usize,
    pub curve: Vec<CurvePoint>,
    /// Decision name → use, over the last pass.
    pub decisions: BTreeMap<String, DecisionUse>,
}

/// Maps every configured model to its column in the data (by `upstream_model`, then by name).
pub fn model_columns(config: &Config, data: &Dataset) -> Result<Vec<Option<usize>>, ReplayError> {
    let columns: Vec<Option<usize>> = config
        .models
        .iter()
        .map(|m| {
            data.model_index(&m.upstream_model)
                .or_else(|| data.model_index(&m.name))
        })
        .collect();
    let check = |action: &DecisionAction, decision: &str| -> Result<(), ReplayError> {
        let DecisionAction::Route(route) = action else {
            return Ok(());
        };
        for c in &route.candidates {
            if columns[c.model.0].is_none() {
                return Err(ReplayError::Config(format!(
                    "decision `{decision}` can route to `{}`, which has no answers in the data",
                    config.model(c.model).name
                )));
            }
        }
        Ok(())
    };
    for d in &config.decisions {
        check(&d.action, &d.name)?;
    }
    check(
        &DecisionAction::Route(config.default.action.clone()),
        &config.default.name,
    )?;
    Ok(columns)
}

/// `config` with one cost weight λ for every decision (per-decision overrides dropped).
pub fn with_cost_weight(config: &Config, lambda: f64) -> Config {
    let mut c = config.clone();
    c.learning.cost_weight = lambda;
    for d in &mut c.decisions {
        if let DecisionAction::Route(a) = &mut d.action {
            a.cost_weight = None;
        }
    }
    c.default.action.cost_weight = None;
    c
}

/// Replays the data through `config`'s decisions and a fresh in-memory learner.
/// `signals[i]` belongs to `data.rows[i]`.
pub fn replay(
    config: &Config,
    data: &Dataset,
    signals: &[Signals],
    opts: RunOptions,
) -> Result<RunResult, ReplayError> {
    let columns = model_columns(config, data)?;
    let learner = Learner::in_memory(config);
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let window = opts.window.max(1);
    let mut order: Vec<usize> = (0..data.rows.len()).collect();
    let (mut all, mut pass_tally, mut win) = (Tally::default(), Tally::default(), Tally::default());
    let mut curve = Vec::new();
    let mut blocked = 0;
    let mut decisions: BTreeMap<String, DecisionUse> = BTreeMap::new();
    let mut recent: std::collections::VecDeque<(bool, f64)> = std::collections::VecDeque::new();
    for pass in 0..opts.passes.max(1) {
        order.shuffle(&mut rng);
        let last = pass + 1 == opts.passes.max(1);
        if last {
            pass_tally = Tally::default();
            decisions.clear();
        }
        for &i in &order {
            let row = &data.rows[i];
            let decided = decide(config, &signals[i]);
            let (correct, cost) = match decided.action {
                Action::Block { .. } => {
                    blocked += usize::from(last);
                    (false, 0.0)
                }
                Action::Route(action) => {
                    let k = learner.select(decided.name, action, row.prompt_tokens, &mut rng);
                    let model: ModelId =
                        action.candidates[k.min(action.candidates.len() - 1)].model;
                    let column = columns[model.0].ok_or_else(|| {
                        ReplayError::Config(format!(
                            "model {} has no answers",
                            config.model(model).name
                        ))
                    })?;
                    let answer = row.answers[column];
                    learner
                        .apply(&OutcomeEvent {
                            v: WIRE_VERSION,
                            id: format!("{pass}:{}", row.id),
                            source: "replay".into(),
                            decision: decided.name.to_owned(),
                            model: config.model(model).name.clone(),
                            reward: Some(if answer.correct { 1.0 } else { 0.0 }),
                            completion_tokens: Some(answer.out_tokens),
                        })
                        .map_err(|e| ReplayError::Learner(e.to_string()))?;
                    if last {
                        let u = decisions.entry(decided.name.to_owned()).or_default();
                        u.queries += 1;
                        *u.last_pass_models
                            .entry(config.model(model).name.clone())
                            .or_default() += 1;
                    }
                    (answer.correct, data.cost_usd(i, column))
                }
            };
            all.record(correct, cost);
            pass_tally.record(correct, cost);
            win.record(correct, cost);
            recent.push_back((correct, cost));
            if recent.len() > window {
                recent.pop_front();
            }
            if win.queries == window {
                curve.push(CurvePoint {
                    queries: all.queries,
                    window: win.score(),
                    cumulative: all.score(),
                });
                win = Tally::default();
            }
        }
    }
    let mut last_window = Tally::default();
    for &(c, cost) in &recent {
        last_window.record(c, cost);
    }
    Ok(RunResult {
        seed: opts.seed,
        overall: all.score(),
        last_pass: pass_tally.score(),
        last_window: last_window.score(),
        blocked,
        curve,
        decisions,
    })
}
