//! The progress bar on stderr: sent, completed and failed requests and the rate achieved over
//! the last second, redrawn a few times a second; hidden when stderr is not a terminal.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

/// How often the bar is refreshed.
const TICK: Duration = Duration::from_millis(250);
/// The window the "current rate" is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// Counters the run updates and the bar reads (warm-up included).
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) sent: AtomicU64,
    /// Requests that finished, failed ones and dropped ones included.
    pub(super) done: AtomicU64,
    pub(super) errors: AtomicU64,
}

impl Counters {
    pub(super) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A running progress bar; [`Progress::finish`] stops it.
#[derive(Debug)]
pub(super) struct Progress {
    bar: ProgressBar,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts a bar over `expected` requests, drawn only if `show` and stderr is a terminal.
    pub(super) fn start(expected: u64, show: bool, counters: Arc<Counters>) -> Self {
        let target = if show && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(expected), target);
        let style = ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:32}] {pos}/{len} done  {msg}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        if bar.is_hidden() {
            return Self { bar, ticker: None };
        }
        let ticker = tokio::spawn(tick(bar.clone(), counters));
        Self {
            bar,
            ticker: Some(ticker),
        }
    }

    /// Draws the final state and stops refreshing.
    pub(super) fn finish(self, counters: &Counters) {
        if let Some(ticker) = self.ticker {
            ticker.abort();
        }
        draw(&self.bar, counters, None);
        self.bar.abandon();
    }
}

async fn tick(bar: ProgressBar, counters: Arc<Counters>) {
    let mut window = (Instant::now(), Counters::get(&counters.done));
    let mut rate = None;
    loop {
        tokio::time::sleep(TICK).await;
        let done = Counters::get(&counters.done);
        let elapsed = window.0.elapsed();
        if elapsed >= RATE_WINDOW {
            rate = Some(done.saturating_sub(window.1) as f64 / elapsed.as_secs_f64());
            window = (Instant::now(), done);
        }
        draw(&bar, &counters, rate);
    }
}

fn draw(bar: &ProgressBar, counters: &Counters, rate: Option<f64>) {
    let done = Counters::get(&counters.done);
    bar.set_position(done);
    let rate = rate.map_or_else(String::new, |r| format!("  {r:.0} req/s"));
    bar.set_message(format!(
        "sent {}  errors {}{rate}",
        Counters::get(&counters.sent),
        Counters::get(&counters.errors),
    ));
}
