//! The learner: Thompson-sampled choice among a decision's candidates, and
//! the outcomes that teach it.
//!
//! State is one [`ArmState`] per (decision, model): a Beta posterior over
//! "this model answers this decision's prompts well" and the mean length of
//! its answers (which makes the expected cost). Choosing reads the state
//! under a short lock; applying an outcome is serialised, written through
//! to the [`LearnStore`] when there is one, and idempotent by event id.
//!
//! The objective is the sampler's: sampled quality − λ·cost, with cost the
//! expected USD per 1000 such requests (prompt tokens × input price plus
//! expected completion tokens × output price).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use rand::Rng;
use routemesh_common::config::{Config, ModelCost, RouteAction, Selection};
use routemesh_common::wire::OutcomeEvent;
use serde::Serialize;

use crate::sampler::{self, Arm, Posterior};
use crate::store::{ArmState, Commit, LearnStore, StoreError};

/// The running mean of completion tokens weighs roughly this many recent
/// answers (older ones fade).
pub const TOKEN_WINDOW: u64 = 200;

/// How an outcome was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// The event id was applied before.
    Duplicate,
}

/// One arm as reported by [`Learner::snapshot`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArmSnapshot {
    pub decision: String,
    pub model: String,
    pub alpha: f64,
    pub beta: f64,
    /// α / (α + β).
    pub mean: f64,
    pub rewards: u64,
    /// Expected completion tokens.
    pub out_tokens: f64,
    /// Whether the arm is a candidate of a decision in the running config.
    pub configured: bool,
}

/// What the config says about an arm before any outcome.
#[derive(Debug, Clone, Copy)]
struct ArmPrior {
    posterior: Posterior,
    out_tokens: f64,
}

/// Event ids applied by an in-memory learner, the oldest forgotten first.
#[derive(Debug, Default)]
struct SeenIds {
    set: std::collections::HashSet<String>,
    order: std::collections::VecDeque<String>,
}

impl SeenIds {
    const KEPT: usize = 200_000;

