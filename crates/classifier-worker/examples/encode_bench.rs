//! MiniLM throughput on CPU against batch size (a benchmark with a report, not a test): for
//! each batch size, encodes batches of realistic prompts of about `--tokens` tokens over and
//! over for `--seconds` (after a warm-up) and prints a markdown table of prompts/s, ms per batch
//! and ms per prompt, then the batch-1 latency (p50/p99) of one 16-token prompt.
//!
//! ```text
//! cargo run --release -p routemesh-classifier-worker --example encode_bench -- \
//!     [MODEL_DIR] [--precision auto|f32|bf16|int8] [--threads N] \
//!     [--batches 1,2,4,8,16,32,64] [--tokens 16|32] [--seconds 3]
//! ```
//!
//! `--suite` instead runs the fixed cases of scripts/bench-encoder.sh (one prompt of
//! 16 / 64 / 128 / 256 tokens; batches of 8 / 32 / 64 prompts of 32 tokens) and writes them as
//! JSON (`--json FILE`), with the exact prompts (`--prompts-out FILE`) so that the PyTorch side
//! (loadtest/pytorch/encoder_bench.py) runs the same texts.
//!
//! Threads: one pool (rayon's, shared with candle) of `--threads` (default: one per core).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use routemesh_classifier_worker::{Encoder, EncoderOptions};
use routemesh_common::config::EncoderPrecision;

const USAGE: &str = "usage: encode_bench [MODEL_DIR] [--precision auto|f32|bf16|int8] \
                     [--threads N] [--batches 1,2,4,8,16,32,64] [--tokens 16|32] [--seconds 3]\n       \
                     encode_bench [MODEL_DIR] --suite [--precision P] [--threads N] [--seconds S] \
                     [--json OUT.json] [--prompts-out PROMPTS.json]";

/// Realistic user prompts; joined and cut to the requested token length.
const PROMPTS: [&str; 16] = [
    "Please explain how the gradient descent algorithm converges on convex functions and why the step size matters so much in practice.",
    "Write a Python function that checks whether a string is a palindrome, ignoring punctuation, spaces and letter case, with a few unit tests.",
    "What is the derivative of x cubed times the sine of x, and can you show each step of the product rule so I can follow along?",
    "Summarise the main causes of the French Revolution in five bullet points suitable for a high school history class revision sheet.",
    "My Kubernetes pod keeps restarting with CrashLoopBackOff after I changed the config map; what should I check first and how do I see the logs?",
    "Translate the following sentence into Spanish and German: the meeting has been moved to Thursday afternoon because of the holiday.",
    "Draft a polite email to my landlord asking whether the broken heating in the living room can be repaired before the end of the month.",
    "How do I compute the eigenvalues of a three by three matrix by hand, and what does it mean when two of them are equal?",
    "Give me a vegetarian dinner recipe for four people that takes less than thirty minutes and uses chickpeas, spinach and coconut milk.",
    "Explain the difference between a mutex and a read-write lock in Rust, and when an atomic counter is the better choice for shared state.",
    "What are the tax implications of selling shares I have held for less than a year compared with shares held for longer than that?",
    "Write a SQL query that returns the ten customers with the highest total order value in the last ninety days, including their email.",
    "Is it safe to run a marathon two weeks after recovering from a mild flu, and how should I adjust my training plan until race day?",
    "Prove that the square root of two is irrational, using a proof by contradiction, and explain each step in plain language for a beginner.",
    "Compare the time complexity of quicksort, mergesort and heapsort in the best, average and worst case, and say which is stable.",
    "Create a short bedtime story about a curious fox who learns to share berries with the other animals of the forest during winter.",
];

/// 16 tokens with [CLS] and [SEP]: the DESIGN.md single-prompt latency case.
const SHORT: &str = "What is the best way to learn linear algebra quickly for my exams?";

