//! Unit tests of config validation: every error reported, each with its path.

use std::path::Path;

use super::parse;
use crate::config::{
    Candidate, Config, ConfigErrors, DecisionAction, LearningShare, NatsConfig, OnUnavailable,
    Reasoning, RouteAction, Selection, SystemPrompt, Transport,
};
use crate::rules::{Expr, Predicate};
use crate::signals::PiiKind;
use crate::signals::RouteId;

mod auth;
mod cache;
mod encoder;
mod upstreams;

const EXAMPLE: &str = include_str!("../../../../../config/example.yaml");

/// A small valid config that tests extend or break.
const BASE: &str = r#"
encoder: { model_dir: models/m }
upstreams:
  - { name: up, base_url: "http://127.0.0.1:9000/v1/" }
models:
  - { name: small, upstream: up }
  - { name: big, upstream: up, upstream_model: org/big-70b }
signals:
  routes:
    - { name: math, threshold: 0.4, examples: ["solve x"] }
  keywords:
    - { name: code, regex: true, patterns: ["\\bfn\\b"] }
decisions:
  - { name: low, priority: 1, when: { keyword: code }, model: small }
  - { name: high, priority: 9, when: { route: math }, model: big }
  - { name: mid, priority: 5, when: { tokens: { max: 10 } }, model: small }
default: { model: small }
"#;

