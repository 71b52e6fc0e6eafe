//! `bench-cache`: the semantic cache benchmark; the command line around
//! `routemesh_loadtest::cache_bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use routemesh_loadtest::bench::shell_command;
use routemesh_loadtest::cache_bench::churn::ChurnSpec;
use routemesh_loadtest::cache_bench::data::Source;
use routemesh_loadtest::cache_bench::report::Header;
use routemesh_loadtest::cache_bench::sized::SizedSpec;
use routemesh_loadtest::cache_bench::{
    self, CacheBenchError, CaseSpec, DEFAULT_EMBEDDINGS_DIR, DEFAULT_REPORT_DIR, IndexSpec, Report,
};

/// Invalid command line (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;
/// The embeddings file is not readable (EX_NOINPUT).
const EXIT_NO_INPUT: u8 = 66;
/// Lookups of a store case (its lookups cost what the flat case's do).
const STORE_QUERIES: usize = 200;

/// Semantic cache benchmark: lookup latency and recall@1, insert throughput, memory per entry
/// and memory under churn, all through the public `routemesh_cache::Cache` handle.
///
/// Cases, each in a child process of its own (clean RSS):
///   - for every --sizes N and every --ef-search value: N entries in ONE shard and ONE scope
///     (HNSW once the scope passes --flat-below), loaded in batches of --insert-batch with
///     `stats()` as the barrier (insert throughput, RSS and `bytes` per entry), then --queries
///     sequential lookups of paraphrase-like queries (latency p50/p99, recall@1 vs brute force);
///   - for N also in --flat-sizes: the same with a flat scan (flat_below ≥ N);
///   - for N also in --store-sizes: the flat case again with a sled store in a temp folder
///     (the persistence cost of inserts; only 200 lookups);
///   - unless --no-churn: --churn-shards × --churn-capacity entries kept full by --churn-tasks
///     concurrent tasks mixing lookups and inserts, RSS and stats sampled every second.
///
/// Data: real MiniLM embeddings from --embeddings (JSON lines with a "vector" array), extended
/// to larger sizes by blending two real vectors plus a little noise; without a file, synthetic
/// low-rank vectors, and the report says so.
///
/// Writes cache.json, cache.md and churn-rss.svg into --out after every case and prints
/// cache.md at the end. Progress goes to stderr.
#[derive(Debug, Parser)]
#[command(name = "bench-cache", version, verbatim_doc_comment)]
struct Cli {
    /// JSON lines with a "vector" array of floats per line (real embeddings)
    /// [default: the first *.jsonl in .cache/replay/, written by scripts/bench-replay.sh].
    #[arg(long, value_name = "FILE")]
    embeddings: Option<PathBuf>,
    /// Use synthetic low-rank vectors even if an embeddings file exists.
    #[arg(long, conflicts_with = "embeddings")]
    synthetic: bool,
    /// Entry counts of the one-shard cases (e.g. 10000,100000,1000000).
    #[arg(long, value_name = "LIST", default_value = "10000,100000", value_parser = parse_list)]
    sizes: List,
    /// Sizes (among --sizes) also measured with a flat scan instead of the graph (`none`: no
    /// flat case).
    #[arg(long, value_name = "LIST", default_value = "10000,100000", value_parser = parse_list)]
    flat_sizes: List,
    /// Sizes (among --sizes) also loaded into a sled store (flat scan, to isolate the store;
    /// `none`: no store case).
    #[arg(long, value_name = "LIST", default_value = "100000", value_parser = parse_list)]
    store_sizes: List,
    /// Skip the one-shard cases (run the churn case only).
    #[arg(long)]
    no_sized: bool,
    /// HNSW links per point and layer (IndexParams::m).
    #[arg(long, value_name = "N", default_value_t = 16)]
    m: usize,
    /// HNSW ef_construction (build quality vs build time).
    #[arg(long, value_name = "N", default_value_t = 100)]
    ef_construction: usize,
    /// HNSW ef_search values; each is a separate cache built from scratch (`none`: no HNSW
    /// case).
    #[arg(long, value_name = "LIST", default_value = "64,128", value_parser = parse_list)]
    ef_search: List,
    /// Scopes with at most this many entries are searched by their flat index alone; an HNSW
    /// case's scope enters the graph past it (IndexParams::flat_below).
    #[arg(long, value_name = "N", default_value_t = 4096)]
    flat_below: usize,
    /// Flat cases: candidates (nearest by sign-bit code) rescored exactly; each value is a
    /// separate case (IndexParams::rerank).
    #[arg(long, value_name = "LIST", default_value = "128", value_parser = parse_list)]
    rerank: List,
    /// Measured lookups per case; each is also a recall@1 query.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    queries: usize,
    /// Range of the cosine of each query to the stored vector it is made from, `LO,HI` (lower
    /// makes the nearest neighbour harder to find: the cache's threshold is usually ≥ 0.9).
    #[arg(long, value_name = "LO,HI", default_value = "0.90,0.95", value_parser = parse_cos_range)]
    query_cos: (f32, f32),
    /// Lookups before the measured ones (not recorded).
    #[arg(long, value_name = "N", default_value_t = 200)]
    warmup: usize,
    /// Size of each cached answer body (chat-completion JSON).
    #[arg(long, value_name = "BYTES", default_value_t = 600)]
    body_bytes: usize,
    /// Inserts between two `stats()` barriers while loading.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    insert_batch: usize,
    /// Deadline of each lookup in the one-shard cases (a slower one counts as timed out).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    deadline: std::time::Duration,
    /// Skip the churn case.
    #[arg(long)]
    no_churn: bool,
    /// Shards of the churn case (one scope each).
    #[arg(long, value_name = "N", default_value_t = 4)]
    churn_shards: usize,
    /// Entries per shard in the churn case.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    churn_capacity: usize,
    /// Concurrent tasks of the churn case.
    #[arg(long, value_name = "N", default_value_t = 8)]
    churn_tasks: usize,
    /// Length of the churn case (filling 4 × 20k entries through the graph alone takes about
    /// a minute on 2 cores, so the plateau needs the rest).
    #[arg(long, value_name = "SECONDS", default_value_t = 180)]
    churn_secs: u64,
    /// Stop the churn case after this many operations, if sooner.
    #[arg(long, value_name = "N")]
    churn_ops: Option<u64>,
    /// Share of churn operations that are lookups (the rest insert fresh entries).
    #[arg(long, value_name = "FRACTION", default_value_t = 0.5)]
    churn_lookups: f64,
    /// Lookup deadline in the churn case (the gateway's default cache deadline).
    #[arg(long, value_name = "DURATION", default_value = "10ms", value_parser = humantime::parse_duration)]
    churn_deadline: std::time::Duration,
    /// Least similarity of a churn lookup hit.
    #[arg(long, value_name = "COS", default_value_t = 0.85)]
    churn_threshold: f32,
    /// Each churn task awaits `stats()` every this many inserts (bounds the mailboxes).
    #[arg(long, value_name = "N", default_value_t = 64)]
    churn_barrier: usize,
    /// Seed of every random choice (data, queries, churn).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Threads of the brute-force exact search [default: all cores].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Run the paraphrase benchmark instead: JSON lines {"a", "b", "duplicate"} (e.g.
    /// ../shared/data/cache/qqp_dev.jsonl). Each pair is stored and looked up through a real
    /// cache with the real encoder; writes paraphrase.md and paraphrase.json into --out:
    /// hit precision and paraphrase recall per threshold, and per kind of --near-misses.
    #[arg(long, value_name = "FILE")]
    pairs: Option<PathBuf>,
    /// With --pairs: near-miss and paraphrase pairs with a "kind" each.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "loadtest/data/cache-near-misses.jsonl"
    )]
    near_misses: PathBuf,
    /// With --pairs: the encoder model folder.
    #[arg(long, value_name = "DIR", default_value = "models/all-MiniLM-L6-v2")]
    model_dir: PathBuf,
    /// With --pairs: encoder precision (auto, int8, bf16, f32).
    #[arg(long, value_name = "P", default_value = "auto")]
    precision: routemesh_common::config::EncoderPrecision,
    /// With --pairs: use only the first N pairs.
    #[arg(long, value_name = "N")]
    pairs_limit: Option<usize>,
    /// Folder for the report files.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_REPORT_DIR)]
    out: PathBuf,
    /// Internal: run one case (JSON) in this process and print its result.
    #[arg(long, value_name = "JSON", hide = true)]
    case: Option<String>,
}

