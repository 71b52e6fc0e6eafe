use std::path::Path;

use rand::SeedableRng;
use rand::rngs::StdRng;
use routemesh_common::Config;
use routemesh_common::wire::OutcomeEvent;

use super::*;

const CONFIG: &str = r#"
encoder: { model_dir: m }
upstreams: [ { name: up, base_url: "http://127.0.0.1:1" } ]
models:
  - { name: cheap, upstream: up, cost: { input_per_mtok: 0.1, output_per_mtok: 0.1, output_tokens: 100 } }
  - { name: pricey, upstream: up, cost: { input_per_mtok: 10, output_per_mtok: 30, output_tokens: 100 } }
  - { name: other, upstream: up }
signals:
  keywords: [ { name: k, patterns: [x] } ]
decisions:
  - name: learned
    when: { keyword: k }
    models: [cheap, pricey, { model: other, prior: { alpha: 5, beta: 1 } }]
    selection: thompson
  - name: fixed
    when: { keyword: k }
    models: [pricey, cheap]
default: { model: cheap }
learning: { cost_weight: 0 }
"#;

fn config(extra: &str) -> Config {
    match routemesh_common::config::parse(&format!("{CONFIG}{extra}"), Path::new(".")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn action<'c>(c: &'c Config, name: &str) -> &'c RouteAction {
    c.route_action(name)
        .unwrap_or_else(|| panic!("no decision {name}"))
}

fn event(decision: &str, model: &str, reward: f64) -> OutcomeEvent {
    OutcomeEvent::new(decision, model, Some(reward), "test")
}

/// Counts the picks of each candidate over `n` draws.
fn picks(l: &Learner, c: &Config, decision: &str, n: usize, seed: u64) -> Vec<usize> {
    let a = action(c, decision);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut counts = vec![0; a.candidates.len()];
    for _ in 0..n {
        counts[l.select(decision, a, 50, &mut rng)] += 1;
    }
    counts
}

