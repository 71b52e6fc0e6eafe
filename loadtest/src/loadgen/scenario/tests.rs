//! Tests of scenario parsing and validation: the shipped files load, and every problem is
//! reported under the key (or flag) it is about.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::*;

const MIX: &str = "mix: [{prompt: hi}]";

/// Parses `text` with `over`; on failure returns the problems as `key: message` lines.
fn check(text: &str, over: &Overrides) -> Result<Scenario, Vec<String>> {
    Scenario::from_yaml(text, "file-stem", over).map_err(|e| {
        e.0.iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect()
    })
}

fn ok(text: &str) -> Scenario {
    check(text, &Overrides::default()).unwrap()
}

/// The keys of the problems found in `text`.
fn bad_keys(text: &str, over: &Overrides) -> Vec<String> {
    let problems = check(text, over).unwrap_err();
    problems
        .iter()
        .map(|p| p.split(": ").next().unwrap().to_owned())
        .collect()
}

#[test]
fn shipped_scenarios_load() {
    for (name, text) in [
        ("smoke", include_str!("../../../scenarios/smoke.yaml")),
        (
            "routed-steady",
            include_str!("../../../scenarios/routed-steady.yaml"),
        ),
        (
            "passthrough-ramp",
            include_str!("../../../scenarios/passthrough-ramp.yaml"),
        ),
    ] {
        let s = check(text, &Overrides::default()).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(s.name, name);
        assert!(s.expected_requests() > 0, "{name}");
    }
    let ramp = ok(include_str!("../../../scenarios/passthrough-ramp.yaml"));
    assert!(ramp.mix.iter().all(|m| m.model == "llama-3.2-1b"));
    assert!(ramp.stages.iter().any(|s| s.rate != s.end_rate));
    let smoke = ok(include_str!("../../../scenarios/smoke.yaml"));
    assert!(smoke.mix.iter().any(|m| m.stream) && smoke.mix.iter().any(|m| !m.stream));
}

#[test]
fn defaults_fill_what_is_left_out() {
    let s = ok(&format!(
        "target: http://h:1/v1/\nrate: 5\nduration: 2s\n{MIX}"
    ));
    assert_eq!(s.name, "file-stem");
    assert_eq!(s.chat_url(), "http://h:1/v1/chat/completions");
    assert_eq!((s.arrival, s.seed), (Arrival::Constant, 0));
    assert_eq!((s.max_in_flight, s.max_queue), (DEFAULT_MAX_IN_FLIGHT, 0));
    assert_eq!((s.timeout, s.warmup), (DEFAULT_TIMEOUT, Duration::ZERO));
    assert_eq!(s.mix[0].model, "auto");
    assert_eq!(s.mix[0].weight, 1.0);
    assert_eq!(s.expected_requests(), 10);
    assert_eq!(s.duration(), Some(Duration::from_secs(2)));
}

#[test]
fn unknown_keys_and_wrong_types_are_named_with_their_path() {
    let base = "target: http://h:1\nrate: 5\nduration: 2s\n";
    let problems = check(
        &format!("{base}mix: [{{prompt: a}}, {{promt: b}}]"),
        &Overrides::default(),
    )
    .unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].starts_with("mix[1].promt: unknown field `promt`"),
        "{problems:?}"
    );

    let problems = check(
        "target: http://h:1\nrate: 5\nduration: 10\nmix: [{prompt: a}]",
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(
        problems[0].starts_with("duration: invalid type"),
        "{problems:?}"
    );
    assert!(problems[0].contains("\"10s\""), "{problems:?}");

    assert_eq!(
        bad_keys(&format!("rate: fast\n{MIX}"), &Overrides::default()),
        ["rate"]
    );
    assert_eq!(bad_keys("- a list", &Overrides::default()), ["(file)"]);
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = "\
name: has space
rate: -1
stages: [{rate: 1, duration: 1s}]
duration: 10 parsecs
arrival: bursty
max_in_flight: 0
requests: 0
mix:
  - {prompt: a, weight: 0}
  - {prompt: a, prompts: [b]}
  - {prompts: []}
  - {model: '', max_tokens: 0, headers: {'bad name': x, x-key: '${LOADGEN_TEST_UNSET_VAR}'}}
";
    let keys = bad_keys(text, &Overrides::default());
    for key in [
        "name",
        "target",
        "rate",
        "duration",
        "arrival",
        "max_in_flight",
        "requests",
        "mix[0].weight",
        "mix[1].prompt",
        "mix[2].prompts",
        "mix[3].prompt",
        "mix[3].model",
        "mix[3].max_tokens",
        "mix[3].headers.bad name",
        "mix[3].headers.x-key",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} not in {keys:?}");
    }
    let message = Scenario::from_yaml(text, "x", &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(message.starts_with("invalid scenario:\n  - "), "{message}");
    assert!(message.contains("LOADGEN_TEST_UNSET_VAR"), "{message}");
}

