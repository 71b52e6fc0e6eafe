//! Hedged classify requests. A NATS request that has no answer after a
//! delay learned from the pool's recent latencies is sent again: the queue
//! group hands it to a worker at random, and a SIGKILLed worker's
//! subscription is gone with its TCP connection, so the copy reaches a live
//! one. The first answer wins; everything stays within the one classify
//! deadline, and a token bucket keeps the extra requests to a share of the
//! traffic (gRPC's retry throttling, in spirit) so a pool that is slow
//! because it is overloaded is not sent twice the load.
//!
//! [`hedged`] is generic over what one attempt is, so the policy is tested
//! here on paused time without NATS.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use routemesh_common::config::{Hedge, HedgeAfter};
use tokio::time::Instant;

use super::ClassifyFailure;

/// How many answered latencies the automatic delay is estimated from.
const WINDOW: usize = 128;
/// Fewer answers than this: the pool is unknown and the delay is a quarter
/// of the deadline.
const MIN_SAMPLES: usize = 16;
/// The automatic delay is this many times the recent p95.
const P95_FACTOR: u32 = 2;
/// The shortest automatic delay.
const FLOOR: Duration = Duration::from_millis(50);
/// The budget is a share of this many requests: at most that share of them
/// can be saved up for a burst (a killed worker's held requests, all hedged
/// at once) — 100 hedges with a budget of 10%.
const BUDGET_WINDOW: f64 = 1000.0;
/// The fewest hedges saved up, whatever the budget.
const MIN_BURST: f64 = 10.0;
/// Most requests for one classify call: the first and two hedges (a hedge
/// sent before the worker died may reach it too).
const MAX_ATTEMPTS: u32 = 3;

/// One pool's hedging policy and what it has learned (shared by clones of
/// the pool handle).
#[derive(Debug)]
pub(super) struct Hedging {
    after: HedgeAfter,
    /// Tokens earned per request: the budget as a fraction.
    refill: f64,
    /// Most tokens saved up.
    burst: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Latencies of recent answered attempts, each from its own sending,
    /// newest last.
    recent: VecDeque<Duration>,
    /// Hedges that may be sent now.
    tokens: f64,
}

/// What hedging did for one classify call (metrics, logs).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Report {
    /// Extra requests sent.
    pub(super) sent: u32,
    /// The answer used came from one of them.
    pub(super) won: bool,
    /// A hedge was due but the budget had none left.
    pub(super) throttled: bool,
    /// How long the answer used took, from its own attempt's sending (for
    /// [`Hedging::learn`]).
    pub(super) answered_in: Option<Duration>,
}

