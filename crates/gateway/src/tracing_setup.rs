//! The process's tracing subscriber: the log on stderr (filtered by
//! `ROUTEMESH_LOG`) and, with `tracing.otlp` in the config, OpenTelemetry
//! export of the gateway's spans over OTLP/HTTP (protobuf).
//!
//! Each request's `request` span (`request_id`, `method`, `path`; opened by
//! the request-id middleware in `http::meta`) is the root of one trace, and
//! the spans opened under it (`auth`, with the tenant) are its children.
//! Spans end in a batch span processor, a task on the gateway's Tokio
//! runtime that posts them to the collector through our own reqwest client
//! (rustls with `ring`, like every other client in the process).
//!
//! Only routemesh's own spans and events at info level and above are
//! exported. Debug events are left out, so nothing logged at debug reaches
//! a collector, and so is every other crate's instrumentation, the HTTP
//! client that carries the export included (it would trace its own
//! exports). No span carries prompt text: ids, method, path, tenant.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use routemesh_common::config::OtlpConfig;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::filter::{EnvFilter, FilterFn};
use tracing_subscriber::layer::{Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The environment variable holding the log filter.
const LOG_ENV: &str = "ROUTEMESH_LOG";
/// The log filter without [`LOG_ENV`].
const DEFAULT_LOG: &str = "info,hnsw_rs=warn";
/// Longest time one export may take, retries included; it also bounds how
/// long an unreachable collector holds up the exit.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// The instrumentation scope of the exported spans.
const SCOPE: &str = "routemesh-gateway";

/// Why the subscriber could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    #[error("tracing.otlp: cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("tracing.otlp: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("cannot install the log subscriber: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

/// The trace export, kept until exit: [`Tracing::shutdown`] sends the spans
/// still buffered.
#[derive(Debug)]
#[must_use = "call shutdown() at exit, or the buffered spans are lost"]
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
}

impl Tracing {
    /// Exports what is buffered and stops the export. Call it from outside
    /// the runtime (after `block_on` returned) while the runtime still
    /// exists: the processor's task runs on it.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("routemesh: tracing.otlp: spans not flushed at exit: {e}");
        }
    }
}

/// Installs the log only (commands that serve nothing).
pub fn init_log() -> Result<(), TracingError> {
    tracing_subscriber::registry()
        .with(log_layer())
        .try_init()?;
    Ok(())
}

/// Installs the log and, when `otlp` is set, the OTLP export. Call it
/// inside the Tokio runtime that will serve (`Runtime::enter`): the batch
/// span processor is spawned on it.
pub fn init(otlp: Option<&OtlpConfig>) -> Result<Tracing, TracingError> {
    let provider = otlp.map(provider).transpose()?;
    let export = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(SCOPE))
            .with_threads(false)
            .with_filter(FilterFn::new(exported).with_max_level_hint(Level::INFO))
    });
    tracing_subscriber::registry()
        .with(log_layer())
        .with(export)
        .try_init()?;
    Ok(Tracing { provider })
}

/// Human-readable lines on stderr, filtered by `ROUTEMESH_LOG`.
fn log_layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG));
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter)
}

/// Whether a span or event goes to the collector: routemesh's own, at
/// info level or above.
fn exported(meta: &Metadata<'_>) -> bool {
    meta.target().starts_with("routemesh") && *meta.level() <= Level::INFO
}

/// The tracer provider: OTLP/HTTP exporter, batch processor, sampler and
/// the `service.name` resource.
fn provider(otlp: &OtlpConfig) -> Result<SdkTracerProvider, TracingError> {
    routemesh_runtime::install_tls_provider();
    let client = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(TracingError::Client)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(otlp.endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()?;
    // Batch size, queue and delay keep the SDK's defaults (512 spans, 2048
    // queued, every 5 s), which the OTEL_BSP_* variables can change.
    let batch = BatchSpanProcessor::builder(exporter, Tokio).build();
    let root = if otlp.sample_ratio >= 1.0 {
        Sampler::AlwaysOn
    } else {
        Sampler::TraceIdRatioBased(otlp.sample_ratio)
    };
    Ok(SdkTracerProvider::builder()
        .with_span_processor(batch)
        .with_sampler(Sampler::ParentBased(Box::new(root)))
        .with_resource(
            Resource::builder()
                .with_service_name(otlp.service_name.clone())
                .build(),
        )
        .build())
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing::metadata::Kind;

    fn check(target: &'static str, level: Level) -> bool {
        // Metadata needs a callsite; a static one per case is enough here.
        struct Cs;
        impl tracing::callsite::Callsite for Cs {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &tracing::Metadata<'_> {
                unreachable!()
            }
        }
        static CS: Cs = Cs;
        let meta = tracing::Metadata::new(
            "x",
            target,
            level,
            None,
            None,
            None,
            tracing::field::FieldSet::new(&[], tracing::callsite::Identifier(&CS)),
            Kind::EVENT,
        );
        super::exported(&meta)
    }

    #[test]
    fn only_routemesh_at_info_or_above_is_exported() {
        assert!(check("routemesh_gateway::http::meta", Level::INFO));
        assert!(check("routemesh_cache", Level::WARN));
        assert!(!check("routemesh_gateway::http::meta", Level::DEBUG));
        assert!(!check("routemesh_gateway", Level::TRACE));
        assert!(!check("hyper_util::client", Level::INFO));
        assert!(!check("opentelemetry_sdk", Level::WARN));
    }
}
