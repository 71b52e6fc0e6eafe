//! Rule evaluation and decision selection.

use routemesh_common::Signals;
use routemesh_common::config::{Config, DecisionAction, RouteAction};
use routemesh_common::rules::{Expr, Predicate};

/// The outcome of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decided<'c> {
    /// Name of the decision taken (the default's name when nothing matched).
    pub name: &'c str,
    /// What to do: route to one of the candidates, or block.
    pub action: Action<'c>,
    /// Whether a rule matched (false: the default was taken).
    pub matched: bool,
}

/// What a decision does, borrowed from the config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action<'c> {
    Route(&'c RouteAction),
    Block { message: &'c str },
}

impl<'c> From<&'c DecisionAction> for Action<'c> {
    fn from(a: &'c DecisionAction) -> Self {
        match a {
            DecisionAction::Route(r) => Action::Route(r),
            DecisionAction::Block { message } => Action::Block { message },
        }
    }
}

/// Evaluates one rule against the signals.
pub fn eval(expr: &Expr, s: &Signals) -> bool {
    match expr {
        Expr::All(children) => children.iter().all(|c| eval(c, s)),
        Expr::Any(children) => children.iter().any(|c| eval(c, s)),
        Expr::Not(inner) => !eval(inner, s),
        Expr::Pred(p) => pred(p, s),
    }
}

fn pred(p: &Predicate, s: &Signals) -> bool {
    match *p {
        Predicate::Route { route, min } => s.route_score(route).is_some_and(|x| x >= min),
        Predicate::Keyword(k) => s.keyword(k),
        Predicate::Tokens { min, max } => s.prompt_tokens.is_some_and(|t| (min..=max).contains(&t)),
        Predicate::Pii(ref kinds) => s.pii.iter().any(|span| kinds.contains(&span.kind)),
        Predicate::Language(ref codes) => {
            s.language.as_ref().is_some_and(|l| codes.contains(&l.code))
        }
        Predicate::Label {
            classifier,
            ref label,
            min,
        } => {
            let Some(Some(result)) = s.classifiers.get(classifier.0) else {
                return false;
            };
            match min {
                Some(min) => result.probability(label).is_some_and(|p| p >= min),
                None => result.top() == Some(label.as_str()),
            }
        }
    }
}

/// Picks the first decision, in priority order, whose rule holds.
pub fn decide<'c>(config: &'c Config, signals: &Signals) -> Decided<'c> {
    config
        .decisions
        .iter()
        .find(|d| eval(&d.when, signals))
        .map(|d| Decided {
            name: &d.name,
            action: Action::from(&d.action),
            matched: true,
        })
        .unwrap_or(Decided {
            name: &config.default.name,
            action: Action::Route(&config.default.action),
            matched: false,
        })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use routemesh_common::signals::{KeywordId, RouteId};

    use super::*;

    const CONFIG: &str = r#"
encoder: { model_dir: m }
upstreams: [ { name: up, base_url: "http://127.0.0.1:1" } ]
models:
  - { name: coder, upstream: up }
  - { name: mathy, upstream: up }
  - { name: tiny, upstream: up }
signals:
  routes:
    - { name: math, threshold: 0.5, examples: [x] }
    - { name: chat, threshold: 0.3, examples: [y] }
  keywords:
    - { name: code, patterns: [fn] }
decisions:
  - name: code
    priority: 20
    when: { keyword: code }
    model: coder
  - name: math
    priority: 10
    when: { any: [ { route: math }, { all: [ { route: { name: chat, min: 0.9 } }, { tokens: { min: 100 } } ] } ] }
    model: mathy
  - name: chat
    priority: 10
    when: { all: [ { route: chat }, { not: { keyword: code } }, { tokens: { max: 20 } } ] }
    model: tiny