impl Hedging {
    pub(super) fn new(config: Hedge) -> Self {
        let refill = f64::from(config.budget_percent.clamp(1, 100)) / 100.0;
        let burst = (refill * BUDGET_WINDOW).max(MIN_BURST);
        Self {
            after: config.after,
            refill,
            burst,
            state: Mutex::new(State {
                recent: VecDeque::with_capacity(WINDOW),
                tokens: burst,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enabled(&self) -> bool {
        self.after != HedgeAfter::Off
    }

    /// A request is being sent: the budget grows by its share of a hedge.
    fn requested(&self) {
        let mut s = self.lock();
        s.tokens = (s.tokens + self.refill).min(self.burst);
    }

    /// Spends one hedge of the budget, if there is one.
    fn take(&self) -> bool {
        let mut s = self.lock();
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// What a call of `texts` texts teaches the automatic delay: the
    /// latency of its answered attempt, from that attempt's own sending
    /// (failures and abandoned attempts say nothing about a healthy
    /// worker's speed, and a hedge's answer is not its first attempt's wait
    /// plus its own). Only a one-prompt call is a sample: a batch (the
    /// route examples, 32 to a call, at start and on reload) takes longer
    /// by its size and would hold the delay near its cap for the next
    /// requests.
    pub(super) fn learn(&self, report: &Report, texts: usize) {
        if let (1, Some(latency)) = (texts, report.answered_in) {
            self.observe(latency);
        }
    }

    fn observe(&self, latency: Duration) {
        let mut s = self.lock();
        if s.recent.len() == WINDOW {
            s.recent.pop_front();
        }
        s.recent.push_back(latency);
    }

    /// How long to wait for an answer before hedging; `None`: never.
    fn delay(&self, deadline: Duration) -> Option<Duration> {
        match self.after {
            HedgeAfter::Off => None,
            HedgeAfter::Fixed(d) => (d < deadline).then_some(d),
            HedgeAfter::Auto => {
                let cap = deadline / 2;
                let s = self.lock();
                if s.recent.len() < MIN_SAMPLES {
                    return Some((deadline / 4).max(FLOOR).min(cap));
                }
                let mut sorted: Vec<Duration> = s.recent.iter().copied().collect();
                drop(s);
                let rank = (sorted.len() * 95 / 100).min(sorted.len() - 1);
                let (_, p95, _) = sorted.select_nth_unstable(rank);
                Some((*p95 * P95_FACTOR).max(FLOOR).min(cap))
            }
        }
    }
}

/// A quick failure after which another worker may well answer: this one
/// is overloaded (503) or broke (a 5xx other than its own deadline), or
/// the server knew no worker at that moment (one leaving as another joins).
/// A 4xx or a transport error would be the same from any worker; a timeout
/// leaves no time.
fn resend_at_once(failure: &ClassifyFailure) -> bool {
    match failure {
        ClassifyFailure::Overloaded | ClassifyFailure::NoResponders(_) => true,
        ClassifyFailure::Worker { code, .. } => *code >= 500 && *code != 504,
        ClassifyFailure::Timeout(_) | ClassifyFailure::Transport(_) => false,
    }
}

/// Runs `ask` (one attempt, given the time left) and hedges it as `hedging`
/// says, all within `deadline`: the first answer wins (its latency is in
/// the report, for the caller to [`Hedging::learn`] from). A failure worth
/// another worker ([`resend_at_once`]) is sent again at once; another
/// failure waits for the attempts still in flight, or is the result when
/// there is none; so is the last failure when no attempt is left.
pub(super) async fn hedged<T, F, Fut>(
    hedging: &Hedging,
    deadline: Duration,
    mut ask: F,
) -> (Result<T, ClassifyFailure>, Report)
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<T, ClassifyFailure>>,
{
    let start = Instant::now();
    let end = start + deadline;
    hedging.requested();
    let delay = hedging.delay(deadline);
    let after_delay = |from: Instant| delay.map(|d| from + d).filter(|at| *at < end);
    let attempt = |n: u32, fut: Fut| async move {
        let sent = Instant::now();
        let result = fut.await;
        (n, sent.elapsed(), result)
    };
    let mut report = Report::default();
    let mut in_flight = FuturesUnordered::new();
    in_flight.push(attempt(0, ask(deadline)));
    let mut attempts = 1;
    let mut next_hedge = after_delay(start);
    let mut last = ClassifyFailure::Timeout(deadline);
    let until_end = tokio::time::sleep_until(end);
    tokio::pin!(until_end);
    loop {
        let hedge_at = next_hedge;
        tokio::select! {
            Some((n, latency, result)) = in_flight.next() => match result {
                Ok(value) => {
                    report.answered_in = Some(latency);
                    report.won = n > 0;
                    return (Ok(value), report);
                }
                Err(failure) => {
                    if hedging.enabled() && resend_at_once(&failure) {
                        next_hedge = Some(Instant::now());
                    } else if in_flight.is_empty() {
                        next_hedge = None; // nothing more to wait for
                    }
                    last = failure;
                }
            },
            () = tokio::time::sleep_until(hedge_at.unwrap_or(end)), if hedge_at.is_some() => {
                next_hedge = None;
                let now = Instant::now();
                let left = end.saturating_duration_since(now);
                if attempts < MAX_ATTEMPTS && !left.is_zero() {
                    if hedging.take() {
                        in_flight.push(attempt(attempts, ask(left)));
                        attempts += 1;
                        report.sent += 1;
                        next_hedge = after_delay(now);
                    } else {
                        report.throttled = true;
                    }
                }
            },
            () = &mut until_end => return (Err(ClassifyFailure::Timeout(deadline)), report),
        }
        if in_flight.is_empty() && next_hedge.is_none() {
            if matches!(last, ClassifyFailure::Timeout(_)) {
                last = ClassifyFailure::Timeout(deadline);
            }
            return (Err(last), report);
        }
    }
}

#[cfg(test)]
mod tests;
