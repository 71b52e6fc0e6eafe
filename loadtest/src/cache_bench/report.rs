//! The cache benchmark's report: `cache.json` (every number), `cache.md` (tables, the DESIGN
//! budget verdict, the method) and `churn-rss.svg`, headed by the date, CPU, cores, memory,
//! commit and the exact command line.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::churn::ChurnResult;
use super::data::{DERIVED_MIX, DERIVED_NOISE, SYNTHETIC_RANK};
use super::sized::{QUERY_COS, SizedResult};
use super::{CacheBenchError, plot};
use crate::bench::HostInfo;

/// DESIGN.md "Performance budgets": cache lookup, 100k entries in one shard.
pub const BUDGET_ENTRIES: usize = 100_000;
pub const BUDGET_P99_MS: f64 = 1.0;
pub const BUDGET_RECALL: f64 = 0.99;
/// Issue 19's targets: recall@1 at a million entries, inserts per second per shard.
pub const TARGET_1M_RECALL: f64 = 0.98;
pub const TARGET_INSERTS_PER_SEC: f64 = 20_000.0;

/// Where and how the benchmark ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub date: String,
    pub cpu: String,
    pub cores: usize,
    /// `MemTotal` from `/proc/meminfo`, bytes.
    pub memory_total: u64,
    /// `git rev-parse --short HEAD` (plus `-dirty` if the tree has changes), or `unknown`.
    pub commit: String,
    /// `/proc/loadavg` when the run started: other work moves the numbers.
    pub load_average: String,
    /// The command line, quoted for a POSIX shell.
    pub command: String,
    /// The embeddings file, or `synthetic`.
    pub data: String,
    pub synthetic: bool,
}

impl Header {
    /// The machine lines of a report (date, CPU, memory, commit, load, command).
    pub fn markdown(&self) -> String {
        format!(
            "- date: {}\n- CPU: {} ({} cores available)\n- memory: {:.1} GB\n- commit: {}\n\
             - load average at start: {}\n- command: `{}`\n",
            self.date,
            self.cpu,
            self.cores,
            self.memory_total as f64 / 1e9,
            self.commit,
            self.load_average,
            self.command
        )
    }

    pub fn detect(command: String, data: String, synthetic: bool) -> Header {
        let host = HostInfo::detect();
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let memory_total = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        let load = read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        Header {
            date: host.date,
            cpu: host.cpu,
            cores: host.cores,
            memory_total,
            commit: git_commit(),
            load_average: if load.is_empty() {
                "unknown".into()
            } else {
                load
            },
            command,
            data,
            synthetic,
        }
    }
}

fn git_commit() -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match run(&["rev-parse", "--short", "HEAD"]) {
        Some(c) if !c.is_empty() => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{c}-dirty") } else { c }
        }
        _ => "unknown".into(),
    }
}

/// A case that did not complete.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failed {
    pub case: String,
    pub detail: String,
}

/// Everything the benchmark measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub header: Header,
    pub sized: Vec<SizedResult>,
    pub churn: Option<ChurnResult>,
    pub failed: Vec<Failed>,
    /// What was asked for but deliberately not run, and why.
    pub not_run: Vec<String>,
}

impl Report {
    pub fn new(header: Header, not_run: Vec<String>) -> Report {
        Report {
            header,
            sized: Vec::new(),
            churn: None,
            failed: Vec::new(),
            not_run,
        }
    }

