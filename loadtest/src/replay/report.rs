//! The replay report: everything measured as a serialisable struct and its markdown
//! rendering (`Report::write`, in the parent module, writes it with the plots into a folder).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::baselines::{Baselines, Score, StaticRouting, TableRule};
use super::embed::EmbedStats;
use super::run::RunResult;
use crate::bench::HostInfo;

/// The data replayed.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetInfo {
    pub path: PathBuf,
    pub sha256: String,
    pub rows: usize,
    pub prices_path: PathBuf,
    pub prices_sha256: String,
    pub models: Vec<String>,
}

/// The router configuration replayed.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigInfo {
    pub path: PathBuf,
    pub sha256: String,
    /// `learning.cost_weight` of the file.
    pub cost_weight: f64,
    pub decisions: usize,
}

/// How well the classifier used for "static by predicted label" agrees with the true category.
#[derive(Debug, Clone, Serialize)]
pub struct LabelInfo {
    pub classifier: String,
    pub accuracy: f64,
}

/// The model to beat and the target derived from it.
#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    pub model: String,
    pub score: Score,
    /// At least the reference's accuracy…
    pub target_accuracy: f64,
    /// …at no more than half its cost.
    pub target_cost_per_1k: f64,
}

impl Reference {
    pub fn reached(&self, s: &Score) -> bool {
        s.accuracy >= self.target_accuracy && s.cost_per_1k <= self.target_cost_per_1k
    }
}

/// Mean and standard deviation over seeds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Mean {
    pub seeds: usize,
    pub accuracy: f64,
    pub accuracy_sd: f64,
    pub cost_per_1k: f64,
    pub cost_per_1k_sd: f64,
}

impl Mean {
    pub fn of(scores: &[Score]) -> Self {
        let n = scores.len().max(1) as f64;
        let m = |f: fn(&Score) -> f64| scores.iter().map(f).sum::<f64>() / n;
        let sd = |f: fn(&Score) -> f64, mean: f64| {
            if scores.len() < 2 {
                return 0.0;
            }
            (scores.iter().map(|s| (f(s) - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        };
        let (acc, cost) = (m(|s| s.accuracy), m(|s| s.cost_per_1k));
        Self {
            seeds: scores.len(),
            accuracy: acc,
            accuracy_sd: sd(|s| s.accuracy, acc),
            cost_per_1k: cost,
            cost_per_1k_sd: sd(|s| s.cost_per_1k, cost),
        }
    }

    pub fn score(&self, queries: usize) -> Score {
        Score {
            queries,
            accuracy: self.accuracy,
            cost_per_1k: self.cost_per_1k,
        }
    }
}

/// The config's own runs (its λ), one per seed, with learning curves.
#[derive(Debug, Clone, Serialize)]
pub struct RouterResult {
    pub cost_weight: f64,
    pub passes: usize,
    pub window: usize,
    /// Every query of every pass, exploration included.
    pub overall: Mean,
    pub last_pass: Mean,
    pub last_window: Mean,
    pub runs: Vec<RunResult>,
}

/// One λ of the sweep (every decision's cost weight set to λ).
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    pub lambda: f64,
    pub overall: Mean,
    pub last_pass: Mean,
    pub last_window: Mean,
}

/// Everything one replay measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub host: HostInfo,
    pub command: String,
    pub dataset: DatasetInfo,
    pub config: ConfigInfo,
    pub signals: EmbedStats,
    pub label_classifier: Option<LabelInfo>,
    pub baselines: Baselines,
    pub reference: Reference,
    pub router: RouterResult,
    pub sweep: Vec<SweepPoint>,
    pub notes: Vec<String>,
}

/// What the report always says about how it was measured.
pub fn standard_notes() -> Vec<String> {
    vec![
        "The upstream is SIMULATED from recorded answers: for the model the router picks, the \
         harness looks up whether that model's recorded MMLU-Pro answer was correct and how many \
         tokens it wrote; nothing is sent to a real model."
            .into(),
        "Cost = ceil(chars/4) prompt tokens × input price + recorded output tokens × output \
         price (models.json); no few-shot overhead, no thinking tokens."
            .into(),
        "Router figures include exploration: the learner starts from its priors and learns \
         online from the rewards of the queries before (overall = every query replayed)."
            .into(),
        "Static tables and the oracle are fitted on the same data they are scored on (hindsight \
         baselines, optimistic by construction)."
            .into(),
    ]
}

impl Report {
    /// The per-category table chosen for best accuracy.
    pub fn best_static(&self) -> Option<&StaticRouting> {
        self.baselines
            .static_routing
            .iter()
            .find(|s| s.rule == TableRule::BestAccuracy)
    }

