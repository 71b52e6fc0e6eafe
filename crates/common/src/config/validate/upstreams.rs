//! Validating the `upstreams:` list (part of phase two): endpoints and
//! weights, timeouts, retries and the circuit breaker.

use std::collections::HashSet;

use super::Validator;
use crate::config::raw::{RawBreaker, RawEndpoint, RawRetries, RawTimeouts, RawUpstream};
use crate::config::{
    BreakerConfig, RetryPolicy, UpstreamApi, UpstreamConfig, UpstreamEndpoint, UpstreamFamily,
    UpstreamTimeouts,
};

/// Largest endpoint weight.
const MAX_WEIGHT: u32 = 10_000;
/// Most retries per upstream.
const MAX_RETRIES: u32 = 10;

impl Validator {
    pub(super) fn upstreams(&mut self, raw: Vec<(String, RawUpstream)>) -> Vec<UpstreamConfig> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (path, u) in raw {
            self.unique(&mut seen, &u.name, &path);
            let endpoints = self.endpoints(u.base_url, u.endpoints, &path);
            if let Some(env) = &u.api_key_env {
                let valid = !env.is_empty()
                    && env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !env.starts_with(|c: char| c.is_ascii_digit());
                if !valid {
                    self.error(
                        &format!("{path}.api_key_env"),
                        format!("`{env}` is not an environment variable name"),
                    );
                }
            }
            let timeouts = self.timeouts(u.timeout.as_deref(), u.timeouts, &path);
            let retries = self.retries(u.retries.unwrap_or_default(), &path);
            let breaker = self.breaker(u.breaker.unwrap_or_default(), &path);
            let family = match u.family.as_deref() {
                None | Some("openai") => UpstreamFamily::OpenAi,
                Some("vllm") => UpstreamFamily::Vllm,
                Some(other) => {
                    self.error(
                        &format!("{path}.family"),
                        format!("`{other}`: use openai (hosted APIs) or vllm (vLLM, SGLang)"),
                    );
                    UpstreamFamily::OpenAi
                }
            };
            let api = match u.api.as_deref() {
                None | Some("openai") => UpstreamApi::OpenAi,
                Some("anthropic") => UpstreamApi::Anthropic,
                Some(other) => {
                    self.error(
                        &format!("{path}.api"),
                        format!("`{other}`: use openai (chat completions) or anthropic (Messages)"),
                    );
                    UpstreamApi::OpenAi
                }
            };
            out.push(UpstreamConfig {
                name: u.name,
                endpoints,
                api_key_env: u.api_key_env,
                timeouts,
                retries,
                breaker,
                family,
                api,
            });
        }
        out
    }

    /// `base_url` (one endpoint) or `endpoints:`, exactly one of the two.
    fn endpoints(
        &mut self,
        base_url: Option<String>,
        endpoints: Option<Vec<RawEndpoint>>,
        path: &str,
    ) -> Vec<UpstreamEndpoint> {
        let raw = match (base_url, endpoints) {
            (Some(url), None) => {
                let url = self.base_url(&url, &format!("{path}.base_url"));
                return vec![UpstreamEndpoint { url, weight: 1 }];
            }
            (None, Some(list)) => list,
            (Some(_), Some(_)) => {
                self.error(
                    &format!("{path}.endpoints"),
                    "give `base_url` (one endpoint) or `endpoints`, not both".into(),
                );
                return Vec::new();
            }
            (None, None) => {
                self.error(
                    &format!("{path}.base_url"),
                    "required: the upstream's URL (or a list of `endpoints`)".into(),
                );
                return Vec::new();
            }
        };
        if raw.is_empty() {
            self.error(
                &format!("{path}.endpoints"),
                "must list at least one endpoint".into(),
            );
        }
        let mut urls = HashSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, e) in raw.into_iter().enumerate() {
            let p = format!("{path}.endpoints[{i}]");
            let url = self.base_url(&e.url, &format!("{p}.url"));
            if !urls.insert(url.clone()) {
                self.error(&format!("{p}.url"), format!("`{url}` is listed twice"));
            }
            let weight = e.weight.unwrap_or(1);
            if !(1..=MAX_WEIGHT).contains(&weight) {
                self.error(
                    &format!("{p}.weight"),
                    format!("{weight} is out of range 1..={MAX_WEIGHT}"),
                );
            }
            out.push(UpstreamEndpoint { url, weight });
        }
        out
    }

    /// An http(s) base URL without its trailing slash.
    fn base_url(&mut self, url: &str, path: &str) -> String {
        let trimmed = url.trim_end_matches('/').to_owned();
        if !(trimmed.starts_with("http://") || trimmed.starts_with("https://"))
            || trimmed.len() <= "https://".len()
        {
            self.error(path, format!("`{url}` is not an http:// or https:// URL"));
        }
        trimmed
    }

    /// `timeouts:`, with `timeout` as another name for `timeouts.first_byte`.
    fn timeouts(
        &mut self,
        legacy: Option<&str>,
        raw: Option<RawTimeouts>,
        path: &str,
    ) -> UpstreamTimeouts {
        let d = UpstreamTimeouts::default();
        let raw = raw.unwrap_or_default();
        if legacy.is_some() && raw.first_byte.is_some() {
            self.error(
                &format!("{path}.timeout"),
                "the same as `timeouts.first_byte`: give one of the two".into(),
            );
        }
        let first_byte_path = if legacy.is_some() {
            format!("{path}.timeout")
        } else {
            format!("{path}.timeouts.first_byte")
        };
        let first_byte = self
            .duration(legacy.or(raw.first_byte.as_deref()), &first_byte_path)
            .unwrap_or(d.first_byte);
        let connect = self
            .duration(raw.connect.as_deref(), &format!("{path}.timeouts.connect"))
            .unwrap_or(d.connect);
        let total = match raw.total.as_deref() {
            None => d.total.max(first_byte),
            Some(text) => {
                let p = format!("{path}.timeouts.total");
                let total = self.duration(Some(text), &p).unwrap_or(d.total);
                if total < first_byte {
                    self.error(
                        &p,
                        format!(
                            "{total:?} is shorter than the first-byte timeout ({first_byte:?})"
                        ),
                    );
                }
                total
            }
        };
        UpstreamTimeouts {
            connect,
            first_byte,
            total,
        }
    }

    fn retries(&mut self, raw: RawRetries, path: &str) -> RetryPolicy {
        let d = RetryPolicy::default();
        let attempts = raw.attempts.unwrap_or(d.attempts);
        if attempts > MAX_RETRIES {
            self.error(
                &format!("{path}.retries.attempts"),
                format!("{attempts} is out of range 0..={MAX_RETRIES}"),
            );
        }
        let backoff = self
            .duration(raw.backoff.as_deref(), &format!("{path}.retries.backoff"))
            .unwrap_or(d.backoff);
        let max_path = format!("{path}.retries.max_backoff");
        let max_backoff = match raw.max_backoff.as_deref() {
            None => d.max_backoff.max(backoff),
            Some(text) => {
                let max = self
                    .duration(Some(text), &max_path)
                    .unwrap_or(d.max_backoff);
                if max < backoff {
                    self.error(
                        &max_path,
                        format!("{max:?} is shorter than `backoff` ({backoff:?})"),
                    );
                }
                max
            }
        };
        RetryPolicy {
            attempts,
            backoff,
            max_backoff,
        }
    }

    fn breaker(&mut self, raw: RawBreaker, path: &str) -> BreakerConfig {
        let d = BreakerConfig::default();
        let failures = raw.failures.unwrap_or(d.failures);
        if !(1..=10_000).contains(&failures) {
            self.error(
                &format!("{path}.breaker.failures"),
                format!("{failures} is out of range 1..=10000"),
            );
        }
        let probes = raw.probes.unwrap_or(d.probes);
        if !(1..=1_000).contains(&probes) {
            self.error(
                &format!("{path}.breaker.probes"),
                format!("{probes} is out of range 1..=1000"),
            );
        }
        let open_for = self
            .duration(raw.open_for.as_deref(), &format!("{path}.breaker.open_for"))
            .unwrap_or(d.open_for);
        BreakerConfig {
            failures,
            open_for,
            probes,
        }
    }
}
