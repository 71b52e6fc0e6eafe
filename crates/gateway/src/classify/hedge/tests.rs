//! The hedging policy on paused time: scripted attempts instead of NATS.

use super::*;

const DEADLINE: Duration = Duration::from_secs(2);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn policy(after: HedgeAfter, budget_percent: u8) -> Hedging {
    Hedging::new(Hedge {
        after,
        budget_percent,
    })
}

/// After a fixed 300 ms, the default budget.
fn fixed_300ms() -> Hedging {
    policy(HedgeAfter::Fixed(ms(300)), 10)
}

/// What one attempt does.
#[derive(Debug, Clone)]
enum Step {
    /// Answers after this long.
    Answers(Duration),
    /// Fails so after this long.
    Fails(Duration, ClassifyFailure),
    /// Never answers (a killed or stuck worker holds it).
    Hangs,
}
use Step::{Answers, Fails, Hangs};

/// One hedged call.
#[derive(Debug)]
struct Outcome {
    /// Which attempt's answer was used, or the failure.
    result: Result<usize, ClassifyFailure>,
    report: Report,
    /// When the call returned.
    took: Duration,
    /// The time left given to each attempt sent.
    lefts: Vec<Duration>,
    /// How long the answer used took from its own attempt's sending.
    answered_in: Option<Duration>,
}

/// Runs one call under [`DEADLINE`] whose attempt `n` behaves as
/// `steps[n]` (past the end: hangs). Every test here runs on tokio's
/// paused time, so the attempts' sleeps cost no wall-clock time.
async fn check(hedging: &Hedging, steps: &[Step]) -> Outcome {
    let start = Instant::now();
    let mut lefts = Vec::new();
    let ask = |left: Duration| {
        let n = lefts.len();
        lefts.push(left);
        let step = steps.get(n).cloned().unwrap_or(Hangs);
        async move {
            match step {
                Answers(after) => {
                    tokio::time::sleep(after).await;
                    Ok(n)
                }
                Fails(after, failure) => {
                    tokio::time::sleep(after).await;
                    Err(failure)
                }
                Hangs => std::future::pending().await,
            }
        }
    };
    let (result, mut report) = hedged(hedging, DEADLINE, ask).await;
    // As a one-prompt classify call does.
    hedging.learn(&report, 1);
    let answered_in = report.answered_in.take();
    Outcome {
        result,
        report,
        took: start.elapsed(),
        lefts,
        answered_in,
    }
}

