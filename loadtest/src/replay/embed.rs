//! Signals for every question through the router's own code, embedded mode: the encoder and
//! the configured classifiers behind a [`Batcher`] (as the gateway's embedded mode builds
//! them), then [`SignalComputer`]. Encoding thousands of long questions on a CPU takes minutes,
//! so embeddings and classifier outputs are cached on disk, keyed by the encoder's weights,
//! its token limit, the classifier files and the text; signals are recomputed from them on
//! every run (cheap), so a config whose routes or keywords change reuses the cache.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use routemesh_classifier_worker::scorer::{self, Output};
use routemesh_classifier_worker::{BatchOptions, Batcher, Encoder, EncoderOptions, Replica};
use routemesh_common::Signals;
use routemesh_common::config::Config;
use routemesh_signals::{ClassifierMeta, PromptEmbedding, SignalComputer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ReplayError;
use super::data::hex;

/// Texts per job sent to the batcher.
const CHUNK: usize = 32;
/// Jobs in flight at once (one running, one queued behind it).
const IN_FLIGHT: usize = 2;

/// How signals are computed.
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    /// Folder of the cache files; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Draw a progress bar on stderr (only if it is a terminal).
    pub progress: bool,
}

/// What computing the signals took.
#[derive(Debug, Clone, Serialize)]
pub struct EmbedStats {
    pub texts: usize,
    /// Texts found in the cache.
    pub cached: usize,
    /// Texts run through the encoder.
    pub encoded: usize,
    /// Seconds spent encoding (0 when all were cached).
    pub encode_seconds: f64,
    /// The cache file used, if any.
    pub cache_file: Option<PathBuf>,
    /// sha256 of the encoder's model.safetensors.
    pub model_sha256: String,
}

/// One cached encoder result.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cached {
    /// sha256 of the text (hex).
    key: String,
    tokens: usize,
    truncated: bool,
    /// Windows the text was read in.
    windows: usize,
    outputs: BTreeMap<String, Output>,
    vector: Vec<f32>,
}

