//! Scenario files: the raw YAML shape (unknown keys refused) and its validation into a typed
//! [`Scenario`], with every problem reported at once under the key it is about.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Requests in flight at once unless the scenario says otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// The most requests a scenario may keep in flight.
pub const MAX_IN_FLIGHT: usize = 1_000_000;
/// Per-request timeout unless the scenario says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A validated scenario: what to send, where, and on which schedule.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    /// Names the run (and its output folder): letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// Base URL; `/v1/chat/completions` is appended.
    #[serde(serialize_with = "as_string")]
    pub target: Url,
    /// Unrecorded requests sent first, at the first stage's starting rate.
    #[serde(with = "text_duration")]
    pub warmup: Duration,
    /// The measured rate profile, in order.
    pub stages: Vec<Stage>,
    /// Stop after this many measured requests (scheduled), if set.
    pub requests: Option<u64>,
    pub arrival: Arrival,
    /// Seeds Poisson arrivals and the choice of request from the mix.
    pub seed: u64,
    /// Requests being sent or awaiting their response at once, at most.
    pub max_in_flight: usize,
    /// Requests allowed to wait for an in-flight slot; an arrival beyond
    /// `max_in_flight + max_queue` is dropped (and counted), never delayed.
    pub max_queue: usize,
    /// Per-request timeout (from sending to the last body byte).
    #[serde(with = "text_duration")]
    pub timeout: Duration,
    pub mix: Vec<MixEntry>,
}

/// A stretch of the profile: the rate goes linearly from `rate` to `end_rate` (equal for a
/// step) over `duration`; `None` runs until the request cap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stage {
    pub rate: f64,
    pub end_rate: f64,
    #[serde(with = "text_duration_opt")]
    pub duration: Option<Duration>,
}

/// How send times are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    /// Evenly, `1 / rate` apart.
    Constant,
    /// Exponential gaps with mean `1 / rate` (a Poisson process), from `seed`.
    Poisson,
}

/// One kind of request in the mix, drawn with probability `weight / total weight`.
#[derive(Debug, Clone, Serialize)]
pub struct MixEntry {
    pub weight: f64,
    pub model: String,
    pub stream: bool,
    /// Cycled through uniformly at random.
    pub prompts: Vec<String>,
    pub max_tokens: Option<u32>,
    /// Extra request headers; values are never written to a report (they may hold keys).
    #[serde(serialize_with = "header_names")]
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Command-line values that replace the file's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--target`: the base URL.
    pub target: Option<String>,
    /// `--rate`: one constant stage at this rate, as long as the file's profile.
    pub rate: Option<f64>,
    /// `--duration`: a single stage runs this long; several are scaled to fit it.
    pub duration: Option<Duration>,
}

/// One problem with a scenario, under the key (or flag) it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

/// Everything wrong with a scenario.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioErrors(pub Vec<Problem>);

impl fmt::Display for ScenarioErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid scenario:")?;
        for p in &self.0 {
            write!(f, "\n  - {}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

impl Scenario {
    /// Parses and validates a scenario file's text; `default_name` is used when it has no
    /// `name` (the file's stem, say).
    pub fn from_yaml(
        text: &str,
        default_name: &str,
        overrides: &Overrides,
    ) -> Result<Self, ScenarioErrors> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let raw: RawScenario = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = match e.path().to_string() {
                p if p == "." => "(file)".to_owned(),
                p => p,
            };
            ScenarioErrors(vec![Problem {
                key,
                message: e.into_inner().to_string(),
            }])
        })?;
        Validator::default().scenario(raw, default_name, overrides)
    }

    /// Total measured duration, `None` when it runs until the request cap.
    pub fn duration(&self) -> Option<Duration> {
        self.stages
            .iter()
            .try_fold(Duration::ZERO, |sum, s| s.duration.map(|d| sum + d))
    }

    /// Measured requests the profile schedules on average (exactly, for constant arrivals,
    /// up to one per stage), capped by `requests`.
    pub fn expected_requests(&self) -> u64 {
        let planned: f64 = self
            .stages
            .iter()
            .map(|s| match s.duration {
                Some(d) => (s.rate + s.end_rate) / 2.0 * d.as_secs_f64(),
                None => f64::INFINITY,
            })
            .sum();
        let cap = self.requests.unwrap_or(u64::MAX);
        if planned.is_finite() {
            (planned.round() as u64).min(cap)
        } else {
            cap
        }
    }

    /// The profile in words: `20 req/s for 10s`, `10 → 50 req/s for 30s, then 50 req/s for
    /// 10s`, `20 req/s until the request cap (at most 500 requests)`.
    pub fn profile_text(&self) -> String {
        let stages: Vec<String> = self
            .stages
            .iter()
            .map(|st| {
                let rate = if st.end_rate == st.rate {
                    format!("{} req/s", st.rate)
                } else {
                    format!("{} → {} req/s", st.rate, st.end_rate)
                };
                match st.duration {
                    Some(d) => format!("{rate} for {}", humantime::format_duration(d)),
                    None => format!("{rate} until the request cap"),
                }
            })
            .collect();
        let mut text = stages.join(", then ");
        if let Some(cap) = self.requests {
            text.push_str(&format!(" (at most {cap} requests)"));
        }
        text
    }

    /// What a run of this scenario would do, as markdown (`loadgen check` prints it).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_description(&mut out);
        out
    }

    fn write_description(&self, out: &mut String) -> fmt::Result {
        use std::fmt::Write as _;
        let arrival = match self.arrival {
            Arrival::Constant => "constant",
            Arrival::Poisson => "poisson",
        };
        writeln!(out, "# scenario {}\n", self.name)?;
        writeln!(out, "- Target: {}", self.chat_url())?;
        writeln!(
            out,
            "- Profile: {}; warm-up {}",
            self.profile_text(),
            humantime::format_duration(self.warmup)
        )?;
        writeln!(out, "- Arrivals: {arrival}, seed {}", self.seed)?;
        writeln!(
            out,
            "- Measured requests expected: {}",
            self.expected_requests()
        )?;
        writeln!(
            out,
            "- At most {} in flight, {} waiting; timeout {}\n",
            self.max_in_flight,
            self.max_queue,
            humantime::format_duration(self.timeout)
        )?;
        writeln!(
            out,
            "| weight | model | stream | prompts | max_tokens | headers |"
        )?;
        writeln!(out, "|--:|---|---|--:|--:|---|")?;
        for m in &self.mix {
            let headers: Vec<&str> = m.headers.iter().map(|(n, _)| n.as_str()).collect();
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                m.weight,
                m.model,
                m.stream,
                m.prompts.len(),
                m.max_tokens.map_or("-".to_owned(), |n| n.to_string()),
                if headers.is_empty() {
                    "-".to_owned()
                } else {
                    headers.join(", ")
                },
            )?;
        }
        Ok(())
    }

    /// `{target}/v1/chat/completions`, accepting a target that already ends in `/v1`.
    pub fn chat_url(&self) -> String {
        let base = self.target.as_str().trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        format!("{base}/v1/chat/completions")
    }
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
                let rate = self.rate(rate.or(over.rate).unwrap_or(0.0), "rate", false);
                let duration = raw
                    .duration
                    .as_deref()
                    .and_then(|t| self.duration(t, "duration", false));
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

// ---- serialisation helpers for the report ----

fn as_string<S: Serializer>(url: &Url, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(url.as_str())
}

fn header_names<S: Serializer>(
    headers: &[(HeaderName, HeaderValue)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(headers.iter().map(|(name, _)| name.as_str()))
}

mod text_duration {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }
}

mod text_duration_opt {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(&humantime::format_duration(*d)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests;
