//! Dynamic batching in front of an embedding model.
//!
//! Callers on the async runtime submit texts over a bounded channel and await
//! a oneshot reply. Each replica thread owns one model: it blocks for the
//! first job, then collects more until `max_batch` texts or `max_wait` have
//! passed, orders the texts by length (less padding), runs forward passes of
//! at most `max_batch` texts and answers every job. A full queue is refused at
//! once ([`ClassifyError::Overloaded`], retriable); a job whose deadline passed
//! while queued is answered [`ClassifyError::DeadlineExceeded`] without
//! running. The embedded gateway and the NATS worker share this code. Each
//! pass records its size and time, and the queue depth is set on every
//! submit and every batch taken (the `routemesh_worker_*` series of
//! [`crate::metrics`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::oneshot;

use crate::encoder::Encoded;
use crate::error::{ClassifyError, EncoderError};
use crate::metrics::{WORKER_BATCH_SIZE, WORKER_INFERENCE_SECONDS, WORKER_QUEUE_DEPTH};
use crate::scorer::{Output, Scorer, TextEmbedding};

/// Anything that embeds a batch of texts: the real encoder, or the
/// fixed-cost simulation used by scaling benchmarks.
pub trait EmbeddingModel: Send + 'static {
    fn encode(&self, texts: &[&str]) -> Result<Encoded, EncoderError>;

    /// [`EmbeddingModel::encode`] with every token's state kept
    /// ([`Encoded::tokens`]), for token heads; a model without token
    /// states leaves them empty (and token heads then find nothing).
    fn encode_with_tokens(&self, texts: &[&str]) -> Result<Encoded, EncoderError> {
        self.encode(texts)
    }
}

impl EmbeddingModel for crate::encoder::Encoder {
    fn encode(&self, texts: &[&str]) -> Result<Encoded, EncoderError> {
        crate::encoder::Encoder::encode(self, texts)
    }

    fn encode_with_tokens(&self, texts: &[&str]) -> Result<Encoded, EncoderError> {
        crate::encoder::Encoder::encode_with_tokens(self, texts)
    }
}

/// How the batcher groups work.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Most texts in one forward pass.
    pub max_batch: usize,
    /// How long the first job of a batch waits for company; zero takes only
    /// what is already queued.
    pub max_wait: Duration,
    /// Most jobs waiting; more are refused.
    pub queue: usize,
}

/// The embedding of one text.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// Unit-length vector.
    pub vector: Vec<f32>,
    /// Tokens before truncation, special tokens included.
    pub tokens: usize,
    /// Longer than the encoder reads (`max_total_tokens`): only the first
    /// tokens were embedded.
    pub truncated: bool,
    /// Windows of at most the encoder's `max_tokens` it was read in.
    pub windows: usize,
    /// What each requested scorer said, by scorer name.
    pub outputs: BTreeMap<String, Output>,
}

/// One model replica: the encoder and the scorers that run on its output.
pub struct Replica {
    pub model: Box<dyn EmbeddingModel>,
    pub scorers: Vec<Box<dyn Scorer>>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.scorers.iter().map(|s| s.name()).collect();
        f.debug_struct("Replica")
            .field("scorers", &names)
            .finish_non_exhaustive()
    }
}

/// The answer to one job.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// One per submitted text, in order.
    pub items: Vec<Embedding>,
    pub timings: EmbedTimings,
    /// Texts in the largest forward pass this job shared.
    pub batch_size: usize,
}

/// Where a job's time went.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmbedTimings {
    /// From submission until its batch started.
    pub queue: Duration,
    /// Tokenizing, summed over the job's forward passes.
    pub tokenize: Duration,
    /// Forward passes and pooling, summed.
    pub forward: Duration,
}

struct Job {
    texts: Vec<String>,
    /// Scorers to run on these texts.
    outputs: Vec<String>,
    enqueued: Instant,
    deadline: Option<Instant>,
    reply: oneshot::Sender<Result<Embedded, ClassifyError>>,
}

/// Handle to the replica threads; cheap to clone. The threads stop when the
/// last handle is dropped, after finishing the jobs they hold.
#[derive(Debug, Clone)]
pub struct Batcher {
    tx: Sender<Job>,
    capacity: usize,
    scorers: Arc<BTreeSet<String>>,
}

impl Batcher {
    /// Starts one thread per model replica, all fed from one queue.
    pub fn start(
        models: Vec<Box<dyn EmbeddingModel>>,
        opts: BatchOptions,
    ) -> std::io::Result<Self> {
        let replicas = models
            .into_iter()
            .map(|model| Replica {
                model,
                scorers: Vec::new(),
            })
            .collect();
        Self::start_replicas(replicas, opts)
    }

