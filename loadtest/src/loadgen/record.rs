//! What a run records (pure bookkeeping, no IO): HdrHistograms of latency from the intended
//! send time, service time from the actual send, time to first byte and send delay; errors by
//! kind; answers by `x-routemesh-model` / `x-routemesh-decision`; a per-second timeline.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::schedule::Slot;

/// Highest value a histogram tracks: 10 minutes, in microseconds.
pub(super) const MAX_MICROS: u64 = 600_000_000;

/// Distinct model or decision names kept; more are counted under [`OTHER`].
pub const MAX_NAMES: usize = 32;
/// Where answers without the header are counted.
pub const NONE: &str = "(none)";
/// Where names beyond [`MAX_NAMES`] are counted.
pub const OTHER: &str = "(other)";

/// Seconds whose percentiles stay open for late samples before they are summarised.
const OPEN_SECONDS: u64 = 3;

/// Why a request did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// Not sent: `max_in_flight` requests were in flight and `max_queue` waiting.
    Dropped,
    /// The connection could not be made.
    Connect,
    /// No complete answer within the scenario's timeout.
    Timeout,
    /// An answer with a status other than 2xx.
    Http(u16),
    /// The status was fine but reading the body failed.
    Body,
    /// Any other failure while sending (a protocol error, a reset connection, …).
    Request,
}

impl ErrorKind {
    /// The kind as reported: `connect`, `timeout`, `http_503`, `body`, `request`, `dropped`.
    pub fn label(&self) -> String {
        match self {
            Self::Dropped => "dropped".to_owned(),
            Self::Connect => "connect".to_owned(),
            Self::Timeout => "timeout".to_owned(),
            Self::Http(status) => format!("http_{status}"),
            Self::Body => "body".to_owned(),
            Self::Request => "request".to_owned(),
        }
    }

    /// The kind's class: the label, with HTTP statuses grouped (`http_4xx`, `http_5xx`).
    pub fn class(&self) -> String {
        match self {
            Self::Http(status) => format!("http_{}xx", status / 100),
            other => other.label(),
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// What happened to one request that was sent; times are from the start of the run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub slot: Slot,
    /// When it was actually sent (after any wait for an in-flight slot).
    pub sent: Duration,
    /// When the first body byte arrived (streaming requests only).
    pub first_byte: Option<Duration>,
    /// When the last body byte arrived, or the request failed.
    pub done: Duration,
    pub result: Result<(), ErrorKind>,
    /// The `x-routemesh-model` and `x-routemesh-decision` headers, if there was an answer.
    pub model: Option<String>,
    pub decision: Option<String>,
    /// Whether an answer (any status) came back.
    pub answered: bool,
}

/// One second of the measured part, counted by when things happened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Second {
    /// Requests whose intended send time fell in this second (dropped ones included).
    pub scheduled: u64,
    /// Successful requests that completed in this second.
    pub ok: u64,
    /// Requests that failed in this second (dropped ones at their intended time).
    pub errors: u64,
    /// Latency from the intended send time of this second's successes, µs.
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
}

/// Everything recorded about the measured requests (warm-up requests are only counted).
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Where the measured part starts (the warm-up's length).
    measured_start: Duration,
    /// Intended send time → last body byte, successful requests, µs.
    pub latency: Histogram<u64>,
    /// Actual send → last body byte, successful requests, µs.
    pub service: Histogram<u64>,
    /// Actual send → first body byte, successful streaming requests, µs.
    pub first_byte: Histogram<u64>,
    /// Intended → actual send (scheduler lag plus any wait for an in-flight slot), sent
    /// requests, µs.
    pub send_delay: Histogram<u64>,
    pub scheduled: u64,
    /// Answers with any status.
    pub answered: u64,
    pub ok: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
    pub models: BTreeMap<String, u64>,
    pub decisions: BTreeMap<String, u64>,
    pub warmup_sent: u64,
    pub warmup_done: u64,
    timeline: BTreeMap<u64, Second>,
    open: BTreeMap<u64, Histogram<u64>>,
    /// Seconds below this one are summarised.
    closed_below: u64,
    empty_second: Histogram<u64>,
}

impl Recorder {
    /// A recorder for a run whose measured part starts `measured_start` after the run's start.
    pub fn new(measured_start: Duration) -> Result<Self, hdrhistogram::CreationError> {
        let h = Histogram::new_with_bounds(1, MAX_MICROS, 3)?;
        Ok(Self {
            measured_start,
            latency: h.clone(),
            service: h.clone(),
            first_byte: h.clone(),
            send_delay: h,
            scheduled: 0,
            answered: 0,
            ok: 0,
            errors: BTreeMap::new(),
            models: BTreeMap::new(),
            decisions: BTreeMap::new(),
            warmup_sent: 0,
            warmup_done: 0,
            timeline: BTreeMap::new(),
            open: BTreeMap::new(),
            closed_below: 0,
            // Two significant digits are plenty for a plot and keep each second small.
            empty_second: Histogram::new_with_bounds(1, MAX_MICROS, 2)?,
        })
    }

