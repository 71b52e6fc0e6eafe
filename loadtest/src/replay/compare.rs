//! Does the encoder's precision change the routing? Every prompt's signals are computed twice
//! ([`compute_signals`], with the config's `encoder.precision` set to each of two precisions;
//! the embedding cache is keyed by precision, so neither reads the other's embeddings) and the
//! decision [`decide`] takes on each is compared: the rules' decision, not the candidate the
//! learner would sample.

use std::collections::BTreeMap;
use std::fmt::Write;

use routemesh_common::config::{Config, EncoderPrecision};
use routemesh_decision::decide;
use serde::Serialize;

use super::embed::{EmbedOptions, EmbedStats, compute_signals};
use super::{Dataset, ReplayError, ReplayOptions, load_config};
use crate::bench::HostInfo;

/// Changed pairs listed by [`DecisionComparison::markdown`].
pub const TOP_CHANGES: usize = 10;

/// The decisions of the same prompts under two settings, side by side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionComparison {
    /// What the first decisions were taken under (e.g. `f32`).
    pub a: String,
    /// What the second ones were taken under (e.g. `int8`).
    pub b: String,
    pub prompts: usize,
    /// Prompts with the same decision under both.
    pub same: usize,
    /// Every (decision under `a` → decision under `b`) pair that differs, most prompts first
    /// (ties by name).
    pub changes: Vec<Change>,
}

/// Prompts that went to `from` under one setting and to `to` under the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub from: String,
    pub to: String,
    pub prompts: usize,
}

impl DecisionComparison {
    /// Compares `a[i]` with `b[i]` for every prompt `i`; both lists must be as long.
    pub fn of(a_name: &str, b_name: &str, a: &[&str], b: &[&str]) -> Result<Self, ReplayError> {
        if a.len() != b.len() {
            return Err(ReplayError::Encode(format!(
                "{} decisions under {a_name} but {} under {b_name}",
                a.len(),
                b.len()
            )));
        }
        let mut pairs: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        let mut same = 0;
        for (x, y) in a.iter().zip(b) {
            if x == y {
                same += 1;
            } else {
                *pairs.entry((x, y)).or_default() += 1;
            }
        }
        let mut changes: Vec<Change> = pairs
            .into_iter()
            .map(|((from, to), prompts)| Change {
                from: from.to_owned(),
                to: to.to_owned(),
                prompts,
            })
            .collect();
        // Stable: equal counts stay in (from, to) order.
        changes.sort_by_key(|c| std::cmp::Reverse(c.prompts));
        Ok(Self {
            a: a_name.to_owned(),
            b: b_name.to_owned(),
            prompts: a.len(),
            same,
            changes,
        })
    }

    /// Prompts whose decision differs.
    pub fn changed(&self) -> usize {
        self.prompts - self.same
    }

    /// Share of prompts with the same decision (1 when there are none).
    pub fn share(&self) -> f64 {
        if self.prompts == 0 {
            1.0
        } else {
            self.same as f64 / self.prompts as f64
        }
    }

    /// Whether at least `target` (a share, e.g. 0.99) of the prompts kept their decision.
    pub fn meets(&self, target: f64) -> bool {
        self.share() >= target
    }

    /// The figures, and the `top` most frequent changes as a table.
    pub fn markdown(&self, top: usize) -> String {
        let mut s = format!(
            "| | prompts | share |\n|---|--:|--:|\n\
             | same decision under {a} and {b} | {} | {:.2}% |\n\
             | changed | {} | {:.2}% |\n| all | {} | |\n",
            self.same,
            100.0 * self.share(),
            self.changed(),
            100.0 * (1.0 - self.share()),
            self.prompts,
            a = self.a,
            b = self.b,
        );
        if self.changes.is_empty() {
            s.push_str("\nNo prompt changed its decision.\n");
            return s;
        }
        let _ = writeln!(
            s,
            "\nMost frequent changes ({} of {} pairs):\n\n\
             | under {} | under {} | prompts |\n|---|---|--:|",
            top.min(self.changes.len()),
            self.changes.len(),
            self.a,
            self.b
        );
        for c in self.changes.iter().take(top) {
            let _ = writeln!(s, "| {} | {} | {} |", c.from, c.to, c.prompts);
        }
        s
    }
}

/// `config` with `encoder.precision` set to `precision`.
pub fn with_precision(config: &Config, precision: EncoderPrecision) -> Result<Config, ReplayError> {
    let mut c = config.clone();
    let encoder = c.encoder.as_mut().ok_or_else(|| {
        ReplayError::Config("comparing precisions needs `encoder:` (embedded mode)".into())
    })?;
    encoder.precision = precision;
    Ok(c)
}

/// What [`compare_precisions`] found.
#[derive(Debug, Clone, Serialize)]
pub struct PrecisionComparison {
    pub decisions: DecisionComparison,
    /// How the signals of each precision were computed (cache use, encoding time).
    pub embed: [EmbedStats; 2],
}

