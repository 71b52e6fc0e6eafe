//! The mesh benchmarks (reports, never pass/fail tests): the NATS classify hop against an instant
//! in-process responder ([`hop`]) and classifier-worker throughput as workers are added, with the
//! simulated fixed-cost model ([`scale`]). Both print markdown headed by the date, CPU, core
//! count, exact command line and `nats-server` version, and serialise to JSON.

mod fleet;
pub mod hop;
pub mod scale;

use std::collections::BTreeMap;
use std::process::Command;

use hdrhistogram::Histogram;
use routemesh_test_support::nats_server::NatsServerError;
use serde::Serialize;

pub use crate::bench::{HostInfo, shell_command};

/// Highest latency a histogram tracks: 10 minutes, in microseconds.
const MAX_MICROS: u64 = 600_000_000;

/// The header that marks a NATS micro service error reply, with an HTTP-like code.
pub const SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";

/// Why a mesh benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum MeshBenchError {
    #[error("invalid benchmark settings: {0}")]
    Config(String),
    #[error(transparent)]
    NatsServer(#[from] NatsServerError),
    #[error("cannot connect to NATS at {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("NATS: {0}")]
    Nats(String),
    #[error("cannot start the async runtime or a thread: {0}")]
    Runtime(std::io::Error),
    #[error("cannot create a histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    #[error("cannot merge histograms: {0}")]
    Merge(#[from] hdrhistogram::AdditionError),
    #[error("{0}")]
    Worker(String),
    #[error("the first request was not answered: {0}")]
    Preflight(String),
    #[error("interrupted (SIGINT/SIGTERM); everything started was stopped")]
    Interrupted,
}

/// What every report starts with.
#[derive(Debug, Clone, Serialize)]
pub struct ReportHeader {
    pub host: HostInfo,
    /// The command line, quoted for a POSIX shell.
    pub command: String,
    /// First line of `nats-server --version`, or `unknown`.
    pub nats_server: String,
    /// 1, 5 and 15-minute load averages when the run started (`/proc/loadavg`): other work on
    /// the machine moves the numbers.
    pub load_average: String,
}

impl ReportHeader {
    /// Detects the host and the `nats-server` version.
    pub fn detect(command: String) -> Self {
        Self {
            host: HostInfo::detect(),
            command,
            nats_server: nats_server_version(),
            load_average: load_average(),
        }
    }

    fn write_markdown(&self, out: &mut String, title: &str) -> std::fmt::Result {
        use std::fmt::Write as _;
        writeln!(out, "# {title}\n")?;
        writeln!(out, "- date: {}", self.host.date)?;
        writeln!(out, "- CPU: {} ({} cores)", self.host.cpu, self.host.cores)?;
        writeln!(out, "- load average at start: {}", self.load_average)?;
        writeln!(out, "- nats-server: {}", self.nats_server)?;
        writeln!(out, "- command: `{}`", self.command)
    }
}

/// First line of `nats-server --version` (PATH, then the usual Debian place), or `unknown`.
pub fn nats_server_version() -> String {
    [
        "nats-server",
        "/usr/sbin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .iter()
    .find_map(|bin| {
        let out = Command::new(bin).arg("--version").output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().next()?.trim().to_owned();
        (!line.is_empty()).then_some(line)
    })
    .unwrap_or_else(|| "unknown".to_owned())
}

/// The first three fields of `/proc/loadavg` (1, 5, 15 minutes), or `unknown`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Parses a comma-separated list of positive counts, e.g. `1,2,4,8` (spaces allowed).
pub fn parse_counts(s: &str) -> Result<Vec<usize>, String> {
    let counts = s
        .split(',')
        .map(|item| {
            let item = item.trim();
            match item.parse::<usize>() {
                Ok(0) => Err("counts must be at least 1".to_owned()),
                Ok(n) => Ok(n),
                Err(_) => Err(format!("`{item}` is not a count; use e.g. 1,2,4,8")),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    if counts.is_empty() {
        return Err("give at least one count".to_owned());
    }
    Ok(counts)
}

/// Latency summary of one histogram (recorded in µs); `None` where nothing was recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_us: Option<u64>,
    pub p90_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub p999_us: Option<u64>,
    pub max_us: Option<u64>,
    pub mean_us: Option<f64>,
}

impl Latency {
    /// Summarises `h`.
    pub fn of(h: &Histogram<u64>) -> Self {
        let some = (!h.is_empty()).then_some(h);
        let q = |q: f64| some.map(|h| h.value_at_quantile(q));
        Self {
            count: h.len(),
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: some.map(Histogram::max),
            mean_us: some.map(Histogram::mean),
        }
    }
}

/// A histogram of microseconds up to 10 minutes, 3 significant digits.
fn histogram() -> Result<Histogram<u64>, MeshBenchError> {
    Ok(Histogram::new_with_bounds(1, MAX_MICROS, 3)?)
}

/// Microseconds of `d`, at least 1 (the histogram's lowest value), saturating.
fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Failed requests by kind.
pub type Errors = BTreeMap<String, u64>;

/// The kind of a failed NATS request, as a short label.
fn request_error_kind(e: &async_nats::RequestError) -> String {
    use async_nats::RequestErrorKind as K;
    match e.kind() {
        K::TimedOut => "timeout",
        K::NoResponders => "no responders",
        K::InvalidSubject => "invalid subject",
        K::MaxPayloadExceeded => "payload too large",
        K::Other => "other",
    }
    .to_owned()
}

/// The service error of a reply (`Nats-Service-Error-Code`), if it is one.
fn service_error(msg: &async_nats::Message) -> Option<String> {
    let code = msg.headers.as_ref()?.get(SERVICE_ERROR_CODE)?;
    Some(format!("service error {}", code.as_str()))
}

/// Connects a client named `name`, with `timeout` as its request timeout.
async fn connect(
    url: &str,
    name: &str,
    timeout: std::time::Duration,
) -> Result<async_nats::Client, MeshBenchError> {
    routemesh_runtime::install_tls_provider();
    async_nats::ConnectOptions::new()
        .name(name)
        .request_timeout(Some(timeout))
        .connect(url)
        .await
        .map_err(|e| MeshBenchError::Connect {
            url: url.to_owned(),
            detail: e.to_string(),
        })
}

/// Runs `work` on a fresh single-threaded runtime; SIGINT/SIGTERM drop it (stopping whatever it
/// started) and give [`MeshBenchError::Interrupted`].
fn block_on_interruptible<T>(
    runtime: &tokio::runtime::Runtime,
    work: impl Future<Output = Result<T, MeshBenchError>>,
) -> Result<T, MeshBenchError> {
    runtime.block_on(async {
        tokio::select! {
            result = work => result,
            () = routemesh_runtime::shutdown_signal() => Err(MeshBenchError::Interrupted),
        }
    })
}

/// A rate for the tables: whole requests per second, or `n/a`.
fn fmt_rate(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".to_owned();
    }
    format!("{x:.0}")
}

fn fmt_ms(us: Option<u64>) -> String {
    us.map_or_else(
        || "n/a".to_owned(),
        |us| format!("{:.3}", us as f64 / 1000.0),
    )
}

fn fmt_errors(errors: &Errors) -> String {
    if errors.is_empty() {
        return "0".to_owned();
    }
    errors
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse_as_comma_separated_positive_numbers() {
        assert_eq!(parse_counts("1,2,4,8").unwrap(), vec![1, 2, 4, 8]);
        assert_eq!(parse_counts(" 64 ").unwrap(), vec![64]);
        assert_eq!(parse_counts("1, 64").unwrap(), vec![1, 64]);
        for bad in ["", "1,,2", "0", "1,x", "-1", "1.5"] {
            assert!(parse_counts(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn latency_of_an_empty_histogram_is_missing() {
        let mut h = histogram().unwrap();
        assert!(Latency::of(&h).p50_us.is_none());
        for us in [100, 200, 300] {
            h.record(us).unwrap();
        }
        let l = Latency::of(&h);
        assert_eq!((l.count, l.p50_us, l.max_us), (3, Some(200), Some(300)));
        assert_eq!(fmt_ms(l.p50_us), "0.200");
    }
}