    /// The second of the measured part that `t` (from the run's start) falls in.
    fn second(&self, t: Duration) -> u64 {
        t.saturating_sub(self.measured_start).as_secs()
    }

    /// Notes a slot reached by the schedule; `dropped` when it could not be sent.
    pub fn scheduled(&mut self, slot: &Slot, dropped: bool) {
        if slot.warmup {
            self.warmup_sent += u64::from(!dropped);
            return;
        }
        self.scheduled += 1;
        let second = self.second(slot.at);
        let entry = self.timeline.entry(second).or_default();
        entry.scheduled += 1;
        if dropped {
            entry.errors += 1;
            *self.errors.entry(ErrorKind::Dropped).or_default() += 1;
        }
    }

    /// Records a request that was sent and has finished, one way or the other.
    pub fn record(&mut self, o: &Outcome) {
        if o.slot.warmup {
            self.warmup_done += 1;
            return;
        }
        self.send_delay
            .saturating_record(micros(o.sent.saturating_sub(o.slot.at)));
        if o.answered {
            self.answered += 1;
            count_name(&mut self.models, o.model.as_deref());
            count_name(&mut self.decisions, o.decision.as_deref());
        }
        let second = self.second(o.done);
        self.close_before(second);
        let entry = self.timeline.entry(second).or_default();
        match o.result {
            Ok(()) => {
                entry.ok += 1;
                self.ok += 1;
                let latency = micros(o.done.saturating_sub(o.slot.at));
                self.latency.saturating_record(latency);
                self.service
                    .saturating_record(micros(o.done.saturating_sub(o.sent)));
                if let Some(first) = o.first_byte {
                    self.first_byte
                        .saturating_record(micros(first.saturating_sub(o.sent)));
                }
                if self.closed_below <= second {
                    let empty = &self.empty_second;
                    self.open
                        .entry(second)
                        .or_insert_with(|| empty.clone())
                        .saturating_record(latency);
                }
            }
            Err(kind) => {
                entry.errors += 1;
                *self.errors.entry(kind).or_default() += 1;
            }
        }
    }

    /// Summarises the per-second histograms too old to get more samples (a sample later
    /// than that still counts in the totals and its second's `ok`, not in its percentiles).
    fn close_before(&mut self, second: u64) {
        let limit = second.saturating_sub(OPEN_SECONDS - 1);
        if limit <= self.closed_below {
            return;
        }
        self.closed_below = limit;
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() >= limit {
                break;
            }
            let (s, h) = entry.remove_entry();
            summarise(self.timeline.entry(s).or_default(), &h);
        }
    }

    /// Requests that failed, dropped ones included.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The per-second timeline from second 0 to the last one with activity (gaps filled).
    pub fn timeline(&self) -> Vec<Second> {
        let mut timeline = self.timeline.clone();
        for (s, h) in &self.open {
            summarise(timeline.entry(*s).or_default(), h);
        }
        let last = timeline.keys().next_back().copied();
        last.map_or_else(Vec::new, |last| {
            (0..=last)
                .map(|s| timeline.remove(&s).unwrap_or_default())
                .collect()
        })
    }
}

fn summarise(second: &mut Second, h: &Histogram<u64>) {
    if !h.is_empty() {
        second.p50_us = Some(h.value_at_quantile(0.50));
        second.p99_us = Some(h.value_at_quantile(0.99));
    }
}

fn count_name(counts: &mut BTreeMap<String, u64>, name: Option<&str>) {
    let name = name.unwrap_or(NONE);
    let key = if counts.contains_key(name) || counts.len() < MAX_NAMES {
        name
    } else {
        OTHER
    };
    *counts.entry(key.to_owned()).or_default() += 1;
}

