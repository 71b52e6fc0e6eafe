//! The replay benchmark's arithmetic on tiny synthetic data (no data files, no model): the cost
//! formula, every baseline against hand-counted values, and a learner-driven replay that must
//! settle on the one cheap model that is always right.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use routemesh_common::Signals;
use routemesh_loadtest::replay::baselines::{self, TableRule};
use routemesh_loadtest::replay::data::prompt_tokens;
use routemesh_loadtest::replay::{
    Answer, BaselineOptions, Baselines, Dataset, Price, Row, RunOptions, Score, replay,
    with_cost_weight,
};

const EPS: f64 = 1e-9;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < EPS
}

fn check(what: &str, got: Score, accuracy: f64, cost_per_1k: f64) {
    assert!(
        close(got.accuracy, accuracy) && close(got.cost_per_1k, cost_per_1k),
        "{what}: got accuracy {} cost {}, expected {accuracy} {cost_per_1k}",
        got.accuracy,
        got.cost_per_1k
    );
}

fn price(name: &str, per_mtok: f64) -> Price {
    Price {
        name: name.into(),
        input_per_mtok: per_mtok,
        output_per_mtok: per_mtok,
    }
}

/// Three models, six questions of 100 prompt tokens, every answer 100 tokens long, so one
/// query costs 200 tokens × price: A $0.002, B $0.02, C $0.0002 (per 1k queries: 2, 20, 0.2).
///
/// | q | category | A | B | C |
/// |---|---|---|---|---|
/// | 1 | x | ✓ | ✓ |   |
/// | 2 | x | ✓ | ✓ | ✓ |
/// | 3 | x |   | ✓ |   |
/// | 4 | y |   | ✓ | ✓ |
/// | 5 | y | ✓ |   | ✓ |
/// | 6 | y |   |   |   |
fn tiny() -> Dataset {
    let table = [
        ("x", [true, true, false]),
        ("x", [true, true, true]),
        ("x", [false, true, false]),
        ("y", [false, true, true]),
        ("y", [true, false, true]),
        ("y", [false, false, false]),
    ];
    let rows = table
        .iter()
        .enumerate()
        .map(|(i, (cat, correct))| Row {
            id: format!("q{}", i + 1),
            category: (*cat).into(),
            question: "q".repeat(400),
            prompt_tokens: 100,
            answers: correct
                .iter()
                .map(|&c| Answer {
                    correct: c,
                    out_tokens: 100,
                })
                .collect(),
        })
        .collect();
    Dataset {
        models: vec![price("A", 10.0), price("B", 100.0), price("C", 1.0)],
        rows,
        sha256: String::new(),
        prices_sha256: String::new(),
    }
}

#[test]
fn cost_is_prompt_and_output_tokens_at_their_prices() {
    let p = Price {
        name: "m".into(),
        input_per_mtok: 2.0,
        output_per_mtok: 12.0,
    };
    // 100 × 2 + 200 × 12 = 2600 micro-dollars.
    assert!(close(p.cost_usd(100, 200), 0.0026));
    assert!(close(p.cost_usd(0, 0), 0.0));
    assert!(close(tiny().cost_usd(0, 1), 0.02));
}

#[test]
fn prompt_tokens_are_a_quarter_of_the_characters_rounded_up() {
    assert_eq!(prompt_tokens(""), 0);
    assert_eq!(prompt_tokens("abcd"), 1);
    assert_eq!(prompt_tokens("abcde"), 2);
    // Characters, not bytes: five two-byte characters are two tokens.
    assert_eq!(prompt_tokens("ééééé"), 2);
}

