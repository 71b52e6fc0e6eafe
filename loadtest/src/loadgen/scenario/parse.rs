//! Phase one and two of reading a scenario: the raw serde shape of the file (unknown keys
//! refused), then its validation into a [`Scenario`] with every problem collected.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Deserializer};

use super::{
    Arrival, DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT, MAX_IN_FLIGHT, MixEntry, Overrides, Problem,
    Scenario, ScenarioErrors, Stage,
};

/// Parses a scenario file's text and validates it (see [`Scenario::from_yaml`]).
pub(super) fn parse(
    text: &str,
    default_name: &str,
    overrides: &Overrides,
) -> Result<Scenario, ScenarioErrors> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let raw: RawScenario = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = match e.path().to_string() {
            p if p == "." => "(file)".to_owned(),
            p => p,
        };
        let message = e.into_inner().to_string();
        // The YAML error starts with its own (shorter) path: the key already says it.
        let message = match message.split_once(": ") {
            Some((path, rest)) if key.starts_with(path) => rest.to_owned(),
            _ => message,
        };
        ScenarioErrors(vec![Problem { key, message }])
    })?;
    Validator::default().scenario(raw, default_name, overrides)
}

// ---- the file as written ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    target: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    duration: Option<String>,
    requests: Option<u64>,
    #[serde(default, deserialize_with = "duration_text")]
    warmup: Option<String>,
    rate: Option<f64>,
    stages: Option<Vec<RawStage>>,
    arrival: Option<String>,
    seed: Option<u64>,
    max_in_flight: Option<usize>,
    max_queue: Option<usize>,
    #[serde(default, deserialize_with = "duration_text")]
    timeout: Option<String>,
    mix: Option<Vec<RawMix>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    rate: Option<f64>,
    ramp_to: Option<f64>,
    #[serde(default, deserialize_with = "duration_text")]
    duration: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMix {
    weight: Option<f64>,
    model: Option<String>,
    #[serde(default)]
    stream: bool,
    prompt: Option<String>,
    prompts: Option<Vec<String>>,
    max_tokens: Option<u32>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// A duration must be written as text (`"10s"`), so a bare number is not silently read as
/// seconds or milliseconds.
fn duration_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Text;
    impl serde::de::Visitor<'_> for Text {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration with a unit, such as \"10s\", \"250ms\" or \"1m\"")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(Text)
}

// ---- validation ----

