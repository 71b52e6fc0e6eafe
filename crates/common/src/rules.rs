//! The validated rule tree: boolean expressions over signal predicates.
//!
//! The raw YAML form lives in [`crate::config::raw`]; validation resolves names
//! to indices so evaluation (in the `decision` crate) never looks up a string.

use crate::signals::{ClassifierId, KeywordId, PiiKind, RouteId};

/// A boolean expression over signal predicates.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// True when every child is true (true when empty is rejected by validation).
    All(Vec<Expr>),
    /// True when any child is true.
    Any(Vec<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// A leaf predicate.
    Pred(Predicate),
}

/// A test on one signal.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    /// Similarity to the route is at least `min`.
    Route { route: RouteId, min: f32 },
    /// The keyword rule matched.
    Keyword(KeywordId),
    /// Prompt length in tokens lies in `[min, max]` (both inclusive).
    Tokens { min: u32, max: u32 },
    /// The prompt holds personal data of one of these kinds.
    Pii(Vec<PiiKind>),
    /// The prompt's language is one of these ISO 639-3 codes.
    Language(Vec<String>),
    /// The classifier gives `label` at least probability `min`; without
    /// `min`, `label` is the classifier's top label.
    Label {
        classifier: ClassifierId,
        label: String,
        min: Option<f32>,
    },
}