    /// Writes cache.json, cache.md and (with a churn run) churn-rss.svg into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), CacheBenchError> {
        let put = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| CacheBenchError::Write { path, source })
        };
        put("cache.json", &serde_json::to_string_pretty(self)?)?;
        put("cache.md", &self.markdown())?;
        if let Some(c) = &self.churn {
            put("churn-rss.svg", &plot::churn_svg(c)?)?;
        }
        Ok(())
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        // writing to a String cannot fail
        let _ = self.render(&mut s);
        s
    }

    fn render(&self, s: &mut String) -> std::fmt::Result {
        let h = &self.header;
        writeln!(s, "# Semantic cache benchmark\n")?;
        s.push_str(&h.markdown());
        if h.synthetic {
            writeln!(
                s,
                "- data: **SYNTHETIC** low-rank vectors (no embeddings file found): recall numbers \
                 say little about real prompts"
            )?;
        } else {
            writeln!(
                s,
                "- data: real MiniLM-L6 embeddings from `{}`, extended as described under Method",
                h.data
            )?;
        }
        writeln!(s)?;
        self.budget(s)?;
        self.lookups(s)?;
        self.inserts(s)?;
        if let Some(c) = &self.churn {
            churn(s, c)?;
        }
        self.method(s)?;
        if !self.failed.is_empty() || !self.not_run.is_empty() {
            writeln!(s, "## Not measured\n")?;
            for f in &self.failed {
                writeln!(s, "- **failed**: {}: {}", f.case, f.detail)?;
            }
            for n in &self.not_run {
                writeln!(s, "- {n}")?;
            }
            writeln!(s)?;
        }
        Ok(())
    }

    fn budget(&self, s: &mut String) -> std::fmt::Result {
        writeln!(
            s,
            "## DESIGN budget: lookup with {} entries in one shard, p99 < {BUDGET_P99_MS} ms and recall@1 ≥ {BUDGET_RECALL}\n",
            BUDGET_ENTRIES
        )?;
        let at: Vec<&SizedResult> = self
            .sized
            .iter()
            .filter(|r| r.spec.size == BUDGET_ENTRIES && !r.spec.store)
            .collect();
        if at.is_empty() {
            writeln!(
                s,
                "Not measured in this run (no {BUDGET_ENTRIES}-entry case)."
            )?;
        }
        for r in at {
            let p99 = r.latency.p99_ms.unwrap_or(f64::INFINITY);
            let recall = r.recall.recall_at_1;
            let verdict = |ok: bool| if ok { "met" } else { "**NOT met**" };
            writeln!(
                s,
                "- {}: p99 {} ms ({}), recall@1 {recall:.4} ({})",
                r.label,
                fmt_ms(r.latency.p99_ms),
                verdict(p99 < BUDGET_P99_MS),
                verdict(recall >= BUDGET_RECALL),
            )?;
        }
        writeln!(s)?;
        writeln!(
            s,
            "## Scale targets: recall@1 ≥ {TARGET_1M_RECALL} at 1,000,000 entries, inserts ≥ {} per second per shard\n",
            TARGET_INSERTS_PER_SEC as u64
        )?;
        let verdict = |ok: bool| if ok { "met" } else { "**NOT met**" };
        for r in self.sized.iter().filter(|r| !r.spec.store) {
            let recall = if r.spec.size >= 1_000_000 {
                format!(
                    ", recall@1 {:.4} ({})",
                    r.recall.recall_at_1,
                    verdict(r.recall.recall_at_1 >= TARGET_1M_RECALL)
                )
            } else {
                String::new()
            };
            writeln!(
                s,
                "- {}: {:.0} inserts/s ({}){recall}",
                r.label,
                r.insert.per_sec,
                verdict(r.insert.per_sec >= TARGET_INSERTS_PER_SEC),
            )?;
        }
        writeln!(s)
    }

    /// The query cosine range of the one-shard cases (all share the run's).
    fn query_cos(&self) -> (f32, f32) {
        self.sized.first().map_or(QUERY_COS, |r| r.spec.query_cos)
    }

    fn lookups(&self, s: &mut String) -> std::fmt::Result {
        writeln!(
            s,
            "## Lookups through `Cache::lookup`, one shard, one scope\n"
        )?;
        writeln!(
            s,
            "Sequential lookups (one in flight), timed around the `Cache::lookup` call: the actor \
             hop, the exact-tier miss and the vector search. Queries are paraphrase-like \
             (cosine {:.2}–{:.2} to a stored vector), threshold 0, so the nearest entry always \
             answers; recall@1 = the answer is the exact nearest neighbour (brute force).\n",
            self.query_cos().0,
            self.query_cos().1
        )?;
        writeln!(
            s,
            "| entries | index | lookups | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | recall@1 | misses/timeouts | inserts/s | RSS bytes/entry | cache `bytes`/entry |"
        )?;
        writeln!(
            s,
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        )?;
        for r in self.sized.iter().filter(|r| !r.spec.store) {
            let l = &r.latency;
            writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {:.4} | {}/{} | {:.0} | {:.0} | {:.0} |",
                r.spec.size,
                index_name(r),
                l.count,
                fmt_ms(l.p50_ms),
                fmt_ms(l.p90_ms),
                fmt_ms(l.p99_ms),
                fmt_ms(l.p999_ms),
                fmt_ms(l.max_ms),
                r.recall.recall_at_1,
                r.recall.misses,
                r.recall.timed_out + r.recall.unavailable,
                r.insert.per_sec,
                r.memory.rss_per_entry,
                r.memory.cache_bytes_per_entry,
            )?;
        }
        writeln!(s)?;
        writeln!(
            s,
            "| entries | index | mean cos(query, source) | source is the exact nearest | mean hit similarity | graph points | rebuilds | RSS before → after (MB) | peak RSS (MB) | load average at end |"
        )?;
        writeln!(s, "|---:|---|---:|---:|---:|---:|---:|---|---:|---:|")?;
        for r in self.sized.iter().filter(|r| !r.spec.store) {
            writeln!(
                s,
                "| {} | {} | {:.3} | {:.3} | {:.3} | {} | {} | {:.0} → {:.0} | {:.0} | {} |",
                r.spec.size,
                index_name(r),
                r.recall.mean_source_cos,
                r.recall.source_is_nearest,
                r.recall.mean_hit_similarity,
                r.stats.index_size,
                r.stats.rebuilds,
                mb(r.memory.rss_before),
                mb(r.memory.rss_after),
                mb(r.memory.rss_peak),
                r.load_average,
            )?;
        }
        writeln!(s)
    }

    fn inserts(&self, s: &mut String) -> std::fmt::Result {
        writeln!(s, "## Insert throughput and persistence\n")?;
        writeln!(
            s,
            "N × `Cache::insert` (fire and forget) in batches of {}, each followed by `Cache::stats()` \
             as the barrier; the time runs from the first insert to the last barrier.\n",
            self.sized.first().map_or(0, |r| r.spec.insert_batch)
        )?;
        writeln!(
            s,
            "| entries | index | store | inserts/s | load s | shutdown s | on disk MB |"
        )?;
        writeln!(s, "|---:|---|---|---:|---:|---:|---:|")?;
        for r in &self.sized {
            writeln!(
                s,
                "| {} | {} | {} | {:.0} | {:.1} | {:.2} | {} |",
                r.spec.size,
                index_name(r),
                if r.spec.store { "sled" } else { "memory" },
                r.insert.per_sec,
                r.insert.secs,
                r.shutdown_secs,
                r.store_bytes_on_disk
                    .map_or("–".to_owned(), |b| format!("{:.0}", mb(b))),
            )?;
        }
        for st in self.sized.iter().filter(|r| r.spec.store) {
            let mem = self.sized.iter().find(|r| {
                !r.spec.store && r.spec.size == st.spec.size && r.spec.flat == st.spec.flat
            });
            if let Some(m) = mem {
                let per = |r: &SizedResult| 1e6 / r.insert.per_sec.max(1e-9);
                writeln!(
                    s,
                    "\nPersistence at {} entries ({}): {:.1} µs per insert with sled vs {:.1} µs in memory \
                     (+{:.1} µs, ×{:.2} the time). The barrier says the shard applied the inserts; \
                     sled's own write-back to disk is finished by `shutdown` ({:.2} s).",
                    st.spec.size,
                    index_name(st),
                    per(st),
                    per(m),
                    per(st) - per(m),
                    per(st) / per(m).max(1e-9),
                    st.shutdown_secs,
                )?;
            }
        }
        writeln!(s)
    }

    fn method(&self, s: &mut String) -> std::fmt::Result {
        writeln!(s, "## Method\n")?;
        writeln!(
            s,
            "- Every case runs in a fresh child process, so RSS before/after is not disturbed by what \
             the allocator kept from an earlier case. RSS per entry = (VmRSS after loading − VmRSS \
             before the cache started) / N, with the benchmark's own copy of the vectors, the queries \
             and the exact answers already resident before. The cache's `bytes` stat counts answer \
             bodies, content types and vectors only (no maps, no graph)."
        )?;
        writeln!(
            s,
            "- Stored vectors: the real embeddings first (all of them when N is larger, in a seeded \
             random order), then derived ones: normalise(e_i + b·e_j + g) with i, j uniform over the \
             real embeddings, b ~ U(0, {DERIVED_MIX}) and g Gaussian of norm ≈ {DERIVED_NOISE}: \
             blends of two real prompts, mostly the first, which stay on the embeddings' low-rank \
             manifold (isotropic random vectors would make recall meaningless, FACTS.md). Without \
             an embeddings file: Gaussian combinations of {SYNTHETIC_RANK} random base vectors plus \
             10% noise, and the report says SYNTHETIC."
        )?;
        writeln!(
            s,
            "- Queries: a stored vector plus Gaussian noise, renormalised, the noise scaled so the \
             cosine to the source is uniform in [{:.2}, {:.2}] (a paraphrase); fresh exact keys, so \
             every lookup goes to the semantic tier. The exact nearest neighbour of each query is \
             computed by brute force over all stored vectors; a hit counts as correct when its entry \
             (named in the answer body) is that neighbour or exactly as similar.",
            self.query_cos().0,
            self.query_cos().1
        )?;
        writeln!(
            s,
            "- Answers are {}-byte chat-completion JSON bodies. A flat case sets `flat_below` ≥ N so \
             the scope never enters the graph: its lookups scan the scope's sign-bit codes by Hamming \
             distance and rescore the `rerank` nearest exactly; an HNSW case keeps `flat_below` as \
             given, so the scope is graph-searched once it passes it.",
            self.sized.first().map_or(0, |r| r.spec.body_bytes)
        )?;
        writeln!(s)
    }
}