fn ok(text: &str) -> Config {
    match parse(text, Path::new("/etc/rm")) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

/// Parses `text`, expecting errors; returns them as `path: message` lines.
fn errors(text: &str) -> Vec<String> {
    match parse(text, Path::new("/etc/rm")) {
        Ok(_) => panic!("expected errors, config was accepted"),
        Err(ConfigErrors(errs)) => errs
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect(),
    }
}

fn has(errs: &[String], path: &str) -> bool {
    errs.iter().any(|e| e.starts_with(&format!("{path}: ")))
}

#[test]
fn shipped_example_config_is_valid() {
    let c = ok(EXAMPLE);
    assert!(c.is_alias("auto"));
    assert!(c.models.len() >= 3, "the demo needs at least three models");
    assert!(c.signals.routes.len() >= 3);
}

#[test]
fn base_config_resolves_names_and_defaults() {
    let c = ok(BASE);
    assert_eq!(
        c.upstreams[0].endpoints[0].url, "http://127.0.0.1:9000/v1",
        "trailing slash trimmed"
    );
    let encoder = c
        .encoder
        .as_ref()
        .map(|e| (e.model_dir.clone(), e.max_tokens));
    let expected = (Path::new("/etc/rm/models/m").to_path_buf(), 256);
    assert_eq!(encoder, Some(expected), "relative to the file");
    assert_eq!(
        c.classifier.transport,
        Transport::Embedded,
        "embedded by default"
    );
    assert_eq!(c.classifier.on_unavailable, OnUnavailable::Degrade);
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    let big = c
        .model_id("big")
        .map(|id| c.model(id).upstream_model.clone());
    assert_eq!(big.as_deref(), Some("org/big-70b"));
    let small = c.model_id("small").unwrap_or_else(|| panic!("no small"));
    assert_eq!(c.default.action, RouteAction::single(small));
    assert_eq!(c.default.name, "default");
    assert!(c.is_alias("auto") && !c.is_alias("small"));
}

#[test]
fn decisions_are_sorted_by_priority_highest_first() {
    let c = ok(BASE);
    let order: Vec<_> = c.decisions.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(order, ["high", "mid", "low"]);
}

#[test]
fn route_predicate_takes_the_route_threshold_unless_given() {
    let c = ok(BASE);
    let high = &c.decisions[0];
    assert_eq!(
        high.when,
        Expr::Pred(Predicate::Route {
            route: RouteId(0),
            min: 0.4
        })
    );
    let text = BASE.replace(
        "when: { route: math }",
        "when: { route: { name: math, min: 0.7 } }",
    );
    let c = ok(&text);
    assert_eq!(
        c.decisions[0].when,
        Expr::Pred(Predicate::Route {
            route: RouteId(0),
            min: 0.7
        })
    );
}

#[test]
fn keyword_literals_are_case_insensitive_and_escaped() {
    let text = BASE.replace(
        r#"regex: true, patterns: ["\\bfn\\b"]"#,
        r#"patterns: ["c++", "Rust"]"#,
    );
    let c = ok(&text);
    let m = &c.signals.keywords[0].matcher;
    assert!(m.is_match("I love C++ and RUST"));
    assert!(
        !m.is_match("c+ only"),
        "`+` is literal, not a regex quantifier"
    );
}

#[test]
fn every_error_is_reported_at_once_with_its_path() {
    let text = r#"
server: { listen: "localhost-ish" }
encoder: { max_tokens: 4000 }
upstreams:
  - { name: up, base_url: "ftp://x", timeout: "soon" }
  - { name: up, base_url: "http://ok" }
  - { name: third, base_url: "http://ok", colour: blue }
models:
  - { name: small, upstream: nowhere }
  - { name: auto, upstream: up }
signals:
  routes:
    - { name: math, examples: [] }
  keywords:
    - { name: bad, regex: true, patterns: ["(unclosed"] }
decisions:
  - { name: d1, when: { route: physics }, model: small }
  - { name: d2, when: { all: [ { keyword: nope }, { tokens: { min: 9, max: 2 } } ] }, model: ghost }
  - { name: passthrough, when: { any: [] }, model: auto }
default: { model: ghost }
"#;
    let errs = errors(text);
    for path in [
        "server.listen",
        "upstreams[2].colour",
        "encoder.model_dir",
        "encoder.max_tokens",
        "upstreams[0].base_url",
        "upstreams[0].timeout",
        "upstreams[1].name",
        "models[0].upstream",
        "router.aliases[0]",
        "signals.routes[0].examples",
        "signals.keywords[0].patterns[0]",
        "decisions[0].when.route",
        "decisions[1].model",
        "decisions[1].when.all[0].keyword",
        "decisions[1].when.all[1].tokens",
        "decisions[2].name",
        "decisions[2].when.any",
        "default.model",
    ] {
        assert!(
            has(&errs, path),
            "no error at `{path}` in:\n{}",
            errs.join("\n")
        );
    }
}

#[test]
fn type_errors_in_several_items_are_all_reported() {
    let text = BASE.replace(
        "  - { name: small, upstream: up }\n  - { name: big, upstream: up, upstream_model: org/big-70b }",
        "  - { name: small, upstream: [up] }\n  - { name: big, upstream: up, weight: 3 }",
    );
    let errs = errors(&text);
    assert!(has(&errs, "models[0].upstream"), "{errs:?}");
    assert!(
        has(&errs, "models[1].weight"),
        "unknown field in item 1: {errs:?}"
    );
    assert!(errs.iter().any(|e| e.contains("weight")), "{errs:?}");
}

#[test]
fn unknown_section_and_unknown_operator_are_named() {
    let text = format!("{BASE}\nfallbacks: []\n");
    let errs = errors(&text);
    assert!(has(&errs, "fallbacks"), "{errs:?}");
    let text = BASE.replace("when: { keyword: code }", "when: { xor: [] }");
    let errs = errors(&text);
    assert!(has(&errs, "decisions[0].when"), "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("xor")), "{errs:?}");
}

#[test]
fn missing_default_and_bad_yaml_are_errors() {
    let errs = errors(&BASE.replace("default: { model: small }", ""));
    assert!(has(&errs, "default"), "{errs:?}");
    let errs = errors("server: [unclosed");
    assert!(has(&errs, "(file)"), "{errs:?}");
    let errs = errors("- just\n- a list\n");
    assert!(has(&errs, "(file)"), "{errs:?}");
}

#[test]
fn error_report_counts_and_lists_every_error() {
    let e = match parse("encoder: {}\nrouter: { aliases: [] }\n", Path::new(".")) {
        Err(e) => e,
        Ok(_) => panic!("accepted"),
    };
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("{} errors in configuration:", e.0.len())),
        "{shown}"
    );
    assert_eq!(shown.lines().count(), e.0.len() + 1);
}

#[test]
fn nats_transport_needs_no_encoder_and_resolves_its_files() {
    let text = BASE.replace(
        "encoder: { model_dir: models/m }",
        "classifier: { transport: nats, pool: gpu-a, deadline: 80ms, on_unavailable: reject }\n\
         nats: { url: \"nats://10.0.0.1:4222,nats://10.0.0.2:4222\", credentials_file: r.creds, tls: { ca_file: ca.pem } }",
    );
    let c = ok(&text);
    let expected = NatsConfig {
        url: "nats://10.0.0.1:4222,nats://10.0.0.2:4222".into(),
        credentials_file: Some("/etc/rm/r.creds".into()),
        tls_ca_file: Some("/etc/rm/ca.pem".into()),
        tls_client_cert: None,
        require_tls: false,
    };
    assert_eq!(
        c.classifier.transport,
        Transport::Nats {
            pool: "gpu-a".into(),
            nats: expected
        }
    );
    assert_eq!(c.classifier.deadline, std::time::Duration::from_millis(80));
    assert_eq!(c.classifier.on_unavailable, OnUnavailable::Reject);
    assert!(c.encoder.is_none());
}