/// A comma-separated list of counts; `none` or an empty string is an empty list.
#[derive(Debug, Clone)]
struct List(Vec<usize>);

fn parse_list(s: &str) -> Result<List, String> {
    if s.trim().is_empty() || s.trim() == "none" {
        return Ok(List(Vec::new()));
    }
    s.split(',')
        .map(|x| match x.trim().parse::<usize>() {
            Ok(0) => Err("counts must be at least 1".to_owned()),
            Ok(n) => Ok(n),
            Err(_) => Err(format!("`{x}` is not a count; use e.g. 10000,100000")),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(List)
}

fn parse_cos_range(s: &str) -> Result<(f32, f32), String> {
    let bad = || format!("`{s}` is not a cosine range; use e.g. 0.90,0.95 (0 < LO <= HI <= 1)");
    let (lo, hi) = s.split_once(',').ok_or_else(bad)?;
    let lo: f32 = lo.trim().parse().map_err(|_| bad())?;
    let hi: f32 = hi.trim().parse().map_err(|_| bad())?;
    if lo > 0.0 && lo <= hi && hi <= 1.0 {
        Ok((lo, hi))
    } else {
        Err(bad())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(case) = &cli.case {
        return child(case);
    }
    if let Some(pairs) = &cli.pairs {
        return paraphrase(&cli, pairs);
    }
    let source = match source(&cli) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let cases = match plan(&cli, &source) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail(&CacheBenchError::Io(e)),
    };
    let (data, synthetic) = match &source {
        Source::Embeddings(p) => (p.display().to_string(), false),
        Source::Synthetic => ("synthetic".to_owned(), true),
    };
    let header = Header::detect(shell_command(std::env::args()), data, synthetic);
    let mut not_run = Vec::new();
    if !cli.no_sized && !cli.sizes.0.iter().any(|&n| n >= 1_000_000) {
        not_run.push(
            "1,000,000 entries: not in --sizes of this run (see the README beside this report)"
                .to_owned(),
        );
    }
    match cache_bench::run_all(&exe, &cases, Report::new(header, not_run), &cli.out) {
        Ok(report) => {
            println!("{}", report.markdown());
            if report.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => fail(&e),
    }
}

fn source(cli: &Cli) -> Result<Source, CacheBenchError> {
    if cli.synthetic {
        return Ok(Source::Synthetic);
    }
    if let Some(p) = &cli.embeddings {
        if !p.is_file() {
            return Err(CacheBenchError::Data {
                path: p.clone(),
                detail: "no such file".into(),
            });
        }
        return Ok(Source::Embeddings(p.clone()));
    }
    match Source::find_default(std::path::Path::new(DEFAULT_EMBEDDINGS_DIR)) {
        Some(p) => Ok(Source::Embeddings(p)),
        None => {
            eprintln!(
                "bench-cache: WARNING: no embeddings file (--embeddings, or *.jsonl in \
                 {DEFAULT_EMBEDDINGS_DIR}/); using SYNTHETIC low-rank vectors"
            );
            Ok(Source::Synthetic)
        }
    }
}

fn plan(cli: &Cli, source: &Source) -> Result<Vec<CaseSpec>, CacheBenchError> {
    let bad = |m: &str| Err(CacheBenchError::Config(m.to_owned()));
    if cli.queries == 0 {
        return bad("--queries must be positive");
    }
    if !(0.0..=1.0).contains(&cli.churn_lookups) {
        return bad("--churn-lookups must be between 0 and 1");
    }
    if cli.rerank.0.is_empty() {
        return bad("give at least one --rerank value");
    }
    let default_rerank = cli.rerank.0[0];
    // `--ef-search none`: no HNSW case; the others do not search a graph
    let ef0 = cli.ef_search.0.first().copied().unwrap_or(64);
    let index = |ef_search: usize, rerank: usize| IndexSpec {
        m: cli.m,
        ef_construction: cli.ef_construction,
        ef_search,
        flat_below: cli.flat_below,
        rerank,
    };
    let threads = cli
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let sized = |size: usize, ef: usize, rerank: usize, flat: bool, store: bool| {
        CaseSpec::Sized(SizedSpec {
            source: source.clone(),
            seed: cli.seed,
            size,
            index: index(ef, rerank),
            flat,
            store,
            // a store case measures inserts; its lookups are the flat case's
            queries: if store {
                cli.queries.min(STORE_QUERIES)
            } else {
                cli.queries
            },
            warmup: cli.warmup,
            body_bytes: cli.body_bytes,
            insert_batch: cli.insert_batch,
            deadline_ms: u64::try_from(cli.deadline.as_millis()).unwrap_or(u64::MAX),
            query_cos: cli.query_cos,
            threads,
        })
    };
    let mut cases = Vec::new();
    if !cli.no_sized {
        for &n in &cli.sizes.0 {
            for &ef in &cli.ef_search.0 {
                cases.push(sized(n, ef, default_rerank, false, false));
            }
            if cli.flat_sizes.0.contains(&n) {
                for &rerank in &cli.rerank.0 {
                    cases.push(sized(n, ef0, rerank, true, false));
                }
            }
            if cli.store_sizes.0.contains(&n) {
                cases.push(sized(n, ef0, default_rerank, true, true));
            }
        }
    }
    if !cli.no_churn {
        cases.push(CaseSpec::Churn(ChurnSpec {
            source: source.clone(),
            seed: cli.seed,
            shards: cli.churn_shards,
            capacity: cli.churn_capacity,
            index: index(ef0, default_rerank),
            tasks: cli.churn_tasks,
            secs: cli.churn_secs,
            max_ops: cli.churn_ops,
            lookup_share: cli.churn_lookups,
            deadline_ms: u64::try_from(cli.churn_deadline.as_millis()).unwrap_or(u64::MAX),
            threshold: cli.churn_threshold,
            body_bytes: cli.body_bytes,
            barrier_every: cli.churn_barrier,
        }));
    }
    if cases.is_empty() {
        return bad("nothing to run (--no-sized and --no-churn)");
    }
    Ok(cases)
}

/// The child's side: one case, its result as one JSON line on stdout.
fn child(case: &str) -> ExitCode {
    let spec: CaseSpec = match serde_json::from_str(case) {
        Ok(s) => s,
        Err(e) => return fail(&CacheBenchError::Json(e)),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&CacheBenchError::Io(e)),
    };
    let outcome = runtime.block_on(cache_bench::run_case(&spec));
    match outcome.and_then(|o| cache_bench::print_outcome(&o)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// `--pairs`: the paraphrase curve, in this process.
fn paraphrase(cli: &Cli, pairs: &std::path::Path) -> ExitCode {
    let spec = cache_bench::paraphrase::ParaphraseSpec {
        pairs: pairs.to_owned(),
        near_misses: Some(cli.near_misses.clone()).filter(|p| p.as_os_str() != "none"),
        model_dir: cli.model_dir.clone(),
        precision: cli.precision,
        limit: cli.pairs_limit,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&CacheBenchError::Io(e)),
    };
    let header = Header::detect(
        shell_command(std::env::args()),
        pairs.display().to_string(),
        false,
    );
    let result = match runtime.block_on(cache_bench::paraphrase::run(&spec)) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let md = result.markdown(&header.markdown());
    let write = |name: &str, body: &str| {
        let path = cli.out.join(name);
        std::fs::create_dir_all(&cli.out)
            .and_then(|()| std::fs::write(&path, body))
            .map_err(|source| CacheBenchError::Write { path, source })
    };
    let json = match serde_json::to_string_pretty(&result) {
        Ok(j) => j,
        Err(e) => return fail(&CacheBenchError::Json(e)),
    };
    if let Err(e) = write("paraphrase.md", &md).and_then(|()| write("paraphrase.json", &json)) {
        return fail(&e);
    }
    println!("{md}");
    ExitCode::SUCCESS
}

fn fail(e: &CacheBenchError) -> ExitCode {
    eprintln!("bench-cache: {e}");
    ExitCode::from(match e {
        CacheBenchError::Config(_) => EXIT_USAGE,
        CacheBenchError::Data { .. } => EXIT_NO_INPUT,
        _ => 1,
    })
}