#[derive(Debug)]
struct Args {
    model_dir: PathBuf,
    batches: Vec<usize>,
    tokens: usize,
    seconds: f64,
    precision: EncoderPrecision,
    threads: Option<usize>,
    suite: bool,
    json: Option<PathBuf>,
    prompts_out: Option<PathBuf>,
}

fn parse_list(s: &str) -> Result<Vec<usize>, String> {
    let list = s
        .split(',')
        .map(|x| match x.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("`{x}` is not a positive count in `{s}`")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if list.is_empty() {
        return Err("--batches needs at least one size".into());
    }
    Ok(list)
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut out = Args {
        model_dir: PathBuf::from("models/all-MiniLM-L6-v2"),
        batches: vec![1, 2, 4, 8, 16, 32, 64],
        tokens: 32,
        seconds: 3.0,
        precision: EncoderPrecision::Auto,
        threads: None,
        suite: false,
        json: None,
        prompts_out: None,
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or(format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--batches" => out.batches = parse_list(&value()?)?,
            "--tokens" => {
                let v = value()?;
                out.tokens = v
                    .parse()
                    .ok()
                    .filter(|n| (4..=256).contains(n))
                    .ok_or(format!("--tokens `{v}`: use a count in 4..=256 (16 or 32)"))?;
            }
            "--seconds" => {
                let v = value()?;
                out.seconds = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0 && s.is_finite())
                    .ok_or(format!("--seconds `{v}`: use a positive number"))?;
            }
            "--precision" => {
                let v = value()?;
                out.precision = v.parse().map_err(|e| format!("--precision: {e}"))?;
            }
            "--threads" => {
                let v = value()?;
                out.threads = Some(
                    v.parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or(format!("--threads `{v}`: use a positive count"))?,
                );
            }
            "--suite" => out.suite = true,
            "--json" => out.json = Some(PathBuf::from(value()?)),
            "--prompts-out" => out.prompts_out = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Err(USAGE.into()),
            f if f.starts_with('-') => return Err(format!("unknown flag {f}\n{USAGE}")),
            _ => out.model_dir = PathBuf::from(arg),
        }
    }
    Ok(out)
}

/// Value at quantile `q` of sorted samples, in ms (nearest rank).
fn percentile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
}

/// `YYYY-MM-DDTHH:MM:SSZ` of `secs` since the Unix epoch (Howard Hinnant's civil_from_days).
fn rfc3339(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim() == "model name")
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn tokens_of(encoder: &Encoder, text: &str) -> Result<usize, Box<dyn std::error::Error>> {
    Ok(encoder.encode(&[text])?.token_counts[0])
}