/// A duration in whole microseconds, saturating.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn outcome(at: u64, sent: u64, done: u64, result: Result<(), ErrorKind>) -> Outcome {
        Outcome {
            slot: Slot {
                index: 0,
                at: ms(at),
                warmup: false,
            },
            sent: ms(sent),
            first_byte: None,
            done: ms(done),
            result,
            model: Some("m".to_owned()),
            decision: None,
            answered: !matches!(result, Err(ErrorKind::Connect)),
        }
    }

    /// A recorder whose measured part starts at 1 s, fed `outcomes`.
    fn check(outcomes: &[Outcome]) -> Recorder {
        let mut r = Recorder::new(ms(1000)).unwrap();
        for o in outcomes {
            r.scheduled(&o.slot, false);
            r.record(o);
        }
        r
    }

    #[test]
    fn latency_counts_from_the_intended_time_and_service_from_the_send() {
        let r = check(&[outcome(1000, 1300, 1400, Ok(()))]);
        let within = |h: &Histogram<u64>, us: u64| h.equivalent(h.max(), us);
        assert!(within(&r.latency, 400_000), "{}", r.latency.max());
        assert!(within(&r.service, 100_000), "{}", r.service.max());
        assert!(within(&r.send_delay, 300_000), "{}", r.send_delay.max());
        assert_eq!((r.ok, r.answered, r.scheduled), (1, 1, 1));
        assert_eq!(r.models["m"], 1);
        assert_eq!(r.decisions[NONE], 1);
    }

    #[test]
    fn errors_are_counted_by_kind_and_kept_out_of_the_histograms() {
        let r = check(&[
            outcome(1000, 1000, 1010, Err(ErrorKind::Http(500))),
            outcome(1000, 1000, 1010, Err(ErrorKind::Http(500))),
            outcome(1000, 1000, 1010, Err(ErrorKind::Http(404))),
            outcome(1000, 1000, 1010, Err(ErrorKind::Connect)),
        ]);
        let labels: Vec<String> = r.errors.keys().map(ErrorKind::label).collect();
        assert_eq!(labels, ["connect", "http_404", "http_500"]);
        assert_eq!(r.errors[&ErrorKind::Http(500)], 2);
        assert_eq!(ErrorKind::Http(503).class(), "http_5xx");
        assert_eq!(ErrorKind::Http(429).class(), "http_4xx");
        assert!(r.latency.is_empty());
        assert_eq!((r.answered, r.error_count()), (3, 4));
    }

    #[test]
    fn dropped_and_warmup_slots() {
        let mut r = Recorder::new(ms(1000)).unwrap();
        let slot = |at: u64, warmup: bool| Slot {
            index: 0,
            at: ms(at),
            warmup,
        };
        r.scheduled(&slot(2500, false), true);
        r.scheduled(&slot(500, true), false);
        let mut warm = outcome(500, 500, 600, Ok(()));
        warm.slot.warmup = true;
        r.record(&warm);
        assert_eq!(r.errors[&ErrorKind::Dropped], 1);
        assert_eq!(
            (r.scheduled, r.warmup_sent, r.warmup_done, r.ok),
            (1, 1, 1, 0)
        );
        let timeline = r.timeline();
        assert_eq!(timeline.len(), 2);
        assert_eq!((timeline[1].scheduled, timeline[1].errors), (1, 1));
        assert_eq!(timeline[0], Second::default());
    }

    #[test]
    fn timeline_has_per_second_percentiles_even_after_closing() {
        let mut all = Vec::new();
        for s in 0..10u64 {
            for i in 0..100u64 {
                let at = 1000 + s * 1000 + i * 5;
                all.push(outcome(at, at, at + 10 + s, Ok(())));
            }
        }
        let r = check(&all);
        assert!(
            r.open.len() <= OPEN_SECONDS as usize + 1,
            "{}",
            r.open.len()
        );
        let timeline = r.timeline();
        assert_eq!(timeline.len(), 10);
        for (s, second) in timeline.iter().enumerate() {
            assert_eq!((second.scheduled, second.ok), (100, 100), "second {s}");
            let p50 = second.p50_us.unwrap();
            let want = (10 + s as u64) * 1000;
            assert!(
                p50.abs_diff(want) <= want / 50,
                "second {s}: {p50} vs {want}"
            );
        }
    }

    #[test]
    fn names_beyond_the_cap_are_grouped() {
        let mut counts = BTreeMap::new();
        for i in 0..(MAX_NAMES + 5) {
            count_name(&mut counts, Some(&format!("model-{i}")));
        }
        count_name(&mut counts, Some("model-0"));
        assert_eq!(counts.len(), MAX_NAMES + 1);
        assert_eq!(counts[OTHER], 5);
        assert_eq!(counts["model-0"], 2);
    }
}
