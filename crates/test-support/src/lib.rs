//! Test fixtures of routemesh (publish = false): what the crates' tests and
//! the benchmarks share, so that no test depends on a benchmark.
//!
//! - [`fake`]: a FAKE OpenAI-compatible upstream (a test fixture, not a
//!   model); loadtest's `fake-upstream` binary serves it.
//! - [`nats_server`]: a real `nats-server` on a free loopback port.
//! - [`gateway`]: the gateway's integration-test harness: the `routemesh`
//!   binary and `classifier-worker serve` as child processes, fakes in
//!   process, the shipped example config pointed at them.
//! - [`model_server`]: a REAL model server (llama.cpp serving SmolLM2-135M),
//!   installed by scripts/model-server.sh.
//! - [`prompts`]: long benign text and a prompt injection, for the tests
//!   of long prompts read in windows.
//! - [`CacheFaults`]: the cache's fault hooks (crash or stall a shard),
//!   compiled into routemesh-cache only through its `fault-injection`
//!   feature, which this crate turns on.
#![forbid(unsafe_code)]

pub mod fake;
pub mod gateway;
pub mod model_server;
pub mod nats_server;
pub mod prompts;

use std::path::PathBuf;
use std::time::Duration;

pub use routemesh_cache::faults::CacheFaults;

/// The workspace root.
pub fn workspace() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// The MiniLM folder: `$ROUTEMESH_MODEL_DIR` or `<workspace>/models/all-MiniLM-L6-v2`.
///
/// # Panics
/// When the folder has no `model.safetensors` (with how to fetch it).
pub fn model_dir() -> PathBuf {
    let dir = std::env::var_os("ROUTEMESH_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("models/all-MiniLM-L6-v2"));
    assert!(
        dir.join("model.safetensors").is_file(),
        "the MiniLM model is missing at {}: run scripts/fetch-model.sh (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// Asks `check` every 100 ms until it gives `Ok(value)`, for at most
/// `within`; `Err(why)` means not yet, and the last `why` is in the error.
///
/// On the wall clock, not tokio's paused time: what it waits for happens in
/// another process (the gateway applying an outcome or storing an answer, a
/// model server starting or logging), which paused time cannot advance —
/// it would only make the deadline pass at once.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Result<T, String>>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let why = match check().await? {
            Ok(value) => return Ok(value),
            Err(why) => why,
        };
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("{what}: not within {within:?}: {why}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