fn churn(s: &mut String, c: &ChurnResult) -> std::fmt::Result {
    let sp = &c.spec;
    writeln!(s, "## Memory under churn\n")?;
    writeln!(
        s,
        "{} shards × capacity {} (one scope per shard, HNSW M={} ef_c={} ef_s={}), {} concurrent \
         tasks, {:.0}% lookups (paraphrases of a recent insert of the task, threshold {}, \
         deadline {} ms) and {:.0}% inserts of fresh entries, for {:.0} s; each task awaits \
         `stats()` every {} inserts so mailboxes stay bounded.\n",
        sp.shards,
        sp.capacity,
        sp.index.m,
        sp.index.ef_construction,
        sp.index.ef_search,
        sp.tasks,
        sp.lookup_share * 100.0,
        sp.threshold,
        sp.deadline_ms,
        (1.0 - sp.lookup_share) * 100.0,
        c.secs,
        sp.barrier_every,
    )?;
    writeln!(
        s,
        "- throughput: {:.0} ops/s ({} lookups, {} inserts in {:.0} s); load average at the end {}",
        c.ops_per_sec, c.lookups, c.inserts, c.secs, c.load_average
    )?;
    writeln!(
        s,
        "- lookups: p50 {} ms, p99 {} ms, max {} ms overall; once full: p50 {} ms, p99 {} ms; \
         hits {:.1}%, timed out {}, unavailable {}",
        fmt_ms(c.latency.p50_ms),
        fmt_ms(c.latency.p99_ms),
        fmt_ms(c.latency.max_ms),
        fmt_ms(c.latency_full.p50_ms),
        fmt_ms(c.latency_full.p99_ms),
        100.0 * c.hits as f64 / c.lookups.max(1) as f64,
        c.timed_out,
        c.unavailable,
    )?;
    let f = &c.final_stats;
    writeln!(
        s,
        "- at the end: {} entries, {} graph points ({} tombstones), {} rebuilds, {} evictions, \
         cache `bytes` {:.0} MB",
        f.entries,
        f.index_size,
        f.tombstones,
        f.rebuilds,
        f.evictions,
        mb(f.bytes)
    )?;
    match &c.plateau {
        Some(p) => writeln!(
            s,
            "- **RSS plateau**: the cache was full at {:.0} s; from {:.0} s to the end RSS stayed \
             between {:.0} and {:.0} MB (mean {:.0} MB, slope {:+.1} MB/min). RSS at start {:.0} MB, \
             peak {:.0} MB.",
            p.full_at_s,
            p.from_s,
            mb(p.rss_min),
            mb(p.rss_max),
            p.rss_mean / 1e6,
            p.rss_slope_mb_per_min,
            mb(c.rss_start),
            mb(c.rss_peak),
        )?,
        None => writeln!(
            s,
            "- **RSS plateau: not established**: the cache did not fill, or filled too late in the \
             run to judge (run longer: `--churn-secs`)."
        )?,
    }
    writeln!(s, "\n![RSS and index over time](churn-rss.svg)\n")?;
    writeln!(
        s,
        "| s | RSS MB | entries | graph points | tombstones | rebuilds | evictions | lookups | inserts | p99 ms |"
    )?;
    writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    let every = (c.samples.len() / 20).max(1);
    for (i, x) in c.samples.iter().enumerate() {
        if i % every != 0 && i + 1 != c.samples.len() {
            continue;
        }
        writeln!(
            s,
            "| {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
            x.t,
            mb(x.rss),
            x.stats.entries,
            x.stats.index_size,
            x.stats.tombstones,
            x.stats.rebuilds,
            x.stats.evictions,
            x.lookups,
            x.inserts,
            fmt_ms(x.p99_ms),
        )?;
    }
    writeln!(s)
}

fn index_name(r: &SizedResult) -> String {
    if r.spec.flat {
        format!("flat, rerank {}", r.spec.index.rerank)
    } else {
        format!(
            "hnsw M={} ef_c={} ef_s={}",
            r.spec.index.m, r.spec.index.ef_construction, r.spec.index.ef_search
        )
    }
}

fn fmt_ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v < 10.0 => format!("{v:.3}"),
        Some(v) => format!("{v:.1}"),
        None => "–".into(),
    }
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}
