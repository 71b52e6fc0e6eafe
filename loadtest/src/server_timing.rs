//! Parser for the W3C `Server-Timing` response header, e.g.
//! `classify;dur=1.234, decide;dur=0.004, upstream;dur=20.5, total;dur=22.1`.
//!
//! Lenient by design: unknown parameters (such as `desc="..."`, quoted strings with commas or
//! semicolons included) are skipped, a metric without a valid `dur` keeps `dur_ms: None`, and
//! empty entries are dropped. Several header lines are parsed one by one and concatenated.

/// One metric of a `Server-Timing` header.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The metric name, e.g. `classify`.
    pub name: String,
    /// The `dur` parameter in milliseconds, if present, finite and not negative.
    pub dur_ms: Option<f64>,
}

/// Parses one `Server-Timing` header value.
pub fn parse(header: &str) -> Vec<Metric> {
    split_outside_quotes(header, ',')
        .into_iter()
        .filter_map(parse_metric)
        .collect()
}

/// The duration of the first metric called `name` (case-sensitive, as the header is).
pub fn duration(metrics: &[Metric], name: &str) -> Option<f64> {
    metrics
        .iter()
        .find(|m| m.name == name)
        .and_then(|m| m.dur_ms)
}

fn parse_metric(entry: &str) -> Option<Metric> {
    let mut parts = split_outside_quotes(entry, ';').into_iter();
    let name = parts.next()?.trim();
    if name.is_empty() {
        return None;
    }
    let dur_ms = parts
        .filter_map(|param| param.split_once('='))
        .find(|(key, _)| key.trim().eq_ignore_ascii_case("dur"))
        .and_then(|(_, value)| value.trim().trim_matches('"').parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0);
    Some(Metric {
        name: name.to_owned(),
        dur_ms,
    })
}

/// Splits on `sep` except inside double-quoted strings (which may hold `\"` escapes).
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &str, expected: &[(&str, Option<f64>)]) {
        let got: Vec<(String, Option<f64>)> = parse(header)
            .into_iter()
            .map(|m| (m.name, m.dur_ms))
            .collect();
        let want: Vec<(String, Option<f64>)> = expected
            .iter()
            .map(|(n, d)| ((*n).to_owned(), *d))
            .collect();
        assert_eq!(got, want, "parsing {header:?}");
    }

    #[test]
    fn parses_the_gateway_format() {
        check(
            "classify;dur=1.234, decide;dur=0.004, upstream;dur=20.5, total;dur=22.1",
            &[
                ("classify", Some(1.234)),
                ("decide", Some(0.004)),
                ("upstream", Some(20.5)),
                ("total", Some(22.1)),
            ],
        );
    }

    #[test]
    fn passthrough_has_only_upstream_and_total() {
        let metrics = parse("upstream;dur=3, total;dur=3.2");
        assert_eq!(duration(&metrics, "upstream"), Some(3.0));
        assert_eq!(duration(&metrics, "total"), Some(3.2));
        assert_eq!(duration(&metrics, "classify"), None);
    }

    #[test]
    fn tolerates_whitespace_case_desc_and_quotes() {
        check(
            r#" cache ; desc="hit, or; \"miss\"" ;DUR = "0.5" ,db;dur=53"#,
            &[("cache", Some(0.5)), ("db", Some(53.0))],
        );
    }

    #[test]
    fn metrics_without_a_usable_dur_keep_their_name() {
        check(
            "miss, cpu;dur=abc, neg;dur=-1, nan;dur=NaN",
            &[("miss", None), ("cpu", None), ("neg", None), ("nan", None)],
        );
    }

    #[test]
    fn empty_entries_are_dropped() {
        check("", &[]);
        check(" , ;dur=1, ,x;dur=2,", &[("x", Some(2.0))]);
    }
}
