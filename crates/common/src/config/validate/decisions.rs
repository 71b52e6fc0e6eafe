//! Validating decisions and their rule expressions (part of phase two).

use super::{RESERVED_DECISIONS, Scope, Validator};
use crate::config::raw::{RawDecision, RawDefault, RawExpr, RawPiiKinds, RawRoutePredicate};
use crate::config::{
    ClassifierId, DecisionAction, DecisionConfig, DefaultDecision, LabelRef, ModelId,
};
use crate::rules::{Expr, Predicate};
use crate::signals::{KeywordId, PiiKind, RouteId};
use std::collections::HashSet;

impl Validator {
    pub(super) fn decisions(
        &mut self,
        raw: Vec<(String, RawDecision)>,
        scope: &Scope<'_>,
    ) -> Vec<DecisionConfig> {
        let mut seen: HashSet<String> =
            RESERVED_DECISIONS.iter().map(|s| (*s).to_owned()).collect();
        let mut out = Vec::new();
        for (path, d) in raw {
            self.unique(&mut seen, &d.name, &path);
            let action = self.action(&d, &path, scope);
            let when = self.expr(d.when, &format!("{path}.when"), scope);
            if let (Some(action), Some(when)) = (action, when) {
                out.push(DecisionConfig {
                    name: d.name,
                    priority: d.priority,
                    when,
                    action,
                });
            }
        }
        // Stable: equal priorities keep their order in the file.
        out.sort_by_key(|d| std::cmp::Reverse(d.priority));
        out
    }

    /// `model` (+ `redact_pii`) or `block`, exactly one of the two.
    pub(super) fn action(
        &mut self,
        d: &RawDecision,
        path: &str,
        scope: &Scope<'_>,
    ) -> Option<DecisionAction> {
        match (&d.model, &d.block) {
            (Some(model), None) => {
                let model = self.resolve_model(model, &format!("{path}.model"), scope);
                let redact_pii = match &d.redact_pii {
                    Some(kinds) => self.pii_kinds(kinds, &format!("{path}.redact_pii"))?,
                    None => Vec::new(),
                };
                Some(DecisionAction::Route {
                    model: model?,
                    redact_pii,
                })
            }
            (None, Some(message)) => {
                if d.redact_pii.is_some() {
                    self.error(
                        &format!("{path}.redact_pii"),
                        "a blocked request is not forwarded; remove it".into(),
                    );
                }
                if message.trim().is_empty() {
                    self.error(
                        &format!("{path}.block"),
                        "give the message the client sees".into(),
                    );
                }
                Some(DecisionAction::Block {
                    message: message.clone(),
                })
            }
            (Some(_), Some(_)) => {
                self.error(
                    path,
                    "give either `model` (route) or `block` (refuse), not both".into(),
                );
                None
            }
            (None, None) => {
                self.error(
                    &format!("{path}.model"),
                    "required (or `block` with a message)".into(),
                );
                None
            }
        }
    }

    /// `true`/`any` → every kind; a list → those kinds.
    pub(super) fn pii_kinds(&mut self, raw: &RawPiiKinds, path: &str) -> Option<Vec<PiiKind>> {
        let known = || PiiKind::ALL.map(PiiKind::name).join(", ");
        match raw {
            RawPiiKinds::Flag(true) => Some(PiiKind::ALL.to_vec()),
            RawPiiKinds::Word(w) if w == "any" => Some(PiiKind::ALL.to_vec()),
            RawPiiKinds::Flag(false) => {
                self.error(path, "`false` selects nothing; leave the key out".into());
                None
            }
            RawPiiKinds::Word(w) => {
                self.error(
                    path,
                    format!("`{w}`: use any, or a list of kinds ({})", known()),
                );
                None
            }
            RawPiiKinds::List(names) if names.is_empty() => {
                self.error(path, "an empty list selects nothing".into());
                None
            }
            RawPiiKinds::List(names) => {
                let mut kinds = Vec::new();
                for (i, n) in names.iter().enumerate() {
                    match PiiKind::from_name(n) {
                        Some(k) => kinds.push(k),
                        None => self.error(
                            &format!("{path}[{i}]"),
                            format!("unknown PII kind `{n}` (known: {})", known()),
                        ),
                    }
                }
                (kinds.len() == names.len()).then_some(kinds)
            }
        }
    }

