//! Per-token labels → entity spans (HF's "simple" aggregation).
//!
//! Labels are BIO tags (`B-X` begins an entity of type X, `I-X` continues
//! one — or begins one when nothing of type X is open) or plain names (a run
//! of tokens with the same name is one entity); `O` is outside. Special
//! tokens and tokens without text close the open entity. A span runs from
//! its first token's start to its last token's end (byte offsets); its score
//! is the mean of its tokens' top probabilities.

use super::TaggedSpan;

/// What a label means for entity building.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tag {
    Outside,
    Begin(String),
    Inside(String),
    Plain(String),
}

impl Tag {
    /// Reads a label name: `O`, `B-X` / `I-X` (also with `_`), or plain.
    pub(super) fn parse(label: &str) -> Self {
        if label == "O" {
            return Self::Outside;
        }
        for (prefix, begins) in [("B-", true), ("B_", true), ("I-", false), ("I_", false)] {
            match label.strip_prefix(prefix) {
                Some(rest) if !rest.is_empty() && begins => return Self::Begin(rest.to_owned()),
                Some(rest) if !rest.is_empty() => return Self::Inside(rest.to_owned()),
                _ => {}
            }
        }
        Self::Plain(label.to_owned())
    }
}

/// One token of a tagged text, as the model saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct TokenTag {
    /// Byte offsets of the token's text in the input.
    pub(super) start: usize,
    pub(super) end: usize,
    /// `[CLS]`, `[SEP]` and the like.
    pub(super) special: bool,
    /// Index of the most probable label.
    pub(super) label: usize,
    /// Its probability.
    pub(super) score: f32,
}

struct Open {
    entity: String,
    start: usize,
    end: usize,
    sum: f32,
    count: usize,
}

impl Open {
    fn close(self) -> TaggedSpan {
        TaggedSpan {
            label: self.entity,
            start: self.start,
            end: self.end,
            score: self.sum / self.count as f32,
        }
    }
}

/// Merges consecutive tokens of one entity into spans, in text order.
pub(super) fn merge(tokens: &[TokenTag], tags: &[Tag]) -> Vec<TaggedSpan> {
    let mut spans = Vec::new();
    let mut open: Option<Open> = None;
    for token in tokens {
        let tag = tags.get(token.label).unwrap_or(&Tag::Outside);
        let (entity, begins) = match tag {
            _ if token.special || token.start >= token.end => {
                spans.extend(open.take().map(Open::close));
                continue;
            }
            Tag::Outside => {
                spans.extend(open.take().map(Open::close));
                continue;
            }
            Tag::Begin(e) => (e, true),
            Tag::Inside(e) | Tag::Plain(e) => (e, false),
        };
        match open.as_mut() {
            Some(o) if !begins && o.entity == *entity => {
                o.end = o.end.max(token.end);
                o.sum += token.score;
                o.count += 1;
            }
            _ => {
                spans.extend(open.take().map(Open::close));
                open = Some(Open {
                    entity: entity.clone(),
                    start: token.start,
                    end: token.end,
                    sum: token.score,
                    count: 1,
                });
            }
        }
    }
    spans.extend(open.map(Open::close));
    spans
}

#[cfg(test)]
mod tests {
    use super::{Tag, TokenTag, merge};

    /// Tokens are `(start, end, label)`; `label` `None` is a special token;
    /// the score is the token's start so the mean is easy to check.
    fn check(
        labels: &[&str],
        tokens: &[(usize, usize, Option<usize>)],
        want: &[(&str, usize, usize, f32)],
    ) {
        let tags: Vec<Tag> = labels.iter().map(|l| Tag::parse(l)).collect();
        let tokens: Vec<TokenTag> = tokens
            .iter()
            .map(|&(start, end, label)| TokenTag {
                start,
                end,
                special: label.is_none(),
                label: label.unwrap_or(0),
                score: start as f32,
            })
            .collect();
        let got: Vec<(String, usize, usize, f32)> = merge(&tokens, &tags)
            .into_iter()
            .map(|s| (s.label, s.start, s.end, s.score))
            .collect();
        let want: Vec<(String, usize, usize, f32)> = want
            .iter()
            .map(|&(l, s, e, sc)| (l.to_owned(), s, e, sc))
            .collect();
        assert_eq!(got, want);
    }

    const BIO: [&str; 5] = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"];

    #[test]
    fn tags_parse() {
        assert_eq!(Tag::parse("O"), Tag::Outside);
        assert_eq!(Tag::parse("B-PER"), Tag::Begin("PER".into()));
        assert_eq!(Tag::parse("I_LOC"), Tag::Inside("LOC".into()));
        assert_eq!(Tag::parse("EMAIL"), Tag::Plain("EMAIL".into()));
        assert_eq!(Tag::parse("B-"), Tag::Plain("B-".into()));
        assert_eq!(Tag::parse("Bé"), Tag::Plain("Bé".into()));
    }

    #[test]
    fn bio_runs_merge_and_begin_splits() {
        // [CLS] John Smith met Ann in Paris [SEP]
        check(
            &BIO,
            &[
                (0, 0, None),
                (0, 4, Some(1)),
                (5, 10, Some(2)),
                (11, 14, Some(0)),
                (15, 18, Some(1)),
                (19, 21, Some(0)),
                (22, 27, Some(3)),
                (0, 0, None),
            ],
            &[
                ("PER", 0, 10, 2.5),
                ("PER", 15, 18, 15.0),
                ("LOC", 22, 27, 22.0),
            ],
        );
        // B B of one type: two entities; I of another type: a new one.
        check(
            &BIO,
            &[(0, 2, Some(1)), (3, 5, Some(1)), (6, 8, Some(4))],
            &[("PER", 0, 2, 0.0), ("PER", 3, 5, 3.0), ("LOC", 6, 8, 6.0)],
        );
    }

    #[test]
    fn inside_without_begin_opens_an_entity() {
        check(
            &BIO,
            &[(0, 3, Some(0)), (4, 6, Some(2)), (6, 8, Some(2))],
            &[("PER", 4, 8, 5.0)],
        );
    }

    #[test]
    fn plain_labels_merge_runs() {
        check(
            &["O", "EMAIL", "PHONE"],
            &[
                (0, 1, Some(1)),
                (1, 2, Some(1)),
                (3, 4, Some(2)),
                (5, 6, Some(1)),
            ],
            &[
                ("EMAIL", 0, 2, 0.5),
                ("PHONE", 3, 4, 3.0),
                ("EMAIL", 5, 6, 5.0),
            ],
        );
    }

    #[test]
    fn special_and_empty_tokens_close_entities() {
        check(
            &BIO,
            &[
                (0, 2, Some(1)),
                (2, 2, Some(2)),
                (3, 5, Some(2)),
                (0, 0, None),
                (6, 8, Some(2)),
            ],
            &[("PER", 0, 2, 0.0), ("PER", 3, 5, 3.0), ("PER", 6, 8, 6.0)],
        );
        check(&BIO, &[(0, 0, None), (0, 0, None)], &[]);
    }
}