#[test]
fn classifier_mistakes_are_named() {
    let errs = errors(&BASE.replace(
        "encoder: { model_dir: models/m }",
        "classifier: { transport: carrier-pigeon }",
    ));
    assert!(has(&errs, "classifier.transport"), "{errs:?}");
    let errs = errors(&format!(
        "{BASE}\nclassifier: {{ transport: nats, pool: a.b, on_unavailable: shrug }}\nnats: {{ url: http://x, tls: {{ cert_file: c.pem }} }}\n"
    ));
    for path in [
        "classifier.pool",
        "classifier.on_unavailable",
        "nats.url",
        "nats.tls",
        "encoder",
    ] {
        assert!(has(&errs, path), "no error at {path}: {errs:?}");
    }
    let errs = errors(&format!("{BASE}\nnats: {{ url: nats://x:4222 }}\n"));
    assert!(
        has(&errs, "nats"),
        "nats without the nats transport: {errs:?}"
    );
    let errs = errors(&BASE.replace("encoder: { model_dir: models/m }", ""));
    assert!(
        has(&errs, "encoder.model_dir"),
        "embedded needs the encoder: {errs:?}"
    );
}

#[test]
fn pii_conditions_block_and_redact_actions() {
    let text = BASE.replace(
        "  - { name: low, priority: 1, when: { keyword: code }, model: small }",
        "  - { name: low, priority: 1, when: { keyword: code }, model: small }\n\
         \x20 - { name: cards, priority: 50, when: { pii: [credit_card, iban] }, block: \"No card numbers, please.\" }\n\
         \x20 - { name: scrub, priority: 40, when: { pii: any }, model: big, redact_pii: [email, phone] }\n\
         \x20 - { name: scrub_all, priority: 30, when: { pii: any }, model: big, redact_pii: true }",
    );
    let c = ok(&text);
    let by_name = |n: &str| {
        c.decisions
            .iter()
            .find(|d| d.name == n)
            .map(|d| (d.when.clone(), d.action.clone()))
    };
    let (when, action) = by_name("cards").unwrap_or_else(|| panic!("missing"));
    assert_eq!(
        when,
        Expr::Pred(Predicate::Pii(vec![PiiKind::CreditCard, PiiKind::Iban]))
    );
    assert_eq!(
        action,
        DecisionAction::Block {
            message: "No card numbers, please.".into()
        }
    );
    let big = c.model_id("big").unwrap_or_else(|| panic!("no big"));
    let (when, action) = by_name("scrub").unwrap_or_else(|| panic!("missing"));
    assert_eq!(when, Expr::Pred(Predicate::Pii(PiiKind::ALL.to_vec())));
    assert_eq!(
        action,
        DecisionAction::Route(RouteAction {
            redact_pii: vec![PiiKind::Email, PiiKind::Phone],
            ..RouteAction::single(big)
        })
    );
    let (_, action) = by_name("scrub_all").unwrap_or_else(|| panic!("missing"));
    assert_eq!(
        action,
        DecisionAction::Route(RouteAction {
            redact_pii: PiiKind::ALL.to_vec(),
            ..RouteAction::single(big)
        })
    );
}

#[test]
fn action_mistakes_are_named() {
    let text = BASE.replace(
        "  - { name: low, priority: 1, when: { keyword: code }, model: small }",
        "  - { name: a, when: { pii: [passport] }, model: small }\n\
         \x20 - { name: b, when: { pii: sometimes }, block: \"no\", redact_pii: true }\n\
         \x20 - { name: c, when: { keyword: code }, model: small, block: \"no\" }\n\
         \x20 - { name: d, when: { keyword: code } }",
    );
    let errs = errors(&text);
    for path in [
        "decisions[0].when.pii[0]",
        "decisions[1].when.pii",
        "decisions[1].redact_pii",
        "decisions[2]",
        "decisions[3].model",
    ] {
        assert!(has(&errs, path), "no error at {path}: {errs:#?}");
    }
}

