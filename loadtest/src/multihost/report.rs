//! The multi-host test's report: per phase throughput and latency, totals, the checks that make it
//! a test, the worker timeline; as markdown and JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::load::{Outcome, Sample};
use super::{Event, MultihostConfig, NodeConnections, Observations, WorkerRecord};
use crate::mesh_bench::ReportHeader;

/// One phase's numbers (requests that completed inside its window).
#[derive(Debug, Clone, Serialize)]
pub struct PhaseStats {
    pub name: String,
    pub workers: usize,
    pub scaling: bool,
    pub start_s: f64,
    pub window_s: f64,
    pub completed: usize,
    pub req_per_s: f64,
    /// What the workers can serve: min(workers × max batch, in flight) / cost.
    pub capacity_req_per_s: f64,
    /// req/s ÷ (workers × the first scaling phase's req/s per worker); scaling phases only.
    pub efficiency: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub errors: usize,
    pub degraded: usize,
}

/// A pass/fail condition.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// Everything the report says.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub header: ReportHeader,
    pub passed: bool,
    pub setup: Setup,
    /// Every request of the run (warm-up and transitions included).
    pub requests: usize,
    pub ok: usize,
    /// Non-2xx answers and requests with no answer, by kind.
    pub errors: BTreeMap<String, usize>,
    pub errors_total: usize,
    /// 2xx answers marked `x-routemesh-degraded`, by the header's value.
    pub degraded: BTreeMap<String, usize>,
    pub degraded_total: usize,
    /// 2xx answers whose `Server-Timing` classify time is missing or below the model's cost.
    pub unclassified: usize,
    pub load_seconds: f64,
    pub phases: Vec<PhaseStats>,
    pub checks: Vec<Check>,
    pub workers: Vec<WorkerRecord>,
    /// Sum of the requests the workers reported serving (the gateway's start-up embedding of
    /// its route examples included).
    pub served_by_workers: Option<u64>,
    pub nats_nodes: Vec<NodeConnections>,
    pub timeline: Vec<Event>,
}

/// The settings, as the report states them.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub gateway: String,
    pub worker_hosts: Vec<String>,
    pub pool: String,
    pub cost_ms: f64,
    pub max_batch: usize,
    pub in_flight: usize,
    pub warmup_s: f64,
    pub settle_s: f64,
    pub window_s: f64,
    pub churn_step_s: f64,
    pub min_efficiency: f64,
    pub min_step_gain: f64,
    /// The worker command line (for the first host).
    pub worker_command: String,
}

/// Each added worker must add at least this share of the first phase's req/s per worker.
pub const MIN_STEP_GAIN: f64 = 0.5;

