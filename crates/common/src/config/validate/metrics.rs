//! Validating the `metrics:` section (part of phase two): where the
//! Prometheus exposition listens.

use std::net::SocketAddr;

use super::Validator;
use crate::config::raw::RawMetrics;
use crate::config::{MetricsConfig, ServerConfig};

/// The Prometheus exporter's customary port, on loopback.
const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

impl Validator {
    /// `metrics:`; absent means no exporter, present means one on `listen`
    /// (default 127.0.0.1:9464), which must not be the API's own address.
    pub(super) fn metrics(
        &mut self,
        raw: Option<RawMetrics>,
        server: Option<&ServerConfig>,
    ) -> Option<MetricsConfig> {
        let raw = raw?;
        let listen = raw.listen.as_deref().unwrap_or(DEFAULT_METRICS_LISTEN);
        let Ok(listen) = listen.parse::<SocketAddr>() else {
            self.error(
                "metrics.listen",
                format!("`{listen}` is not an IP:port address (e.g. 127.0.0.1:9464)"),
            );
            return None;
        };
        if let Some(s) = server
            && listen.port() != 0
            && listen == s.listen
        {
            self.error(
                "metrics.listen",
                format!("{listen} is also `server.listen`; metrics need a listener of their own"),
            );
            return None;
        }
        Some(MetricsConfig { listen })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigErrors, parse};

    const BASE: &str = r#"
encoder: { model_dir: models/m }
upstreams: [{ name: up, base_url: "http://127.0.0.1:9000/v1" }]
models: [{ name: small, upstream: up }]
default: { model: small }
"#;

    fn check(extra: &str) -> Result<Config, Vec<String>> {
        parse(&format!("{BASE}{extra}"), Path::new("/etc/rm")).map_err(|ConfigErrors(e)| {
            e.into_iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect()
        })
    }

    #[test]
    fn absent_section_means_no_exporter() {
        assert_eq!(check("").map(|c| c.metrics), Ok(None));
    }

    #[test]
    fn listen_is_parsed_and_defaults_to_loopback_9464() {
        let c = check("metrics: { listen: 0.0.0.0:9100 }\n").map(|c| c.metrics);
        assert_eq!(
            c.map(|m| m.map(|m| m.listen.to_string())),
            Ok(Some("0.0.0.0:9100".into()))
        );
        let c = check("metrics: {}\n").map(|c| c.metrics);
        assert_eq!(
            c.map(|m| m.map(|m| m.listen.to_string())),
            Ok(Some("127.0.0.1:9464".into()))
        );
    }

    #[test]
    fn bad_address_unknown_key_and_the_api_address_are_errors() {
        let errs = check("metrics: { listen: localhost }\n")
            .err()
            .unwrap_or_default();
        assert!(
            errs.iter()
                .any(|e| e.starts_with("metrics.listen: `localhost`")),
            "{errs:?}"
        );
        let errs = check("metrics: { listen: 127.0.0.1:1, path: /m }\n")
            .err()
            .unwrap_or_default();
        assert!(errs.iter().any(|e| e.starts_with("metrics")), "{errs:?}");
        let errs =
            check("server: { listen: 127.0.0.1:8080 }\nmetrics: { listen: 127.0.0.1:8080 }\n")
                .err()
                .unwrap_or_default();
        assert!(
            errs.iter()
                .any(|e| e.starts_with("metrics.listen: 127.0.0.1:8080 is also")),
            "{errs:?}"
        );
        // Port 0 twice is two different free ports.
        assert!(
            check("server: { listen: 127.0.0.1:0 }\nmetrics: { listen: 127.0.0.1:0 }\n").is_ok()
        );
    }
}
