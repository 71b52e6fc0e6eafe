//! Settings that are valid but probably not what was meant: `check-config`
//! prints them and `serve` logs them at start.

use std::time::Duration;

use super::Config;

impl Config {
    /// One sentence per questionable setting, naming its keys.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            let t = u.timeouts;
            let r = u.retries;
            // Every attempt may wait `first_byte`; between them the backoff
            // doubles up to `max_backoff`.
            let attempts = r.attempts.saturating_add(1);
            let mut worst = t.first_byte.saturating_mul(attempts);
            let mut wait = r.backoff;
            for _ in 0..r.attempts {
                worst = worst.saturating_add(wait.min(r.max_backoff));
                wait = wait.saturating_mul(2);
            }
            if r.attempts > 0 && worst > t.total {
                out.push(format!(
                    "upstreams[{i}] `{}`: {attempts} attempts of up to {} each (timeouts.first_byte, retries.attempts + 1) and their backoff need up to {}, more than timeouts.total ({}): a slow endpoint's last retries are cut short. Lower first_byte or retries.attempts, or raise total; the next candidate model gets a total of its own either way.",
                    u.name,
                    human(t.first_byte),
                    human(worst),
                    human(t.total),
                ));
            }
        }
        out
    }
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn config(upstream_extra: &str) -> super::Config {
        let text = format!(
            r#"
encoder: {{ model_dir: m }}
upstreams: [ {{ name: up, base_url: "http://127.0.0.1:1"{upstream_extra} }} ]
models: [ {{ name: a, upstream: up }} ]
default: {{ model: a }}
"#
        );
        match crate::config::parse(&text, Path::new(".")) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    /// Issue 16, 4: `first_byte: 2s`, `total: 5s` and two retries against a
    /// 3 s upstream could not all run; nothing said so.
    #[test]
    fn retries_that_cannot_fit_in_the_total_are_warned_about() {
        let c = config(
            ", timeouts: { first_byte: 2s, total: 5s }, retries: { attempts: 2, backoff: 100ms }",
        );
        let w = c.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("upstreams[0] `up`"), "{}", w[0]);
        assert!(
            w[0].contains("6s 300ms"),
            "3 × 2s + 100ms + 200ms: {}",
            w[0]
        );
    }

    #[test]
    fn defaults_and_fitting_retries_are_not_warned_about() {
        assert_eq!(config("").warnings(), Vec::<String>::new());
        let fits = config(", timeouts: { first_byte: 1s, total: 5s }, retries: { attempts: 2 }");
        assert_eq!(fits.warnings(), Vec::<String>::new());
        let none = config(", timeouts: { first_byte: 5s, total: 5s }, retries: { attempts: 0 }");
        assert_eq!(none.warnings(), Vec::<String>::new());
    }
}