#[test]
fn static_selection_takes_the_first_candidate_whatever_was_learned() {
    let c = config("");
    let l = Learner::in_memory(&c);
    for _ in 0..50 {
        l.apply(&event("fixed", "pricey", 0.0))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(picks(&l, &c, "fixed", 200, 1), vec![200, 0]);
}

#[test]
fn learning_moves_the_choice_to_the_arm_that_is_rewarded() {
    let c = config("");
    let l = Learner::in_memory(&c);
    // Before: `other` has a 5:1 prior and wins most draws.
    let before = picks(&l, &c, "learned", 1000, 7);
    assert!(before[2] > 600, "{before:?}");
    for _ in 0..60 {
        l.apply(&event("learned", "other", 0.0))
            .unwrap_or_else(|e| panic!("{e}"));
        l.apply(&event("learned", "cheap", 1.0))
            .unwrap_or_else(|e| panic!("{e}"));
        l.apply(&event("learned", "pricey", 0.5))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let after = picks(&l, &c, "learned", 1000, 7);
    assert!(after[0] > 950, "{after:?}");
    // The prior is where `other` started from.
    let p = l.posterior("learned", "other");
    assert_eq!((p.alpha, p.beta), (5.0, 61.0));
}

#[test]
fn a_cost_weight_moves_the_choice_to_the_cheaper_of_two_equal_arms() {
    let with_weight = |w: f64| {
        let mut c = config("");
        c.learning.cost_weight = w;
        let l = Learner::in_memory(&c);
        for _ in 0..200 {
            for m in ["cheap", "pricey"] {
                l.apply(&event("learned", m, 0.8))
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            l.apply(&event("learned", "other", 0.0))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        picks(&l, &c, "learned", 2000, 3)
    };
    let free = with_weight(0.0);
    // Equal posteriors: both are picked about half the time.
    assert!(free[0] > 700 && free[1] > 700, "{free:?}");
    // pricey costs (50·10 + 100·30)/1e3 = 3.5 USD per 1k; cheap 0.015.
    let weighted = with_weight(0.1);
    assert!(weighted[0] > 1990, "{weighted:?}");
}

#[test]
fn completion_tokens_teach_the_expected_cost() {
    let c = config("");
    let l = Learner::in_memory(&c);
    let mut e = OutcomeEvent::new("learned", "pricey", None, "usage");
    e.completion_tokens = Some(300);
    l.apply(&e).unwrap_or_else(|e| panic!("{e}"));
    let mut e = OutcomeEvent::new("learned", "pricey", None, "usage");
    e.completion_tokens = Some(100);
    l.apply(&e).unwrap_or_else(|e| panic!("{e}"));
    let snap = l.snapshot();
    let arm = snap
        .iter()
        .find(|a| a.decision == "learned" && a.model == "pricey")
        .unwrap_or_else(|| panic!("missing arm"));
    assert_eq!(arm.out_tokens, 200.0, "the mean of 300 and 100");
    assert_eq!(arm.rewards, 0, "usage carries no reward");
    assert_eq!((arm.alpha, arm.beta), (1.0, 1.0));
}

#[test]
fn an_event_id_is_applied_once() {
    let c = config("");
    let l = Learner::in_memory(&c);
    let e = event("learned", "cheap", 1.0);
    assert_eq!(l.apply(&e).ok(), Some(Applied::Applied));
    assert_eq!(l.apply(&e).ok(), Some(Applied::Duplicate));
    assert_eq!(l.posterior("learned", "cheap").alpha, 2.0);
}

#[test]
fn a_reopened_learner_has_the_same_posteriors_and_sequence()
-> Result<(), Box<dyn std::error::Error>> {
    let c = config("");
    let dir = tempfile::tempdir()?;
    let first = {
        let l = Learner::open(&c, dir.path())?;
        for (i, r) in [1.0, 0.3, 0.0, 0.75].into_iter().enumerate() {
            l.apply_at(&event("learned", "cheap", r), Some(i as u64 + 1))?;
            l.apply(&event("somewhere-else", "gone", r))?;
        }
        l.snapshot()
    };
    let l = Learner::open(&c, dir.path())?;
    assert_eq!(l.snapshot(), first);
    assert_eq!(l.last_sequence()?, Some(4));
    assert!(
        first
            .iter()
            .any(|a| a.decision == "somewhere-else" && !a.configured),
        "arms of decisions no longer configured are kept and reported"
    );
    // The same event again, after the restart, is still a duplicate.
    let e = event("learned", "pricey", 1.0);
    l.apply(&e)?;
    drop(l);
    let l = Learner::open(&c, dir.path())?;
    assert_eq!(l.apply(&e)?, Applied::Duplicate);
    Ok(())
}

#[test]
fn a_reconfigured_learner_keeps_what_it_learned_and_takes_the_new_priors() {
    let c = config("");
    let l = Learner::in_memory(&c);
    l.apply(&event("learned", "cheap", 1.0)).expect("apply");
    let learned = l.posterior("learned", "cheap");
    // The new file reorders the models, gives `other` another prior and
    // adds a decision.
    let reloaded = CONFIG
        .replace(
            "  - { name: other, upstream: up }\n",
            "",
        )
        .replace(
            "models:\n  - { name: cheap",
            "models:\n  - { name: other, upstream: up }\n  - { name: cheap",
        )
        .replace("alpha: 5, beta: 1", "alpha: 1, beta: 9")
        .replace(
            "default: { model: cheap }",
            "  - name: added\n    when: { keyword: k }\n    models: [other, cheap]\n    selection: thompson\ndefault: { model: cheap }",
        );
    let c2 = match routemesh_common::config::parse(&reloaded, Path::new(".")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_ne!(c2.model_id("other"), c.model_id("other"), "the ids moved");
    l.reconfigure(&c2);
    assert_eq!(
        l.posterior("learned", "cheap"),
        learned,
        "learned state stays"
    );
    let other = l.posterior("learned", "other");
    assert_eq!((other.alpha, other.beta), (1.0, 9.0), "the new prior");
    // Selection reads names through the new config's ids: the arm with the
    // strong prior against it is (almost) never chosen.
    let counts = picks(&l, &c2, "learned", 400, 7);
    assert!(
        counts[2] < 40,
        "`other` (Beta(1, 9)) picked {} times",
        counts[2]
    );
    assert!(
        l.snapshot()
            .iter()
            .any(|a| a.decision == "added" && a.model == "other" && a.configured),
        "the added decision's arms are configured"
    );
}

#[test]
fn the_ranking_starts_with_the_pick_and_orders_the_fallbacks_by_the_same_draw() {
    let c = config("");
    let l = Learner::in_memory(&c);
    for _ in 0..50 {
        l.apply(&event("learned", "pricey", 1.0)).expect("apply");
        l.apply(&event("learned", "cheap", 0.0)).expect("apply");
    }
    let a = action(&c, "learned");
    for seed in 0..20 {
        let order = l.rank("learned", a, 50, &mut StdRng::seed_from_u64(seed));
        let pick = l.select("learned", a, 50, &mut StdRng::seed_from_u64(seed));
        assert_eq!(order[0], pick, "seed {seed}");
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2], "every candidate once");
        // `cheap` (Beta(1, 51)) is last: both others beat it.
        assert_eq!(order[2], 0, "seed {seed}: {order:?}");
    }
    let fixed = action(&c, "fixed");
    assert_eq!(
        l.rank("fixed", fixed, 50, &mut StdRng::seed_from_u64(1)),
        vec![0, 1]
    );
}
