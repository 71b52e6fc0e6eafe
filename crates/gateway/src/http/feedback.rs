//! `POST /v1/feedback`: a client rates a routed answer; `GET
//! /admin/learning`: what the learner knows.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::openai::ApiError;
use crate::auth::Tenant;
use crate::learning::Taken;
use crate::state::AppState;

/// `{"request_id": "...", "reward": 0.8}` or `{"request_id": "...", "reward": "up"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackRequest {
    request_id: String,
    reward: Reward,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Reward {
    Number(f64),
    Word(String),
}

impl Reward {
    fn value(&self) -> Result<f64, ApiError> {
        match self {
            Self::Number(r) if (0.0..=1.0).contains(r) => Ok(*r),
            Self::Word(w) if w == "up" => Ok(1.0),
            Self::Word(w) if w == "down" => Ok(0.0),
            Self::Number(r) => Err(ApiError::bad_request(
                format!("reward {r} is not in [0, 1]"),
                Some("reward".into()),
            )),
            Self::Word(w) => Err(ApiError::bad_request(
                format!("reward `{w}`: use a number in [0, 1], \"up\" or \"down\""),
                Some("reward".into()),
            )),
        }
    }
}

/// 200 when the rating was applied before the answer (`share: local`),
/// 202 when it is safely queued for the stream (`share: jetstream`, at
/// once, whether NATS is up or not) or for the learner; the body is the
/// same, its `status` saying which (`applied`, `queued`). Either way it is
/// applied once, and a second rating of the request is a 409.
pub(super) async fn feedback(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = super::read_body(&state, body)?;
    let req: FeedbackRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            format!(
                "expected {{\"request_id\": \"<x-routemesh-request-id of the answer>\", \"reward\": 0..1 | \"up\" | \"down\"}}: {e}"
            ),
            None,
        )
    })?;
    let reward = req.reward.value()?;
    let accepted = state
        .learning
        .feedback(&req.request_id, &tenant, reward)
        .await?;
    let status = match accepted.taken {
        Taken::Applied => StatusCode::OK,
        Taken::Queued => StatusCode::ACCEPTED,
    };
    Ok((
        status,
        Json(json!({
            "object": "feedback",
            "request_id": req.request_id,
            "decision": accepted.routed.decision,
            "model": accepted.routed.model,
            "reward": reward,
            "status": accepted.taken.as_str(),
        })),
    ))
}

/// The learned posteriors per (decision, model), the sharing mode and the
/// last stream sequence applied.
pub(super) async fn learning(State(state): State<AppState>) -> Json<Value> {
    Json(state.learning.describe())
}