    /// Starts one thread per replica. Every replica must carry the same
    /// scorers (by name).
    pub fn start_replicas(replicas: Vec<Replica>, opts: BatchOptions) -> std::io::Result<Self> {
        crate::metrics::describe();
        let scorers: BTreeSet<String> = replicas
            .first()
            .map(|r| r.scorers.iter().map(|s| s.name().to_owned()).collect())
            .unwrap_or_default();
        let capacity = opts.queue.max(1);
        let opts = BatchOptions {
            max_batch: opts.max_batch.max(1),
            queue: capacity,
            ..opts
        };
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        for (i, replica) in replicas.into_iter().enumerate() {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("routemesh-encoder-{i}"))
                .spawn(move || run(&replica, &rx, opts))?;
        }
        Ok(Self {
            tx,
            capacity,
            scorers: Arc::new(scorers),
        })
    }

    /// Names of the scorers every replica runs.
    pub fn scorers(&self) -> &BTreeSet<String> {
        &self.scorers
    }

    /// Embeds `texts`; gives up on them at `deadline` if they have not started.
    pub async fn embed(
        &self,
        texts: Vec<String>,
        deadline: Option<Instant>,
    ) -> Result<Embedded, ClassifyError> {
        self.embed_with(texts, Vec::new(), deadline).await
    }

    /// Embeds `texts` and runs the named scorers on them.
    pub async fn embed_with(
        &self,
        texts: Vec<String>,
        outputs: Vec<String>,
        deadline: Option<Instant>,
    ) -> Result<Embedded, ClassifyError> {
        if let Some(unknown) = outputs.iter().find(|o| !self.scorers.contains(*o)) {
            return Err(ClassifyError::UnknownOutput {
                name: unknown.clone(),
                known: self.scorers.iter().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        let (reply, rx) = oneshot::channel();
        let job = Job {
            texts,
            outputs,
            enqueued: Instant::now(),
            deadline,
            reply,
        };
        match self.tx.try_send(job) {
            Ok(()) => metrics::gauge!(WORKER_QUEUE_DEPTH).set(self.tx.len() as f64),
            Err(TrySendError::Full(_)) => {
                return Err(ClassifyError::Overloaded {
                    queued: self.capacity,
                });
            }
            Err(TrySendError::Disconnected(_)) => return Err(ClassifyError::Stopped),
        }
        rx.await.unwrap_or(Err(ClassifyError::Stopped))
    }

    /// Jobs waiting for a replica.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }
}

fn run(replica: &Replica, rx: &Receiver<Job>, opts: BatchOptions) {
    while let Ok(first) = rx.recv() {
        let mut texts = first.texts.len();
        let mut jobs = vec![first];
        let until = Instant::now() + opts.max_wait;
        while texts < opts.max_batch {
            let next = if opts.max_wait.is_zero() {
                rx.try_recv().ok()
            } else {
                rx.recv_deadline(until).ok()
            };
            let Some(job) = next else { break };
            texts += job.texts.len();
            jobs.push(job);
        }
        metrics::gauge!(WORKER_QUEUE_DEPTH).set(rx.len() as f64);
        run_jobs(replica, jobs, opts.max_batch);
    }
}

/// Runs a group of jobs as forward passes of at most `max_batch` texts,
/// shortest texts together.
fn run_jobs(replica: &Replica, jobs: Vec<Job>, max_batch: usize) {
    let model = replica.model.as_ref();
    let started = Instant::now();
    let mut live = Vec::with_capacity(jobs.len());
    for job in jobs {
        if job.reply.is_closed() {
            continue; // the caller gave up; costs nothing more
        }
        if job.deadline.is_some_and(|d| d <= started) {
            let _ = job.reply.send(Err(ClassifyError::DeadlineExceeded));
            continue;
        }
        live.push(job);
    }
    // (job, text) pairs, shortest first: similar lengths share a pass.
    let mut order: Vec<(usize, usize)> = live
        .iter()
        .enumerate()
        .flat_map(|(j, job)| (0..job.texts.len()).map(move |t| (j, t)))
        .collect();
    order.sort_by_key(|&(j, t)| live[j].texts[t].len());

    let mut out: Vec<Vec<Option<Embedding>>> =
        live.iter().map(|j| vec![None; j.texts.len()]).collect();
    let mut timings: Vec<EmbedTimings> = live
        .iter()
        .map(|j| EmbedTimings {
            queue: started.saturating_duration_since(j.enqueued),
            ..EmbedTimings::default()
        })
        .collect();
    let mut batch_size = vec![0usize; live.len()];
    for chunk in order.chunks(max_batch) {
        let texts: Vec<&str> = chunk
            .iter()
            .map(|&(j, t)| live[j].texts[t].as_str())
            .collect();
        let pass = Instant::now();
        // token states only when a token head is asked for in this chunk
        let keep_tokens = replica.scorers.iter().any(|s| {
            s.needs_tokens()
                && chunk
                    .iter()
                    .any(|&(j, _)| live[j].outputs.iter().any(|o| o == s.name()))
        });
        let encoded = if keep_tokens {
            model.encode_with_tokens(&texts)
        } else {
            model.encode(&texts)
        };
        let encoded = match encoded {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, texts = texts.len(), "encoder failed on a batch");
                fail_all(live, &e.to_string());
                return;
            }
        };
        let n = texts.len();
        if encoded.embeddings.len() != n
            || encoded.token_counts.len() != n
            || encoded.truncated.len() != n
        {
            let message = format!(
                "the model gave {} embeddings for {n} texts",
                encoded.embeddings.len()
            );
            tracing::error!(error = %message, "the encoder answered a batch short");
            fail_all(live, &message);
            return;
        }
        let scored = match run_scorers(replica, &live, chunk, &texts, &encoded) {
            Ok(s) => s,
            Err(message) => {
                tracing::error!(error = %message, texts = texts.len(), "a scorer failed on a batch");
                fail_all(live, &message);
                return;
            }
        };
        metrics::histogram!(WORKER_INFERENCE_SECONDS).record(pass.elapsed().as_secs_f64());
        metrics::histogram!(WORKER_BATCH_SIZE).record(texts.len() as f64);
        let mut seen = vec![false; live.len()];
        for ((k, &(j, t)), outputs) in chunk.iter().enumerate().zip(scored) {
            out[j][t] = Some(Embedding {
                vector: encoded.embeddings[k].clone(),
                tokens: encoded.token_counts[k],
                truncated: encoded.truncated[k],
                windows: text_embedding(&encoded, k).windows.len(),
                outputs,
            });
            if !seen[j] {
                seen[j] = true;
                timings[j].tokenize += encoded.tokenize;
                timings[j].forward += encoded.forward;
                batch_size[j] = batch_size[j].max(chunk.len());
            }
        }
    }
    for (j, job) in live.into_iter().enumerate() {
        let items: Option<Vec<Embedding>> = std::mem::take(&mut out[j]).into_iter().collect();
        let result = match items {
            Some(items) => Ok(Embedded {
                items,
                timings: timings[j],
                batch_size: batch_size[j],
            }),
            None => Err(ClassifyError::Failed("an embedding went missing".into())),
        };
        let _ = job.reply.send(result);
    }
}

