//! One client connection's state, as the listener's watchdog and eviction
//! read it, and the registry of open connections.
//!
//! The clock is tokio's (milliseconds since the registry started), so the
//! watchdog's rules are tested on paused time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use routemesh_common::config::ServerTimeouts;
use tokio::sync::Notify;
use tokio::time::Instant;

/// No time recorded.
const NEVER: u64 = u64::MAX;

/// Why the listener closed a connection itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// Nothing in flight and no byte for `server.timeouts.idle`.
    Idle,
    /// A request head begun but not finished within `header_read`.
    HeaderRead,
    /// Closed to admit a new connection at the limit.
    Evicted,
}

impl Closed {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::HeaderRead => "header_read",
            Self::Evicted => "evicted",
        }
    }
}

/// What one connection is doing, updated by its I/O (bytes read), its
/// service (requests begun and ended) and the body reader.
#[derive(Debug)]
pub(crate) struct Conn {
    epoch: Instant,
    /// Requests being handled: service called, response not yet sent.
    in_flight: AtomicUsize,
    /// Of those, requests whose body is still being read.
    reading_body: AtomicUsize,
    /// When the first byte of a request head arrived with nothing in
    /// flight; [`NEVER`] when no head is begun.
    head_since: AtomicU64,
    /// When the connection last had nothing in flight and no head begun
    /// (accepted, or its last response ended).
    idle_since: AtomicU64,
    /// When bytes last arrived (eviction takes the longest silent first).
    last_read: AtomicU64,
    /// Told to the watchdog: the state changed (recompute the deadline) or
    /// the connection is evicted.
    changed: Notify,
    evicted: std::sync::atomic::AtomicBool,
}