default: { name: fallback, model: coder }
"#;

    fn config() -> Config {
        match routemesh_common::config::parse(CONFIG, Path::new(".")) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn signals(math: f32, chat: f32, code: bool, tokens: u32) -> Signals {
        Signals {
            route_scores: vec![math, chat],
            keywords: vec![code],
            prompt_tokens: Some(tokens),
            truncated: false,
            windows: 1,
            pii: Vec::new(),
            language: None,
            classifiers: Vec::new(),
        }
    }

    /// Runs [`decide`] and returns the decision's name and its model's name.
    fn check(s: Signals) -> (String, String, bool) {
        let c = config();
        let d = decide(&c, &s);
        let model = match d.action {
            Action::Route(r) => c.model(r.candidates[0].model).name.clone(),
            Action::Block { .. } => "(blocked)".to_owned(),
        };
        (d.name.to_owned(), model, d.matched)
    }

    #[test]
    fn higher_priority_wins_when_several_match() {
        assert_eq!(
            check(signals(0.9, 0.9, true, 5)),
            ("code".into(), "coder".into(), true)
        );
    }

    #[test]
    fn equal_priority_keeps_file_order() {
        // Both `math` and `chat` (priority 10) hold; `math` comes first.
        assert_eq!(check(signals(0.6, 0.5, false, 5)).0, "math");
    }

    #[test]
    fn thresholds_are_inclusive() {
        assert_eq!(check(signals(0.5, 0.0, false, 5)).0, "math");
        assert_eq!(check(signals(0.4999, 0.0, false, 5)).0, "fallback");
    }

    #[test]
    fn not_and_token_range_guard_the_chat_decision() {
        assert_eq!(check(signals(0.0, 0.35, false, 20)).0, "chat");
        assert_eq!(
            check(signals(0.0, 0.35, false, 21)).0,
            "fallback",
            "tokens max is inclusive"
        );
    }

    #[test]
    fn nested_all_inside_any() {
        assert_eq!(check(signals(0.0, 0.95, false, 150)).0, "math");
        assert_eq!(check(signals(0.0, 0.95, false, 99)).0, "fallback");
    }

    #[test]
    fn default_when_nothing_matches() {
        assert_eq!(
            check(signals(0.1, 0.1, false, 50)),
            ("fallback".into(), "coder".into(), false)
        );
    }

    #[test]
    fn pii_predicate_matches_listed_kinds_only() {
        use routemesh_common::{PiiKind, PiiSpan};
        let with = |kind| Signals {
            pii: vec![PiiSpan {
                kind,
                start: 0,
                end: 3,
            }],
            ..Signals::default()
        };
        let cards = Expr::Pred(Predicate::Pii(vec![PiiKind::CreditCard, PiiKind::Iban]));
        assert!(eval(&cards, &with(PiiKind::Iban)));
        assert!(!eval(&cards, &with(PiiKind::Email)));
        assert!(!eval(&cards, &Signals::default()));
    }

    #[test]
    fn language_predicate_needs_a_detected_language_in_the_list() {
        use routemesh_common::signals::Language;
        let german = Signals {
            language: Some(Language {
                code: "deu".into(),
                confidence: 0.9,
            }),
            ..Signals::default()
        };
        let de_or_fr = Expr::Pred(Predicate::Language(vec!["deu".into(), "fra".into()]));
        assert!(eval(&de_or_fr, &german));
        assert!(!eval(
            &Expr::Pred(Predicate::Language(vec!["eng".into()])),
            &german
        ));
        assert!(
            !eval(&de_or_fr, &Signals::default()),
            "undetected matches nothing"
        );
    }

    #[test]
    fn label_predicate_uses_top_label_or_a_probability_floor() {
        use routemesh_common::config::ClassifierId;
        use routemesh_common::signals::{ClassifierResult, Output};
        let labels: std::sync::Arc<[String]> = vec!["law".to_owned(), "math".to_owned()].into();
        let s = Signals {
            classifiers: vec![
                None,
                Some(ClassifierResult {
                    labels,
                    output: Output::Scores {
                        probs: vec![0.3, 0.7],
                    },
                    threshold: None,
                }),
            ],
            ..Signals::default()
        };
        let label = |label: &str, min| {
            Expr::Pred(Predicate::Label {
                classifier: ClassifierId(1),
                label: label.into(),
                min,
            })
        };
        assert!(eval(&label("math", None), &s), "top label");
        assert!(!eval(&label("law", None), &s));
        assert!(eval(&label("law", Some(0.3)), &s), "floor is inclusive");
        assert!(!eval(&label("law", Some(0.31)), &s));
        assert!(!eval(&label("physics", Some(0.0)), &s), "unknown label");
        let missing = Expr::Pred(Predicate::Label {
            classifier: ClassifierId(0),
            label: "x".into(),
            min: None,
        });
        assert!(
            !eval(&missing, &s),
            "a classifier that did not run matches nothing"
        );
    }

    #[test]
    fn missing_signals_never_match() {
        // A degraded classifier may return no scores: predicates read them as absent.
        let s = Signals {
            prompt_tokens: Some(5),
            ..Signals::default()
        };
        assert!(!eval(
            &Expr::Pred(Predicate::Route {
                route: RouteId(0),
                min: -1.0
            }),
            &s
        ));
        assert!(!eval(&Expr::Pred(Predicate::Keyword(KeywordId(0))), &s));
        assert_eq!(check(s).0, "fallback");
        let unknown_length = Signals {
            prompt_tokens: None,
            ..Signals::default()
        };
        let any_length = Expr::Pred(Predicate::Tokens {
            min: 0,
            max: u32::MAX,
        });
        assert!(
            !eval(&any_length, &unknown_length),
            "an unknown length matches no range"
        );
    }
}
