//! The embedded classifier: one inference thread that batches queued prompts.
//!
//! Callers on the async runtime send a job over a bounded channel and await a
//! oneshot reply. The thread blocks for the first job, then takes whatever
//! else is already queued (up to `max_batch`) and embeds it all in one
//! forward pass, so concurrent requests share the model's cost. A full queue
//! is refused at once with [`ClassifyError::Overloaded`], never buffered
//! without bound.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use routemesh_common::Signals;
use routemesh_common::config::Config;
use tokio::sync::oneshot;

use crate::encoder::Encoder;
use crate::error::{ClassifyError, EncoderError};
use crate::signals::SignalComputer;

/// Signals of one prompt and what producing them cost.
#[derive(Debug, Clone)]
pub struct Classified {
    pub signals: Signals,
    pub timings: ClassifyTimings,
    /// Prompts in the forward pass this one shared.
    pub batch_size: usize,
}

/// Where classification time went.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClassifyTimings {
    /// Waiting in the queue for the inference thread.
    pub queue: Duration,
    /// Tokenizing the batch.
    pub tokenize: Duration,
    /// The forward pass and pooling for the batch.
    pub forward: Duration,
    /// Route similarity and keyword matching for this prompt.
    pub signals: Duration,
}

struct Job {
    text: String,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Classified, ClassifyError>>,
}

/// Handle to the inference thread; cheap to clone. The thread stops when the
/// last handle is dropped.
#[derive(Debug, Clone)]
pub struct EmbeddedClassifier {
    tx: SyncSender<Job>,
    capacity: usize,
}

/// Loads the encoder named in `config`, embeds the route examples and starts
/// the inference thread. Blocking: call it off the async executor.
pub fn load_embedded(config: &Config) -> Result<EmbeddedClassifier, EncoderError> {
    let encoder = Encoder::load(&config.encoder.model_dir, config.encoder.max_tokens)?;
    let signals = SignalComputer::build(&encoder, &config.signals, config.encoder.max_batch)?;
    let queue = config.encoder.max_batch * 32;
    EmbeddedClassifier::start(encoder, signals, config.encoder.max_batch, queue).map_err(|source| {
        EncoderError::Io {
            path: "(inference thread)".into(),
            source,
        }
    })
}

impl EmbeddedClassifier {
    /// Starts the inference thread. `queue` bounds the prompts waiting.
    pub fn start(
        encoder: Encoder,
        signals: SignalComputer,
        max_batch: usize,
        queue: usize,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(queue.max(1));
        std::thread::Builder::new()
            .name("routemesh-encoder".into())
            .spawn(move || run(&encoder, &signals, &rx, max_batch.max(1)))?;
        Ok(Self {
            tx,
            capacity: queue.max(1),
        })
    }

    /// Classifies one prompt.
    pub async fn classify(&self, text: String) -> Result<Classified, ClassifyError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            text,
            enqueued: Instant::now(),
            reply,
        };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ClassifyError::Overloaded {
                    queued: self.capacity,
                });
            }
            Err(TrySendError::Disconnected(_)) => return Err(ClassifyError::Stopped),
        }
        rx.await.unwrap_or(Err(ClassifyError::Stopped))
    }
}

fn run(encoder: &Encoder, signals: &SignalComputer, rx: &Receiver<Job>, max_batch: usize) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        // A caller that gave up (timed out, disconnected) costs nothing more.
        batch.retain(|job| !job.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let texts: Vec<&str> = batch.iter().map(|j| j.text.as_str()).collect();
        match encoder.encode(&texts) {
            Ok(encoded) => {
                let n = batch.len();
                for (i, job) in batch.into_iter().enumerate() {
                    let t = Instant::now();
                    let s = signals.compute(
                        &job.text,
                        &encoded.embeddings[i],
                        encoded.token_counts[i],
                        encoded.truncated[i],
                    );
                    let timings = ClassifyTimings {
                        queue: started.saturating_duration_since(job.enqueued),
                        tokenize: encoded.tokenize,
                        forward: encoded.forward,
                        signals: t.elapsed(),
                    };
                    // The caller may have gone away; nothing to do then.
                    let _ = job.reply.send(Ok(Classified {
                        signals: s,
                        timings,
                        batch_size: n,
                    }));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = batch.len(), "encoder failed on a batch");
                let message = e.to_string();
                for job in batch {
                    let _ = job.reply.send(Err(ClassifyError::Failed(message.clone())));
                }
            }
        }
    }
}