/// Signals of `texts` (in order) under `config`, which must use the embedded encoder.
pub async fn compute_signals(
    config: &Config,
    texts: &[String],
    opts: &EmbedOptions,
) -> Result<(Vec<Signals>, EmbedStats), ReplayError> {
    let encoder = config.encoder.as_ref().ok_or_else(|| {
        ReplayError::Config("the replay needs `encoder:` (embedded mode) in the config".into())
    })?;
    let model_sha = file_sha256(&encoder.model_dir.join("model.safetensors"))?;
    let mut identity = Sha256::new();
    identity.update(format!(
        "routemesh-replay-embeddings v2\nmodel {model_sha}\nmax_tokens {}\nmax_total_tokens {}\nprecision {}\n",
        encoder.max_tokens, encoder.max_total_tokens, encoder.precision
    ));
    for c in &config.signals.classifiers {
        identity.update(format!("classifier {} {}\n", c.name, dir_sha256(&c.path)?));
    }
    let cache_file = opts
        .cache_dir
        .as_ref()
        .map(|d| d.join(format!("{}.jsonl", &hex(&identity.finalize())[..24])));
    let mut cache = match &cache_file {
        Some(f) => read_cache(f)?,
        None => HashMap::new(),
    };

    let examples = SignalComputer::example_texts(&config.signals);
    let all: Vec<&String> = texts.iter().chain(examples.iter()).collect();
    let keys: Vec<String> = all.iter().map(|t| text_key(t)).collect();
    let mut missing: Vec<(String, String)> = Vec::new();
    let mut queued = std::collections::HashSet::new();
    for (t, k) in all.iter().zip(&keys) {
        if !cache.contains_key(k) && queued.insert(k.clone()) {
            missing.push((k.clone(), (*t).clone()));
        }
    }
    // Similar lengths share a forward pass: far less padding than the data's order.
    missing.sort_by_key(|(_, t)| t.len());
    let cached = all.len() - missing.len();
    let started = Instant::now();
    if !missing.is_empty() {
        let outputs: Vec<String> = config
            .signals
            .classifiers
            .iter()
            .map(|c| c.name.clone())
            .collect();
        let batcher = start_batcher(config).await?;
        let mut writer = match &cache_file {
            Some(f) => Some(open_append(f)?),
            None => None,
        };
        let bar = progress_bar(missing.len() as u64, opts.progress);
        let mut jobs = futures_util::stream::iter(missing.chunks(CHUNK).map(|chunk| {
            let batcher = batcher.clone();
            let outputs = outputs.clone();
            let texts: Vec<String> = chunk.iter().map(|(_, t)| t.clone()).collect();
            async move { batcher.embed_with(texts, outputs, None).await }
        }))
        .buffered(IN_FLIGHT);
        let mut chunks = missing.chunks(CHUNK);
        while let Some(result) = jobs.next().await {
            let embedded = result.map_err(|e| ReplayError::Encode(e.to_string()))?;
            let chunk = chunks.next().unwrap_or_default();
            for ((key, _), item) in chunk.iter().zip(embedded.items) {
                let entry = Cached {
                    key: key.clone(),
                    tokens: item.tokens,
                    truncated: item.truncated,
                    windows: item.windows,
                    outputs: item.outputs,
                    vector: item.vector,
                };
                if let (Some(w), Some(f)) = (writer.as_mut(), &cache_file) {
                    let line = serde_json::to_string(&entry)
                        .map_err(|e| ReplayError::Encode(e.to_string()))?;
                    writeln!(w, "{line}").map_err(|source| ReplayError::Write {
                        path: f.clone(),
                        source,
                    })?;
                }
                cache.insert(key.clone(), entry);
            }
            bar.inc(chunk.len() as u64);
        }
        if let (Some(w), Some(f)) = (writer.as_mut(), &cache_file) {
            w.flush().map_err(|source| ReplayError::Write {
                path: f.clone(),
                source,
            })?;
        }
        bar.finish_and_clear();
    }
    let encode_seconds = if missing.is_empty() {
        0.0
    } else {
        started.elapsed().as_secs_f64()
    };

    let get = |k: &String| {
        cache
            .get(k)
            .ok_or_else(|| ReplayError::Encode("an embedding went missing".into()))
    };
    let example_vectors = keys[texts.len()..]
        .iter()
        .map(|k| get(k).map(|c| c.vector.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let computer = SignalComputer::new(&config.signals, example_vectors)
        .ok_or_else(|| ReplayError::Encode("wrong number of route example embeddings".into()))?
        .with_classifiers(classifier_meta(config)?);
    let signals = texts
        .iter()
        .zip(&keys)
        .map(|(text, k)| {
            let c = get(k)?;
            Ok(computer.compute(
                text,
                Some(PromptEmbedding {
                    vector: &c.vector,
                    tokens: c.tokens,
                    truncated: c.truncated,
                    windows: c.windows,
                    outputs: &c.outputs,
                }),
            ))
        })
        .collect::<Result<Vec<_>, ReplayError>>()?;
    let stats = EmbedStats {
        texts: all.len(),
        cached,
        encoded: missing.len(),
        encode_seconds,
        cache_file,
        model_sha256: model_sha,
    };
    Ok((signals, stats))
}

/// The encoder and every configured classifier behind one batcher, as the gateway's embedded
/// mode builds them (`server::prepare`).
async fn start_batcher(config: &Config) -> Result<Batcher, ReplayError> {
    let Some(e) = config.encoder.clone() else {
        return Err(ReplayError::Config("no encoder configured".into()));
    };
    let defs = config.signals.classifiers.clone();
    tokio::task::spawn_blocking(move || {
        let opts = EncoderOptions {
            max_tokens: e.max_tokens,
            max_total_tokens: e.max_total_tokens,
            precision: e.precision,
        };
        let model = Encoder::load(&e.model_dir, &opts)
            .map_err(|err| ReplayError::Encode(format!("{}: {err}", e.model_dir.display())))?;
        let scorers = defs
            .iter()
            .map(|d| scorer::load_scorer(&d.name, &d.path))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ReplayError::Encode)?;
        let opts = BatchOptions {
            max_batch: e.max_batch,
            max_wait: Duration::ZERO,
            queue: 64,
        };
        let replica = Replica {
            model: Box::new(model),
            scorers,
        };
        Batcher::start_replicas(vec![replica], opts)
            .map_err(|err| ReplayError::Encode(err.to_string()))
    })
    .await
    .map_err(|e| ReplayError::Encode(format!("the loader panicked: {e}")))?
}

fn classifier_meta(config: &Config) -> Result<Vec<ClassifierMeta>, ReplayError> {
    config
        .signals
        .classifiers
        .iter()
        .map(|d| {
            scorer::read_labels(&d.path)
                .map(|labels| ClassifierMeta {
                    name: d.name.clone(),
                    labels: Arc::<[String]>::from(labels),
                    threshold: scorer::read_threshold(&d.path),
                })
                .map_err(ReplayError::Config)
        })
        .collect()
}

fn text_key(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn file_sha256(path: &Path) -> Result<String, ReplayError> {
    let bytes = std::fs::read(path).map_err(|source| ReplayError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(hex(&Sha256::digest(&bytes)))
}

/// sha256 over a folder's files (names and contents, sorted by name; not recursive).
fn dir_sha256(dir: &Path) -> Result<String, ReplayError> {
    let read_err = |source| ReplayError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        h.update(
            f.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        h.update(file_sha256(&f)?);
    }
    Ok(hex(&h.finalize()))
}

/// Reads a cache file; a missing file is an empty cache, a torn last line is skipped.
fn read_cache(path: &Path) -> Result<HashMap<String, Cached>, ReplayError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(source) => {
            return Err(ReplayError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut out = HashMap::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(|source| ReplayError::Read {
            path: path.to_owned(),
            source,
        })?;
        if let Ok(c) = serde_json::from_str::<Cached>(&line) {
            out.insert(c.key.clone(), c);
        }
    }
    Ok(out)
}

fn open_append(path: &Path) -> Result<std::io::BufWriter<std::fs::File>, ReplayError> {
    let write_err = |source| ReplayError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(write_err)?;
    // A run killed mid-line leaves a torn last line: end it, so the next entry stays whole.
    let len = f.metadata().map_err(write_err)?.len();
    if len > 0 {
        use std::io::{Read, Seek, SeekFrom};
        let mut last = [0u8; 1];
        f.seek(SeekFrom::Start(len - 1)).map_err(write_err)?;
        f.read_exact(&mut last).map_err(write_err)?;
        if last[0] != b'\n' {
            f.write_all(b"\n").map_err(write_err)?;
        }
    }
    Ok(std::io::BufWriter::new(f))
}

fn progress_bar(len: u64, show: bool) -> ProgressBar {
    let target = if show && std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    let style = ProgressStyle::with_template(
        "encoding {elapsed_precise} [{bar:32}] {pos}/{len} texts  {per_sec}  eta {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}
