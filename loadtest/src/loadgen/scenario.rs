//! Scenarios: the typed, validated form of a scenario file ([`Scenario`]), the command-line
//! [`Overrides`], and the problems found reading one (parsing and validation are in `parse`).

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Serialize, Serializer};

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

mod parse;

impl Scenario {
    /// Parses and validates a scenario file's text; `default_name` is used when it has no
    /// `name` (the file's stem, say).
    pub fn from_yaml(
        text: &str,
        default_name: &str,
        overrides: &Overrides,
    ) -> Result<Self, ScenarioErrors> {
        parse::parse(text, default_name, overrides)
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
