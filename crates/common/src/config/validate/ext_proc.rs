//! Validating the `ext_proc:` section (part of phase two): where the Envoy
//! external-processor gRPC service listens.

use std::net::SocketAddr;

use super::Validator;
use crate::config::raw::RawExtProc;
use crate::config::{ExtProcConfig, MetricsConfig, ServerConfig};

/// The port Envoy's ext_proc examples use, on loopback.
const DEFAULT_EXT_PROC_LISTEN: &str = "127.0.0.1:50051";

impl Validator {
    /// `ext_proc:`; absent means no gRPC service, present means one on
    /// `listen` (default 127.0.0.1:50051), which must not be the HTTP API's
    /// or the metrics' address.
    pub(super) fn ext_proc(
        &mut self,
        raw: Option<RawExtProc>,
        server: Option<&ServerConfig>,
        metrics: Option<&MetricsConfig>,
    ) -> Option<ExtProcConfig> {
        let raw = raw?;
        let listen = raw.listen.as_deref().unwrap_or(DEFAULT_EXT_PROC_LISTEN);
        let Ok(listen) = listen.parse::<SocketAddr>() else {
            self.error(
                "ext_proc.listen",
                format!("`{listen}` is not an IP:port address (e.g. 127.0.0.1:50051)"),
            );
            return None;
        };
        let taken = [
            server.map(|s| (s.listen, "server.listen")),
            metrics.map(|m| (m.listen, "metrics.listen")),
        ];
        for (addr, key) in taken.into_iter().flatten() {
            if listen.port() != 0 && listen == addr {
                self.error(
                    "ext_proc.listen",
                    format!("{listen} is also `{key}`; ext_proc needs a listener of its own"),
                );
                return None;
            }
        }
        Some(ExtProcConfig { listen })
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

    fn listen(extra: &str) -> Result<Option<String>, Vec<String>> {
        check(extra).map(|c| c.ext_proc.map(|e| e.listen.to_string()))
    }

    #[test]
    fn absent_section_means_no_grpc_service() {
        assert_eq!(listen(""), Ok(None));
    }

    #[test]
    fn listen_is_parsed_and_defaults_to_loopback_50051() {
        assert_eq!(
            listen("ext_proc: { listen: 0.0.0.0:9002 }\n"),
            Ok(Some("0.0.0.0:9002".into()))
        );
        assert_eq!(listen("ext_proc: {}\n"), Ok(Some("127.0.0.1:50051".into())));
    }

    #[test]
    fn bad_address_unknown_key_and_taken_addresses_are_errors() {
        let errs = listen("ext_proc: { listen: envoy }\n").unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.starts_with("ext_proc.listen: `envoy`")),
            "{errs:?}"
        );
        let errs = listen("ext_proc: { listen: 127.0.0.1:1, mode: grpc }\n").unwrap_err();
        assert!(errs.iter().any(|e| e.starts_with("ext_proc")), "{errs:?}");
        let errs =
            listen("server: { listen: 127.0.0.1:8080 }\next_proc: { listen: 127.0.0.1:8080 }\n")
                .unwrap_err();
        assert!(
            errs.iter().any(|e| e.contains("is also `server.listen`")),
            "{errs:?}"
        );
        let errs =
            listen("metrics: { listen: 127.0.0.1:9464 }\next_proc: { listen: 127.0.0.1:9464 }\n")
                .unwrap_err();
        assert!(
            errs.iter().any(|e| e.contains("is also `metrics.listen`")),
            "{errs:?}"
        );
    }
}
