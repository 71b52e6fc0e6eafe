//! The cache's admin endpoints: `GET /admin/cache` (stats per shard),
//! `POST /admin/cache/invalidate` (entries of a tenant, decision and/or
//! model) and `POST /admin/cache/flush` (everything).
//!
//! With an `auth:` section they need the admin token (`http::guard`);
//! without one they are open, like the rest of the gateway.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use routemesh_cache::ScopeFilter;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::openai::ApiError;
use crate::cache::CacheLayer;
use crate::state::AppState;

fn layer(state: &AppState) -> Result<&Arc<CacheLayer>, ApiError> {
    state.cache.as_ref().ok_or(ApiError::CacheDisabled)
}

/// Totals and per-shard counters.
pub(super) async fn cache_stats(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let shards = layer(&state)?.cache.stats().await;
    let total = |f: fn(&routemesh_cache::ShardStats) -> u64| shards.iter().map(f).sum::<u64>();
    Ok(Json(json!({
        "object": "cache.stats",
        "entries": total(|s| u64::try_from(s.entries).unwrap_or(u64::MAX)),
        "bytes": total(|s| s.bytes),
        "hits": total(|s| s.hits),
        "misses": total(|s| s.misses),
        "inserts": total(|s| s.inserts),
        "evictions": total(|s| s.evictions),
        "expirations": total(|s| s.expirations),
        "shards": shards.iter().map(|s| json!({
            "shard": s.shard,
            "available": s.available,
            "entries": s.entries,
            "bytes": s.bytes,
            "index_size": s.index_size,
            "tombstones": s.tombstones,
            "rebuilds": s.rebuilds,
            "hits": s.hits,
            "misses": s.misses,
            "inserts": s.inserts,
            "dropped": s.dropped,
            "evictions": s.evictions,
            "expirations": s.expirations,
            "restarts": s.restarts,
        })).collect::<Vec<_>>(),
    })))
}

/// `{"tenant": "...", "decision": "...", "model": "..."}`, at least one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidateRequest {
    tenant: Option<String>,
    decision: Option<String>,
    model: Option<String>,
}

/// Removes the entries whose scope matches every field given.
pub(super) async fn cache_invalidate(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let layer = layer(&state)?;
    let body = super::read_body(&state, body)?;
    let usage = "expected {\"tenant\": ..., \"decision\": ..., \"model\": ...} with at least one \
                 field (POST /admin/cache/flush removes everything)";
    let req: InvalidateRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("{usage}: {e}"), None))?;
    if req.tenant.is_none() && req.decision.is_none() && req.model.is_none() {
        return Err(ApiError::bad_request(usage, None));
    }
    let filter = ScopeFilter {
        tenant: req.tenant,
        decision: req.decision,
        model: req.model,
    };
    let removed = layer.cache.invalidate(&filter).await;
    tracing::info!(removed, ?filter, "cache entries invalidated");
    Ok(Json(
        json!({ "object": "cache.invalidate", "removed": removed }),
    ))
}

/// Removes every entry.
pub(super) async fn cache_flush(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let removed = layer(&state)?.cache.flush().await;
    tracing::info!(removed, "cache flushed");
    Ok(Json(json!({ "object": "cache.flush", "removed": removed })))
}