/// Prompt `i` cut to at most `target` tokens (special tokens included), as close as words allow.
fn prompt_of(
    encoder: &Encoder,
    i: usize,
    target: usize,
) -> Result<(String, usize), Box<dyn std::error::Error>> {
    let mut text = String::new();
    for k in 0..PROMPTS.len() {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(PROMPTS[(i + k) % PROMPTS.len()]);
        if tokens_of(encoder, &text)? >= target {
            break;
        }
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    // Largest word count whose text fits in `target` tokens (binary search; >= 1 word).
    let (mut lo, mut hi) = (1, words.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if tokens_of(encoder, &words[..mid].join(" "))? <= target {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let prompt = words[..lo].join(" ");
    let n = tokens_of(encoder, &prompt)?;
    Ok((prompt, n))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let command: Vec<String> = std::env::args().collect();
    let args = match parse_args(command.iter().skip(1).cloned()) {
        Ok(a) => a,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(64);
        }
    };
    if let Some(n) = args.threads {
        routemesh_inference::init_threads(n)?;
    }
    let loading = Instant::now();
    let mut opts = EncoderOptions::new(256);
    opts.precision = args.precision;
    let encoder = Encoder::load(&args.model_dir, &opts)?;
    let load_ms = loading.elapsed().as_secs_f64() * 1e3;
    if args.suite {
        return suite(&encoder, &args, load_ms);
    }
    let mut prompts = Vec::with_capacity(PROMPTS.len());
    for i in 0..PROMPTS.len() {
        prompts.push(prompt_of(&encoder, i, args.tokens)?);
    }
    let counts: Vec<usize> = prompts.iter().map(|p| p.1).collect();
    let mean_tokens = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let threads = routemesh_inference::threads();

    println!("# MiniLM throughput on CPU against batch size\n");
    println!("- date: {}", rfc3339(now));
    println!(
        "- CPU: {} ({} cores; encoder threads: {threads})",
        cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    println!("- load average at start: {load} (other work on the machine moves the numbers)");
    println!(
        "- model: {}, {} on CPU (loaded in {load_ms:.0} ms)",
        args.model_dir.display(),
        encoder.precision_in_use()
    );
    println!("- command: `{}`", command.join(" "));
    println!(
        "- prompts: {} distinct, cut to at most {} tokens (special tokens included): mean {mean_tokens:.1}, \
         min {}, max {}; a batch cycles through them (packed without padding on the CPU kernels)",
        prompts.len(),
        args.tokens,
        counts.iter().min().unwrap_or(&0),
        counts.iter().max().unwrap_or(&0)
    );
    println!(
        "- each batch size: warm-up (≥ 2 batches, ≥ 0.3 s), then {} s of back-to-back batches\n",
        args.seconds
    );
    println!("| batch | prompts/s | ms per batch (mean) | ms per batch (p50) | ms per prompt |");
    println!("|---:|---:|---:|---:|---:|");
    for &b in &args.batches {
        let batch: Vec<&str> = (0..b)
            .map(|k| prompts[k % prompts.len()].0.as_str())
            .collect();
        let warm = Instant::now();
        let mut n = 0;
        while n < 2 || warm.elapsed() < Duration::from_millis(300) {
            encoder.encode(&batch)?;
            n += 1;
        }
        let mut times = Vec::new();
        let started = Instant::now();
        while times.len() < 3 || started.elapsed().as_secs_f64() < args.seconds {
            let t = Instant::now();
            encoder.encode(&batch)?;
            times.push(t.elapsed());
        }
        let secs = started.elapsed().as_secs_f64();
        let per_s = (times.len() * b) as f64 / secs;
        times.sort();
        println!(
            "| {b} | {per_s:.1} | {:.2} | {:.2} | {:.3} |",
            secs * 1e3 / times.len() as f64,
            percentile_ms(&times, 0.5),
            1e3 / per_s
        );
    }

    let short_tokens = tokens_of(&encoder, SHORT)?;
    for _ in 0..20 {
        encoder.encode(&[SHORT])?;
    }
    let mut times = Vec::new();
    let started = Instant::now();
    while times.len() < 200 || started.elapsed().as_secs_f64() < args.seconds {
        let t = Instant::now();
        encoder.encode(&[SHORT])?;
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "\nBatch 1, one {short_tokens}-token prompt, {} runs: p50 {:.2} ms, p99 {:.2} ms.",
        times.len(),
        percentile_ms(&times, 0.5),
        percentile_ms(&times, 0.99)
    );
    println!(
        "\nDESIGN.md budgets (2 threads): one 16-token prompt p50 ≤ 5 ms; 32 prompts × 32 tokens \
         ≥ 240 prompts/s (FACTS.md: PyTorch ~200/s, candle as it came ~125/s)."
    );
    Ok(())
}

/// A suite case: its name, batch size and prompt length.
const CASES: [(&str, usize, usize); 7] = [
    ("single-16", 1, 16),
    ("single-64", 1, 64),
    ("single-128", 1, 128),
    ("single-256", 1, 256),
    ("batch-8", 8, 32),
    ("batch-32", 32, 32),
    ("batch-64", 64, 32),
];

/// Prompt `i` of exactly `target` tokens: cut by words, then topped up with
/// one-token words.
fn exact_prompt(
    encoder: &Encoder,
    i: usize,
    target: usize,
) -> Result<String, Box<dyn std::error::Error>> {
    let (mut text, mut n) = prompt_of(encoder, i, target)?;
    while n < target {
        text.push_str(" a");
        n = tokens_of(encoder, &text)?;
    }
    if n != target {
        return Err(format!("could not make a {target}-token prompt (got {n})").into());
    }
    Ok(text)
}

/// Peak resident memory of this process, in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The fixed cases as JSON (the shape loadtest/pytorch/report.py reads).
fn suite(encoder: &Encoder, args: &Args, load_ms: f64) -> Result<(), Box<dyn std::error::Error>> {
    let mut cases = Vec::new();
    let mut prompt_cases = Vec::new();
    for (name, batch, tokens) in CASES {
        let count = batch.max(4);
        let texts = (0..count)
            .map(|i| exact_prompt(encoder, i, tokens))
            .collect::<Result<Vec<_>, _>>()?;
        prompt_cases.push(
            serde_json::json!({"name": name, "batch": batch, "tokens": tokens, "texts": texts}),
        );
        let call = |k: usize| -> Vec<&str> {
            if batch == 1 {
                vec![texts[k % texts.len()].as_str()]
            } else {
                texts[..batch].iter().map(String::as_str).collect()
            }
        };
        eprintln!("{name}: {batch} × {tokens} tokens, {} s", args.seconds);
        let warm = Instant::now();
        let mut k = 0;
        while k < 3 || warm.elapsed() < Duration::from_millis(300) {
            encoder.encode(&call(k))?;
            k += 1;
        }
        let mut times = Vec::new();
        let started = Instant::now();
        while times.len() < 3 || started.elapsed().as_secs_f64() < args.seconds {
            let batch_texts = call(times.len());
            let t = Instant::now();
            encoder.encode(&batch_texts)?;
            times.push(t.elapsed());
        }
        let total = started.elapsed().as_secs_f64();
        let runs = times.len();
        times.sort();
        cases.push(serde_json::json!({
            "name": name,
            "batch": batch,
            "tokens": tokens,
            "runs": runs,
            "p50_ms": percentile_ms(&times, 0.5),
            "p99_ms": percentile_ms(&times, 0.99),
            "prompts_per_s": (runs * batch) as f64 / total,
        }));
    }
    let report = serde_json::json!({
        "engine": format!("routemesh {}", encoder.precision_in_use()),
        "threads": routemesh_inference::threads(),
        "load_ms": load_ms,
        "rss_mib": peak_rss_mib(),
        "version": env!("CARGO_PKG_VERSION"),
        "cases": cases,
    });
    let text = serde_json::to_string_pretty(&report)?;
    match &args.json {
        Some(path) => std::fs::write(path, text + "\n")?,
        None => println!("{text}"),
    }
    if let Some(path) = &args.prompts_out {
        let prompts = serde_json::json!({ "cases": prompt_cases });
        std::fs::write(path, serde_json::to_string_pretty(&prompts)? + "\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_flags_parse() {
        let a = parse_args(
            ["m", "--batches", "1, 8", "--tokens=16", "--seconds", "0.5"].map(String::from),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (a.model_dir, a.batches, a.tokens),
            ("m".into(), vec![1, 8], 16)
        );
        assert!((a.seconds - 0.5).abs() < 1e-12);
        for bad in [
            &["--batches", "1,,2"][..],
            &["--tokens", "2"],
            &["--seconds"],
            &["--x"],
        ] {
            assert!(
                parse_args(bad.iter().map(|s| (*s).to_owned())).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn percentiles_and_dates() {
        let ms = |v: u64| Duration::from_millis(v);
        let sorted: Vec<Duration> = (1..=100).map(ms).collect();
        assert!((percentile_ms(&sorted, 0.5) - 50.0).abs() < 1e-9);
        assert!((percentile_ms(&sorted, 0.99) - 99.0).abs() < 1e-9);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
    }
}
