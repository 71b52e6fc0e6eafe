//! Validating the `tracing:` section (part of phase two): OpenTelemetry
//! export of the gateway's spans.

use super::Validator;
use crate::config::raw::{RawOtlp, RawTracing};
use crate::config::{OtlpConfig, TracingConfig};

const DEFAULT_SERVICE_NAME: &str = "routemesh";

impl Validator {
    /// `tracing:`; absent (or without `otlp`) means no export.
    pub(super) fn tracing(&mut self, raw: Option<RawTracing>) -> TracingConfig {
        TracingConfig {
            otlp: raw.and_then(|r| r.otlp).and_then(|o| self.otlp(o)),
        }
    }

    /// `tracing.otlp:`: a collector URL (required), a service name and a
    /// sampling ratio in (0, 1].
    fn otlp(&mut self, raw: RawOtlp) -> Option<OtlpConfig> {
        let endpoint = match raw.endpoint {
            None => {
                self.error(
                    "tracing.otlp.endpoint",
                    "required: the collector's OTLP/HTTP traces URL \
                     (e.g. http://127.0.0.1:4318/v1/traces)"
                        .into(),
                );
                None
            }
            Some(url) if !is_http_url(&url) => {
                self.error(
                    "tracing.otlp.endpoint",
                    format!(
                        "`{url}` is not an http:// or https:// URL \
                         (e.g. http://127.0.0.1:4318/v1/traces)"
                    ),
                );
                None
            }
            Some(url) => Some(url),
        };
        let service_name = raw
            .service_name
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
        if service_name.trim().is_empty() {
            self.error("tracing.otlp.service_name", "must not be empty".into());
        }
        let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
        if !(sample_ratio > 0.0 && sample_ratio <= 1.0) {
            self.error(
                "tracing.otlp.sample_ratio",
                format!("{sample_ratio} is not in (0, 1]; 1 exports every request, 0.1 one in ten"),
            );
        }
        Some(OtlpConfig {
            endpoint: endpoint?,
            service_name,
            sample_ratio,
        })
    }
}

/// `http://` or `https://`, a host, and no whitespace.
fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    rest.is_some_and(|r| {
        !r.is_empty() && !r.starts_with('/') && !r.chars().any(char::is_whitespace)
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{ConfigErrors, OtlpConfig, TracingConfig, parse};

    const BASE: &str = r#"
encoder: { model_dir: models/m }
upstreams: [{ name: up, base_url: "http://127.0.0.1:9000/v1" }]
models: [{ name: small, upstream: up }]
default: { model: small }
"#;

    fn check(extra: &str) -> Result<TracingConfig, Vec<String>> {
        parse(&format!("{BASE}{extra}"), Path::new("/etc/rm"))
            .map(|c| c.tracing)
            .map_err(|ConfigErrors(e)| {
                e.into_iter()
                    .map(|e| format!("{}: {}", e.path, e.message))
                    .collect()
            })
    }

    fn errors(extra: &str) -> Vec<String> {
        check(extra).err().unwrap_or_default()
    }

    #[test]
    fn absent_section_or_absent_otlp_means_no_export() {
        assert_eq!(check(""), Ok(TracingConfig { otlp: None }));
        assert_eq!(check("tracing: {}\n"), Ok(TracingConfig { otlp: None }));
    }

    #[test]
    fn endpoint_is_kept_as_written_and_the_rest_defaults() {
        let c = check("tracing: { otlp: { endpoint: \"https://otel.example:4318/v1/traces\" } }\n");
        assert_eq!(
            c.map(|t| t.otlp),
            Ok(Some(OtlpConfig {
                endpoint: "https://otel.example:4318/v1/traces".into(),
                service_name: "routemesh".into(),
                sample_ratio: 1.0,
            }))
        );
        let c = check(
            "tracing: { otlp: { endpoint: \"http://127.0.0.1:4318/v1/traces\", service_name: edge, sample_ratio: 0.25 } }\n",
        );
        let otlp = c.ok().and_then(|t| t.otlp);
        assert_eq!(
            otlp.map(|o| (o.service_name, o.sample_ratio)),
            Some(("edge".into(), 0.25))
        );
    }

    #[test]
    fn each_bad_key_is_named() {
        let errs = errors("tracing: { otlp: {} }\n");
        assert!(
            errs.iter()
                .any(|e| e.starts_with("tracing.otlp.endpoint: required")),
            "{errs:?}"
        );
        for bad in [
            "127.0.0.1:4318",
            "grpc://collector:4317",
            "http://",
            "http:///v1",
        ] {
            let errs = errors(&format!("tracing: {{ otlp: {{ endpoint: \"{bad}\" }} }}\n"));
            assert!(
                errs.iter()
                    .any(|e| e.starts_with(&format!("tracing.otlp.endpoint: `{bad}`"))),
                "{bad}: {errs:?}"
            );
        }
        for bad in ["0", "-0.5", "2", ".nan"] {
            let errs = errors(&format!(
                "tracing: {{ otlp: {{ endpoint: \"http://c:4318/v1/traces\", sample_ratio: {bad} }} }}\n"
            ));
            assert!(
                errs.iter()
                    .any(|e| e.starts_with("tracing.otlp.sample_ratio: ")),
                "{bad}: {errs:?}"
            );
        }
        let errs = errors(
            "tracing: { otlp: { endpoint: \"http://c:4318/v1/traces\", service_name: \" \" } }\n",
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("tracing.otlp.service_name: ")),
            "{errs:?}"
        );
        // Unknown keys, here and one level up, are errors too.
        let errs = errors("tracing: { otlp: { endpoint: \"http://c/v1/traces\", headers: {} } }\n");
        assert!(
            errs.iter().any(|e| e.starts_with("tracing.otlp")),
            "{errs:?}"
        );
        let errs = errors("tracing: { jaeger: {} }\n");
        assert!(errs.iter().any(|e| e.starts_with("tracing")), "{errs:?}");
    }
}