    /// The per-category table fitted with the config's own cost weight (if it was swept).
    pub fn cost_matched_static(&self) -> Option<&StaticRouting> {
        let lambda = self.router.cost_weight;
        self.baselines.static_routing.iter().find(|s| {
            matches!(s.rule, TableRule::CostWeighted { lambda: l } if (l - lambda).abs() < 1e-12)
        })
    }

    /// The human-readable report.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let r = &self.reference;
        let router = self.router.overall;
        let rs = router.score(self.dataset.rows);
        let _ = writeln!(md, "# Routing replay: {}\n", file_name(&self.dataset.path));
        let _ = writeln!(
            md,
            "{} · {} ({} cores) · config `{}` (sha256 `{}`) · data sha256 `{}`\n",
            self.host.date,
            self.host.cpu,
            self.host.cores,
            self.config.path.display(),
            short(&self.config.sha256),
            short(&self.dataset.sha256)
        );
        let _ = writeln!(md, "```sh\n{}\n```\n", self.command);
        let _ = writeln!(md, "## Headline\n");
        let _ = writeln!(
            md,
            "Router (config λ = {}, {} pass{}, mean of {} seed{}, every query counted, learning \
             included): **accuracy {:.4}, ${:.3} per 1k queries**.\n",
            self.router.cost_weight,
            self.router.passes,
            if self.router.passes == 1 { "" } else { "es" },
            router.seeds,
            if router.seeds == 1 { "" } else { "s" },
            router.accuracy,
            router.cost_per_1k
        );
        let _ = writeln!(md, "| policy | accuracy | $ / 1k queries | vs router |");
        let _ = writeln!(md, "|---|--:|--:|---|");
        let row = |md: &mut String, name: &str, s: &Score| {
            let _ = writeln!(
                md,
                "| {name} | {:.4} | {:.3} | {} |",
                s.accuracy,
                s.cost_per_1k,
                compare(&rs, s)
            );
        };
        let _ = writeln!(
            md,
            "| **router** | **{:.4}** ± {:.4} | **{:.3}** ± {:.3} | |",
            router.accuracy, router.accuracy_sd, router.cost_per_1k, router.cost_per_1k_sd
        );
        row(&mut md, &format!("always {}", r.model), &r.score);
        if let Some(s) = self.best_static() {
            row(
                &mut md,
                "per-category static (best model per true category)",
                &s.true_category,
            );
            if let Some(p) = &s.predicted_label {
                row(
                    &mut md,
                    "per-category static (best model per predicted label)",
                    p,
                );
            }
        }
        if let Some(s) = self.cost_matched_static() {
            let name = |by: &str| {
                format!(
                    "per-category static, max acc − {}·cost ({by})",
                    self.router.cost_weight
                )
            };
            row(&mut md, &name("true category"), &s.true_category);
            if let Some(p) = &s.predicted_label {
                row(&mut md, &name("predicted label"), p);
            }
        }
        row(
            &mut md,
            "oracle (cheapest correct model per question)",
            &self.baselines.oracle,
        );
        let _ = writeln!(
            md,
            "\nStatic tables and the oracle are fitted on this same data (hindsight); the router \
             learns online from nothing. With one model best in every category, \"best model per \
             category\" is that model everywhere.\n"
        );
        let best_sweep = self
            .sweep
            .iter()
            .filter(|p| r.reached(&p.overall.score(self.dataset.rows)))
            .min_by(|a, b| a.overall.cost_per_1k.total_cmp(&b.overall.cost_per_1k));
        let verdict = if r.reached(&rs) {
            "**reached** by the config".to_owned()
        } else if let Some(p) = best_sweep {
            format!(
                "not reached by the config's own λ, **reached** in the sweep at λ = {} \
                 ({:.4} at ${:.3})",
                p.lambda, p.overall.accuracy, p.overall.cost_per_1k
            )
        } else {
            "**not reached** (neither by the config nor anywhere in the λ sweep)".to_owned()
        };
        let _ = writeln!(
            md,
            "Target: the best single model's accuracy ({} {:.4}) at half its cost or less \
             (≤ ${:.3} per 1k): {verdict}.\n",
            r.model, r.target_accuracy, r.target_cost_per_1k
        );
        self.sweep_md(&mut md);
        self.baselines_md(&mut md);
        self.learned_md(&mut md);
        let _ = writeln!(md, "## Signals\n");
        let s = &self.signals;
        let _ = writeln!(
            md,
            "{} texts (questions and route examples): {} from the cache, {} encoded in {:.0} s; \
             encoder weights sha256 `{}`.",
            s.texts,
            s.cached,
            s.encoded,
            s.encode_seconds,
            short(&s.model_sha256)
        );
        if let Some(l) = &self.label_classifier {
            let _ = writeln!(
                md,
                "The `{}` classifier's top label equals the true category on {:.4} of the \
                 questions.",
                l.classifier, l.accuracy
            );
        }
        let _ = writeln!(md, "\n## Notes\n");
        for n in &self.notes {
            let _ = writeln!(md, "- {n}");
        }
        md
    }