#[derive(Debug, Default)]
struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    fn scenario(
        mut self,
        raw: RawScenario,
        default_name: &str,
        over: &Overrides,
    ) -> Result<Scenario, ScenarioErrors> {
        let name = self.name(raw.name.as_deref().unwrap_or(default_name));
        let target = self.target(raw.target.as_deref(), over.target.as_deref());
        let warmup = self.duration_or(raw.warmup.as_deref(), "warmup", Duration::ZERO, true);
        let timeout = self.duration_or(raw.timeout.as_deref(), "timeout", DEFAULT_TIMEOUT, false);
        let stages = self.profile(&raw, over);
        if raw.requests == Some(0) {
            self.error("requests", "must be at least 1");
        }
        let arrival = match raw.arrival.as_deref() {
            None | Some("constant") => Arrival::Constant,
            Some("poisson") => Arrival::Poisson,
            Some(other) => {
                self.error(
                    "arrival",
                    format!("`{other}` is not one of: constant, poisson"),
                );
                Arrival::Constant
            }
        };
        let max_in_flight = raw.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
        if !(1..=MAX_IN_FLIGHT).contains(&max_in_flight) {
            self.error(
                "max_in_flight",
                format!("{max_in_flight} must be within 1..={MAX_IN_FLIGHT}"),
            );
        }
        let mix = self.mix(raw.mix);
        match (self.problems.is_empty(), target) {
            (true, Some(target)) => Ok(Scenario {
                name,
                target,
                warmup,
                stages,
                requests: raw.requests,
                arrival,
                seed: raw.seed.unwrap_or(0),
                max_in_flight,
                max_queue: raw.max_queue.unwrap_or(0),
                timeout,
                mix,
            }),
            _ => Err(ScenarioErrors(self.problems)),
        }
    }

    fn name(&mut self, name: &str) -> String {
        let ok = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
        if name.is_empty() || !name.chars().all(ok) {
            self.error(
                "name",
                format!("{name:?} must be non-empty and use only letters, digits, `.`, `_`, `-`"),
            );
        }
        name.to_owned()
    }

    fn target(&mut self, file: Option<&str>, flag: Option<&str>) -> Option<Url> {
        let (key, text) = match (flag, file) {
            (Some(flag), _) => ("--target", flag),
            (None, Some(file)) => ("target", file),
            (None, None) => {
                self.error("target", "missing: set it in the file or pass --target");
                return None;
            }
        };
        match Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Some(url),
            Ok(_) => {
                self.error(key, format!("{text:?} is not an http:// or https:// URL"));
                None
            }
            Err(e) => {
                self.error(key, format!("{text:?} is not a URL: {e}"));
                None
            }
        }
    }

    fn duration(&mut self, text: &str, key: &str, zero_ok: bool) -> Option<Duration> {
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() && !zero_ok => {
                self.error(key, "must be longer than zero");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    key,
                    format!("{text:?} is not a duration such as \"10s\": {e}"),
                );
                None
            }
        }
    }

    fn duration_or(
        &mut self,
        text: Option<&str>,
        key: &str,
        default: Duration,
        zero_ok: bool,
    ) -> Duration {
        text.and_then(|t| self.duration(t, key, zero_ok))
            .unwrap_or(default)
    }

    fn rate(&mut self, rate: f64, key: &str, zero_ok: bool) -> f64 {
        if !rate.is_finite() || rate < 0.0 || (rate == 0.0 && !zero_ok) {
            let bound = if zero_ok { ">= 0" } else { "> 0" };
            self.error(
                key,
                format!("{rate} must be a finite number {bound} (requests/s)"),
            );
        }
        rate
    }

    /// The stages, from `rate` + `duration`/`requests` or from `stages`, then the overrides.
    fn profile(&mut self, raw: &RawScenario, over: &Overrides) -> Vec<Stage> {
        let duration = raw
            .duration
            .as_deref()
            .and_then(|t| self.duration(t, "duration", false));
        let mut stages = match (raw.rate, &raw.stages) {
            (Some(_), Some(_)) => {
                self.error("rate", "give either `rate` or `stages`, not both");
                Vec::new()
            }
            (None, None) if over.rate.is_none() => {
                self.error("rate", "missing: give `rate` (requests/s) or `stages`");
                Vec::new()
            }
            (rate, None) => {
                // Without a rate in the file, `--rate` gives it (and is checked below).
                let rate = match rate {
                    Some(rate) => self.rate(rate, "rate", false),
                    None => over.rate.unwrap_or(0.0),
                };
                if raw.duration.is_none() && raw.requests.is_none() && over.duration.is_none() {
                    self.error("duration", "missing: give `duration` or `requests`");
                }
                vec![Stage {
                    rate,
                    end_rate: rate,
                    duration,
                }]
            }
            (None, Some(raw_stages)) => {
                if raw.duration.is_some() {
                    self.error(
                        "duration",
                        "not allowed with `stages` (each stage has its own)",
                    );
                }
                if raw_stages.is_empty() {
                    self.error("stages", "must list at least one stage");
                }
                self.stages(raw_stages)
            }
        };
        if let Some(rate) = over.rate {
            let rate = self.rate(rate, "--rate", false);
            let total = stages
                .iter()
                .try_fold(Duration::ZERO, |sum, s| s.duration.map(|d| sum + d));
            stages = vec![Stage {
                rate,
                end_rate: rate,
                duration: total,
            }];
        }
        if let Some(want) = over.duration {
            if want.is_zero() {
                self.error("--duration", "must be longer than zero");
            }
            scale_to(&mut stages, want);
        }
        let measured: f64 = stages
            .iter()
            .map(|s| (s.rate + s.end_rate) * s.duration.map_or(1.0, |d| d.as_secs_f64()))
            .sum();
        if !stages.is_empty() && measured <= 0.0 && self.problems.is_empty() {
            self.error(
                "stages",
                "the profile schedules no request (all rates are 0)",
            );
        }
        stages
    }

    fn stages(&mut self, raw: &[RawStage]) -> Vec<Stage> {
        raw.iter()
            .enumerate()
            .map(|(i, s)| {
                let key = |k: &str| format!("stages[{i}].{k}");
                let rate = match s.rate {
                    Some(r) => self.rate(r, &key("rate"), true),
                    None => {
                        self.error(key("rate"), "missing (requests/s at the stage's start)");
                        0.0
                    }
                };
                let end_rate = match s.ramp_to {
                    Some(r) => self.rate(r, &key("ramp_to"), true),
                    None => rate,
                };
                let duration = match &s.duration {
                    Some(t) => self.duration(t, &key("duration"), false),
                    None => {
                        self.error(key("duration"), "missing");
                        None
                    }
                };
                Stage {
                    rate,
                    end_rate,
                    duration,
                }
            })
            .collect()
    }

    fn mix(&mut self, raw: Option<Vec<RawMix>>) -> Vec<MixEntry> {
        let Some(raw) = raw.filter(|m| !m.is_empty()) else {
            self.error("mix", "missing: list at least one request ({prompt: ...})");
            return Vec::new();
        };
        raw.into_iter()
            .enumerate()
            .map(|(i, m)| self.mix_entry(i, m))
            .collect()
    }

    fn mix_entry(&mut self, i: usize, m: RawMix) -> MixEntry {
        let key = |k: &str| format!("mix[{i}].{k}");
        let weight = m.weight.unwrap_or(1.0);
        if !weight.is_finite() || weight <= 0.0 {
            self.error(
                key("weight"),
                format!("{weight} must be a finite number > 0"),
            );
        }
        let prompts = match (m.prompt, m.prompts) {
            (Some(_), Some(_)) => {
                self.error(key("prompt"), "give either `prompt` or `prompts`, not both");
                Vec::new()
            }
            (Some(p), None) => vec![p],
            (None, Some(ps)) if !ps.is_empty() => ps,
            (None, Some(_)) => {
                self.error(key("prompts"), "must list at least one prompt");
                Vec::new()
            }
            (None, None) => {
                self.error(key("prompt"), "missing: give `prompt` or `prompts`");
                Vec::new()
            }
        };
        let model = m.model.unwrap_or_else(|| "auto".to_owned());
        if model.is_empty() {
            self.error(key("model"), "must not be empty");
        }
        if m.max_tokens == Some(0) {
            self.error(key("max_tokens"), "must be at least 1");
        }
        let headers = m
            .headers
            .into_iter()
            .filter_map(|(name, value)| {
                let key = format!("mix[{i}].headers.{name}");
                let parsed_name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| self.error(&key, "not a valid HTTP header name"))
                    .ok()?;
                let value = self.expand_env(&value, &key)?;
                let parsed_value = HeaderValue::from_str(&value)
                    .map_err(|_| self.error(&key, "not a valid HTTP header value"))
                    .ok()?;
                Some((parsed_name, parsed_value))
            })
            .collect();
        MixEntry {
            weight,
            model,
            stream: m.stream,
            prompts,
            max_tokens: m.max_tokens,
            headers,
        }
    }

    /// Replaces each `${VAR}` with that environment variable, so keys stay out of the file.
    fn expand_env(&mut self, value: &str, key: &str) -> Option<String> {
        let mut out = String::new();
        let mut rest = value;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                self.error(key, "unclosed `${` (write `${VAR}`)");
                return None;
            };
            let var = &after[..end];
            match std::env::var(var) {
                Ok(v) => out.push_str(&v),
                Err(_) => {
                    self.error(key, format!("environment variable `{var}` is not set"));
                    return None;
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }
}

/// Scales the stage durations so they add up to `want` (a single stage just gets `want`).
fn scale_to(stages: &mut [Stage], want: Duration) {
    let total: Option<Duration> = stages
        .iter()
        .try_fold(Duration::ZERO, |sum, s| s.duration.map(|d| sum + d));
    match total {
        Some(total) if !total.is_zero() && stages.len() > 1 => {
            let factor = want.as_secs_f64() / total.as_secs_f64();
            for s in stages {
                s.duration = s.duration.map(|d| d.mul_f64(factor));
            }
        }
        _ => {
            for s in stages {
                s.duration = Some(want);
            }
        }
    }
}