fn fail_all(jobs: Vec<Job>, message: &str) {
    for job in jobs {
        let _ = job
            .reply
            .send(Err(ClassifyError::Failed(message.to_owned())));
    }
}

/// Runs each scorer some text of the chunk asked for, on just those texts;
/// returns the outputs per text of the chunk.
fn run_scorers(
    replica: &Replica,
    jobs: &[Job],
    chunk: &[(usize, usize)],
    texts: &[&str],
    encoded: &Encoded,
) -> Result<Vec<BTreeMap<String, Output>>, String> {
    let embeddings: Vec<TextEmbedding<'_>> = (0..chunk.len())
        .map(|k| text_embedding(encoded, k))
        .collect();
    let mut outputs: Vec<BTreeMap<String, Output>> = vec![BTreeMap::new(); chunk.len()];
    for scorer in &replica.scorers {
        let wanted: Vec<usize> = (0..chunk.len())
            .filter(|&k| jobs[chunk[k].0].outputs.iter().any(|o| o == scorer.name()))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let t: Vec<&str> = wanted.iter().map(|&k| texts[k]).collect();
        let e: Vec<TextEmbedding<'_>> = wanted.iter().map(|&k| embeddings[k]).collect();
        let scores = scorer
            .score(&t, &e)
            .map_err(|m| format!("{}: {m}", scorer.name()))?;
        if scores.len() != wanted.len() {
            return Err(format!(
                "{} returned {} outputs for {} texts",
                scorer.name(),
                scores.len(),
                wanted.len()
            ));
        }
        for (k, output) in wanted.into_iter().zip(scores) {
            outputs[k].insert(scorer.name().to_owned(), output);
        }
    }
    Ok(outputs)
}

/// Text `k`'s embeddings; a model that gives no windows (a stand-in) has
/// its one vector as the only window.
fn text_embedding(encoded: &Encoded, k: usize) -> TextEmbedding<'_> {
    let combined = &encoded.embeddings[k];
    let tokens = encoded.tokens.get(k);
    match (encoded.windows.get(k), encoded.window_tokens.get(k)) {
        (Some(windows), Some(window_tokens))
            if !windows.is_empty() && windows.len() == window_tokens.len() =>
        {
            TextEmbedding {
                combined,
                windows,
                window_tokens,
                tokens,
            }
        }
        _ => TextEmbedding {
            combined,
            windows: std::slice::from_ref(combined),
            window_tokens: encoded.token_counts.get(k..=k).unwrap_or(&[1]),
            tokens,
        },
    }
}
