//! Fault injection for tests: a shard's actor made to panic (its supervisor
//! respawns it and it reloads from sled) or to sleep in its handler (what
//! queues behind it waits; a lookup's deadline passes).
//!
//! Compiled only with the cargo feature `fault-injection` (off by default),
//! which routemesh-test-support and this crate's own tests turn on: these
//! hooks are not part of the cache's API. Cargo unifies features, so a build
//! that includes routemesh-test-support compiles them into every user of
//! the cache in that build; nothing outside tests calls them.

use std::time::Duration;

use crate::Cache;
use crate::actor::ShardMsg;

/// Faults a test can inject into a running [`Cache`]. Both are casts: they
/// return at once, and do nothing for a shard that is down or out of range.
pub trait CacheFaults {
    /// Makes the shard's actor panic, to exercise supervision.
    fn crash_shard(&self, shard: usize);

    /// Makes the shard's actor sleep for `d` in its handler, to exercise
    /// deadlines.
    fn stall_shard(&self, shard: usize, d: Duration);
}

impl CacheFaults for Cache {
    fn crash_shard(&self, shard: usize) {
        self.cast(shard, ShardMsg::Crash);
    }

    fn stall_shard(&self, shard: usize, d: Duration) {
        self.cast(shard, ShardMsg::Stall(d));
    }
}
