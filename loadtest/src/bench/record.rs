//! What the benchmark records per target: end-to-end histograms, `Server-Timing` stage
//! histograms, overhead means, failures and routed models.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::{BenchError, MAX_MICROS, MAX_NAMES};
use crate::server_timing::{self, Metric};

/// A running mean.
#[derive(Debug, Default, Clone, Copy)]
pub struct Mean {
    pub sum: f64,
    pub n: u64,
}

impl Mean {
    fn add(&mut self, v: f64) {
        self.sum += v;
        self.n += 1;
    }

    /// The mean, if anything was added.
    pub fn get(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

/// What one target's measured requests produced.
#[derive(Debug)]
pub struct TargetRun {
    /// End-to-end latency of successful requests (request sent to last body byte), µs.
    pub e2e: Histogram<u64>,
    /// Failed requests by kind (`HTTP 500`, `timeout`, `connect`, …).
    pub errors: BTreeMap<String, u64>,
    /// Wall time spent in this target's batches.
    pub busy: Duration,
}

impl TargetRun {
    fn new() -> Result<Self, BenchError> {
        Ok(Self {
            e2e: new_histogram()?,
            errors: BTreeMap::new(),
            busy: Duration::ZERO,
        })
    }

    /// Records a sample; returns its answer if it succeeded.
    pub(super) fn record<'a>(&mut self, sample: &'a Sample) -> Option<&'a Answer> {
        match &sample.outcome {
            Ok(answer) => {
                self.e2e.saturating_record(micros(sample.e2e));
                Some(answer)
            }
            Err(kind) => {
                *self.errors.entry(kind.clone()).or_default() += 1;
                None
            }
        }
    }
}

/// The gateway's measured requests, with what its headers said.
#[derive(Debug)]
pub struct GatewayRun {
    pub target: TargetRun,
    /// `Server-Timing` stage durations by stage name, µs.
    pub stages: BTreeMap<String, Histogram<u64>>,
    /// Successful requests that carried a `Server-Timing` header.
    pub with_timing: u64,
    /// `total − upstream` in ms: the gateway's own work, classification included.
    pub own_overhead: Mean,
    /// `total − upstream − classify − decide` in ms (absent stages count 0): pure proxying.
    pub proxy_overhead: Mean,
    /// Answers by `x-routemesh-model`.
    pub models: BTreeMap<String, u64>,
}

impl GatewayRun {
    fn new() -> Result<Self, BenchError> {
        Ok(Self {
            target: TargetRun::new()?,
            stages: BTreeMap::new(),
            with_timing: 0,
            own_overhead: Mean::default(),
            proxy_overhead: Mean::default(),
            models: BTreeMap::new(),
        })
    }

    pub(super) fn record(&mut self, sample: &Sample) -> Result<(), BenchError> {
        let Some(answer) = self.target.record(sample) else {
            return Ok(());
        };
        if !answer.timing.is_empty() {
            self.with_timing += 1;
        }
        for metric in &answer.timing {
            let Some(ms) = metric.dur_ms else { continue };
            if !self.stages.contains_key(&metric.name) && self.stages.len() >= MAX_NAMES {
                continue;
            }
            let histogram = match self.stages.get_mut(&metric.name) {
                Some(histogram) => histogram,
                None => self
                    .stages
                    .entry(metric.name.clone())
                    .or_insert(new_histogram()?),
            };
            histogram.saturating_record((ms * 1000.0).round() as u64);
        }
        let stage = |name| server_timing::duration(&answer.timing, name);
        if let (Some(total), Some(upstream)) = (stage("total"), stage("upstream")) {
            let own = total - upstream;
            self.own_overhead.add(own);
            let classify_decide = stage("classify").unwrap_or(0.0) + stage("decide").unwrap_or(0.0);
            self.proxy_overhead.add(own - classify_decide);
        }
        if let Some(model) = &answer.model {
            let key = if self.models.contains_key(model) || self.models.len() < MAX_NAMES {
                model.clone()
            } else {
                "(other)".to_owned()
            };
            *self.models.entry(key).or_default() += 1;
        }
        Ok(())
    }
}

/// Everything the measured phase recorded.
#[derive(Debug)]
pub struct Measurements {
    pub gateway: GatewayRun,
    pub direct: TargetRun,
}

impl Measurements {
    pub(super) fn new() -> Result<Self, BenchError> {
        Ok(Self {
            gateway: GatewayRun::new()?,
            direct: TargetRun::new()?,
        })
    }
}

/// One request's result.
#[derive(Debug)]
pub(super) struct Sample {
    pub(super) e2e: Duration,
    /// The answer, or the kind of failure.
    pub(super) outcome: Result<Answer, String>,
}

#[derive(Debug)]
pub(super) struct Answer {
    pub(super) timing: Vec<Metric>,
    pub(super) model: Option<String>,
}

fn new_histogram() -> Result<Histogram<u64>, BenchError> {
    Ok(Histogram::new_with_bounds(1, MAX_MICROS, 3)?)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn gateway_record_derives_overheads_from_server_timing() {
        let mut run = GatewayRun::new().unwrap();
        let sample = |header: &str| Sample {
            e2e: Duration::from_micros(5000),
            outcome: Ok(Answer {
                timing: server_timing::parse(header),
                model: Some("m".to_owned()),
            }),
        };
        run.record(&sample(
            "classify;dur=1.5, decide;dur=0.5, upstream;dur=2, total;dur=5",
        ))
        .unwrap();
        run.record(&sample("upstream;dur=2, total;dur=3")).unwrap();
        run.record(&sample("")).unwrap();
        assert_eq!(run.with_timing, 2);
        assert_eq!(run.own_overhead.get(), Some(2.0)); // (3 + 1) / 2
        assert_eq!(run.proxy_overhead.get(), Some(1.0)); // (1 + 1) / 2
        assert_eq!(run.stages["classify"].len(), 1);
        assert_eq!(run.stages["total"].len(), 2);
        assert_eq!(run.target.e2e.len(), 3);
        assert_eq!(run.models["m"], 3);
    }
}
