//! Thompson sampling over a decision's candidate models.
//!
//! Each (decision, model) pair has a Beta posterior over "this model answers
//! this kind of prompt well". Rewards are fractional, in [0, 1]: a reward r
//! adds r to α and 1 − r to β. Old evidence can be discounted toward the
//! prior so the sampler follows drift. Pure code: the RNG is an argument.
//!
//! The objective is *sampled quality minus λ·cost*: draw θᵢ ~ Beta(αᵢ, βᵢ)
//! for every candidate and pick the largest θᵢ − λ·costᵢ. λ is in quality
//! per unit of cost (e.g. per dollar per 1k requests), so λ = 0 is pure
//! quality and a larger λ trades accuracy for money smoothly. We chose it
//! over "the cheapest model whose sampled quality clears a floor" because it
//! keeps Thompson sampling's exploration intact for every arm (a floor makes
//! expensive arms starve as soon as a cheap one clears it) and because one
//! number is easy to sweep in the replay benchmark.

use rand::Rng;
use rand_distr::{Beta, Distribution};

/// A Beta(α, β) posterior.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Posterior {
    pub alpha: f64,
    pub beta: f64,
}

impl Posterior {
    /// Beta(1, 1): nothing known.
    pub const UNIFORM: Posterior = Posterior {
        alpha: 1.0,
        beta: 1.0,
    };

    /// The posterior mean α / (α + β).
    pub fn mean(&self) -> f64 {
        self.alpha / (self.alpha + self.beta)
    }

    /// Records a reward in [0, 1] (clamped), after shrinking the evidence
    /// gathered so far toward `prior` by `discount` ∈ (0, 1] (1 keeps all).
    pub fn update(&mut self, reward: f64, discount: f64, prior: Posterior) {
        let r = if reward.is_nan() {
            0.0
        } else {
            reward.clamp(0.0, 1.0)
        };
        let d = discount.clamp(f64::MIN_POSITIVE, 1.0);
        self.alpha = prior.alpha + d * (self.alpha - prior.alpha) + r;
        self.beta = prior.beta + d * (self.beta - prior.beta) + (1.0 - r);
    }

    /// One draw of θ ~ Beta(α, β); the mean if the parameters are unusable.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match Beta::new(
            self.alpha.max(f64::MIN_POSITIVE),
            self.beta.max(f64::MIN_POSITIVE),
        ) {
            Ok(b) => b.sample(rng),
            Err(_) => self.mean(),
        }
    }
}

/// One candidate of a decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arm {
    pub posterior: Posterior,
    /// Expected cost of one request, in the unit λ is expressed against.
    pub cost: f64,
}

/// Picks the candidate with the largest sampled θ − λ·cost; `None` for no
/// candidates. Ties go to the earlier candidate.
pub fn choose<R: Rng + ?Sized>(arms: &[Arm], lambda: f64, rng: &mut R) -> Option<usize> {
    rank(arms, lambda, rng).first().copied()
}

/// Every arm's index, best first by one draw each of sampled quality −
/// λ·cost (ties keep arm order): the first is [`choose`]'s pick, the rest
/// the order to fall back in.
pub fn rank<R: Rng + ?Sized>(arms: &[Arm], lambda: f64, rng: &mut R) -> Vec<usize> {
    let mut scored: Vec<(usize, f64)> = arms
        .iter()
        .enumerate()
        .map(|(i, arm)| (i, arm.posterior.sample(rng) - lambda * arm.cost))
        .collect();
    // Stable: equal scores keep arm order. NaN (never produced by Beta
    // draws) would sort last.
    scored.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Less));
    scored.into_iter().map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests;
