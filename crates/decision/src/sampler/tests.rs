//! Seeded tests of the sampler: convergence, exploration, cost, drift.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// Plays `rounds` rounds against Bernoulli arms with success rates `p`,
/// feeding the reward back; returns how often each arm was chosen in the
/// last `tail` rounds.
fn play(
    arms: &mut [Arm],
    p: &[f64],
    rounds: usize,
    tail: usize,
    lambda: f64,
    discount: f64,
    rng: &mut StdRng,
) -> Vec<usize> {
    let mut counts = vec![0; arms.len()];
    for round in 0..rounds {
        let Some(i) = choose(arms, lambda, rng) else {
            break;
        };
        let reward = if rng.random::<f64>() < p[i] { 1.0 } else { 0.0 };
        arms[i]
            .posterior
            .update(reward, discount, Posterior::UNIFORM);
        if round >= rounds - tail {
            counts[i] += 1;
        }
    }
    counts
}

fn arms(n: usize) -> Vec<Arm> {
    vec![
        Arm {
            posterior: Posterior::UNIFORM,
            cost: 0.0
        };
        n
    ]
}

#[test]
fn fractional_rewards_update_both_parameters() {
    let mut p = Posterior::UNIFORM;
    p.update(0.25, 1.0, Posterior::UNIFORM);
    assert_eq!(
        p,
        Posterior {
            alpha: 1.25,
            beta: 1.75
        }
    );
    p.update(7.0, 1.0, Posterior::UNIFORM);
    assert_eq!(
        p,
        Posterior {
            alpha: 2.25,
            beta: 1.75
        },
        "rewards are clamped to [0, 1]"
    );
    p.update(0.0, 0.5, Posterior::UNIFORM);
    assert_eq!(
        p,
        Posterior {
            alpha: 1.625,
            beta: 2.375
        },
        "evidence halved toward the prior, then updated"
    );
}

#[test]
fn converges_to_the_best_arm() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut a = arms(3);
    let counts = play(&mut a, &[0.3, 0.5, 0.8], 2000, 500, 0.0, 1.0, &mut rng);
    assert!(
        counts[2] > 450,
        "best arm chosen {} of the last 500: {counts:?}",
        counts[2]
    );
    assert!(
        a[2].posterior.mean() > a[1].posterior.mean()
            && a[1].posterior.mean() > a[0].posterior.mean() - 0.2
    );
}

#[test]
fn a_new_arm_is_explored_and_taken_over_when_better() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut a = arms(2);
    play(&mut a, &[0.6, 0.5], 1000, 1, 0.0, 1.0, &mut rng);
    a.push(Arm {
        posterior: Posterior::UNIFORM,
        cost: 0.0,
    });
    let counts = play(&mut a, &[0.6, 0.5, 0.9], 600, 200, 0.0, 1.0, &mut rng);
    assert!(counts[2] > 150, "the new, better arm took over: {counts:?}");
}

#[test]
fn cost_breaks_a_quality_tie_toward_the_cheaper_model() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut a = vec![
        Arm {
            posterior: Posterior::UNIFORM,
            cost: 1.0,
        },
        Arm {
            posterior: Posterior::UNIFORM,
            cost: 0.1,
        },
    ];
    let counts = play(&mut a, &[0.8, 0.8], 1500, 500, 0.5, 1.0, &mut rng);
    assert!(counts[1] > 450, "cheaper arm: {counts:?}");
}

#[test]
fn discounting_follows_drift_faster() {
    let after_switch = |discount: f64| {
        let mut rng = StdRng::seed_from_u64(5);
        let mut a = arms(2);
        play(&mut a, &[0.8, 0.4], 2000, 1, 0.0, discount, &mut rng);
        // The arms swap quality.
        let counts = play(&mut a, &[0.4, 0.8], 300, 300, 0.0, discount, &mut rng);
        counts[1]
    };
    let (kept, forgetting) = (after_switch(1.0), after_switch(0.98));
    assert!(
        forgetting > kept,
        "discounted {forgetting} vs undiscounted {kept} picks of the new best arm"
    );
}

#[test]
fn no_candidates_no_choice() {
    let mut rng = StdRng::seed_from_u64(1);
    assert_eq!(choose(&[], 0.0, &mut rng), None);
}
