//! `loadgen`: an OPEN-LOOP load generator for the gateway's OpenAI-compatible
//! `POST /v1/chat/completions`.
//!
//! Requests are sent at intended times fixed in advance by the scenario's rate profile
//! ([`Schedule`]), whatever earlier requests are doing, and latency is measured from that
//! intended time, so a slow server cannot hide its slowness by slowing the client down
//! (no coordinated omission). Service time, from the actual send, is recorded beside it.
//! At most `max_in_flight` requests are in flight and `max_queue` wait for a slot; an arrival
//! beyond that is dropped and counted as an error of kind `dropped`, never delayed.
//!
//! One tokio runtime: the scheduler runs on one of its blocking threads (a thread sleep is
//! precise to tens of microseconds) and spawns each request as a task on it.

mod plot;
mod progress;
mod record;
mod report;
mod request;
mod scenario;
mod schedule;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use reqwest::Client;
use tokio::sync::{Notify, Semaphore, watch};

use self::progress::{Counters, Progress};
use self::request::{Mix, Variant};

pub use self::plot::latency_svg;
pub use self::record::{ErrorKind, MAX_NAMES, NONE, OTHER, Outcome, Recorder, Second};
pub use self::report::{Counts, Machine, Report, Summary, TimelinePoint};
pub use self::request::{HEADER_DECISION, HEADER_MODEL};
pub use self::scenario::{
    Arrival, DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT, MAX_IN_FLIGHT, MixEntry, Overrides, Problem,
    Scenario, ScenarioErrors, Stage,
};
pub use self::schedule::{Schedule, Slot};

/// Where runs are written unless `--out` says otherwise (relative to the working directory:
/// run from the repository root).
pub const DEFAULT_REPORTS_DIR: &str = "loadtest/reports/loadgen";

/// How often a sleeping scheduler checks whether it was told to stop.
const STOP_POLL: Duration = Duration::from_millis(50);

/// How a run is driven, besides its scenario.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// Show the progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
    /// When this becomes `true`, no more requests are sent; those in flight are awaited.
    pub stop: Option<watch::Receiver<bool>>,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct Run {
    pub recorder: Recorder,
    pub started_at: SystemTime,
    /// From the start of the measured part to the end of the schedule.
    pub schedule_span: Duration,
    /// From the start of the measured part to the last request's end.
    pub elapsed: Duration,
    /// Stopped early through [`RunOptions::stop`].
    pub interrupted: bool,
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {errors}", path.display())]
    Invalid {
        path: PathBuf,
        errors: ScenarioErrors,
    },
}

/// Why a run could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("cannot create a histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the scheduler thread failed: {0}")]
    Scheduler(tokio::task::JoinError),
    #[error("cannot draw the plot: {0}")]
    Plot(String),
}

/// Reads and validates a scenario file; a file without `name` is named after its stem.
pub fn load_scenario(path: &Path, overrides: &Overrides) -> Result<Scenario, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Scenario::from_yaml(&text, &stem, overrides).map_err(|errors| LoadError::Invalid {
        path: path.to_owned(),
        errors,
    })
}

/// What the request tasks share.
#[derive(Debug)]
struct Shared {
    client: Client,
    url: String,
    variants: Arc<[Variant]>,
    recorder: Mutex<Recorder>,
    limit: Semaphore,
    /// Requests spawned and not finished (waiting for a slot or in flight).
    pending: AtomicUsize,
    idle: Notify,
    counters: Arc<Counters>,
    t0: Instant,
}

