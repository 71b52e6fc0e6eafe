//! The open-loop schedule: intended send times computed from the rate profile alone (pure; the
//! RNG is seeded), so how long earlier requests take can never delay later ones.
//!
//! Each stage is walked in "count space": its cumulative count `N(t) = r0·t + (r1 − r0)·t²/2d`
//! is inverted at `u = 0, 1, 2, …` (constant arrivals) or at the partial sums of exponential
//! draws with mean 1 (Poisson arrivals), which gives a step (`r0 = r1`) or a linear ramp.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::scenario::{Arrival, Scenario, Stage};

/// One request's place in the schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slot {
    /// Sequence number over the whole run, warm-up included, from 0.
    pub index: u64,
    /// Intended send time, from the start of the run (warm-up included).
    pub at: Duration,
    /// Sent during the warm-up: not recorded.
    pub warmup: bool,
}

/// One stretch at a linear rate, in seconds.
#[derive(Debug, Clone, Copy)]
struct Segment {
    r0: f64,
    r1: f64,
    /// `f64::INFINITY` for an open-ended stage.
    secs: f64,
    warmup: bool,
}

impl Segment {
    fn new(stage: &Stage, warmup: bool) -> Self {
        Self {
            r0: stage.rate,
            r1: stage.end_rate,
            secs: stage.duration.map_or(f64::INFINITY, |d| d.as_secs_f64()),
            warmup,
        }
    }

    /// Requests the segment holds on average: `N(secs)`.
    fn total(&self) -> f64 {
        if self.secs.is_infinite() {
            // Only constant stages are open-ended; a zero rate holds none.
            if self.r0 > 0.0 { f64::INFINITY } else { 0.0 }
        } else {
            (self.r0 + self.r1) / 2.0 * self.secs
        }
    }

    /// The time `t` at which `N(t) = u`, for `0 <= u <= total()`.
    fn time_at(&self, u: f64) -> f64 {
        if u <= 0.0 {
            return 0.0;
        }
        let a = if self.secs.is_finite() {
            (self.r1 - self.r0) / (2.0 * self.secs)
        } else {
            0.0
        };
        let b = self.r0;
        // The root of a·t² + b·t − u = 0 in a form that is stable when a is 0 or tiny.
        let disc = (b * b + 4.0 * a * u).max(0.0);
        let t = 2.0 * u / (b + disc.sqrt());
        if t.is_finite() {
            t.clamp(0.0, self.secs)
        } else {
            self.secs
        }
    }
}

/// The intended send times of a run, in order: the warm-up, then the measured stages, until
/// the profile ends or `requests` measured slots were produced.
#[derive(Debug)]
pub struct Schedule {
    segments: Vec<Segment>,
    arrival: Arrival,
    rng: StdRng,
    cap: Option<u64>,
    /// Current segment, its start (s), its requests so far and its count-space position.
    seg: usize,
    seg_start: f64,
    k: u64,
    u: f64,
    measured: u64,
    index: u64,
}

impl Schedule {
    /// The schedule of `scenario` (same scenario and seed, same times).
    pub fn new(scenario: &Scenario) -> Self {
        let mut segments = Vec::with_capacity(scenario.stages.len() + 1);
        if let Some(first) = scenario.stages.first()
            && !scenario.warmup.is_zero()
        {
            let warm = Stage {
                rate: first.rate,
                end_rate: first.rate,
                duration: Some(scenario.warmup),
            };
            segments.push(Segment::new(&warm, true));
        }
        segments.extend(scenario.stages.iter().map(|s| Segment::new(s, false)));
        Self {
            segments,
            arrival: scenario.arrival,
            // Its own stream: the mix draws from `seed` separately.
            rng: StdRng::seed_from_u64(scenario.seed ^ 0x5C4E_D01E),
            cap: scenario.requests,
            seg: 0,
            seg_start: 0.0,
            k: 0,
            u: 0.0,
            measured: 0,
            index: 0,
        }
    }

    /// An exponential draw with mean 1.
    fn exp1(&mut self) -> f64 {
        let uniform: f64 = self.rng.random(); // [0, 1)
        -(1.0 - uniform).ln()
    }
}

impl Iterator for Schedule {
    type Item = Slot;