#[test]
fn language_conditions_take_iso_639_3_codes() {
    let text = BASE.replace("when: { keyword: code }", "when: { language: [deu, fra] }");
    let c = ok(&text);
    let low = c
        .decisions
        .iter()
        .find(|d| d.name == "low")
        .map(|d| d.when.clone());
    assert_eq!(
        low,
        Some(Expr::Pred(Predicate::Language(vec![
            "deu".into(),
            "fra".into()
        ])))
    );
    let errs = errors(&BASE.replace(
        "when: { keyword: code }",
        "when: { language: [de, klingon] }",
    ));
    assert!(
        has(&errs, "decisions[0].when.language[0]") && has(&errs, "decisions[0].when.language[1]"),
        "{errs:?}"
    );
}

#[test]
fn a_classifier_pool_needs_the_nats_transport() {
    let with = |extra: &str| {
        BASE.replace(
            "  keywords:\n",
            &format!(
                "  classifiers:\n    - {{ name: guard, path: g, pool: gpu }}\n  keywords:\n{extra}"
            ),
        )
    };
    let errs = errors(&with(""));
    assert!(has(&errs, "signals.classifiers[0].pool"), "{errs:?}");
    let nats = with("").replace(
        "encoder: { model_dir: models/m }",
        "classifier: { transport: nats }",
    );
    let c = ok(&nats);
    assert_eq!(c.signals.classifiers[0].pool.as_deref(), Some("gpu"));
    assert_eq!(c.signals.classifiers[0].path, Path::new("/etc/rm/g"));
}

#[test]
fn candidates_selection_and_request_edits_are_read() {
    let text = BASE.replace(
        "  - { name: low, priority: 1, when: { keyword: code }, model: small }",
        "  - name: low\n\
         \x20   priority: 1\n\
         \x20   when: { keyword: code }\n\
         \x20   models: [small, { model: big, reasoning: high, prior: { alpha: 3, beta: 1 } }]\n\
         \x20   selection: thompson\n\
         \x20   cost_weight: 0.25\n\
         \x20   system_prompt: { insert: \"Answer with code.\" }\n\
         \x20   headers: { add: { X-Team: code }, remove: [x-debug] }\n\
         \x20   slo: 2s",
    ) + "learning: { cost_weight: 0.5, discount: 0.99, store: state/learning, remember: { requests: 10, for: 5m } }\n";
    let c = parse(&text, Path::new("/etc/routemesh")).unwrap_or_else(|e| panic!("{e}"));
    let action = c
        .route_action("low")
        .unwrap_or_else(|| panic!("no route action"));
    let (small, big) = (
        c.model_id("small").unwrap_or_else(|| panic!("small")),
        c.model_id("big").unwrap_or_else(|| panic!("big")),
    );
    assert_eq!(
        action.candidates,
        vec![
            Candidate::new(small),
            Candidate {
                model: big,
                prior: (3.0, 1.0),
                reasoning: Some(Reasoning::High)
            }
        ]
    );
    assert_eq!(action.selection, Selection::Thompson);
    assert_eq!(action.cost_weight, Some(0.25));
    assert_eq!(
        action.system_prompt,
        Some(SystemPrompt::Insert("Answer with code.".into()))
    );
    assert_eq!(
        action.headers.add,
        vec![("x-team".to_owned(), "code".to_owned())]
    );
    assert_eq!(action.headers.remove, vec!["x-debug".to_owned()]);
    assert_eq!(action.slo, Some(std::time::Duration::from_secs(2)));
    assert_eq!(c.learning.cost_weight, 0.5);
    assert_eq!(c.learning.discount, 0.99);
    assert_eq!(
        c.learning.store.as_deref(),
        Some(Path::new("/etc/routemesh/state/learning"))
    );
    assert_eq!(c.learning.remember_requests, 10);
    assert_eq!(c.learning.share, LearningShare::Local);
    // A decision with `model:` is one static candidate.
    assert_eq!(
        c.route_action("default").map(|a| a.selection),
        Some(Selection::Static)
    );
}

