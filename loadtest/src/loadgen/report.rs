//! A run's report: the serialisable summary written as `report.json` and its markdown
//! rendering (`report.md`, also printed at the end of a run).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::Run;
use super::record::Second;
use super::scenario::{Arrival, Scenario};
use crate::bench::HostInfo;

/// The machine the generator ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `model name` from `/proc/cpuinfo`, or `unknown`.
    pub cpu: String,
    /// Cores available to the generator.
    pub cores: usize,
}

/// A latency summary in milliseconds; `None` where nothing was recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub count: u64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    #[serde(rename = "p99.9")]
    pub p99_9: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
}

impl Summary {
    /// Summarises a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        let some = (!h.is_empty()).then_some(h);
        let q = |q: f64| some.map(|h| ms(h.value_at_quantile(q)));
        Self {
            count: h.len(),
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p99_9: q(0.999),
            max: some.map(|h| ms(h.max())),
            mean: some.map(|h| h.mean() / 1000.0),
        }
    }
}

/// Request counts of the measured part.
#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    /// Slots the schedule reached.
    pub scheduled: u64,
    /// Requests sent (scheduled minus dropped).
    pub sent: u64,
    pub dropped: u64,
    /// Answers with any status.
    pub answered: u64,
    /// Answers with a 2xx status whose body was read to the end.
    pub ok: u64,
    /// Failed requests of every kind, dropped ones included.
    pub errors: u64,
    /// Requests sent during the warm-up (not recorded).
    pub warmup_sent: u64,
}

/// One second of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TimelinePoint {
    /// Seconds since the start of the measured part.
    pub second: u64,
    /// Requests whose intended send time fell in this second: the target rate.
    pub scheduled: u64,
    /// Successful requests completed in this second: the achieved throughput.
    pub ok: u64,
    pub errors: u64,
    /// Latency (from the intended send time) of this second's successes, ms.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl TimelinePoint {
    fn new(second: u64, s: &Second) -> Self {
        Self {
            second,
            scheduled: s.scheduled,
            ok: s.ok,
            errors: s.errors,
            p50_ms: s.p50_us.map(ms),
            p99_ms: s.p99_us.map(ms),
        }
    }
}

/// The whole report; serialised as `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub command: String,
    pub machine: Machine,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// Stopped early (Ctrl-C).
    pub interrupted: bool,
    /// From the start of the measured part to the end of its schedule, s.
    pub schedule_s: f64,
    /// From the start of the measured part to the last request's end, s.
    pub elapsed_s: f64,
    /// Measured requests the profile plans per second of its duration.
    pub target_rate_rps: Option<f64>,
    /// Requests sent per second of the schedule.
    pub sent_rate_rps: Option<f64>,
    /// Successful requests per second, up to the last request's end.
    pub throughput_rps: Option<f64>,
    pub counts: Counts,
    /// Failures by kind: `connect`, `timeout`, `http_<status>`, `body`, `request`, `dropped`.
    pub errors: BTreeMap<String, u64>,
    /// The same with statuses grouped: `http_4xx`, `http_5xx`.
    pub error_classes: BTreeMap<String, u64>,
    /// From the intended send time to the last body byte (successful requests).
    pub latency_ms: Summary,
    /// From the actual send to the last body byte (successful requests).
    pub service_time_ms: Summary,
    /// From the actual send to the first body byte (successful streaming requests).
    pub first_byte_ms: Summary,
    /// From the intended to the actual send: scheduler lag plus any wait for an in-flight slot.
    pub send_delay_ms: Summary,
    /// Answers by `x-routemesh-model` (`(none)`: without the header).
    pub models: BTreeMap<String, u64>,
    /// Answers by `x-routemesh-decision`.
    pub decisions: BTreeMap<String, u64>,
    pub timeline: Vec<TimelinePoint>,
}