    pub(super) fn expr(&mut self, raw: RawExpr, path: &str, scope: &Scope<'_>) -> Option<Expr> {
        match raw {
            RawExpr::All(children) => self.children(children, path, "all", scope).map(Expr::All),
            RawExpr::Any(children) => self.children(children, path, "any", scope).map(Expr::Any),
            RawExpr::Not(inner) => self
                .expr(*inner, &format!("{path}.not"), scope)
                .map(|e| Expr::Not(Box::new(e))),
            RawExpr::Route(pred) => {
                let (name, min) = match pred {
                    RawRoutePredicate::Name(name) => (name, None),
                    RawRoutePredicate::Full(f) => (f.name, f.min),
                };
                let path = format!("{path}.route");
                let Some(i) = scope.signals.routes.iter().position(|r| r.name == name) else {
                    let known: Vec<_> = scope
                        .signals
                        .routes
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect();
                    self.error(
                        &path,
                        format!("no route named `{name}` (known: {})", known.join(", ")),
                    );
                    return None;
                };
                let min = min.unwrap_or(scope.signals.routes[i].threshold);
                if !(-1.0..=1.0).contains(&min) {
                    self.error(&format!("{path}.min"), format!("{min} is not in [-1, 1]"));
                    return None;
                }
                Some(Expr::Pred(Predicate::Route {
                    route: RouteId(i),
                    min,
                }))
            }
            RawExpr::Keyword(name) => {
                match scope.signals.keywords.iter().position(|k| k.name == name) {
                    Some(i) => Some(Expr::Pred(Predicate::Keyword(KeywordId(i)))),
                    None => {
                        let known: Vec<_> = scope
                            .signals
                            .keywords
                            .iter()
                            .map(|k| k.name.as_str())
                            .collect();
                        self.error(
                            &format!("{path}.keyword"),
                            format!(
                                "no keyword rule named `{name}` (known: {})",
                                known.join(", ")
                            ),
                        );
                        None
                    }
                }
            }
            RawExpr::Pii(kinds) => self
                .pii_kinds(&kinds, &format!("{path}.pii"))
                .map(|k| Expr::Pred(Predicate::Pii(k))),
            RawExpr::Label(l) => {
                let path = format!("{path}.label");
                let Some(i) = scope
                    .signals
                    .classifiers
                    .iter()
                    .position(|c| c.name == l.classifier)
                else {
                    let known: Vec<_> = scope
                        .signals
                        .classifiers
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect();
                    self.error(
                        &format!("{path}.classifier"),
                        format!(
                            "no classifier named `{}` (known: {})",
                            l.classifier,
                            known.join(", ")
                        ),
                    );
                    return None;
                };
                if let Some(min) = l.min.filter(|m| !(0.0..=1.0).contains(m)) {
                    self.error(
                        &format!("{path}.min"),
                        format!("{min} is not a probability in [0, 1]"),
                    );
                    return None;
                }
                let classifier = ClassifierId(i);
                self.label_refs.push(LabelRef {
                    path,
                    classifier,
                    label: l.is.clone(),
                });
                Some(Expr::Pred(Predicate::Label {
                    classifier,
                    label: l.is,
                    min: l.min,
                }))
            }
            RawExpr::Language(codes) => {
                let path = format!("{path}.language");
                if codes.is_empty() {
                    self.error(
                        &path,
                        "give at least one ISO 639-3 code (eng, deu, fra, …)".into(),
                    );
                    return None;
                }
                let mut ok = true;
                for (i, code) in codes.iter().enumerate() {
                    if whatlang::Lang::from_code(code).is_none() {
                        self.error(&format!("{path}[{i}]"), format!("`{code}` is not an ISO 639-3 code the detector knows (eng, deu, fra, spa, cmn, jpn, …)"));
                        ok = false;
                    }
                }
                ok.then_some(Expr::Pred(Predicate::Language(codes)))
            }
            RawExpr::Tokens(t) => {
                let (min, max) = (t.min.unwrap_or(0), t.max.unwrap_or(u32::MAX));
                if t.min.is_none() && t.max.is_none() {
                    self.error(&format!("{path}.tokens"), "give min, max or both".into());
                    None
                } else if min > max {
                    self.error(
                        &format!("{path}.tokens"),
                        format!("min {min} is above max {max}"),
                    );
                    None
                } else {
                    Some(Expr::Pred(Predicate::Tokens { min, max }))
                }
            }
        }
    }

    pub(super) fn children(
        &mut self,
        raw: Vec<RawExpr>,
        path: &str,
        op: &str,
        scope: &Scope<'_>,
    ) -> Option<Vec<Expr>> {
        if raw.is_empty() {
            self.error(
                &format!("{path}.{op}"),
                format!("`{op}` needs at least one condition"),
            );
            return None;
        }
        let n = raw.len();
        let out: Vec<_> = raw
            .into_iter()
            .enumerate()
            .filter_map(|(i, c)| self.expr(c, &format!("{path}.{op}[{i}]"), scope))
            .collect();
        (out.len() == n).then_some(out)
    }

    pub(super) fn default_decision(
        &mut self,
        raw: Option<RawDefault>,
        scope: &Scope<'_>,
    ) -> Option<DefaultDecision> {
        let Some(raw) = raw else {
            self.error(
                "default",
                "required: the model used when no decision matches".into(),
            );
            return None;
        };
        let name = raw.name.unwrap_or_else(|| "default".to_owned());
        if RESERVED_DECISIONS.contains(&name.as_str()) {
            self.error("default.name", format!("`{name}` is reserved"));
        }
        let redact_pii = match &raw.redact_pii {
            Some(kinds) => self.pii_kinds(kinds, "default.redact_pii"),
            None => Some(Vec::new()),
        };
        let model = self.resolve_model(&raw.model, "default.model", scope)?;
        Some(DefaultDecision {
            name,
            action: DecisionAction::Route {
                model,
                redact_pii: redact_pii?,
            },
        })
    }

    pub(super) fn resolve_model(
        &mut self,
        name: &str,
        path: &str,
        scope: &Scope<'_>,
    ) -> Option<ModelId> {
        let id = scope.models.get(name).copied();
        if id.is_none() {
            let mut known: Vec<_> = scope.models.keys().map(String::as_str).collect();
            known.sort_unstable();
            self.error(
                path,
                format!("no model named `{name}` (known: {})", known.join(", ")),
            );
        }
        id
    }
}
