//! The gateway benchmark's report: a serialisable summary of the measurements and its markdown
//! rendering, headed by the date, CPU, core count and exact command line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{BenchConfig, KNOWN_STAGES, Measurements, TargetRun};

/// Where and when the benchmark ran.
#[derive(Debug, Clone, Serialize)]
pub struct HostInfo {
    /// RFC 3339, UTC.
    pub date: String,
    /// `model name` from `/proc/cpuinfo`, or `unknown`.
    pub cpu: String,
    /// Cores available to this process.
    pub cores: usize,
}

impl HostInfo {
    /// Reads the clock, `/proc/cpuinfo` and the available parallelism.
    pub fn detect() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .filter_map(|line| line.split_once(':'))
                    .find(|(key, _)| key.trim() == "model name")
                    .map(|(_, value)| value.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            date: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Latency summary of one histogram, in milliseconds; `None` where nothing was recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub count: u64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub mean_ms: Option<f64>,
}

impl Summary {
    fn of(h: Option<&Histogram<u64>>) -> Self {
        let h = h.filter(|h| !h.is_empty());
        let q = |q: f64| h.map(|h| ms(h.value_at_quantile(q)));
        Self {
            count: h.map_or(0, |h| h.len()),
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p99_ms: q(0.99),
            max_ms: h.map(|h| ms(h.max())),
            mean_ms: h.map(|h| h.mean() / 1000.0),
        }
    }
}

/// One `Server-Timing` stage.
#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    pub stage: String,
    #[serde(flatten)]
    pub latency: Summary,
}

/// One target's end-to-end results.
#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    pub url: String,
    pub model: String,
    pub end_to_end: Summary,
    pub errors: BTreeMap<String, u64>,
    /// Successful requests per second of wall time spent on this target.
    pub throughput_rps: Option<f64>,
}

impl TargetSummary {
    fn of(run: &TargetRun, url: &str, model: &str) -> Self {
        let secs = run.busy.as_secs_f64();
        Self {
            url: url.to_owned(),
            model: model.to_owned(),
            end_to_end: Summary::of(Some(&run.e2e)),
            errors: run.errors.clone(),
            throughput_rps: (secs > 0.0).then(|| run.e2e.len() as f64 / secs),
        }
    }
}

/// A mean with the number of requests it is over.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MeanSummary {
    pub mean_ms: Option<f64>,
    pub n: u64,
}

/// The whole report; serialised as the `--json` file.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub host: HostInfo,
    pub command: String,
    pub requests_per_target: usize,
    pub warmup_per_target: usize,
    pub concurrency: usize,
    pub batch: usize,
    pub prompts: Vec<String>,
    pub gateway: TargetSummary,
    pub direct: TargetSummary,
    /// Successful gateway requests that carried a `Server-Timing` header.
    pub with_server_timing: u64,
    /// Known stages first (in pipeline order, present even if never reported), then others.
    pub stages: Vec<StageSummary>,
    /// Gateway minus direct end-to-end latency at p50/p90/p99, ms.
    pub added_ms: BTreeMap<String, Option<f64>>,
    /// Mean of `total − upstream`: the gateway's own work, classification included.
    pub gateway_own_overhead: MeanSummary,
    /// Mean of `total − upstream − classify − decide`: pure proxy overhead.
    pub proxy_overhead: MeanSummary,
    /// Successful gateway answers by `x-routemesh-model`.
    pub models: BTreeMap<String, u64>,
}

