//! Hot reload: on SIGHUP, or when the config file's content changes, the
//! gateway reads the file again and, if the new config is valid, swaps in a
//! new [`Live`] version (config, upstream pool, route-example embeddings,
//! classifier when its definitions changed). Requests in flight finish on
//! the version they started with; the next request sees the new one.
//!
//! An invalid file, a classifier that cannot load, or a change to a section
//! that only takes effect at start (`server`, `classifier`, `encoder`,
//! `learning`, `cache`, `metrics`, `auth`, `tracing`, `ext_proc`; in mesh mode also
//! `signals.classifiers`) keeps the running version and says why in the log.
//! The file is polled (content hash) rather than watched with inotify: it
//! works the same for editors that replace the file and for Kubernetes
//! ConfigMap symlink swaps, at the cost of one small read per interval.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use routemesh_common::Config;
use routemesh_common::config::{ConfigErrors, ExtProcConfig, MetricsConfig, NatsConfig, Transport};
use tokio::signal::unix::{SignalKind, signal};

use crate::classify::Classifier;
use crate::config_file::{self, LoadError};
use crate::startup::{self, ServeError};
use crate::state::{Gateway, Live};
use crate::upstream::UpstreamPool;

/// Command-line settings that replace config values, applied again to
/// every reloaded file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`
    pub listen: Option<SocketAddr>,
    /// `--nats URL --pool NAME`
    pub nats: Option<(String, String)>,
    /// `--metrics-listen`
    pub metrics_listen: Option<SocketAddr>,
    /// `--ext-proc-listen`
    pub ext_proc_listen: Option<SocketAddr>,
}

impl Overrides {
    pub fn apply(&self, config: &mut Config) {
        if let Some(addr) = self.listen {
            config.server.listen = addr;
        }
        if let Some((url, pool)) = &self.nats {
            config.classifier.transport = Transport::Nats {
                pool: pool.clone(),
                nats: NatsConfig::plain(url.clone()),
            };
            config.encoder = None;
        }
        if let Some(listen) = self.metrics_listen {
            config.metrics = Some(MetricsConfig { listen });
        }
        if let Some(listen) = self.ext_proc_listen {
            config.ext_proc = Some(ExtProcConfig { listen });
        }
    }
}

/// Where the config comes from and how often to look at it.
#[derive(Debug, Clone)]
pub struct ReloadSource {
    pub path: PathBuf,
    pub overrides: Overrides,
    /// How often the file is checked for changes; `None`: only on SIGHUP.
    pub poll: Option<Duration>,
}

/// Why a reload kept the running config.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{0}")]
    Labels(ConfigErrors),
    #[error("{0} changed: that takes effect only when the gateway restarts")]
    NeedsRestart(String),
    #[error("the gateway is still starting")]
    Starting,
    #[error(transparent)]
    Prepare(#[from] ServeError),
}

/// Reloads on SIGHUP and, with `source.poll`, when the file's content
/// changes; runs until the process ends.
pub async fn run(gateway: Arc<Gateway>, source: ReloadSource) {
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload by file change only");
            None
        }
    };
    let mut seen = fingerprint(&source.path);
    let mut tick = source.poll.map(tokio::time::interval);
    loop {
        let why = tokio::select! {
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => None } } => "SIGHUP",
            _ = async { match tick.as_mut() { Some(t) => t.tick().await, None => std::future::pending().await } } => {
                let now = fingerprint(&source.path);
                if now == seen || now.is_none() {
                    continue;
                }
                "file change"
            }
        };
        match reload(&gateway, &source).await {
            Ok(()) => {
                seen = fingerprint(&source.path);
                tracing::info!(trigger = why, path = %source.path.display(), "config reloaded");
                startup::announce("routemesh config reloaded");
            }
            Err(ReloadError::Starting) => {
                tracing::info!(
                    trigger = why,
                    "config change noticed while starting; trying again shortly"
                );
            }
            Err(e) => {
                // Not tried again until the file changes once more.
                seen = fingerprint(&source.path);
                tracing::warn!(trigger = why, path = %source.path.display(), error = %e, "config not reloaded; the running config stays");
            }
        }
    }
}

/// The file's content hash; `None` when it cannot be read (mid-replace).
fn fingerprint(path: &std::path::Path) -> Option<u128> {
    std::fs::read(path)
        .ok()
        .map(|b| xxhash_rust::xxh3::xxh3_128(&b))
}

/// Reads, checks and swaps in the config at `source.path`.
pub async fn reload(gateway: &Gateway, source: &ReloadSource) -> Result<(), ReloadError> {
    let mut config = config_file::load(&source.path)?;
    source.overrides.apply(&mut config);
    startup::check_classifier_labels(&config).map_err(ReloadError::Labels)?;
    let old = gateway.live();
    let Some(ready) = old.ready.clone() else {
        return Err(ReloadError::Starting);
    };
    let changed = restart_only_changes(&old.config, &config);
    if !changed.is_empty() {
        return Err(ReloadError::NeedsRestart(changed.join(", ")));
    }
    let upstreams = UpstreamPool::new(&config).map_err(ServeError::from)?;
    // The classifier runs the configured classifiers on every prompt: load
    // a new one only when their definitions changed (embedded mode; mesh
    // mode refused that above).
    let same_classifiers = debug_eq(&old.config.signals.classifiers, &config.signals.classifiers);
    let classifier: Arc<Classifier> = if same_classifiers {
        ready.classifier.clone()
    } else {
        startup::check_model_files(&config)?;
        Arc::new(startup::load_embedded(&config).await?)
    };
    let ready = startup::prepare_routing(&config, classifier).await?;
    gateway.learning.learner.reconfigure(&config);
    gateway.replace(Live {
        config: Arc::new(config),
        upstreams: Arc::new(upstreams),
        ready: Some(Arc::new(ready)),
    });
    Ok(())
}

/// Sections of `new` that differ from `old` but are only read at start.
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |name: &'static str, a: &dyn Debug, b: &dyn Debug| {
        if format!("{a:?}") != format!("{b:?}") {
            changed.push(name);
        }
    };
    check("server", &old.server, &new.server);
    check("classifier", &old.classifier, &new.classifier);
    check("encoder", &old.encoder, &new.encoder);
    check("learning", &old.learning, &new.learning);
    check("cache", &old.cache, &new.cache);
    check("metrics", &old.metrics, &new.metrics);
    check("auth", &old.auth, &new.auth);
    check("tracing", &old.tracing, &new.tracing);
    check("ext_proc", &old.ext_proc, &new.ext_proc);
    if matches!(new.classifier.transport, Transport::Nats { .. }) {
        check(
            "signals.classifiers",
            &old.signals.classifiers,
            &new.signals.classifiers,
        );
    }
    changed
}

fn debug_eq<T: Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}
