//! Validating decisions and their rule expressions (part of phase two).

use super::{RESERVED_DECISIONS, Scope, Validator};
use crate::config::raw::{
    RawCandidate, RawDecision, RawDefault, RawExpr, RawHeaders, RawPiiKinds, RawPrior,
    RawReasoning, RawRouteFields, RawRoutePredicate, RawSystemPrompt,
};
use crate::config::{
    CachePolicy, Candidate, ClassifierId, DecisionAction, DecisionConfig, DefaultDecision,
    HeaderEdits, LabelRef, ModelId, Reasoning, RouteAction, Selection, SystemPrompt,
};

/// Headers a decision may not add or remove: framing, the upstream's
/// credentials and what the gateway sets itself.
const PROTECTED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "authorization",
];
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
            let (name, priority, when, block, route) = d.split();
            self.unique(&mut seen, &name, &path);
            let action = self.action(block, route, &path, scope);
            let when = self.expr(when, &format!("{path}.when"), scope);
            if let (Some(action), Some(when)) = (action, when) {
                out.push(DecisionConfig {
                    name,
                    priority,
                    when,
                    action,
                });
            }
        }
        // Stable: equal priorities keep their order in the file.
        out.sort_by_key(|d| std::cmp::Reverse(d.priority));
        out
    }

    /// `model`/`models` (+ how to forward) or `block`, exactly one of the two.
    fn action(
        &mut self,
        block: Option<String>,
        route: RawRouteFields,
        path: &str,
        scope: &Scope<'_>,
    ) -> Option<DecisionAction> {
        let routes = route.model.is_some() || route.models.is_some();
        match (routes, block) {
            (true, Some(_)) => {
                self.error(
                    path,
                    "give either `model`/`models` (route) or `block` (refuse), not both".into(),
                );
                None
            }
            (false, Some(message)) => {
                let extra = [
                    ("redact_pii", route.redact_pii.is_some()),
                    ("selection", route.selection.is_some()),
                    ("cost_weight", route.cost_weight.is_some()),
                    ("system_prompt", route.system_prompt.is_some()),
                    ("headers", route.headers.is_some()),
                    ("slo", route.slo.is_some()),
                    ("cache", route.cache.is_some()),
                ];
                for (key, set) in extra {
                    if set {
                        self.error(
                            &format!("{path}.{key}"),
                            "a blocked request is not forwarded; remove it".into(),
                        );
                    }
                }
                if message.trim().is_empty() {
                    self.error(
                        &format!("{path}.block"),
                        "give the message the client sees".into(),
                    );
                }
                Some(DecisionAction::Block { message })
            }
            (_, None) => self
                .route_action(route, path, scope)
                .map(DecisionAction::Route),
        }
    }

    /// The routing part of a decision or of the default.
    pub(super) fn route_action(
        &mut self,
        raw: RawRouteFields,
        path: &str,
        scope: &Scope<'_>,
    ) -> Option<RouteAction> {
        let candidates = match (raw.model, raw.models) {
            (Some(_), Some(_)) => {
                self.error(
                    path,
                    "give `model` (one) or `models` (candidates), not both".into(),
                );
                None
            }
            (None, None) => {
                self.error(
                    &format!("{path}.model"),
                    "required (or `models` with candidates, or `block` with a message)".into(),
                );
                None
            }
            (Some(name), None) => self
                .resolve_model(&name, &format!("{path}.model"), scope)
                .map(|m| vec![Candidate::new(m)]),
            (None, Some(list)) => self.candidates(list, &format!("{path}.models"), scope),
        };
        let selection = match raw.selection.as_deref() {
            None | Some("static") => Some(Selection::Static),
            Some("thompson") => Some(Selection::Thompson),
            Some(other) => {
                self.error(
                    &format!("{path}.selection"),
                    format!("`{other}`: use static (the first model) or thompson (learned)"),
                );
                None
            }
        };
        if let Some(w) = raw.cost_weight {
            self.cost_weight(w, &format!("{path}.cost_weight"));
        }
        let redact_pii = match &raw.redact_pii {
            Some(kinds) => self.pii_kinds(kinds, &format!("{path}.redact_pii")),
            None => Some(Vec::new()),
        };
        let system_prompt = match raw.system_prompt {
            None => Some(None),
            Some(sp) => self
                .system_prompt(sp, &format!("{path}.system_prompt"))
                .map(Some),
        };
        let headers = match raw.headers {
            None => Some(HeaderEdits::default()),
            Some(h) => self.header_edits(h, &format!("{path}.headers")),
        };
        let slo = match raw.slo.as_deref() {
            None => Some(None),
            Some(text) => self.duration(Some(text), &format!("{path}.slo")).map(Some),
        };
        let cache = match raw.cache {
            None => Some(CachePolicy::default()),
            Some(c) => self.cache_policy(c, &format!("{path}.cache")),
        };
        Some(RouteAction {
            candidates: candidates?,
            selection: selection?,
            cost_weight: raw.cost_weight,
            redact_pii: redact_pii?,
            system_prompt: system_prompt?,
            headers: headers?,
            slo: slo?,
            cache: cache?,
        })
    }

    /// λ must be a finite number ≥ 0.
    pub(super) fn cost_weight(&mut self, w: f64, path: &str) {
        if !(w.is_finite() && w >= 0.0) {
            self.error(
                path,
                format!("{w} is not a number ≥ 0 (quality per USD per 1k requests)"),
            );
        }
    }

    fn candidates(
        &mut self,
        list: Vec<RawCandidate>,
        path: &str,
        scope: &Scope<'_>,
    ) -> Option<Vec<Candidate>> {
        if list.is_empty() {
            self.error(path, "needs at least one model".into());
            return None;
        }
        let n = list.len();
        let mut out = Vec::with_capacity(n);
        let mut seen = HashSet::new();
        for (i, c) in list.into_iter().enumerate() {
            let p = format!("{path}[{i}]");
            let (name, reasoning, prior) = match c {
                RawCandidate::Name(name) => (name, None, None),
                RawCandidate::Full(f) => (f.model, f.reasoning, f.prior),
            };
            if !seen.insert(name.clone()) {
                self.error(&p, format!("`{name}` is listed twice"));
                continue;
            }
            let model_path = if prior.is_none() && reasoning.is_none() {
                p.clone()
            } else {
                format!("{p}.model")
            };
            let model = self.resolve_model(&name, &model_path, scope);
            let reasoning = match reasoning {
                None => Some(None),
                Some(r) => self.reasoning(r, &format!("{p}.reasoning")).map(Some),
            };
            let prior = match prior {
                None => Some((1.0, 1.0)),
                Some(RawPrior { alpha, beta }) => {
                    let ok = |x: f64| x.is_finite() && x > 0.0;
                    if !(ok(alpha) && ok(beta)) {
                        self.error(
                            &format!("{p}.prior"),
                            format!("alpha ({alpha}) and beta ({beta}) must be numbers > 0"),
                        );
                    }
                    (ok(alpha) && ok(beta)).then_some((alpha, beta))
                }
            };
            if let (Some(model), Some(prior), Some(reasoning)) = (model, prior, reasoning) {
                out.push(Candidate {
                    model,
                    prior,
                    reasoning,
                });
            }
        }
        (out.len() == n).then_some(out)
    }

    fn reasoning(&mut self, raw: RawReasoning, path: &str) -> Option<Reasoning> {
        match raw {
            RawReasoning::Flag(false) => Some(Reasoning::Off),
            RawReasoning::Flag(true) => Some(Reasoning::On),
            RawReasoning::Word(w) => match w.as_str() {
                "off" => Some(Reasoning::Off),
                "on" => Some(Reasoning::On),
                "low" => Some(Reasoning::Low),
                "medium" => Some(Reasoning::Medium),
                "high" => Some(Reasoning::High),
                _ => {
                    self.error(path, format!("`{w}`: use off, on, low, medium or high"));
                    None
                }
            },
        }
    }

    fn system_prompt(&mut self, raw: RawSystemPrompt, path: &str) -> Option<SystemPrompt> {
        let sp = match (raw.insert, raw.replace) {
            (Some(text), None) => SystemPrompt::Insert(text),
            (None, Some(text)) => SystemPrompt::Replace(text),
            _ => {
                self.error(
                    path,
                    "give exactly one of `insert` (before the client's messages) or `replace` (instead of the client's system messages)".into(),
                );
                return None;
            }
        };
        let (SystemPrompt::Insert(t) | SystemPrompt::Replace(t)) = &sp;
        if t.trim().is_empty() {
            self.error(path, "the system prompt is empty".into());
            return None;
        }
        Some(sp)
    }

    fn header_edits(&mut self, raw: RawHeaders, path: &str) -> Option<HeaderEdits> {
        let before = self.errors.len();
        let mut add = Vec::new();
        for (name, value) in raw.add {
            let p = format!("{path}.add.{name}");
            let lower = self.header_name(&name, &p);
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                self.error(&p, "a header value cannot contain line breaks".into());
            }
            add.push((lower, value));
        }
        let mut remove = Vec::new();
        for (i, name) in raw.remove.iter().enumerate() {
            remove.push(self.header_name(name, &format!("{path}.remove[{i}]")));
        }
        (self.errors.len() == before).then_some(HeaderEdits { add, remove })
    }

    /// The lower-cased name; an error if it is not a token or is one the
    /// gateway manages.
    fn header_name(&mut self, name: &str, path: &str) -> String {
        let lower = name.to_ascii_lowercase();
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid {
            self.error(path, format!("`{name}` is not a valid header name"));
        } else if PROTECTED_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-routemesh-") {
            self.error(
                path,
                format!("`{name}` is managed by the gateway and cannot be changed"),
            );
        }
        lower
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
        let (name, route) = raw.split();
        let name = name.unwrap_or_else(|| "default".to_owned());
        if RESERVED_DECISIONS.contains(&name.as_str()) {
            self.error("default.name", format!("`{name}` is reserved"));
        }
        let action = self.route_action(route, "default", scope)?;
        Some(DefaultDecision { name, action })
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