#[test]
fn stages_are_checked_one_by_one() {
    let text = format!(
        "target: http://h:1\nstages:\n  - {{rate: 10, duration: 1s}}\n  - {{ramp_to: 5, duration: 0s}}\n  - {{rate: 1, ramp_to: -2}}\n{MIX}"
    );
    let keys = bad_keys(&text, &Overrides::default());
    assert_eq!(
        keys,
        [
            "stages[1].rate",
            "stages[1].duration",
            "stages[2].ramp_to",
            "stages[2].duration"
        ]
    );
    let keys = bad_keys(
        &format!("target: http://h:1\nstages: []\n{MIX}"),
        &Overrides::default(),
    );
    assert_eq!(keys, ["stages"]);
    let zero = format!("target: http://h:1\nstages: [{{rate: 0, duration: 1s}}]\n{MIX}");
    assert_eq!(bad_keys(&zero, &Overrides::default()), ["stages"]);
}

#[test]
fn targets_must_be_http_urls() {
    let text = |t: &str| format!("target: {t}\nrate: 1\nduration: 1s\n{MIX}");
    assert_eq!(
        bad_keys(&text("ftp://h"), &Overrides::default()),
        ["target"]
    );
    assert_eq!(
        bad_keys(&text("not a url"), &Overrides::default()),
        ["target"]
    );
    let flag = Overrides {
        target: Some("localhost:80".to_owned()),
        ..Overrides::default()
    };
    assert_eq!(bad_keys(&text("http://h:1"), &flag), ["--target"]);
}

#[test]
fn overrides_replace_the_file() {
    let ramp = format!(
        "target: http://h:1\nstages: [{{rate: 10, ramp_to: 30, duration: 4s}}, {{rate: 30, duration: 2s}}]\n{MIX}"
    );
    let over = |rate: Option<f64>, duration: Option<u64>| Overrides {
        target: Some("http://other:2".to_owned()),
        rate,
        duration: duration.map(Duration::from_secs),
    };
    let s = check(&ramp, &over(Some(50.0), None)).unwrap();
    assert_eq!(s.target.as_str(), "http://other:2/");
    assert_eq!(
        s.stages,
        [Stage {
            rate: 50.0,
            end_rate: 50.0,
            duration: Some(Duration::from_secs(6))
        }]
    );

    // --duration keeps the ramp's shape, scaled.
    let s = check(&ramp, &over(None, Some(3))).unwrap();
    let durations: Vec<_> = s.stages.iter().map(|s| s.duration).collect();
    assert_eq!(
        durations,
        [Some(Duration::from_secs(2)), Some(Duration::from_secs(1))]
    );
    assert_eq!(s.stages[0].end_rate, 30.0);

    // A file with a request count and no duration runs until the count, or as long as told.
    let counted = format!("target: http://h:1\nrate: 10\nrequests: 25\n{MIX}");
    let s = ok(&counted);
    assert_eq!((s.duration(), s.expected_requests()), (None, 25));
    let s = check(&counted, &over(None, Some(1))).unwrap();
    assert_eq!(s.expected_requests(), 10);

    // The rate may come from the flag alone; a bad one is named by its flag.
    let no_rate = format!("target: http://h:1\nduration: 1s\n{MIX}");
    assert_eq!(
        check(&no_rate, &over(Some(7.0), None))
            .unwrap()
            .expected_requests(),
        7
    );
    assert_eq!(bad_keys(&no_rate, &Overrides::default()), ["rate"]);
    assert_eq!(bad_keys(&ramp, &over(Some(0.0), None)), ["--rate"]);
    let zero = Overrides {
        duration: Some(Duration::ZERO),
        ..Overrides::default()
    };
    assert_eq!(bad_keys(&ramp, &zero), ["--duration"]);
}

#[test]
fn header_values_may_come_from_the_environment() {
    // PATH is set in any environment the tests run in.
    let path = std::env::var("PATH").unwrap();
    let s = ok(
        "target: http://h:1\nrate: 1\nduration: 1s\nmix: [{prompt: a, headers: {x-path: 'p=${PATH};'}}]",
    );
    let (name, value) = &s.mix[0].headers[0];
    assert_eq!(name.as_str(), "x-path");
    assert_eq!(value.to_str().unwrap(), format!("p={path};"));
    // Values never reach the report: only the names are serialised.
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["mix"][0]["headers"], serde_json::json!(["x-path"]));
}