#[test]
fn mistakes_in_candidates_and_learning_are_all_named() {
    let text = BASE.replace(
        "  - { name: low, priority: 1, when: { keyword: code }, model: small }",
        "  - { name: a, when: { keyword: code }, models: [] }\n\
         \x20 - { name: b, when: { keyword: code }, models: [small, small] }\n\
         \x20 - { name: c, when: { keyword: code }, models: [nope, { model: big, reasoning: max, prior: { alpha: 0, beta: 1 } }] }\n\
         \x20 - { name: d, when: { keyword: code }, model: small, models: [big] }\n\
         \x20 - { name: e, when: { keyword: code }, model: small, selection: greedy, cost_weight: -1 }\n\
         \x20 - { name: f, when: { keyword: code }, model: small, system_prompt: { insert: a, replace: b } }\n\
         \x20 - { name: g, when: { keyword: code }, model: small, headers: { add: { authorization: x, \"bad name\": y }, remove: [x-routemesh-model] } }\n\
         \x20 - { name: h, when: { keyword: code }, block: no, selection: thompson }",
    ) + "learning: { discount: 0, share: everywhere, cost_weight: .nan }\n";
    let errs = errors(&text);
    for path in [
        "decisions[0].models",
        "decisions[1].models[1]",
        "decisions[2].models[0]",
        "decisions[2].models[1].reasoning",
        "decisions[2].models[1].prior",
        "decisions[3]",
        "decisions[4].selection",
        "decisions[4].cost_weight",
        "decisions[5].system_prompt",
        "decisions[6].headers.add.authorization",
        "decisions[6].headers.add.bad name",
        "decisions[6].headers.remove[0]",
        "decisions[7].selection",
        "learning.discount",
        "learning.share",
        "learning.cost_weight",
    ] {
        assert!(has(&errs, path), "no error at {path}: {errs:#?}");
    }
}

#[test]
fn jetstream_sharing_reads_the_nats_section_with_an_embedded_classifier() {
    let text = format!(
        "{BASE}learning: {{ share: jetstream, stream: OUTCOMES_1 }}\nnats: {{ url: \"nats://10.0.0.1:4222\" }}\n"
    );
    let c = parse(&text, Path::new("/")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.learning.share,
        LearningShare::JetStream {
            stream: "OUTCOMES_1".into(),
            nats: NatsConfig::plain("nats://10.0.0.1:4222")
        }
    );
    // Without jetstream sharing the same section is a mistake.
    let errs = errors(&format!(
        "{BASE}nats: {{ url: \"nats://10.0.0.1:4222\" }}\n"
    ));
    assert!(has(&errs, "nats"), "{errs:#?}");
}

#[test]
fn classifier_hedge_is_auto_off_a_duration_or_after_and_budget() {
    use crate::config::{Hedge, HedgeAfter};
    use std::time::Duration;
    let with = |v: &str| {
        BASE.replace(
            "encoder: { model_dir: models/m }",
            &format!("classifier: {{ transport: nats, deadline: 2s, hedge: {v} }}"),
        )
    };
    let hedge = |v: &str| ok(&with(v)).classifier.hedge;
    let hedge_of = |after, budget_percent| Hedge {
        after,
        budget_percent,
    };
    assert_eq!(ok(BASE).classifier.hedge, hedge_of(HedgeAfter::Auto, 10));
    assert_eq!(hedge("auto"), hedge_of(HedgeAfter::Auto, 10));
    assert_eq!(hedge("off"), hedge_of(HedgeAfter::Off, 10));
    let ms300 = HedgeAfter::Fixed(Duration::from_millis(300));
    assert_eq!(hedge("300ms"), hedge_of(ms300, 10));
    assert_eq!(hedge("{ after: 300ms, budget: 5% }"), hedge_of(ms300, 5));
    assert_eq!(hedge("{ budget: 100% }"), hedge_of(HedgeAfter::Auto, 100));
    for (value, key) in [
        ("sometimes", "classifier.hedge"),
        ("2s", "classifier.hedge"),
        ("{ after: 5 }", "classifier.hedge.after"),
        ("{ after: 3s }", "classifier.hedge.after"),
        ("{ budget: 0% }", "classifier.hedge.budget"),
        ("{ budget: 0.1 }", "classifier.hedge.budget"),
        ("{ budget: 101% }", "classifier.hedge.budget"),
        ("{ every: 1s }", "classifier.hedge.every"),
    ] {
        let errs = errors(&with(value));
        assert!(has(&errs, key), "{value}: {errs:?}");
    }
    let embedded = errors(&format!("{BASE}\nclassifier: {{ hedge: off }}\n"));
    assert!(has(&embedded, "classifier.hedge"), "{embedded:?}");
}