impl Report {
    /// Summarises `m`, measured with `cfg`, on `host`, started by `command`.
    pub fn new(cfg: &BenchConfig, m: &Measurements, host: HostInfo, command: String) -> Self {
        let gateway = TargetSummary::of(&m.gateway.target, &cfg.gateway, &cfg.gateway_model);
        let direct = TargetSummary::of(&m.direct, &cfg.direct, &cfg.direct_model);
        let others = m
            .gateway
            .stages
            .keys()
            .filter(|k| !KNOWN_STAGES.contains(&k.as_str()));
        let stages = KNOWN_STAGES
            .iter()
            .map(|s| (*s).to_owned())
            .chain(others.cloned())
            .map(|stage| StageSummary {
                latency: Summary::of(m.gateway.stages.get(&stage)),
                stage,
            })
            .collect();
        let (g, d) = (&gateway.end_to_end, &direct.end_to_end);
        // Rounded to the histograms' microsecond resolution.
        let diff = |a: Option<f64>, b: Option<f64>| {
            a.zip(b).map(|(a, b)| ((a - b) * 1000.0).round() / 1000.0)
        };
        let added_ms = [
            ("p50", diff(g.p50_ms, d.p50_ms)),
            ("p90", diff(g.p90_ms, d.p90_ms)),
            ("p99", diff(g.p99_ms, d.p99_ms)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mean = |mean: &super::Mean| MeanSummary {
            mean_ms: mean.get(),
            n: mean.n,
        };
        Self {
            host,
            command,
            requests_per_target: cfg.requests,
            warmup_per_target: cfg.warmup,
            concurrency: cfg.concurrency,
            batch: cfg.batch_size(),
            prompts: cfg.prompts.clone(),
            gateway,
            direct,
            with_server_timing: m.gateway.with_timing,
            stages,
            added_ms,
            gateway_own_overhead: mean(&m.gateway.own_overhead),
            proxy_overhead: mean(&m.gateway.proxy_overhead),
            models: m.gateway.models.clone(),
        }
    }

    /// The report as markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_markdown(&mut out);
        out
    }

    fn write_markdown(&self, out: &mut String) -> std::fmt::Result {
        let (g, d) = (&self.gateway, &self.direct);
        writeln!(out, "# routemesh gateway latency\n")?;
        writeln!(out, "- Date: {}", self.host.date)?;
        writeln!(
            out,
            "- CPU: {} ({} cores available)",
            self.host.cpu, self.host.cores
        )?;
        writeln!(out, "- Command: `{}`", self.command)?;
        writeln!(out, "- Gateway: {} with model `{}`", g.url, g.model)?;
        writeln!(out, "- Direct: {} with model `{}`", d.url, d.model)?;
        writeln!(
            out,
            "- {} requests per target after {} warm-up requests each; concurrency {} (closed \
             loop); targets interleaved in batches of {}, alternating which goes first",
            self.requests_per_target, self.warmup_per_target, self.concurrency, self.batch
        )?;
        writeln!(
            out,
            "- Prompts (cycled, same sequence for both targets): {}",
            self.prompts.len()
        )?;

        writeln!(out, "\n## Gateway stages (ms)\n")?;
        let ok = g.end_to_end.count;
        writeln!(
            out,
            "Stages come from the gateway's `Server-Timing` header ({} of {ok} successful \
             requests carried one); end-to-end is measured by this client, from sending the \
             request to the last byte of the body.\n",
            self.with_server_timing
        )?;
        if self.with_server_timing == 0 {
            writeln!(
                out,
                "**The gateway sent no `Server-Timing` header: stage rows are n/a.**\n"
            )?;
        }
        writeln!(out, "| stage | n | p50 | p90 | p99 | max | mean |")?;
        writeln!(out, "|---|--:|--:|--:|--:|--:|--:|")?;
        for stage in &self.stages {
            summary_row(out, &stage.stage, &stage.latency)?;
        }
        summary_row(out, "end-to-end (client)", &g.end_to_end)?;

        writeln!(out, "\n## Gateway vs direct upstream, end-to-end (ms)\n")?;
        writeln!(
            out,
            "| target | n | p50 | p90 | p99 | max | mean | req/s | errors |"
        )?;
        writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|")?;
        for (name, t) in [("gateway", g), ("direct", d)] {
            let e = &t.end_to_end;
            let errors: u64 = t.errors.values().sum();
            writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {errors} |",
                e.count,
                fmt_ms(e.p50_ms),
                fmt_ms(e.p90_ms),
                fmt_ms(e.p99_ms),
                fmt_ms(e.max_ms),
                fmt_ms(e.mean_ms),
                t.throughput_rps
                    .map_or("n/a".to_owned(), |r| format!("{r:.0}")),
            )?;
        }
        for (name, t) in [("gateway", g), ("direct", d)] {
            if !t.errors.is_empty() {
                let list: Vec<String> = t.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
                writeln!(out, "\n{name} errors: {}", list.join(", "))?;
            }
        }

        writeln!(
            out,
            "\n## Added latency (gateway − direct, end-to-end, ms)\n"
        )?;
        writeln!(out, "| p50 | p90 | p99 |")?;
        writeln!(out, "|--:|--:|--:|")?;
        let added = |k: &str| fmt_ms(self.added_ms.get(k).copied().flatten());
        writeln!(
            out,
            "| {} | {} | {} |",
            added("p50"),
            added("p90"),
            added("p99")
        )?;

        writeln!(
            out,
            "\n## Gateway overhead (means from Server-Timing, ms)\n"
        )?;
        writeln!(out, "| measure | mean | n |")?;
        writeln!(out, "|---|--:|--:|")?;
        let (own, proxy) = (self.gateway_own_overhead, self.proxy_overhead);
        writeln!(
            out,
            "| own work: total − upstream (includes classification) | {} | {} |",
            fmt_ms(own.mean_ms),
            own.n
        )?;
        writeln!(
            out,
            "| pure proxy: total − upstream − classify − decide | {} | {} |",
            fmt_ms(proxy.mean_ms),
            proxy.n
        )?;

        writeln!(out, "\n## Routed models (`x-routemesh-model`)\n")?;
        if self.models.is_empty() {
            writeln!(out, "n/a (no answer carried the header)")?;
        } else {
            writeln!(out, "| model | requests |")?;
            writeln!(out, "|---|--:|")?;
            for (model, n) in &self.models {
                writeln!(out, "| {model} | {n} |")?;
            }
        }
        Ok(())
    }
}