impl Report {
    /// Summarises `run` of `scenario`, started by `command` on `host`.
    pub fn new(scenario: &Scenario, run: &Run, command: String, host: HostInfo) -> Self {
        let r = &run.recorder;
        let per_sec = |n: u64, secs: f64| (secs > 0.0).then(|| n as f64 / secs);
        let dropped = r
            .errors
            .get(&super::ErrorKind::Dropped)
            .copied()
            .unwrap_or(0);
        let mut error_classes = BTreeMap::new();
        for (kind, n) in &r.errors {
            *error_classes.entry(kind.class()).or_default() += n;
        }
        let target_rate_rps = match scenario.duration() {
            Some(d) => per_sec(scenario.expected_requests(), d.as_secs_f64()),
            None => scenario.stages.first().map(|s| s.rate),
        };
        let schedule_s = run.schedule_span.as_secs_f64();
        let elapsed_s = run.elapsed.as_secs_f64();
        Self {
            scenario: scenario.clone(),
            command,
            machine: Machine {
                cpu: host.cpu,
                cores: host.cores,
            },
            started_at: humantime::format_rfc3339_seconds(run.started_at).to_string(),
            interrupted: run.interrupted,
            schedule_s,
            elapsed_s,
            target_rate_rps,
            sent_rate_rps: per_sec(r.scheduled - dropped, schedule_s),
            throughput_rps: per_sec(r.ok, elapsed_s),
            counts: Counts {
                scheduled: r.scheduled,
                sent: r.scheduled - dropped,
                dropped,
                answered: r.answered,
                ok: r.ok,
                errors: r.error_count(),
                warmup_sent: r.warmup_sent,
            },
            errors: r.errors.iter().map(|(k, n)| (k.label(), *n)).collect(),
            error_classes,
            latency_ms: Summary::of(&r.latency),
            service_time_ms: Summary::of(&r.service),
            first_byte_ms: Summary::of(&r.first_byte),
            send_delay_ms: Summary::of(&r.send_delay),
            models: r.models.clone(),
            decisions: r.decisions.clone(),
            timeline: (0u64..)
                .zip(r.timeline())
                .map(|(s, second)| TimelinePoint::new(s, &second))
                .collect(),
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
        let s = &self.scenario;
        writeln!(out, "# loadgen: {}\n", s.name)?;
        writeln!(out, "- Started: {}", self.started_at)?;
        writeln!(
            out,
            "- Machine: {} ({} cores available)",
            self.machine.cpu, self.machine.cores
        )?;
        writeln!(out, "- Command: `{}`", self.command)?;
        writeln!(out, "- Target: {}", s.chat_url())?;
        let arrival = match s.arrival {
            Arrival::Constant => "constant".to_owned(),
            Arrival::Poisson => format!("Poisson (seed {})", s.seed),
        };
        writeln!(
            out,
            "- Open loop, {arrival} arrivals; profile: {}; warm-up {}",
            s.profile_text(),
            humantime::format_duration(s.warmup)
        )?;
        writeln!(
            out,
            "- At most {} in flight and {} waiting for a slot (more are dropped); timeout {}",
            s.max_in_flight,
            s.max_queue,
            humantime::format_duration(s.timeout)
        )?;
        if self.interrupted {
            writeln!(out, "- **Interrupted**: the schedule was stopped early.")?;
        }

        let c = &self.counts;
        writeln!(out, "\n## Requests\n")?;
        writeln!(
            out,
            "| scheduled | sent | dropped | answered | ok | errors | target req/s | sent req/s | ok/s |"
        )?;
        writeln!(out, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|")?;
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.scheduled,
            c.sent,
            c.dropped,
            c.answered,
            c.ok,
            c.errors,
            fmt_rate(self.target_rate_rps),
            fmt_rate(self.sent_rate_rps),
            fmt_rate(self.throughput_rps),
        )?;
        writeln!(
            out,
            "\nMeasured over {:.1} s of schedule ({:.1} s to the last answer); {} warm-up \
             requests not recorded.",
            self.schedule_s, self.elapsed_s, c.warmup_sent
        )?;

        writeln!(out, "\n## Latency (ms, successful requests)\n")?;
        writeln!(
            out,
            "| measure | n | p50 | p90 | p99 | p99.9 | max | mean |"
        )?;
        writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|")?;
        for (name, summary) in [
            ("latency (from intended send)", &self.latency_ms),
            ("service time (from actual send)", &self.service_time_ms),
            ("time to first byte (streams)", &self.first_byte_ms),
            ("send delay (intended → actual)", &self.send_delay_ms),
        ] {
            writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} | {} |",
                summary.count,
                fmt_ms(summary.p50),
                fmt_ms(summary.p90),
                fmt_ms(summary.p99),
                fmt_ms(summary.p99_9),
                fmt_ms(summary.max),
                fmt_ms(summary.mean),
            )?;
        }

        writeln!(out, "\n## Errors by kind\n")?;
        if self.errors.is_empty() {
            writeln!(out, "none")?;
        } else {
            writeln!(out, "| kind | requests |")?;
            writeln!(out, "|---|--:|")?;
            for (kind, n) in &self.errors {
                writeln!(out, "| {kind} | {n} |")?;
            }
        }

        for (title, counts) in [
            ("Answers by `x-routemesh-model`", &self.models),
            ("Answers by `x-routemesh-decision`", &self.decisions),
        ] {
            writeln!(out, "\n## {title}\n")?;
            if counts.is_empty() {
                writeln!(out, "none")?;
                continue;
            }
            writeln!(out, "| value | answers |")?;
            writeln!(out, "|---|--:|")?;
            for (name, n) in counts {
                writeln!(out, "| {name} | {n} |")?;
            }
        }
        Ok(())
    }
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"))
}

fn fmt_rate(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}"))
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}
