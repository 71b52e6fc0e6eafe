//! The batcher's Prometheus series (`routemesh_worker_*`): their names, the
//! buckets of the batch-size histogram and their `# HELP` lines. The
//! batcher records them per pass, in the worker and in an embedded gateway;
//! the exposition itself is `routemesh_runtime::exposition`.

use metrics::Unit;
use routemesh_runtime::exposition::Buckets;

/// Texts in one forward pass of a replica (histogram).
pub const WORKER_BATCH_SIZE: &str = "routemesh_worker_batch_size";
/// Jobs waiting in the batcher's queue for a replica (gauge; set on every
/// submit and every batch taken).
pub const WORKER_QUEUE_DEPTH: &str = "routemesh_worker_queue_depth";
/// Seconds of one forward pass: tokenizing, the encoder and the scorers
/// (histogram).
pub const WORKER_INFERENCE_SECONDS: &str = "routemesh_worker_inference_seconds";

/// Upper bounds of [`WORKER_BATCH_SIZE`]: powers of two up to 256 texts.
pub const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The batcher's histograms that are not `*_seconds`, for
/// `routemesh_runtime::exposition::install`.
pub const BUCKETS: &[Buckets] = &[Buckets {
    metric: WORKER_BATCH_SIZE,
    bounds: BATCH_SIZE_BUCKETS,
}];

/// `# HELP` lines for the batcher's series. The batcher calls it as it
/// starts (after the process installed its recorder; describing twice is
/// harmless).
pub(crate) fn describe() {
    metrics::describe_histogram!(
        WORKER_BATCH_SIZE,
        Unit::Count,
        "Texts in one forward pass of a replica."
    );
    metrics::describe_gauge!(
        WORKER_QUEUE_DEPTH,
        Unit::Count,
        "Jobs waiting in the batcher's queue."
    );
    metrics::describe_histogram!(
        WORKER_INFERENCE_SECONDS,
        Unit::Seconds,
        "Seconds of one forward pass (tokenize, encoder, scorers)."
    );
}