#[test]
fn single_models_random_and_oracle() {
    let data = tiny();
    let b = Baselines::compute(&data, &BaselineOptions::default());
    check("A", b.single("A").unwrap(), 3.0 / 6.0, 2.0);
    check("B", b.single("B").unwrap(), 4.0 / 6.0, 20.0);
    check("C", b.single("C").unwrap(), 3.0 / 6.0, 0.2);
    check(
        "random (expected)",
        b.random_expected,
        (0.5 + 4.0 / 6.0 + 0.5) / 3.0,
        (2.0 + 20.0 + 0.2) / 3.0,
    );
    // Cheapest correct: A, C, B, C, C; q6 nobody → the cheapest (C), wrong.
    // USD: 0.002 + 0.0002 + 0.02 + 0.0002 + 0.0002 + 0.0002 = 0.0228 over 6 → 3.8 per 1k.
    check("oracle", b.oracle, 5.0 / 6.0, 3.8);
    // A seeded draw is reproducible and scores within the range of the models.
    let again = baselines::random(&data, 0);
    assert_eq!(baselines::random(&data, 0), again);
    assert!(again.cost_per_1k >= 0.2 && again.cost_per_1k <= 20.0);
}

#[test]
fn per_category_static_tables() {
    let data = tiny();
    // The head mislabels q3 (x → y) and q4 (y → x).
    let predicted: Vec<String> = ["x", "x", "y", "x", "y", "y"].map(String::from).into();
    let b = Baselines::compute(
        &data,
        &BaselineOptions {
            seed: 0,
            predicted: Some(predicted),
            epsilons: vec![0.4],
            lambdas: vec![0.1],
        },
    );
    let table = |rule: TableRule| {
        b.static_routing
            .iter()
            .find(|s| s.rule == rule)
            .unwrap_or_else(|| panic!("no table for {rule:?}"))
    };
    // x: A 2/3, B 3/3, C 1/3 → B.  y: A 1/3, B 1/3, C 2/3 → C.
    let best = table(TableRule::BestAccuracy);
    assert_eq!(best.table["x"], "B");
    assert_eq!(best.table["y"], "C");
    // B on q1–q3 (3 right), C on q4–q6 (2 right); USD 3 × 0.02 + 3 × 0.0002 = 0.0606.
    check("best, true category", best.true_category, 5.0 / 6.0, 10.1);
    // By label: B on q1, q2, q4 (all right), C on q3, q5, q6 (q5 right).
    check(
        "best, predicted",
        best.predicted_label.unwrap(),
        4.0 / 6.0,
        10.1,
    );

    // Within 0.4 of x's best (1.0): A (0.667) and B → A, the cheaper. y: C is best and cheapest.
    let within = table(TableRule::CheapestWithin { epsilon: 0.4 });
    assert_eq!(within.table["x"], "A");
    assert_eq!(within.table["y"], "C");
    // A on q1–q3 (2 right), C on q4–q6 (2 right); USD 3 × 0.002 + 3 × 0.0002 = 0.0066.
    check("within 0.4", within.true_category, 4.0 / 6.0, 1.1);

    // λ = 0.1: x: A 0.667 − 0.2, B 1 − 2, C 0.333 − 0.02 → A.  y: C 0.667 − 0.02 → C.
    let weighted = table(TableRule::CostWeighted { lambda: 0.1 });
    assert_eq!(weighted.table["x"], "A");
    assert_eq!(weighted.table["y"], "C");
}

