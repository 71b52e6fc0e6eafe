//! The sharded semantic cache of routemesh.
//!
//! Not built yet: issue 6 (shard actors with an HNSW index and an exact tier,
//! TTL, sled persistence, tenant isolation). The crate exists so the
//! workspace has its final shape; nothing depends on it yet.

#![forbid(unsafe_code)]