impl Conn {
    fn new(epoch: Instant) -> Self {
        let now = ms(epoch, Instant::now());
        Self {
            epoch,
            in_flight: AtomicUsize::new(0),
            reading_body: AtomicUsize::new(0),
            head_since: AtomicU64::new(NEVER),
            idle_since: AtomicU64::new(now),
            last_read: AtomicU64::new(now),
            changed: Notify::new(),
            evicted: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        ms(self.epoch, Instant::now())
    }

    /// Bytes arrived.
    pub(crate) fn read(&self) {
        let now = self.now();
        self.last_read.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0 {
            // The first byte of a head starts its clock; later bytes do not
            // extend it.
            let _ =
                self.head_since
                    .compare_exchange(NEVER, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// Whether no request is in flight (hyper's own rejections are written
    /// only then).
    pub(crate) fn is_between_requests(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// A request's head was read and its handler called; the returned guard
    /// ends it when the response is done (or dropped).
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NEVER, Ordering::Release);
        self.changed.notify_one();
        InFlight { conn: self.clone() }
    }

    /// The request's body is being read until the guard drops: such a
    /// connection may be evicted like an idle one.
    pub(crate) fn reading_body(self: &Arc<Self>) -> ReadingBody {
        self.reading_body.fetch_add(1, Ordering::AcqRel);
        ReadingBody { conn: self.clone() }
    }

    /// Whether eviction may close it: nothing in flight, or every request
    /// in flight still sending its body.
    fn evictable(&self) -> bool {
        let in_flight = self.in_flight.load(Ordering::Acquire);
        in_flight == 0 || self.reading_body.load(Ordering::Acquire) >= in_flight
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.changed.notify_one();
    }

    /// When the watchdog closes it if nothing changes, and why; `None`
    /// while a request is in flight (the body reader bounds its body).
    fn deadline(&self, limits: &ServerTimeouts) -> Option<(u64, Closed)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let head = self.head_since.load(Ordering::Acquire);
        if head != NEVER {
            return Some((
                head.saturating_add(as_ms(limits.header_read)),
                Closed::HeaderRead,
            ));
        }
        let idle = self.idle_since.load(Ordering::Acquire);
        Some((idle.saturating_add(as_ms(limits.idle)), Closed::Idle))
    }

    /// Resolves when the connection must be closed, and why.
    pub(crate) async fn watch(&self, limits: ServerTimeouts) -> Closed {
        loop {
            // Registered before reading the state, so no change is missed.
            let changed = self.changed.notified();
            if self.evicted.load(Ordering::Acquire) {
                return Closed::Evicted;
            }
            match self.deadline(&limits) {
                Some((at, why)) if at <= self.now() => return why,
                Some((at, _)) => {
                    let at = self.epoch + Duration::from_millis(at);
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// A request in flight on a [`Conn`]; dropping it ends the request.
#[derive(Debug)]
pub(crate) struct InFlight {
    conn: Arc<Conn>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.conn.now();
        if self.conn.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.conn.idle_since.store(now, Ordering::Release);
        }
        self.conn.changed.notify_one();
    }
}

/// A body being read on a [`Conn`].
#[derive(Debug)]
pub(crate) struct ReadingBody {
    conn: Arc<Conn>,
}

impl Drop for ReadingBody {
    fn drop(&mut self) {
        self.conn.reading_body.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections, for eviction at the limit.
#[derive(Debug)]
pub(crate) struct Registry {
    epoch: Instant,
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Conn>>>,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            next: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
        }
    }

    /// Registers a new connection; the guard unregisters it.
    pub(crate) fn open(self: &Arc<Self>) -> (Arc<Conn>, Registered) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(self.epoch));
        self.lock().insert(id, conn.clone());
        (
            conn,
            Registered {
                registry: self.clone(),
                id,
            },
        )
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Closes the evictable connection silent the longest (idle, or still
    /// sending its head or body); `false` when every connection is busy.
    pub(crate) fn evict_one(&self) -> bool {
        let open = self.lock();
        let victim = open
            .values()
            .filter(|c| c.evictable() && !c.evicted.load(Ordering::Acquire))
            .min_by_key(|c| c.last_read.load(Ordering::Relaxed));
        match victim {
            Some(c) => {
                c.evict();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection's place in the [`Registry`], freed on drop.
#[derive(Debug)]
pub(crate) struct Registered {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

fn ms(epoch: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX - 1)
}

fn as_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ServerTimeouts {
        ServerTimeouts {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
            idle: Duration::from_secs(60),
        }
    }

    /// Resolves the watchdog of `conn` on paused time, returning why and
    /// after how long.
    async fn closed_after(conn: &Arc<Conn>) -> (Closed, Duration) {
        let start = Instant::now();
        let why = conn.watch(limits()).await;
        (why, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_is_closed_after_the_idle_timeout() {
        let registry = Arc::new(Registry::new());
        let (conn, _reg) = registry.open();
        assert_eq!(
            closed_after(&conn).await,
            (Closed::Idle, Duration::from_secs(60))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_begun_must_end_within_header_read_however_slowly_it_trickles() {
        let registry = Arc::new(Registry::new());
        let (conn, _reg) = registry.open();
        tokio::time::advance(Duration::from_secs(5)).await;
        conn.read();
        // A byte every second does not extend the head's clock.
        let trickle = {
            let conn = conn.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    conn.read();
                }
            }
        };
        let why = tokio::select! {
            why = closed_after(&conn) => why,
            () = trickle => unreachable!(),
        };
        assert_eq!(why, (Closed::HeaderRead, Duration::from_secs(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_never_timed_out_and_idle_counts_from_its_end() {
        let registry = Arc::new(Registry::new());
        let (conn, _reg) = registry.open();
        conn.read();
        let request = conn.begin();
        let watchdog = tokio::spawn({
            let conn = conn.clone();
            async move { closed_after(&conn).await }
        });
        // A long answer (a slow stream) is not a timeout.
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!watchdog.is_finished());
        drop(request);
        let (why, after) = watchdog.await.expect("the watchdog");
        assert_eq!(why, Closed::Idle);
        assert_eq!(after, Duration::from_secs(660));
    }

    #[tokio::test(start_paused = true)]
    async fn eviction_takes_the_longest_silent_idle_or_sending_connection_never_a_busy_one() {
        let registry = Arc::new(Registry::new());
        let (busy, _r1) = registry.open();
        let _serving = busy.begin();
        tokio::time::advance(Duration::from_secs(1)).await;
        let (sending, _r2) = registry.open();
        let _request = sending.begin();
        let _body = sending.reading_body();
        tokio::time::advance(Duration::from_secs(1)).await;
        let (idle, _r3) = registry.open();
        idle.read();

        assert!(registry.evict_one());
        assert_eq!(
            sending.watch(limits()).await,
            Closed::Evicted,
            "silent longest"
        );
        assert!(registry.evict_one());
        assert_eq!(idle.watch(limits()).await, Closed::Evicted);
        assert!(!registry.evict_one(), "the busy connection stays");
        assert_eq!(registry.len(), 3);
        drop(_r3);
        assert_eq!(registry.len(), 2);
    }
}