fn report(sent: u32, won: bool) -> Report {
    Report {
        sent,
        won,
        throttled: false,
        answered_in: None,
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_held_by_a_killed_worker_is_answered_by_the_hedge() {
    let o = check(&fixed_300ms(), &[Hangs, Answers(ms(10))]).await;
    assert_eq!(o.result, Ok(1));
    assert_eq!(o.took, ms(310));
    assert_eq!(o.answered_in, Some(ms(10)), "the hedge's own latency");
    assert_eq!(o.report, report(1, true));
    assert_eq!(
        o.lefts,
        [DEADLINE, ms(1700)],
        "the hedge gets the time left"
    );
}

#[tokio::test(start_paused = true)]
async fn an_answer_before_the_delay_sends_nothing_more() {
    let o = check(&fixed_300ms(), &[Answers(ms(20))]).await;
    assert_eq!(
        (o.result, o.took, o.report),
        (Ok(0), ms(20), report(0, false))
    );
}

#[tokio::test(start_paused = true)]
async fn the_first_answer_wins_even_once_a_hedge_is_out() {
    let o = check(&fixed_300ms(), &[Answers(ms(400)), Answers(ms(500))]).await;
    assert_eq!(
        (o.result, o.took, o.report),
        (Ok(0), ms(400), report(1, false))
    );
}

#[tokio::test(start_paused = true)]
async fn a_hedge_that_reached_the_same_stuck_worker_is_followed_by_another() {
    let o = check(&fixed_300ms(), &[Hangs, Hangs, Answers(ms(10))]).await;
    assert_eq!(
        (o.result, o.took, o.report),
        (Ok(2), ms(610), report(2, true))
    );
}

#[tokio::test(start_paused = true)]
async fn three_attempts_at_most_then_the_deadline() {
    let o = check(&fixed_300ms(), &[Hangs, Hangs, Hangs, Answers(ms(1))]).await;
    assert_eq!(o.result, Err(ClassifyFailure::Timeout(DEADLINE)));
    assert_eq!((o.took, o.report), (DEADLINE, report(2, false)));
}

#[tokio::test(start_paused = true)]
async fn an_overloaded_broken_or_absent_worker_is_asked_again_at_once() {
    for failure in [
        ClassifyFailure::Overloaded,
        ClassifyFailure::Worker {
            code: 500,
            message: "stopped".into(),
        },
        ClassifyFailure::NoResponders("p".into()),
    ] {
        let o = check(
            &fixed_300ms(),
            &[Fails(ms(1), failure.clone()), Answers(ms(10))],
        )
        .await;
        assert_eq!(
            (o.result, o.took, o.report),
            (Ok(1), ms(11), report(1, true)),
            "{failure:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn what_any_worker_would_answer_the_same_is_not_sent_again() {
    for failure in [
        ClassifyFailure::Worker {
            code: 400,
            message: "unknown output".into(),
        },
        ClassifyFailure::Transport("malformed reply".into()),
    ] {
        let o = check(
            &fixed_300ms(),
            &[Fails(ms(1), failure.clone()), Answers(ms(1))],
        )
        .await;
        assert_eq!(o.result, Err(failure));
        assert_eq!((o.took, o.report), (ms(1), report(0, false)));
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_hedge_waits_for_the_first_request() {
    let transport = ClassifyFailure::Transport("gone".into());
    let o = check(
        &fixed_300ms(),
        &[Answers(ms(450)), Fails(ms(10), transport)],
    )
    .await;
    assert_eq!(
        (o.result, o.took, o.report),
        (Ok(0), ms(450), report(1, false))
    );
}

#[tokio::test(start_paused = true)]
async fn the_last_failure_is_the_answer_when_every_attempt_failed() {
    let o = check(
        &fixed_300ms(),
        &[
            Fails(ms(1), ClassifyFailure::Overloaded),
            Fails(ms(1), ClassifyFailure::Overloaded),
            Fails(ms(1), ClassifyFailure::NoResponders("p".into())),
        ],
    )
    .await;
    assert_eq!(o.result, Err(ClassifyFailure::NoResponders("p".into())));
    assert_eq!((o.took, o.report), (ms(3), report(2, false)));
}

#[tokio::test(start_paused = true)]
async fn off_sends_nothing_again() {
    let off = policy(HedgeAfter::Off, 10);
    let o = check(
        &off,
        &[Fails(ms(1), ClassifyFailure::Overloaded), Answers(ms(1))],
    )
    .await;
    assert_eq!(
        (o.result, o.took),
        (Err(ClassifyFailure::Overloaded), ms(1))
    );
    let o = check(&off, &[Hangs, Answers(ms(1))]).await;
    assert_eq!(o.result, Err(ClassifyFailure::Timeout(DEADLINE)));
    assert_eq!(
        (o.took, o.report, o.lefts.len()),
        (DEADLINE, report(0, false), 1)
    );
}

#[tokio::test(start_paused = true)]
async fn with_the_budget_spent_a_held_request_waits_out_the_deadline() {
    let h = fixed_300ms();
    while h.take() {}
    let o = check(&h, &[Hangs, Answers(ms(1))]).await;
    assert_eq!(o.result, Err(ClassifyFailure::Timeout(DEADLINE)));
    assert_eq!(o.took, DEADLINE);
    assert_eq!(
        o.report,
        Report {
            sent: 0,
            won: false,
            throttled: true,
            answered_in: None,
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_hedges_latency_is_counted_from_its_own_sending() {
    // Every request is held by a dead worker and answered by its hedge
    // 10 ms after it was sent: the pool answers in 10 ms, not 510.
    let h = policy(HedgeAfter::Auto, 100);
    for _ in 0..MIN_SAMPLES {
        let o = check(&h, &[Hangs, Answers(ms(10))]).await;
        assert_eq!(o.result, Ok(1));
    }
    assert_eq!(h.delay(DEADLINE), Some(FLOOR));
    let o = check(&h, &[Hangs, Answers(ms(10))]).await;
    assert_eq!(o.took, FLOOR + ms(10));
}

#[tokio::test(start_paused = true)]
async fn a_batch_of_route_examples_does_not_teach_the_delay() {
    let h = policy(HedgeAfter::Auto, 10);
    for _ in 0..MIN_SAMPLES {
        h.observe(ms(20));
    }
    assert_eq!(
        h.delay(DEADLINE),
        Some(ms(50)),
        "2 x 20 ms is under the floor"
    );
    // The route examples, re-embedded 32 to a call on a reload.
    let ask = |_| async {
        tokio::time::sleep(ms(900)).await;
        Ok::<_, ClassifyFailure>(())
    };
    let (result, report) = hedged(&h, DEADLINE, ask).await;
    assert!(result.is_ok());
    h.learn(&report, 32);
    assert_eq!(h.delay(DEADLINE), Some(ms(50)), "unchanged by the batch");
    h.learn(&report, 1);
    assert_eq!(
        h.delay(DEADLINE),
        Some(ms(1000)),
        "a prompt this slow counts"
    );
}

#[test]
fn the_delay_follows_the_pools_p95_within_the_floor_and_half_the_deadline() {
    let h = policy(HedgeAfter::Auto, 10);
    assert_eq!(h.delay(DEADLINE), Some(ms(500)), "unknown pool: a quarter");
    for i in 0..100u64 {
        // 1..=100 ms: p95 is 96 ms.
        h.observe(ms(i + 1));
    }
    assert_eq!(h.delay(DEADLINE), Some(ms(192)));
    for _ in 0..WINDOW {
        h.observe(Duration::from_secs(5));
    }
    assert_eq!(
        h.delay(DEADLINE),
        Some(ms(1000)),
        "at most half the deadline"
    );
    let fast = policy(HedgeAfter::Auto, 10);
    for _ in 0..MIN_SAMPLES {
        fast.observe(ms(1));
    }
    assert_eq!(fast.delay(DEADLINE), Some(FLOOR));
    assert_eq!(policy(HedgeAfter::Off, 10).delay(DEADLINE), None);
    assert_eq!(fixed_300ms().delay(DEADLINE), Some(ms(300)));
    let too_late = policy(HedgeAfter::Fixed(DEADLINE), 10);
    assert_eq!(too_late.delay(DEADLINE), None);
}

#[test]
fn hedges_are_kept_to_the_budget_after_a_saved_up_burst() {
    for (percent, saved, range) in [
        (10, 100, 99..=101),
        (5, 50, 49..=51),
        (1, 10, 9..=11),
        (100, 1000, 1000..=1000),
    ] {
        let h = policy(HedgeAfter::Auto, percent);
        let burst = (0..2000).filter(|_| h.take()).count();
        assert_eq!(burst, saved, "{percent}%: a saved-up burst, then none");
        let sent = (0..1000)
            .filter(|_| {
                h.requested();
                h.take()
            })
            .count();
        assert!(
            range.contains(&sent),
            "{percent}%: {sent} hedges for 1000 requests"
        );
    }
}
