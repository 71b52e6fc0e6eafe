//! The sharded semantic cache of routemesh.

#![forbid(unsafe_code)]

// wired to the actors in the next commit
#[allow(dead_code)]
mod index;
#[allow(dead_code)]
mod shard;
mod types;

pub use types::{
    Answer, AnswerKind, CacheSettings, Hit, IndexParams, Insert, Lookup, LookupResult, Scope,
    ScopeFilter, ShardStats, Tier,
};