    fn sweep_md(&self, md: &mut String) {
        let _ = writeln!(md, "## Cost weight sweep\n");
        let _ = writeln!(
            md,
            "Every decision's cost weight set to λ; mean ± sd over {} seed(s); `overall` counts \
             every query (learning included), `last window` the last {} queries.\n",
            self.sweep.first().map_or(0, |p| p.overall.seeds),
            self.router.window
        );
        let _ = writeln!(
            md,
            "| λ | accuracy | $ / 1k | last window acc | last window $ / 1k | target |"
        );
        let _ = writeln!(md, "|--:|--:|--:|--:|--:|---|");
        for p in &self.sweep {
            let o = p.overall;
            let _ = writeln!(
                md,
                "| {} | {:.4} ± {:.4} | {:.3} ± {:.3} | {:.4} | {:.3} | {} |",
                p.lambda,
                o.accuracy,
                o.accuracy_sd,
                o.cost_per_1k,
                o.cost_per_1k_sd,
                p.last_window.accuracy,
                p.last_window.cost_per_1k,
                if self.reference.reached(&o.score(self.dataset.rows)) {
                    "yes"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(md);
    }

    fn baselines_md(&self, md: &mut String) {
        let b = &self.baselines;
        let _ = writeln!(md, "## Baselines\n");
        let _ = writeln!(md, "| policy | accuracy | $ / 1k queries |");
        let _ = writeln!(md, "|---|--:|--:|");
        for (name, s) in &b.single {
            let _ = writeln!(
                md,
                "| always {name} | {:.4} | {:.3} |",
                s.accuracy, s.cost_per_1k
            );
        }
        let _ = writeln!(
            md,
            "| random model (seeded draw) | {:.4} | {:.3} |",
            b.random.accuracy, b.random.cost_per_1k
        );
        let _ = writeln!(
            md,
            "| random model (expectation) | {:.4} | {:.3} |",
            b.random_expected.accuracy, b.random_expected.cost_per_1k
        );
        let _ = writeln!(
            md,
            "| oracle | {:.4} | {:.3} |\n",
            b.oracle.accuracy, b.oracle.cost_per_1k
        );
        let _ = writeln!(
            md,
            "Per-category static routing (one model per category, the table fitted on this data):\n"
        );
        let _ = writeln!(
            md,
            "| table rule | by true category: acc | $ / 1k | by predicted label: acc | $ / 1k |"
        );
        let _ = writeln!(md, "|---|--:|--:|--:|--:|");
        for s in &b.static_routing {
            let (pa, pc) = s.predicted_label.map_or(("–".into(), "–".into()), |p| {
                (
                    format!("{:.4}", p.accuracy),
                    format!("{:.3}", p.cost_per_1k),
                )
            });
            let _ = writeln!(
                md,
                "| {} | {:.4} | {:.3} | {pa} | {pc} |",
                s.rule.label(),
                s.true_category.accuracy,
                s.true_category.cost_per_1k
            );
        }
        let _ = writeln!(md);
    }

    fn learned_md(&self, md: &mut String) {
        let Some(run) = self.router.runs.first() else {
            return;
        };
        let _ = writeln!(
            md,
            "## What the router chose (config λ, seed {}, last pass)\n",
            run.seed
        );
        let _ = writeln!(md, "| decision | queries | models chosen |");
        let _ = writeln!(md, "|---|--:|---|");
        for (name, u) in &run.decisions {
            let mut models: Vec<(&String, &usize)> = u.last_pass_models.iter().collect();
            models.sort_by(|a, b| b.1.cmp(a.1));
            let list = models
                .iter()
                .map(|(m, n)| format!("{m} {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(md, "| {name} | {} | {list} |", u.queries);
        }
        let _ = writeln!(md);
    }
}

/// "+0.012 acc, −45% cost" relative to the router, from the other policy's side.
fn compare(router: &Score, other: &Score) -> String {
    let d_acc = router.accuracy - other.accuracy;
    let cost = if other.cost_per_1k > 0.0 {
        format!(
            "{:+.0}% cost",
            (router.cost_per_1k / other.cost_per_1k - 1.0) * 100.0
        )
    } else {
        "–".into()
    };
    format!("router {d_acc:+.4} acc, {cost}")
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