fn summary_row(out: &mut String, name: &str, s: &Summary) -> std::fmt::Result {
    let n = if s.count == 0 {
        "n/a".to_owned()
    } else {
        s.count.to_string()
    };
    writeln!(
        out,
        "| {name} | {n} | {} | {} | {} | {} | {} |",
        fmt_ms(s.p50_ms),
        fmt_ms(s.p90_ms),
        fmt_ms(s.p99_ms),
        fmt_ms(s.max_ms),
        fmt_ms(s.mean_ms)
    )
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"))
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// The command line as one shell-quoted string, so it can be pasted back into a shell.
pub fn shell_command(args: impl IntoIterator<Item = String>) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=,@+%".contains(c);
    args.into_iter()
        .map(|arg| {
            if !arg.is_empty() && arg.chars().all(plain) {
                arg
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn shell_command_quotes_only_what_needs_it() {
        let args = ["bench-gateway", "--prompt", "it's 2+2?", "--requests=5", ""];
        assert_eq!(
            shell_command(args.map(String::from)),
            r"bench-gateway --prompt 'it'\''s 2+2?' --requests=5 ''"
        );
    }

    #[test]
    fn empty_histogram_summarises_as_missing() {
        let s = Summary::of(None);
        assert_eq!((s.count, s.p50_ms, s.max_ms), (0, None, None));
        let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000, 3).unwrap();
        for v in 1..=100 {
            h.record(v * 1000).unwrap();
        }
        let s = Summary::of(Some(&h));
        assert_eq!(s.count, 100);
        assert!((s.p50_ms.unwrap() - 50.0).abs() < 0.1, "{:?}", s.p50_ms);
        assert!((s.max_ms.unwrap() - 100.0).abs() < 0.1, "{:?}", s.max_ms);
    }
}