/// The decision of every text under `config` with its encoder in precision `a` and in `b`.
pub async fn compare_precisions(
    config: &Config,
    texts: &[String],
    [a, b]: [EncoderPrecision; 2],
    opts: &EmbedOptions,
) -> Result<PrecisionComparison, ReplayError> {
    let mut names: Vec<Vec<&str>> = Vec::with_capacity(2);
    let mut stats = Vec::with_capacity(2);
    for p in [a, b] {
        let c = with_precision(config, p)?;
        let (signals, s) = compute_signals(&c, texts, opts).await?;
        // The decisions are `config`'s own (only the encoder differs), so names borrow from it.
        names.push(signals.iter().map(|x| decide(config, x).name).collect());
        stats.push(s);
    }
    let decisions = DecisionComparison::of(a.name(), b.name(), &names[0], &names[1])?;
    let embed: [EmbedStats; 2] = stats
        .try_into()
        .map_err(|_| ReplayError::Encode("two precisions, two sets of signals".into()))?;
    Ok(PrecisionComparison { decisions, embed })
}

/// `replay --compare-precision A,B`: the questions of `opts.data` (`opts.limit` of them), their
/// decisions under `opts.config` with the encoder in `A` and in `B`, as markdown (host,
/// command, inputs, what each precision's signals cost, the comparison).
pub async fn run_comparison(
    opts: &ReplayOptions,
    precisions: [EncoderPrecision; 2],
    command: &str,
) -> Result<(PrecisionComparison, String), ReplayError> {
    let mut data = Dataset::load(&opts.data, &opts.prices)?;
    if let Some(limit) = opts.limit {
        data.rows.truncate(limit.max(1));
    }
    let (config, config_sha) = load_config(&opts.config)?;
    let questions: Vec<String> = data.rows.iter().map(|r| r.question.clone()).collect();
    let cmp = compare_precisions(&config, &questions, precisions, &opts.embed).await?;
    let host = HostInfo::detect();
    let mut s = format!(
        "# Routing decisions: encoder {} vs {}\n\n\
         - date: {}; CPU: {}, {} cores\n\
         - command: `{command}`\n\
         - data: `{}` ({} prompts, sha256 `{}`)\n\
         - config: `{}` (sha256 `{config_sha}`), {} decisions; the decision is \
         `routemesh_decision::decide`'s (the rules), not the sampled model\n",
        precisions[0],
        precisions[1],
        host.date,
        host.cpu,
        host.cores,
        opts.data.display(),
        data.rows.len(),
        data.sha256,
        opts.config.display(),
        config.decisions.len(),
    );
    for (p, e) in precisions.iter().zip(&cmp.embed) {
        let _ = writeln!(
            s,
            "- {p}: {} texts, {} from the cache, {} encoded in {:.1} s{}",
            e.texts,
            e.cached,
            e.encoded,
            e.encode_seconds,
            e.cache_file
                .as_ref()
                .map(|f| format!(" (`{}`)", f.display()))
                .unwrap_or_default()
        );
    }
    s.push('\n');
    s.push_str(&cmp.decisions.markdown(TOP_CHANGES));
    Ok((cmp, s))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn same_share_and_changed_pairs_are_counted() {
        let a = [
            "law", "law", "math", "math", "math", "physics", "law", "math",
        ];
        let b = [
            "law",
            "other",
            "math",
            "physics",
            "physics",
            "physics",
            "other",
            "chemistry",
        ];
        let c = DecisionComparison::of("f32", "int8", &a, &b).unwrap();
        assert_eq!((c.prompts, c.same, c.changed()), (8, 3, 5));
        assert!((c.share() - 3.0 / 8.0).abs() < 1e-12);
        let pairs: Vec<(&str, &str, usize)> = c
            .changes
            .iter()
            .map(|x| (x.from.as_str(), x.to.as_str(), x.prompts))
            .collect();
        // Most prompts first; ties in (from, to) order.
        assert_eq!(
            pairs,
            [
                ("law", "other", 2),
                ("math", "physics", 2),
                ("math", "chemistry", 1)
            ]
        );
        assert_eq!(
            c.changes.iter().map(|x| x.prompts).sum::<usize>(),
            c.changed()
        );
        assert!(c.meets(0.375) && !c.meets(0.376));
        let md = c.markdown(2);
        assert!(
            md.contains("| same decision under f32 and int8 | 3 | 37.50% |"),
            "{md}"
        );
        assert!(md.contains("| changed | 5 | 62.50% |"), "{md}");
        assert!(md.contains("(2 of 3 pairs)"), "{md}");
        assert!(md.contains("| law | other | 2 |"), "{md}");
        assert!(!md.contains("chemistry"), "{md}");
    }

    #[test]
    fn the_99_percent_line_is_exact() {
        let a = vec!["x"; 100];
        let mut b = a.clone();
        b[0] = "y";
        let c = DecisionComparison::of("f32", "bf16", &a, &b).unwrap();
        assert_eq!(c.same, 99);
        assert!(c.meets(0.99));
        b[1] = "y";
        let c = DecisionComparison::of("f32", "bf16", &a, &b).unwrap();
        assert!(!c.meets(0.99));
        assert_eq!(
            c.changes,
            [Change {
                from: "x".into(),
                to: "y".into(),
                prompts: 2
            }]
        );
    }

    #[test]
    fn nothing_changed_and_nothing_to_compare() {
        let c = DecisionComparison::of("f32", "int8", &["a", "b"], &["a", "b"]).unwrap();
        assert_eq!((c.share(), c.changed()), (1.0, 0));
        assert!(c.markdown(10).contains("No prompt changed its decision."));
        let empty = DecisionComparison::of("f32", "int8", &[], &[]).unwrap();
        assert_eq!(empty.share(), 1.0);
        assert!(DecisionComparison::of("f32", "int8", &["a"], &[]).is_err());
    }
}