#[test]
fn dataset_files_load_with_columns_in_price_order() {
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("models.json");
    let data = dir.path().join("data.jsonl");
    std::fs::write(
        &prices,
        r#"{"models": [
            {"name": "big", "input_usd_per_mtok": 2, "output_usd_per_mtok": 12},
            {"name": "small", "input_usd_per_mtok": 0.1, "output_usd_per_mtok": 0.4}
        ]}"#,
    )
    .unwrap();
    std::fs::write(
        &data,
        concat!(
            r#"{"id": "a", "category": "math", "question": "What is 2+2?", "answer": "B", "#,
            r#""models": {"small": {"correct": false, "out_tokens": 7}, "big": {"correct": true, "out_tokens": 30}, "other": {"correct": true, "out_tokens": 1}}}"#,
            "\n"
        ),
    )
    .unwrap();
    let d = Dataset::load(&data, &prices).unwrap();
    assert_eq!(d.rows.len(), 1);
    assert_eq!(d.rows[0].prompt_tokens, 3); // 12 characters
    assert_eq!(
        d.rows[0].answers,
        vec![
            Answer {
                correct: true,
                out_tokens: 30
            },
            Answer {
                correct: false,
                out_tokens: 7
            }
        ]
    );
    // 3 × 2 + 30 × 12 = 366 micro-dollars.
    assert!(close(d.cost_usd(0, 0), 366e-6));
    assert_eq!(d.sha256.len(), 64);

    // A row without an answer from a priced model is refused, naming the line.
    std::fs::write(
        &data,
        r#"{"id": "a", "category": "m", "question": "q", "models": {"big": {"correct": true, "out_tokens": 1}}}"#,
    )
    .unwrap();
    let err = Dataset::load(&data, &prices).unwrap_err().to_string();
    assert!(err.contains("line 1") && err.contains("small"), "{err}");
}

const CONFIG: &str = r#"
encoder: { model_dir: m }
upstreams: [ { name: sim, base_url: "http://127.0.0.1:9/v1" } ]
models:
  - { name: A, upstream: sim, cost: { input_per_mtok: 10, output_per_mtok: 10, output_tokens: 100 } }
  - { name: B, upstream: sim, cost: { input_per_mtok: 100, output_per_mtok: 100, output_tokens: 100 } }
  - { name: C, upstream: sim, cost: { input_per_mtok: 1, output_per_mtok: 1, output_tokens: 100 } }
learning: { cost_weight: 0 }
decisions:
  - name: never
    when: { keyword: nothing }
    model: A
signals:
  keywords:
    - { name: nothing, patterns: [zzzzzz] }
default: { name: all, models: [B, A, C], selection: thompson }
"#;

/// 600 questions: C (the cheapest) is always right, A every other question, B two in three.
fn cheap_always_right() -> Dataset {
    let rows = (0..600)
        .map(|i| Row {
            id: format!("q{i}"),
            category: "x".into(),
            question: "q".repeat(400),
            prompt_tokens: 100,
            answers: [i % 2 == 0, i % 3 != 0, true]
                .iter()
                .map(|&c| Answer {
                    correct: c,
                    out_tokens: 100,
                })
                .collect(),
        })
        .collect();
    Dataset {
        models: vec![price("A", 10.0), price("B", 100.0), price("C", 1.0)],
        rows,
        sha256: String::new(),
        prices_sha256: String::new(),
    }
}

#[test]
fn learner_settles_on_the_cheap_model_that_is_always_right() {
    let config = routemesh_common::config::parse(CONFIG, Path::new(".")).unwrap();
    let data = cheap_always_right();
    let signals = vec![
        Signals {
            keywords: vec![false],
            ..Signals::default()
        };
        data.rows.len()
    ];
    for lambda in [0.0, 0.05] {
        let config = with_cost_weight(&config, lambda);
        let opts = RunOptions {
            seed: 7,
            passes: 2,
            window: 100,
        };
        let r = replay(&config, &data, &signals, opts).unwrap();
        assert_eq!(r.overall.queries, 1200);
        assert_eq!(r.curve.len(), 12);
        let chosen = &r.decisions["all"].last_pass_models;
        let c = chosen.get("C").copied().unwrap_or(0);
        assert!(
            c >= 570,
            "λ {lambda}: C chosen {c} of 600 in the last pass: {chosen:?}"
        );
        assert!(
            r.last_window.accuracy >= 0.97,
            "λ {lambda}: {:?}",
            r.last_window
        );
        // Same seed, same replay.
        let again = replay(&config, &data, &signals, opts).unwrap();
        assert_eq!(again.overall, r.overall);
    }
}