    /// False if `id` was seen.
    fn insert(&mut self, id: &str) -> bool {
        if !self.set.insert(id.to_owned()) {
            return false;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > Self::KEPT
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// Learned state of every arm; see the module docs.
#[derive(Debug)]
pub struct Learner {
    /// decision → model → state
    arms: Mutex<HashMap<String, HashMap<String, ArmState>>>,
    /// Serialises [`Learner::apply`] (store write included), so the
    /// short `arms` lock is never held across disk IO. Holds the applied
    /// event ids when there is no store (the store keeps its own).
    applying: Mutex<SeenIds>,
    store: Option<LearnStore>,
    /// What the config says; replaced whole by [`Learner::reconfigure`].
    tuning: RwLock<Arc<Tuning>>,
}

/// The config's part of the learner: priors, prices, λ and discount.
#[derive(Debug)]
struct Tuning {
    priors: HashMap<String, HashMap<String, ArmPrior>>,
    /// By [`routemesh_common::config::ModelId`]: name and prices.
    models: Vec<(String, Option<ModelCost>)>,
    cost_weight: f64,
    discount: f64,
}

impl Tuning {
    fn new(config: &Config) -> Self {
        let models: Vec<_> = config
            .models
            .iter()
            .map(|m| (m.name.clone(), m.cost))
            .collect();
        let mut priors: HashMap<String, HashMap<String, ArmPrior>> = HashMap::new();
        for (name, action) in config.route_actions() {
            let entry = priors.entry(name.to_owned()).or_default();
            for c in &action.candidates {
                let (model, cost) = &models[c.model.0];
                entry.insert(
                    model.clone(),
                    ArmPrior {
                        posterior: Posterior {
                            alpha: c.prior.0,
                            beta: c.prior.1,
                        },
                        out_tokens: cost.map_or(0.0, |c| f64::from(c.output_tokens)),
                    },
                );
            }
        }
        Self {
            priors,
            models,
            cost_weight: config.learning.cost_weight,
            discount: config.learning.discount,
        }
    }

    fn prior(&self, decision: &str, model: &str) -> ArmPrior {
        self.priors
            .get(decision)
            .and_then(|m| m.get(model))
            .copied()
            .unwrap_or(ArmPrior {
                posterior: Posterior::UNIFORM,
                out_tokens: 0.0,
            })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the map half-written
    // (every write is one insert), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Learner {
    /// A learner that forgets everything when dropped.
    pub fn in_memory(config: &Config) -> Self {
        Self::build(config, None, HashMap::new())
    }

    /// A learner whose state lives in a sled folder: what was learned
    /// before is restored exactly.
    pub fn open(config: &Config, dir: &Path) -> Result<Self, StoreError> {
        let store = LearnStore::open(dir)?;
        let mut arms: HashMap<String, HashMap<String, ArmState>> = HashMap::new();
        for ((decision, model), state) in store.arms()? {
            arms.entry(decision).or_default().insert(model, state);
        }
        Ok(Self::build(config, Some(store), arms))
    }

    fn build(
        config: &Config,
        store: Option<LearnStore>,
        arms: HashMap<String, HashMap<String, ArmState>>,
    ) -> Self {
        Self {
            arms: Mutex::new(arms),
            applying: Mutex::new(SeenIds::default()),
            store,
            tuning: RwLock::new(Arc::new(Tuning::new(config))),
        }
    }

    /// Takes a reloaded config's decisions, models, priors, λ and discount;
    /// what was learned stays (arms are keyed by decision and model name).
    /// `config` must be the one later `select` calls pass actions from.
    pub fn reconfigure(&self, config: &Config) {
        let tuning = Arc::new(Tuning::new(config));
        *self.tuning.write().unwrap_or_else(PoisonError::into_inner) = tuning;
    }

    fn tuning(&self) -> Arc<Tuning> {
        self.tuning
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn prior(&self, decision: &str, model: &str) -> ArmPrior {
        self.tuning().prior(decision, model)
    }

    /// Picks one of `action`'s candidates (an index into
    /// `action.candidates`) for a prompt of `prompt_tokens` tokens:
    /// the first with `static` selection, a Thompson draw otherwise.
    pub fn select<R: Rng + ?Sized>(
        &self,
        decision: &str,
        action: &RouteAction,
        prompt_tokens: u32,
        rng: &mut R,
    ) -> usize {
        self.rank(decision, action, prompt_tokens, rng)
            .first()
            .copied()
            .unwrap_or(0)
    }

    /// Every candidate's index, best first: [`Learner::select`]'s pick, then
    /// the order to fall back in when it fails. Static selection (or a
    /// single candidate) keeps config order.
    pub fn rank<R: Rng + ?Sized>(
        &self,
        decision: &str,
        action: &RouteAction,
        prompt_tokens: u32,
        rng: &mut R,
    ) -> Vec<usize> {
        if action.selection == Selection::Static || action.candidates.len() < 2 {
            return (0..action.candidates.len()).collect();
        }
        let tuning = self.tuning();
        let lambda = action.cost_weight.unwrap_or(tuning.cost_weight);
        let arms: Vec<Arm> = {
            let state = lock(&self.arms);
            let learned = state.get(decision);
            action
                .candidates
                .iter()
                .map(|c| {
                    let Some((name, cost)) = tuning.models.get(c.model.0) else {
                        // An action from another config version: treat as unknown.
                        return Arm {
                            posterior: Posterior::UNIFORM,
                            cost: 0.0,
                        };
                    };
                    let (posterior, out_tokens) = match learned.and_then(|m| m.get(name)) {
                        Some(s) => (s.posterior, s.out_tokens),
                        None => (
                            Posterior {
                                alpha: c.prior.0,
                                beta: c.prior.1,
                            },
                            cost.map_or(0.0, |c| f64::from(c.output_tokens)),
                        ),
                    };
                    Arm {
                        posterior,
                        cost: cost.map_or(0.0, |c| c.per_1k(f64::from(prompt_tokens), out_tokens)),
                    }
                })
                .collect()
        };
        sampler::rank(&arms, lambda, rng)
    }

    /// Applies an outcome once: a second event with the same id changes
    /// nothing. With a store, the new state is on disk when this returns
    /// (it blocks on the disk: call it off the async runtime's workers).
    pub fn apply(&self, event: &OutcomeEvent) -> Result<Applied, StoreError> {
        self.apply_at(event, None)
    }

    /// [`Learner::apply`] for an event read from a stream at `sequence`,
    /// which is recorded as the last sequence applied in the same write.
    pub fn apply_at(
        &self,
        event: &OutcomeEvent,
        sequence: Option<u64>,
    ) -> Result<Applied, StoreError> {
        let mut seen = lock(&self.applying);
        if self.store.is_none() && !seen.insert(&event.id) {
            return Ok(Applied::Duplicate);
        }
        let current = lock(&self.arms)
            .get(&event.decision)
            .and_then(|m| m.get(&event.model))
            .copied();
        let next = self.next_state(current, event);
        if let Some(store) = &self.store {
            let commit = store.commit(&event.decision, &event.model, &next, &event.id, sequence)?;
            if commit == Commit::Duplicate {
                return Ok(Applied::Duplicate);
            }
        }
        lock(&self.arms)
            .entry(event.decision.clone())
            .or_default()
            .insert(event.model.clone(), next);
        Ok(Applied::Applied)
    }

    /// The sled store the learner writes through to, if any.
    pub fn store(&self) -> Option<&LearnStore> {
        self.store.as_ref()
    }

    /// The last stream sequence applied, from the store.
    pub fn last_sequence(&self) -> Result<Option<u64>, StoreError> {
        match &self.store {
            Some(s) => s.last_sequence(),
            None => Ok(None),
        }
    }

    /// Records a stream sequence that carried nothing applicable.
    pub fn skip(&self, sequence: u64) -> Result<(), StoreError> {
        match &self.store {
            Some(s) => s.skip(sequence),
            None => Ok(()),
        }
    }

    fn next_state(&self, current: Option<ArmState>, event: &OutcomeEvent) -> ArmState {
        // One read of the tuning: prior and discount from the same version.
        let tuning = self.tuning();
        let prior = tuning.prior(&event.decision, &event.model);
        let mut s = current.unwrap_or(ArmState {
            posterior: prior.posterior,
            out_tokens: prior.out_tokens,
            out_samples: 0,
            rewards: 0,
        });
        if let Some(r) = event.reward {
            s.posterior.update(r, tuning.discount, prior.posterior);
            s.rewards += 1;
        }
        if let Some(t) = event.completion_tokens {
            s.out_samples += 1;
            let n = s.out_samples.min(TOKEN_WINDOW) as f64;
            s.out_tokens += (f64::from(t) - s.out_tokens) / n;
        }
        s
    }

    /// The posterior of an arm (its prior when nothing was learned).
    pub fn posterior(&self, decision: &str, model: &str) -> Posterior {
        lock(&self.arms)
            .get(decision)
            .and_then(|m| m.get(model))
            .map_or_else(|| self.prior(decision, model).posterior, |s| s.posterior)
    }

    /// Every configured arm and every learned one, sorted by decision then model.
    pub fn snapshot(&self) -> Vec<ArmSnapshot> {
        let state = lock(&self.arms);
        let mut out: Vec<ArmSnapshot> = Vec::new();
        let mut push = |decision: &str, model: &str, s: ArmState, configured: bool| {
            out.push(ArmSnapshot {
                decision: decision.to_owned(),
                model: model.to_owned(),
                alpha: s.posterior.alpha,
                beta: s.posterior.beta,
                mean: s.posterior.mean(),
                rewards: s.rewards,
                out_tokens: s.out_tokens,
                configured,
            });
        };
        let tuning = self.tuning();
        for (decision, models) in &tuning.priors {
            for (model, prior) in models {
                let s = state
                    .get(decision)
                    .and_then(|m| m.get(model))
                    .copied()
                    .unwrap_or(ArmState {
                        posterior: prior.posterior,
                        out_tokens: prior.out_tokens,
                        out_samples: 0,
                        rewards: 0,
                    });
                push(decision, model, s, true);
            }
        }
        for (decision, models) in state.iter() {
            for (model, s) in models {
                let configured = tuning
                    .priors
                    .get(decision)
                    .is_some_and(|m| m.contains_key(model));
                if !configured {
                    push(decision, model, *s, false);
                }
            }
        }
        out.sort_by(|a, b| (&a.decision, &a.model).cmp(&(&b.decision, &b.model)));
        out
    }
}

#[cfg(test)]
mod tests;
