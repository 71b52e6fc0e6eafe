//! Pure retry policy: which endpoint next (by weight), how long to wait
//! before a retry, which statuses are worth retrying. RNG as an argument.

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use rand::Rng;
use routemesh_common::config::RetryPolicy;

/// Picks one of `candidates` (endpoint index, weight) with probability
/// proportional to its weight; `None` when there are none.
pub(super) fn pick_weighted<R: Rng + ?Sized>(
    candidates: &[(usize, u32)],
    rng: &mut R,
) -> Option<usize> {
    let total: u64 = candidates.iter().map(|&(_, w)| u64::from(w)).sum();
    if total == 0 {
        return candidates.first().map(|&(i, _)| i);
    }
    let mut x = rng.random_range(0..total);
    for &(i, w) in candidates {
        let w = u64::from(w);
        if x < w {
            return Some(i);
        }
        x -= w;
    }
    candidates.last().map(|&(i, _)| i)
}

/// The wait before retry number `retry` (1 for the first): exponential from
/// `backoff`, capped at `max_backoff`, with equal jitter (half fixed, half
/// random) so that retries of many requests spread out; at least what the
/// upstream asked with `Retry-After`, up to `max_backoff`.
pub(super) fn backoff<R: Rng + ?Sized>(
    policy: &RetryPolicy,
    retry: u32,
    retry_after: Option<Duration>,
    rng: &mut R,
) -> Duration {
    let factor = 2u32.saturating_pow(retry.saturating_sub(1).min(30));
    let full = policy
        .backoff
        .saturating_mul(factor)
        .min(policy.max_backoff);
    let half = full / 2;
    let jitter = half.mul_f64(rng.random::<f64>());
    let wait = half + jitter;
    match retry_after {
        Some(asked) => wait.max(asked.min(policy.max_backoff)),
        None => wait,
    }
}

/// Statuses worth another attempt: the upstream is overloaded or a proxy
/// in front of it could not reach it.
pub(super) fn retriable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// Whether a status says the endpoint itself is failing (for its breaker):
/// any 5xx. A 429 is a live endpoint asking for less.
pub(super) fn endpoint_failure(status: StatusCode) -> bool {
    status.is_server_error()
}

/// `Retry-After` in delta-seconds (the HTTP-date form is not used by the
/// APIs we forward to and is ignored).
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        }
    }

    /// (min, max) of `backoff` over many draws.
    fn check(retry: u32, retry_after: Option<Duration>) -> (Duration, Duration) {
        let mut rng = StdRng::seed_from_u64(7);
        let waits: Vec<_> = (0..2000)
            .map(|_| backoff(&policy(), retry, retry_after, &mut rng))
            .collect();
        let min = waits.iter().copied().min().unwrap_or_default();
        let max = waits.iter().copied().max().unwrap_or_default();
        (min, max)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_with_equal_jitter_and_is_capped() {
        for (retry, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (40, 1000),
        ] {
            let (min, max) = check(retry, None);
            assert!(min >= ms(full / 2), "retry {retry}: {min:?}");
            assert!(max <= ms(full), "retry {retry}: {max:?}");
            assert!(max - min > ms(full / 4), "retry {retry}: jittered");
        }
    }

    #[test]
    fn retry_after_is_respected_up_to_the_cap() {
        let (min, _) = check(1, Some(ms(700)));
        assert!(min >= ms(700), "{min:?}");
        let (min, max) = check(1, Some(Duration::from_secs(30)));
        assert_eq!((min, max), (ms(1000), ms(1000)), "capped at max_backoff");
    }

    #[test]
    fn weights_share_the_traffic() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut counts = [0u32; 3];
        let cands = [(0, 1), (1, 3), (2, 0)];
        for _ in 0..8000 {
            let i = pick_weighted(&cands, &mut rng).unwrap_or(9);
            counts[i] += 1;
        }
        assert_eq!(counts[2], 0, "weight 0 never drawn");
        assert!((1700..2300).contains(&counts[0]), "{counts:?}");
        assert!((5700..6300).contains(&counts[1]), "{counts:?}");
        assert_eq!(pick_weighted(&[], &mut rng), None);
        assert_eq!(pick_weighted(&[(4, 7)], &mut rng), Some(4));
    }

    #[test]
    fn statuses_and_retry_after_are_classified() {
        let retriable: Vec<u16> = (400..600)
            .filter(|&s| StatusCode::from_u16(s).is_ok_and(retriable_status))
            .collect();
        assert_eq!(retriable, [429, 502, 503, 504]);
        assert!(!endpoint_failure(StatusCode::TOO_MANY_REQUESTS));
        assert!(endpoint_failure(StatusCode::INTERNAL_SERVER_ERROR));
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static(" 3"),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }
}