impl Shared {
    fn recorder(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.recorder.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs `scenario` against its target: the warm-up, then the measured profile, then waits for
/// the requests still in flight (each bounded by the scenario's timeout).
pub async fn run(scenario: &Scenario, opts: RunOptions) -> Result<Run, LoadgenError> {
    routemesh_runtime::install_tls_provider();
    let client = Client::builder()
        .timeout(scenario.timeout)
        .tcp_nodelay(true)
        .pool_max_idle_per_host(scenario.max_in_flight)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(LoadgenError::Client)?;
    let mix = Mix::new(scenario);
    let counters = Arc::new(Counters::default());
    let started_at = SystemTime::now();
    let shared = Arc::new(Shared {
        client,
        url: scenario.chat_url(),
        variants: mix.variants(),
        recorder: Mutex::new(Recorder::new(scenario.warmup)?),
        limit: Semaphore::new(scenario.max_in_flight),
        pending: AtomicUsize::new(0),
        idle: Notify::new(),
        counters: Arc::clone(&counters),
        t0: Instant::now(),
    });
    let warmup_expected = (scenario.stages.first().map_or(0.0, |s| s.rate)
        * scenario.warmup.as_secs_f64())
    .ceil() as u64;
    let progress = Progress::start(
        warmup_expected + scenario.expected_requests(),
        opts.progress,
        Arc::clone(&counters),
    );
    let driver = {
        let shared = Arc::clone(&shared);
        let rt = tokio::runtime::Handle::current();
        let schedule = Schedule::new(scenario);
        let admit = scenario.max_in_flight.saturating_add(scenario.max_queue);
        let stop = opts.stop;
        tokio::task::spawn_blocking(move || {
            drive(&shared, &rt, schedule, mix, admit, stop.as_ref())
        })
    };
    let interrupted = driver.await.map_err(LoadgenError::Scheduler)?;
    let schedule_end = shared.t0.elapsed();
    while shared.pending.load(Ordering::Acquire) > 0 {
        shared.idle.notified().await;
    }
    let drained = shared.t0.elapsed();
    progress.finish(&counters);
    let recorder = shared.recorder().clone();
    Ok(Run {
        recorder,
        started_at,
        schedule_span: schedule_end.saturating_sub(scenario.warmup),
        elapsed: drained.saturating_sub(scenario.warmup),
        interrupted,
    })
}

/// The scheduler, on a thread of its own: walks the schedule, sleeping until each intended
/// send time, and spawns each request on the runtime (or drops it if too many are pending).
/// Returns whether it was stopped early.
fn drive(
    shared: &Arc<Shared>,
    rt: &tokio::runtime::Handle,
    schedule: Schedule,
    mut mix: Mix,
    admit: usize,
    stop: Option<&watch::Receiver<bool>>,
) -> bool {
    for slot in schedule {
        if !sleep_until(shared.t0 + slot.at, stop) {
            return true;
        }
        let variant = mix.pick();
        let counters = &shared.counters;
        if shared.pending.load(Ordering::Acquire) >= admit {
            shared.recorder().scheduled(&slot, true);
            Counters::add(&counters.done);
            Counters::add(&counters.errors);
            continue;
        }
        shared.recorder().scheduled(&slot, false);
        shared.pending.fetch_add(1, Ordering::AcqRel);
        Counters::add(&counters.sent);
        rt.spawn(send_one(Arc::clone(shared), variant, slot));
    }
    false
}

/// Sleeps the thread until `when`; `false` if told to stop first. A thread sleep wakes within
/// tens of microseconds of its deadline, where tokio's timer has millisecond ticks, and this
/// lag would count in every latency measured from the intended time.
fn sleep_until(when: Instant, stop: Option<&watch::Receiver<bool>>) -> bool {
    loop {
        if stop.is_some_and(|s| *s.borrow()) {
            return false;
        }
        let now = Instant::now();
        if when <= now {
            return true;
        }
        std::thread::sleep((when - now).min(STOP_POLL));
    }
}

/// One request's task: waits for an in-flight slot, sends, records.
async fn send_one(shared: Arc<Shared>, variant: usize, slot: Slot) {
    if let Some(v) = shared.variants.get(variant) {
        let outcome = {
            // The semaphore is never closed; were it, sending anyway is the harmless choice.
            let _permit = shared.limit.acquire().await.ok();
            request::send(&shared.client, &shared.url, v, slot, shared.t0).await
        };
        if outcome.result.is_err() {
            Counters::add(&shared.counters.errors);
        }
        Counters::add(&shared.counters.done);
        shared.recorder().record(&outcome);
    }
    if shared.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
        shared.idle.notify_one();
    }
}

/// The files one run writes.
#[derive(Debug, Clone)]
pub struct Written {
    pub dir: PathBuf,
    pub json: PathBuf,
    pub markdown: PathBuf,
    pub svg: PathBuf,
}

/// `{reports}/{name}-{UTC timestamp}`, e.g. `loadtest/reports/loadgen/smoke-20250101T120000Z`;
/// `-2`, `-3`, … is appended if that folder already exists.
pub fn default_out_dir(reports: &Path, name: &str, started_at: SystemTime) -> PathBuf {
    let stamp: String = humantime::format_rfc3339_seconds(started_at)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let base = format!("{name}-{stamp}");
    let mut dir = reports.join(&base);
    let mut n = 2;
    while dir.exists() {
        dir = reports.join(format!("{base}-{n}"));
        n += 1;
    }
    dir
}

/// Writes `report.json`, `report.md` and `latency.svg` into `dir` (created if needed).
pub fn write_outputs(dir: &Path, report: &Report) -> Result<Written, LoadgenError> {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| LoadgenError::Write {
            path: path.clone(),
            source,
        })?;
        Ok::<_, LoadgenError>(path)
    };
    std::fs::create_dir_all(dir).map_err(|source| LoadgenError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let json = serde_json::to_string_pretty(report).map_err(|e| LoadgenError::Write {
        path: dir.join("report.json"),
        source: std::io::Error::other(e),
    })?;
    let svg = latency_svg(report)?;
    Ok(Written {
        dir: dir.to_owned(),
        json: write("report.json", &(json + "\n"))?,
        markdown: write("report.md", &report.to_markdown())?,
        svg: write("latency.svg", &svg)?,
    })
}