    fn next(&mut self) -> Option<Slot> {
        loop {
            let seg = *self.segments.get(self.seg)?;
            if !seg.warmup && self.cap.is_some_and(|cap| self.measured >= cap) {
                return None;
            }
            let u = match self.arrival {
                Arrival::Constant => self.k as f64,
                Arrival::Poisson => self.u + self.exp1(),
            };
            if u >= seg.total() {
                // Poisson gaps are memoryless, so restarting at the next segment is exact.
                self.seg += 1;
                self.seg_start += seg.secs;
                self.k = 0;
                self.u = 0.0;
                continue;
            }
            self.k += 1;
            self.u = u;
            let at = Duration::try_from_secs_f64(self.seg_start + seg.time_at(u))
                .unwrap_or(Duration::MAX);
            let slot = Slot {
                index: self.index,
                at,
                warmup: seg.warmup,
            };
            self.index += 1;
            if !seg.warmup {
                self.measured += 1;
            }
            return Some(slot);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::loadgen::scenario::Overrides;

    /// The schedule of a scenario written as the YAML lines before its `mix`.
    fn check(head: &str) -> Vec<Slot> {
        let text = format!("target: http://h:1\n{head}\nmix: [{{prompt: hi}}]\n");
        let scenario = Scenario::from_yaml(&text, "t", &Overrides::default()).unwrap();
        let slots: Vec<Slot> = Schedule::new(&scenario).collect();
        for pair in slots.windows(2) {
            assert!(pair[0].at <= pair[1].at, "{pair:?}");
            assert_eq!(pair[0].index + 1, pair[1].index);
        }
        slots
    }

    fn secs(slot: &Slot) -> f64 {
        slot.at.as_secs_f64()
    }

    #[test]
    fn constant_rate_sends_rate_times_duration_evenly() {
        let slots = check("rate: 100\nduration: 2s");
        assert_eq!(slots.len(), 200);
        assert_eq!(secs(&slots[0]), 0.0);
        assert!((secs(&slots[1]) - 0.01).abs() < 1e-9);
        assert!((secs(&slots[199]) - 1.99).abs() < 1e-9);
        assert!(slots.iter().all(|s| !s.warmup));
    }

    #[test]
    fn fractional_counts_round_up_per_stage() {
        // 2.5 requests in the stage: at 0, 0.4 s and 0.8 s.
        assert_eq!(check("rate: 2.5\nduration: 1s").len(), 3);
    }

    #[test]
    fn warmup_comes_first_at_the_first_rate() {
        let slots = check("rate: 10\nduration: 1s\nwarmup: 500ms");
        let warm = slots.iter().filter(|s| s.warmup).count();
        assert_eq!((warm, slots.len()), (5, 15));
        assert!(slots[..5].iter().all(|s| s.warmup));
        assert!((secs(&slots[5]) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn requests_cap_stops_the_measured_part() {
        let slots = check("rate: 50\nrequests: 7");
        assert_eq!(slots.len(), 7);
        assert!((secs(&slots[6]) - 0.12).abs() < 1e-9);
        assert_eq!(check("rate: 50\nduration: 1s\nrequests: 7").len(), 7);
    }

    #[test]
    fn steps_and_ramps_follow_the_rate() {
        let slots = check(
            "stages: [{rate: 10, duration: 1s}, {rate: 0, duration: 1s}, {rate: 20, duration: 1s}]",
        );
        assert_eq!(slots.len(), 30);
        assert!(slots.iter().all(|s| secs(s) < 1.0 || secs(s) >= 2.0));

        // 0 → 100 req/s over 2 s: 100 requests, a quarter of them in the first half.
        let ramp = check("stages: [{rate: 0, ramp_to: 100, duration: 2s}]");
        assert_eq!(ramp.len(), 100);
        let first_half = ramp.iter().filter(|s| secs(s) < 1.0).count();
        assert_eq!(first_half, 25);
        assert!(secs(&ramp[99]) < 2.0);
        // Gaps shrink as the rate grows.
        let gap = |i: usize| secs(&ramp[i + 1]) - secs(&ramp[i]);
        assert!(gap(10) > gap(50) && gap(50) > gap(90));

        let down = check("stages: [{rate: 100, ramp_to: 0, duration: 2s}]");
        assert_eq!(down.len(), 100);
        assert_eq!(down.iter().filter(|s| secs(s) < 1.0).count(), 75);
    }

    #[test]
    fn poisson_is_seeded_and_averages_the_rate() {
        let a = check("rate: 1000\nduration: 2s\narrival: poisson\nseed: 7");
        let b = check("rate: 1000\nduration: 2s\narrival: poisson\nseed: 7");
        let c = check("rate: 1000\nduration: 2s\narrival: poisson\nseed: 8");
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Poisson(2000) has a standard deviation of ~45: allow 5 of them.
        let n = a.len() as f64;
        assert!((n - 2000.0).abs() < 225.0, "{n}");
        assert!(a.iter().all(|s| secs(s) < 2.0));
    }
}
