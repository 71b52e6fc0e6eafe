//! A scenario's report: the figures it measured, the targets it checked (met or missed) and the
//! notes, written as `<dir>/<scenario>.md` and `<dir>/<scenario>.json`.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde::ser::SerializeMap as _;
use serde_json::Value;

use super::Scenario;
use crate::mesh_bench::ReportHeader;

/// One checked target.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is checked, e.g. `gateway-made 5xx`.
    pub name: String,
    /// The target, e.g. `0`.
    pub target: String,
    /// What the run saw.
    pub observed: String,
    pub met: bool,
    /// The issue 16 defect whose fix it proves, when there is one (e.g. `16.1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proves: Option<String>,
}

/// Figures in the order they were added (serialised as a JSON object in that order).
#[derive(Debug, Clone, Default)]
pub struct Figures(Vec<(String, Value)>);

impl Figures {
    pub fn iter(&self) -> impl Iterator<Item = &(String, Value)> {
        self.0.iter()
    }
}

impl Serialize for Figures {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Everything a scenario reports.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub scenario: &'static str,
    pub title: &'static str,
    pub header: ReportHeader,
    pub duration_s: f64,
    /// `passed`, `failed` (a target missed) or `error` (could not run).
    pub verdict: &'static str,
    pub targets: Vec<Target>,
    pub figures: Figures,
    /// What ran: binaries, fixtures, configs.
    pub setup: Vec<String>,
    pub notes: Vec<String>,
    /// Why it could not run, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ScenarioReport {
    pub fn new(scenario: Scenario, command: &str) -> Self {
        Self {
            scenario: scenario.name(),
            title: scenario.title(),
            header: ReportHeader::detect(command.to_owned()),
            duration_s: 0.0,
            verdict: "error",
            targets: Vec::new(),
            figures: Figures::default(),
            setup: Vec::new(),
            notes: Vec::new(),
            error: None,
        }
    }

    /// Adds (or replaces) a figure.
    pub fn figure(&mut self, name: &str, value: impl Into<Value>) {
        let value = value.into();
        match self.figures.0.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.figures.0.push((name.to_owned(), value)),
        }
    }

    /// Records a checked target.
    pub fn target(
        &mut self,
        name: &str,
        target: impl Into<String>,
        observed: impl Into<String>,
        met: bool,
        proves: Option<&str>,
    ) {
        self.targets.push(Target {
            name: name.to_owned(),
            target: target.into(),
            observed: observed.into(),
            met,
            proves: proves.map(str::to_owned),
        });
    }

    pub fn setup(&mut self, line: impl Into<String>) {
        self.setup.push(line.into());
    }

    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    /// Sets the verdict from the targets and the error.
    pub fn finish(&mut self) {
        self.verdict = if self.error.is_some() {
            "error"
        } else if self.targets.iter().all(|t| t.met) {
            "passed"
        } else {
            "failed"
        };
    }

    pub fn passed(&self) -> bool {
        self.verdict == "passed"
    }

    /// The targets missed, one line each.
    pub fn missed(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .targets
            .iter()
            .filter(|t| !t.met)
            .map(|t| {
                let proves = t
                    .proves
                    .as_deref()
                    .map(|p| format!(" [issue {p}]"))
                    .unwrap_or_default();
                format!("{}: {} (target {}){proves}", t.name, t.observed, t.target)
            })
            .collect();
        if let Some(e) = &self.error {
            out.push(format!("could not run: {e}"));
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = self.write_markdown(&mut out);
        out
    }

    fn write_markdown(&self, out: &mut String) -> std::fmt::Result {
        let title = format!("Chaos: {} — {}", self.scenario, self.title);
        let h = &self.header;
        writeln!(out, "# {title}\n")?;
        writeln!(out, "- date: {}", h.host.date)?;
        writeln!(out, "- CPU: {} ({} cores)", h.host.cpu, h.host.cores)?;
        writeln!(out, "- load average at start: {}", h.load_average)?;
        writeln!(out, "- nats-server: {}", h.nats_server)?;
        writeln!(out, "- command: `{}`", h.command)?;
        writeln!(out, "- duration: {:.1} s", self.duration_s)?;
        writeln!(out, "- verdict: **{}**\n", self.verdict.to_uppercase())?;
        if let Some(e) = &self.error {
            writeln!(out, "Could not run: {e}\n")?;
        }
        writeln!(out, "## Targets\n")?;
        writeln!(out, "| target | wanted | observed | met | proves |")?;
        writeln!(out, "|---|---|---|---|---|")?;
        for t in &self.targets {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                cell(&t.name),
                cell(&t.target),
                cell(&t.observed),
                if t.met { "yes" } else { "**no**" },
                t.proves.as_deref().unwrap_or("")
            )?;
        }
        writeln!(out, "\n## Figures\n")?;
        writeln!(out, "| figure | value |")?;
        writeln!(out, "|---|---|")?;
        for (k, v) in self.figures.iter() {
            writeln!(out, "| {} | {} |", cell(k), cell(&plain(v)))?;
        }
        if !self.setup.is_empty() {
            writeln!(out, "\n## Setup\n")?;
            for line in &self.setup {
                writeln!(out, "- {line}")?;
            }
        }
        if !self.notes.is_empty() {
            writeln!(out, "\n## Notes\n")?;
            for line in &self.notes {
                writeln!(out, "- {line}")?;
            }
        }
        Ok(())
    }

    /// Writes `<dir>/<scenario>.md` and `.json`, with paths inside the current directory made
    /// relative (a report should not name the checkout it ran in).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let cwd = std::env::current_dir()
            .map(|d| format!("{}/", d.display()))
            .unwrap_or_default();
        let local = |text: String| {
            if cwd.len() > 1 {
                text.replace(&cwd, "")
            } else {
                text
            }
        };
        std::fs::write(
            dir.join(format!("{}.md", self.scenario)),
            local(self.markdown()),
        )?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(
            dir.join(format!("{}.json", self.scenario)),
            local(json) + "\n",
        )
    }
}

/// A value as table text: strings bare, the rest as compact JSON.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Table-safe text: no pipes or newlines.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The suite's summary: one line per scenario.
pub fn summary_markdown(reports: &[ScenarioReport], command: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Chaos suite: summary\n");
    let _ = writeln!(out, "- command: `{command}`\n");
    let _ = writeln!(out, "| scenario | verdict | duration s | targets missed |");
    let _ = writeln!(out, "|---|---|---:|---|");
    for r in reports {
        let missed = r.missed();
        let _ = writeln!(
            out,
            "| [{}]({}.md) | {} | {:.1} | {} |",
            r.scenario,
            r.scenario,
            r.verdict,
            r.duration_s,
            if missed.is_empty() {
                "—".to_owned()
            } else {
                cell(&missed.join("; "))
            }
        );
    }
    out
}
