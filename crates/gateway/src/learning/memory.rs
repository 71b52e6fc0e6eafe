//! The memory of routed requests that `POST /v1/feedback` names by id:
//! bounded in count and age, each taking one rating, only from the tenant
//! that sent it. Pure: times are milliseconds of the learning [`Clock`],
//! passed in; what is dropped is returned, so the caller can mirror it in
//! the learning store (`super::disk`).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::FeedbackError;
use crate::auth::Tenant;

/// Milliseconds since the Unix epoch, on the learning [`Clock`].
pub(crate) type Millis = u64;

/// The learning clock: wall-clock milliseconds that advance with tokio's
/// clock. It reads the system clock once, at start, so that the times one
/// run persists mean the same to the next (a request's age survives a
/// restart), and it moves with tokio's paused time in tests. It never goes
/// back, whatever the system clock does while the gateway runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    wall: Millis,
    mono: tokio::time::Instant,
}

impl Clock {
    pub(crate) fn start() -> Self {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, millis);
        Self {
            wall,
            mono: tokio::time::Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> Millis {
        self.wall.saturating_add(millis(self.mono.elapsed()))
    }
}

fn millis(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A routed request, as remembered for feedback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedRequest {
    pub decision: String,
    pub model: String,
}

/// One remembered request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Remembered {
    /// Who sent it (the tenant's name): only the same tenant may rate it.
    pub(crate) tenant: String,
    pub(crate) routed: RoutedRequest,
    /// When it was routed.
    pub(crate) at: Millis,
    pub(crate) rated: bool,
}

/// Routed requests by id, oldest forgotten first (by count and by age).
#[derive(Debug)]
pub(crate) struct Memory {
    by_id: HashMap<String, Remembered>,
    /// Ids in the order remembered (which is the order of their times).
    order: VecDeque<(String, Millis)>,
    capacity: usize,
    ttl: Millis,
}

impl Memory {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            by_id: HashMap::new(),
            order: VecDeque::new(),
            capacity,
            ttl: millis(ttl),
        }
    }

    fn too_old(&self, at: Millis, now: Millis) -> bool {
        now.saturating_sub(at) > self.ttl
    }

    /// Forgets what is older than the window at `now`, and the oldest
    /// beyond the capacity; returns the ids forgotten.
    pub(crate) fn expire(&mut self, now: Millis) -> Vec<String> {
        let mut gone = Vec::new();
        while let Some((id, at)) = self.order.front() {
            if !(self.order.len() > self.capacity || self.too_old(*at, now)) {
                break;
            }
            // Only drop the entry if it is this one (ids are unique, but
            // be exact anyway).
            if self.by_id.get(id).is_some_and(|r| r.at == *at) {
                self.by_id.remove(id);
                gone.push(id.clone());
            }
            self.order.pop_front();
        }
        gone
    }

    /// Remembers `id` (routed at `entry.at`, which must not be earlier than
    /// what is remembered already); returns the ids forgotten at `now` to
    /// keep within the bounds.
    pub(crate) fn insert(&mut self, id: &str, entry: Remembered, now: Millis) -> Vec<String> {
        self.order.push_back((id.to_owned(), entry.at));
        self.by_id.insert(id.to_owned(), entry);
        self.expire(now)
    }

    /// Marks `id` rated by `tenant` and returns it. Another tenant's request
    /// is unknown to `tenant` (the answer does not tell it exists), and so is
    /// one older than the window at `now`.
    pub(crate) fn rate(
        &mut self,
        id: &str,
        tenant: &Tenant,
        now: Millis,
    ) -> Result<Remembered, FeedbackError> {
        let ttl = self.ttl;
        let Some(r) = self
            .by_id
            .get_mut(id)
            .filter(|r| r.tenant == tenant.as_str() && now.saturating_sub(r.at) <= ttl)
        else {
            return Err(FeedbackError::Unknown(id.to_owned()));
        };
        if r.rated {
            return Err(FeedbackError::AlreadyRated(id.to_owned()));
        }
        r.rated = true;
        Ok(r.clone())
    }

    /// Takes back [`Memory::rate`]'s mark (the rating could not be kept).
    pub(crate) fn unrate(&mut self, id: &str) {
        if let Some(r) = self.by_id.get_mut(id) {
            r.rated = false;
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Remembered> {
        self.by_id.get(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> Tenant {
        Tenant::from_credential(Some(b"Bearer acme"))
    }

    fn entry(d: &str, at: Millis) -> Remembered {
        Remembered {
            tenant: acme().as_str().to_owned(),
            routed: routed(d),
            at,
            rated: false,
        }
    }

    fn routed(d: &str) -> RoutedRequest {
        RoutedRequest {
            decision: d.into(),
            model: "m".into(),
        }
    }

    fn rated(
        m: &mut Memory,
        id: &str,
        tenant: &Tenant,
        now: Millis,
    ) -> Result<String, FeedbackError> {
        m.rate(id, tenant, now).map(|r| r.routed.decision)
    }

    #[test]
    fn feedback_finds_a_request_once() {
        let mut m = Memory::new(10, Duration::from_secs(60));
        let t = 1_000;
        m.insert("a", entry("math", t), t);
        assert_eq!(rated(&mut m, "a", &acme(), t), Ok("math".into()));
        assert_eq!(
            rated(&mut m, "a", &acme(), t),
            Err(FeedbackError::AlreadyRated("a".into()))
        );
        assert_eq!(
            rated(&mut m, "b", &acme(), t),
            Err(FeedbackError::Unknown("b".into()))
        );
        m.unrate("a");
        assert_eq!(
            rated(&mut m, "a", &acme(), t),
            Ok("math".into()),
            "a rating taken back can be given again"
        );
    }

    /// Regression (issue 16, 8): tenant B could rate tenant A's request
    /// given its id. Another tenant's request is unknown to it, and stays
    /// rateable by its own tenant.
    #[test]
    fn feedback_across_tenants_is_refused_as_unknown() {
        let mut m = Memory::new(10, Duration::from_secs(60));
        let t = 1_000;
        m.insert("a", entry("math", t), t);
        let globex = Tenant::from_credential(Some(b"Bearer globex"));
        assert_eq!(
            rated(&mut m, "a", &globex, t),
            Err(FeedbackError::Unknown("a".into()))
        );
        assert_eq!(rated(&mut m, "a", &acme(), t), Ok("math".into()));
    }

    #[test]
    fn memory_is_bounded_in_count_and_age() {
        let mut m = Memory::new(3, Duration::from_secs(60));
        let t = 1_000;
        let mut forgotten = Vec::new();
        for i in 0..5 {
            forgotten.extend(m.insert(&format!("r{i}"), entry("d", t), t));
        }
        assert_eq!(forgotten, ["r0", "r1"], "the oldest, as they go");
        assert_eq!(m.len(), 3);
        assert!(matches!(
            m.rate("r1", &acme(), t),
            Err(FeedbackError::Unknown(_))
        ));
        assert!(m.rate("r4", &acme(), t).is_ok());
        let later = t + 60_001;
        assert!(
            matches!(m.rate("r3", &acme(), later), Err(FeedbackError::Unknown(_))),
            "too old even before it is expired"
        );
        assert_eq!(m.expire(later), ["r2", "r3", "r4"]);
        assert_eq!(m.len(), 0, "expired entries are dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_moves_with_tokios_paused_time() {
        let clock = Clock::start();
        let t = clock.now();
        assert!(t > 1_600_000_000_000, "wall-clock milliseconds: {t}");
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert_eq!(clock.now() - t, 1_500);
    }
}
