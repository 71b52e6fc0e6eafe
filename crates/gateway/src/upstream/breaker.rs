//! The circuit breaker of one endpoint: a pure state machine, the clock an
//! argument.
//!
//! Closed → (`failures` consecutive failures) → Open → (`open_for` later)
//! → HalfOpen, where at most `probes` requests go through at once: a probe
//! that succeeds closes the breaker, one that fails opens it again.

use std::time::Instant;

use routemesh_common::config::BreakerConfig;

/// How a request was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// The breaker was closed.
    Normal,
    /// The breaker was half-open: this request is one of its probes.
    Probe,
}

/// What a result did to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transition {
    None,
    /// The endpoint was ejected (or ejected again after a failed probe).
    Opened,
    /// A probe succeeded: the endpoint is back.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: u32 },
}

/// One endpoint's breaker.
#[derive(Debug, Clone)]
pub(super) struct Breaker {
    cfg: BreakerConfig,
    state: State,
}

impl Breaker {
    pub(super) fn new(cfg: BreakerConfig) -> Self {
        Self {
            cfg,
            state: State::Closed { failures: 0 },
        }
    }

    /// Whether [`Breaker::admit`] would let a request through at `now`.
    pub(super) fn available(&self, now: Instant) -> bool {
        match self.state {
            State::Closed { .. } => true,
            State::Open { until } => now >= until && self.cfg.probes > 0,
            State::HalfOpen { probing } => probing < self.cfg.probes,
        }
    }

    /// Lets a request through, or not; an open breaker whose time is up
    /// turns half-open and lets probes through.
    pub(super) fn admit(&mut self, now: Instant) -> Option<Admission> {
        if let State::Open { until } = self.state {
            if now < until {
                return None;
            }
            self.state = State::HalfOpen { probing: 0 };
        }
        match &mut self.state {
            State::Closed { .. } => Some(Admission::Normal),
            State::HalfOpen { probing } if *probing < self.cfg.probes => {
                *probing += 1;
                Some(Admission::Probe)
            }
            State::HalfOpen { .. } | State::Open { .. } => None,
        }
    }

    /// The endpoint answered.
    pub(super) fn success(&mut self, admission: Admission) -> Transition {
        match (self.state, admission) {
            (State::Closed { .. }, _) => {
                self.state = State::Closed { failures: 0 };
                Transition::None
            }
            (State::HalfOpen { .. }, Admission::Probe) => {
                self.state = State::Closed { failures: 0 };
                Transition::Closed
            }
            // A request let through before the breaker opened says
            // nothing about it now.
            (State::HalfOpen { .. } | State::Open { .. }, _) => Transition::None,
        }
    }

    /// The endpoint failed (unreachable, timed out, a 5xx).
    pub(super) fn failure(&mut self, admission: Admission, now: Instant) -> Transition {
        let open = State::Open {
            until: now + self.cfg.open_for,
        };
        match (self.state, admission) {
            (State::Closed { failures }, _) => {
                let failures = failures.saturating_add(1);
                if failures >= self.cfg.failures {
                    self.state = open;
                    Transition::Opened
                } else {
                    self.state = State::Closed { failures };
                    Transition::None
                }
            }
            (State::HalfOpen { .. }, Admission::Probe) => {
                self.state = open;
                Transition::Opened
            }
            (State::HalfOpen { .. } | State::Open { .. }, _) => Transition::None,
        }
    }

    /// A request let through ended without a result (the client left):
    /// its probe slot is free again.
    pub(super) fn abandoned(&mut self, admission: Admission) {
        if let (State::HalfOpen { probing }, Admission::Probe) = (&mut self.state, admission) {
            *probing = probing.saturating_sub(1);
        }
    }

    /// Whether the endpoint is ejected (open or half-open).
    #[cfg(test)]
    fn is_ejected(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn breaker(failures: u32, probes: u32) -> Breaker {
        Breaker::new(BreakerConfig {
            failures,
            open_for: Duration::from_secs(10),
            probes,
        })
    }

    /// Runs `steps` ("ok", "fail", "admit", "abandon" for a probe) at the
    /// given seconds after t0, checking what each returns.
    fn check(b: &mut Breaker, steps: &[(u64, &str, &str)]) {
        let t0 = Instant::now();
        for (i, &(at, step, want)) in steps.iter().enumerate() {
            let now = t0 + Duration::from_secs(at);
            let got = match step {
                "admit" => format!("{:?}", b.admit(now)),
                "ok" => format!("{:?}", b.success(Admission::Normal)),
                "fail" => format!("{:?}", b.failure(Admission::Normal, now)),
                "probe-ok" => format!("{:?}", b.success(Admission::Probe)),
                "probe-fail" => format!("{:?}", b.failure(Admission::Probe, now)),
                "probe-abandon" => {
                    b.abandoned(Admission::Probe);
                    "()".into()
                }
                "available" => format!("{}", b.available(now)),
                other => panic!("unknown step {other}"),
            };
            assert_eq!(got, want, "step {i}: {step} at {at}s");
        }
    }

    #[test]
    fn consecutive_failures_open_it_and_a_success_resets_the_count() {
        check(
            &mut breaker(3, 1),
            &[
                (0, "fail", "None"),
                (0, "fail", "None"),
                (0, "ok", "None"),
                (0, "fail", "None"),
                (0, "fail", "None"),
                (0, "admit", "Some(Normal)"),
                (1, "fail", "Opened"),
                (1, "admit", "None"),
                (10, "available", "false"),
                (10, "admit", "None"),
            ],
        );
    }

    #[test]
    fn after_open_for_probes_are_let_through_and_a_success_closes_it() {
        let mut b = breaker(1, 2);
        check(
            &mut b,
            &[
                (0, "fail", "Opened"),
                (10, "available", "true"),
                (10, "admit", "Some(Probe)"),
                (10, "admit", "Some(Probe)"),
                (10, "admit", "None"),
                (10, "available", "false"),
                (11, "probe-ok", "Closed"),
                (11, "admit", "Some(Normal)"),
            ],
        );
        assert!(!b.is_ejected());
    }

    #[test]
    fn a_failed_probe_opens_it_again_for_open_for() {
        let mut b = breaker(2, 1);
        check(
            &mut b,
            &[
                (0, "fail", "None"),
                (0, "fail", "Opened"),
                (10, "admit", "Some(Probe)"),
                (12, "probe-fail", "Opened"),
                (21, "admit", "None"),
                (22, "admit", "Some(Probe)"),
            ],
        );
        assert!(b.is_ejected());
    }

    #[test]
    fn an_abandoned_probe_frees_its_slot() {
        check(
            &mut breaker(1, 1),
            &[
                (0, "fail", "Opened"),
                (10, "admit", "Some(Probe)"),
                (10, "admit", "None"),
                (10, "probe-abandon", "()"),
                (10, "admit", "Some(Probe)"),
            ],
        );
    }

    #[test]
    fn late_results_of_requests_let_through_while_closed_change_nothing() {
        check(
            &mut breaker(1, 1),
            &[
                (0, "fail", "Opened"),
                (1, "ok", "None"),
                (1, "fail", "None"),
                (5, "admit", "None"),
                (10, "admit", "Some(Probe)"),
                (10, "ok", "None"),
                (10, "fail", "None"),
                (10, "probe-ok", "Closed"),
            ],
        );
    }
}