impl Report {
    pub fn new(cfg: &MultihostConfig, obs: &Observations, header: ReportHeader) -> Self {
        let cost_s = cfg.worker.cost.as_secs_f64();
        let capacity = |workers: usize| {
            let slots = (workers * cfg.worker.max_batch).min(cfg.in_flight) as f64;
            if cost_s > 0.0 {
                slots / cost_s
            } else {
                f64::INFINITY
            }
        };
        let mut phases: Vec<PhaseStats> = obs
            .phases
            .iter()
            .map(|p| {
                let done: Vec<&Sample> = obs
                    .samples
                    .iter()
                    .filter(|s| s.end >= p.start && s.end < p.end)
                    .collect();
                let window = p.end.saturating_sub(p.start).as_secs_f64();
                let mut lat: Vec<Duration> = done.iter().map(|s| s.latency()).collect();
                lat.sort();
                PhaseStats {
                    name: p.name.clone(),
                    workers: p.workers,
                    scaling: p.scaling,
                    start_s: round3(p.start.as_secs_f64()),
                    window_s: round3(window),
                    completed: done.len(),
                    req_per_s: if window > 0.0 {
                        done.len() as f64 / window
                    } else {
                        0.0
                    },
                    capacity_req_per_s: capacity(p.workers),
                    efficiency: None,
                    p50_ms: quantile_ms(&lat, 0.50),
                    p99_ms: quantile_ms(&lat, 0.99),
                    max_ms: lat.last().map(|d| d.as_secs_f64() * 1000.0),
                    errors: done.iter().filter(|s| is_error(&s.outcome)).count(),
                    degraded: done
                        .iter()
                        .filter(|s| matches!(s.outcome, Outcome::Degraded(_)))
                        .count(),
                }
            })
            .collect();

        // Scaling against the first scaling phase's req/s per worker.
        let per_worker = phases
            .iter()
            .find(|p| p.scaling)
            .map(|p| p.req_per_s / p.workers as f64);
        let mut checks = Vec::new();
        if let Some(per_worker) = per_worker.filter(|x| *x > 0.0) {
            for p in phases.iter_mut().filter(|p| p.scaling) {
                p.efficiency = Some(p.req_per_s / (p.workers as f64 * per_worker));
            }
            let scaling: Vec<&PhaseStats> = phases.iter().filter(|p| p.scaling).collect();
            for p in &scaling[1..] {
                let e = p.efficiency.unwrap_or(0.0);
                checks.push(Check {
                    name: format!("efficiency with {} workers", p.workers),
                    passed: e >= cfg.min_efficiency,
                    detail: format!(
                        "{:.1} req/s = {e:.3} × {} × {per_worker:.1} (need ≥ {:.2})",
                        p.req_per_s, p.workers, cfg.min_efficiency
                    ),
                });
            }
            for w in scaling.windows(2) {
                let gain = w[1].req_per_s - w[0].req_per_s;
                let need = MIN_STEP_GAIN * per_worker * (w[1].workers - w[0].workers) as f64;
                checks.push(Check {
                    name: format!(
                        "throughput grows {} → {} workers",
                        w[0].workers, w[1].workers
                    ),
                    passed: gain >= need,
                    detail: format!(
                        "{:.1} → {:.1} req/s: +{gain:.1} (need ≥ +{need:.1}, half a worker's worth \
                         per added worker)",
                        w[0].req_per_s, w[1].req_per_s
                    ),
                });
            }
        } else {
            checks.push(Check {
                name: "throughput with the first worker count".to_owned(),
                passed: false,
                detail: "no request completed in the first window".to_owned(),
            });
        }

        let mut errors = BTreeMap::new();
        let mut degraded = BTreeMap::new();
        let mut ok = 0;
        let mut unclassified = 0;
        let floor_ms = cfg.worker.cost.as_secs_f64() * 1000.0 * 0.95;
        for s in &obs.samples {
            match &s.outcome {
                Outcome::Ok => {
                    ok += 1;
                    if s.classify_ms.is_none_or(|ms| ms < floor_ms) {
                        unclassified += 1;
                    }
                }
                Outcome::Degraded(why) => *degraded.entry(why.clone()).or_insert(0) += 1,
                Outcome::Http(code) => *errors.entry(format!("HTTP {code}")).or_insert(0) += 1,
                Outcome::Transport(kind) => *errors.entry(kind.clone()).or_insert(0) += 1,
            }
        }
        let errors_total: usize = errors.values().sum();
        let degraded_total: usize = degraded.values().sum();
        checks.insert(
            0,
            Check {
                name: "no client errors".to_owned(),
                passed: errors_total == 0,
                detail: format!(
                    "{errors_total} of {} requests got a non-2xx status or no answer",
                    obs.samples.len()
                ),
            },
        );
        checks.insert(
            1,
            Check {
                name: "no degraded responses".to_owned(),
                passed: degraded_total == 0,
                detail: format!("{degraded_total} responses carried x-routemesh-degraded"),
            },
        );
        checks.insert(
            2,
            Check {
                name: "every answer classified by a worker".to_owned(),
                passed: unclassified == 0 && ok > 0,
                detail: format!(
                    "{unclassified} of {ok} 2xx answers lack a Server-Timing classify time ≥ \
                     {floor_ms:.1} ms (95% of the simulated cost)"
                ),
            },
        );
        let under_load: Vec<&WorkerRecord> = obs
            .workers
            .iter()
            .filter(|w| w.terminated_under_load)
            .collect();
        let clean = |w: &&WorkerRecord| w.exit_code == Some(0);
        checks.push(Check {
            name: "workers SIGTERM'd under load drain and exit 0".to_owned(),
            passed: !under_load.is_empty() && under_load.iter().all(clean),
            detail: under_load
                .iter()
                .map(|w| {
                    format!(
                        "worker {}: exit {}, {} ms",
                        w.id,
                        w.exit_code
                            .map_or_else(|| "by signal".to_owned(), |c| c.to_string()),
                        w.drain_ms.unwrap_or(0)
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        });
        let served_by_workers = obs.workers.iter().map(|w| w.served).sum::<Option<u64>>();
        let passed = checks.iter().all(|c| c.passed);
        let first_host = cfg.hosts.first();
        Self {
            header,
            passed,
            setup: Setup {
                gateway: cfg.gateway.clone(),
                worker_hosts: cfg
                    .hosts
                    .iter()
                    .map(|h| format!("{} (NATS {})", h.netns, h.nats_url))
                    .collect(),
                pool: cfg.worker.pool.clone(),
                cost_ms: cfg.worker.cost.as_secs_f64() * 1000.0,
                max_batch: cfg.worker.max_batch,
                in_flight: cfg.in_flight,
                warmup_s: cfg.warmup.as_secs_f64(),
                settle_s: cfg.settle.as_secs_f64(),
                window_s: cfg.window.as_secs_f64(),
                churn_step_s: cfg.churn_step.as_secs_f64(),
                min_efficiency: cfg.min_efficiency,
                min_step_gain: MIN_STEP_GAIN,
                worker_command: first_host
                    .map(|h| cfg.worker.command_line(h).join(" "))
                    .unwrap_or_default(),
            },
            requests: obs.samples.len(),
            ok,
            errors,
            errors_total,
            degraded,
            degraded_total,
            unclassified,
            load_seconds: round3(
                obs.load_span
                    .1
                    .saturating_sub(obs.load_span.0)
                    .as_secs_f64(),
            ),
            phases,
            checks,
            workers: obs.workers.clone(),
            served_by_workers,
            nats_nodes: obs.nodes.clone(),
            timeline: obs.events.clone(),
        }
    }

    /// The report as markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_markdown(&mut out);
        out
    }

    fn write_markdown(&self, out: &mut String) -> std::fmt::Result {
        let h = &self.header;
        let s = &self.setup;
        writeln!(out, "# Multi-host mesh test (network namespaces)\n")?;
        writeln!(
            out,
            "**{}**: {} requests, {} errors, {} degraded.\n",
            if self.passed { "PASSED" } else { "FAILED" },
            self.requests,
            self.errors_total,
            self.degraded_total
        )?;
        writeln!(out, "- date: {}", h.host.date)?;
        writeln!(out, "- CPU: {} ({} cores)", h.host.cpu, h.host.cores)?;
        writeln!(out, "- load average at start: {}", h.load_average)?;
        writeln!(out, "- nats-server: {}", h.nats_server)?;
        writeln!(
            out,
            "- command: `{}` (started by scripts/multihost.sh)",
            h.command
        )?;
        writeln!(
            out,
            "- hosts: three network namespaces on one bridge (10.77.0.0/24), one NATS node each \
             (a 3-node cluster); host 1 runs the gateway ({}) and a FAKE upstream \
             (loadtest's fake-upstream, a test fixture), the load comes from the root namespace",
            s.gateway
        )?;
        writeln!(
            out,
            "- worker hosts (alternating): {}",
            s.worker_hosts.join(", ")
        )?;
        writeln!(
            out,
            "- workers: `{}` — a simulated model that sleeps {} ms per pass of at most {} \
             prompt(s): {:.0} req/s per worker",
            s.worker_command,
            s.cost_ms,
            s.max_batch,
            s.max_batch as f64 * 1000.0 / s.cost_ms
        )?;
        writeln!(
            out,
            "- load: closed loop, {} routed requests (`model: auto`, unique prompts) in flight; \
             warm-up {} s; each worker count measured for {} s, {} s after its newest worker was \
             ready; churn events {} s apart",
            s.in_flight, s.warmup_s, s.window_s, s.settle_s, s.churn_step_s
        )?;
        writeln!(out)?;

        writeln!(out, "## Throughput and latency per phase\n")?;
        writeln!(
            out,
            "| phase | workers | req/s | capacity req/s | efficiency | p50 ms | p99 ms | max ms | \
             completed | errors | degraded |"
        )?;
        writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        )?;
        for p in &self.phases {
            writeln!(
                out,
                "| {} | {} | {:.1} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
                p.name,
                p.workers,
                p.req_per_s,
                p.capacity_req_per_s,
                p.efficiency
                    .map_or_else(|| "—".to_owned(), |e| format!("{e:.3}")),
                fmt_ms(p.p50_ms),
                fmt_ms(p.p99_ms),
                fmt_ms(p.max_ms),
                p.completed,
                p.errors,
                p.degraded
            )?;
        }
        writeln!(
            out,
            "\nreq/s counts requests that completed inside the phase's window. Capacity = \
             min(workers × max batch, in flight) / cost. Efficiency = req/s ÷ (workers × the \
             1-worker phase's req/s). The churn phase's worker count is the most at once.\n"
        )?;

        writeln!(out, "## Checks\n")?;
        for c in &self.checks {
            writeln!(
                out,
                "- {} **{}**: {}",
                if c.passed { "✅" } else { "❌" },
                c.name,
                c.detail
            )?;
        }
        writeln!(
            out,
            "\nWhole run: {} requests over {:.1} s of load (warm-up and transitions included), \
             {} answered 2xx without degradation; errors: {}; degraded: {}.",
            self.requests,
            self.load_seconds,
            self.ok,
            fmt_counts(&self.errors),
            fmt_counts(&self.degraded)
        )?;
        writeln!(out)?;

        writeln!(out, "## Workers\n")?;
        writeln!(
            out,
            "| worker | host | ready at s | SIGTERM at s | under load | exit | drain ms | served |"
        )?;
        writeln!(out, "|---:|---|---:|---:|---|---:|---:|---:|")?;
        for w in &self.workers {
            writeln!(
                out,
                "| {} | {} | {:.3} | {} | {} | {} | {} | {} |",
                w.id,
                w.netns,
                w.ready.as_secs_f64(),
                w.terminated
                    .map_or_else(|| "—".to_owned(), |t| format!("{:.3}", t.as_secs_f64())),
                if w.terminated_under_load { "yes" } else { "no" },
                w.exit_code
                    .map_or_else(|| "signal".to_owned(), |c| c.to_string()),
                w.drain_ms.map_or_else(|| "—".to_owned(), |d| d.to_string()),
                w.served.map_or_else(|| "?".to_owned(), |n| n.to_string()),
            )?;
        }
        if let Some(served) = self.served_by_workers {
            writeln!(
                out,
                "\nThe workers served {served} classify requests in all: the {} requests above \
                 plus {} from the gateway (its start-up embedding of the route examples).",
                self.requests,
                served as i64 - self.requests as i64
            )?;
        }
        writeln!(out)?;

        if !self.nats_nodes.is_empty() {
            writeln!(out, "## NATS connections (after the last scaling phase)\n")?;
            for n in &self.nats_nodes {
                writeln!(
                    out,
                    "- {} ({} routes): {}",
                    n.node,
                    n.routes,
                    if n.clients.is_empty() {
                        "no clients".to_owned()
                    } else {
                        n.clients.join(", ")
                    }
                )?;
            }
            writeln!(out)?;
        }

        writeln!(out, "## Timeline\n")?;
        writeln!(out, "| t (s) | event |")?;
        writeln!(out, "|---:|---|")?;
        for e in &self.timeline {
            writeln!(out, "| {:.3} | {} |", e.at.as_secs_f64(), e.what)?;
        }
        Ok(())
    }
}

fn is_error(o: &Outcome) -> bool {
    matches!(o, Outcome::Http(_) | Outcome::Transport(_))
}

/// The `q` quantile (nearest rank) of sorted latencies, in ms.
fn quantile_ms(sorted: &[Duration], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1].as_secs_f64() * 1000.0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn fmt_ms(ms: Option<f64>) -> String {
    ms.map_or_else(|| "n/a".to_owned(), |ms| format!("{ms:.1}"))
}

fn fmt_counts(m: &BTreeMap<String, usize>) -> String {
    if m.is_empty() {
        return "0".to_owned();
    }
    m.iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::multihost::Phase;
    use crate::multihost::workers::{WorkerHost, WorkerSpec};

    fn cfg() -> MultihostConfig {
        MultihostConfig {
            gateway: "http://10.77.0.1:8080".to_owned(),
            worker: WorkerSpec {
                bin: "classifier-worker".into(),
                pool: "multihost".to_owned(),
                cost: Duration::from_millis(20),
                max_batch: 1,
            },
            hosts: vec!["h2=nats://10.77.0.2:4222".parse::<WorkerHost>().unwrap()],
            monitors: Vec::new(),
            counts: vec![1, 2],
            in_flight: 8,
            warmup: Duration::ZERO,
            settle: Duration::ZERO,
            window: Duration::from_secs(1),
            churn_step: Duration::from_secs(1),
            min_efficiency: 0.75,
            request_timeout: Duration::from_secs(5),
            ready_within: Duration::from_secs(5),
            drain_within: Duration::from_secs(5),
            logs: ".".into(),
        }
    }

    /// `n` OK requests spread over second `from`..`from + 1`.
    fn samples(from: u64, n: u64, outcome: &Outcome) -> Vec<Sample> {
        (0..n)
            .map(|i| {
                let end = Duration::from_secs(from) + Duration::from_millis(i * 1000 / n);
                Sample {
                    start: end.saturating_sub(Duration::from_millis(30)),
                    end,
                    outcome: outcome.clone(),
                    classify_ms: Some(21.0),
                }
            })
            .collect()
    }

    fn observations(first: u64, second: u64, outcome: &Outcome) -> Observations {
        let mut all = samples(0, first, &Outcome::Ok);
        all.extend(samples(1, second, outcome));
        let phase = |name: &str, workers, start| Phase {
            name: name.to_owned(),
            workers,
            scaling: true,
            start: Duration::from_secs(start),
            end: Duration::from_secs(start + 1),
        };
        Observations {
            samples: all,
            phases: vec![phase("1 worker", 1, 0), phase("2 workers", 2, 1)],
            events: Vec::new(),
            workers: vec![WorkerRecord {
                id: 1,
                netns: "h2".to_owned(),
                nats_url: "nats://10.77.0.2:4222".to_owned(),
                started: Duration::ZERO,
                ready: Duration::ZERO,
                terminated: Some(Duration::from_secs(2)),
                terminated_under_load: true,
                exit_code: Some(0),
                drain_ms: Some(40),
                served: Some(first + second),
            }],
            nodes: Vec::new(),
            load_span: (Duration::ZERO, Duration::from_secs(2)),
        }
    }

    fn header() -> ReportHeader {
        ReportHeader::detect("multihost".to_owned())
    }

    #[test]
    fn linear_growth_without_errors_passes() {
        let r = Report::new(&cfg(), &observations(50, 98, &Outcome::Ok), header());
        assert!(r.passed, "{:#?}", r.checks);
        assert_eq!(r.phases[1].completed, 98);
        assert!((r.phases[1].efficiency.unwrap() - 0.98).abs() < 1e-9);
        assert!(r.markdown().contains("PASSED"));
    }

    #[test]
    fn flat_throughput_fails() {
        let r = Report::new(&cfg(), &observations(50, 55, &Outcome::Ok), header());
        assert!(!r.passed);
        let failed: Vec<&str> = r
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            failed,
            [
                "efficiency with 2 workers",
                "throughput grows 1 → 2 workers"
            ]
        );
    }

    #[test]
    fn one_degraded_or_failed_answer_fails() {
        let degraded = Outcome::Degraded("classify=timeout".to_owned());
        let r = Report::new(&cfg(), &observations(50, 98, &degraded), header());
        assert!(!r.passed);
        assert_eq!(r.degraded_total, 98);
        let r = Report::new(&cfg(), &observations(50, 98, &Outcome::Http(502)), header());
        assert!(!r.passed);
        assert_eq!(r.errors["HTTP 502"], 98);
        assert_eq!(r.phases[1].errors, 98);
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let lat: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile_ms(&lat, 0.5), Some(50.0));
        assert_eq!(quantile_ms(&lat, 0.99), Some(99.0));
        assert_eq!(quantile_ms(&[], 0.5), None);
    }
}
