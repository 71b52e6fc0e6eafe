//! Unit tests of the `upstreams:` list: endpoints, timeouts, retries, breaker.

use std::time::Duration;

use super::{BASE, EXAMPLE, errors, has, ok};
use crate::config::{BreakerConfig, RetryPolicy, UpstreamEndpoint, UpstreamTimeouts};

const UP: &str = "  - { name: up, base_url: \"http://127.0.0.1:9000/v1/\" }\n";

/// BASE with its one upstream replaced by `upstreams` (YAML list items).
fn with_upstreams(upstreams: &str) -> String {
    assert!(BASE.contains(UP), "BASE changed shape");
    BASE.replace(UP, upstreams)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn base_url_is_one_endpoint_with_the_defaults() {
    let c = ok(BASE);
    let u = &c.upstreams[0];
    assert_eq!(
        u.endpoints,
        [UpstreamEndpoint {
            url: "http://127.0.0.1:9000/v1".into(),
            weight: 1
        }]
    );
    assert_eq!(
        u.timeouts,
        UpstreamTimeouts {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(60),
            total: Duration::from_secs(600),
        }
    );
    assert_eq!(
        u.retries,
        RetryPolicy {
            attempts: 2,
            backoff: ms(50),
            max_backoff: Duration::from_secs(1)
        }
    );
    assert_eq!(
        u.breaker,
        BreakerConfig {
            failures: 5,
            open_for: Duration::from_secs(10),
            probes: 1
        }
    );
}

#[test]
fn every_upstream_key_is_read() {
    let c = ok(&with_upstreams(
        r#"  - name: up
    endpoints:
      - { url: "http://10.0.0.1:8000/v1/", weight: 3 }
      - { url: "http://10.0.0.2:8000/v1" }
    timeouts: { connect: 250ms, first_byte: 2s, total: 30s }
    retries: { attempts: 4, backoff: 10ms, max_backoff: 200ms }
    breaker: { failures: 2, open_for: 1s, probes: 3 }
"#,
    ));
    let u = &c.upstreams[0];
    assert_eq!(
        u.endpoints,
        [
            UpstreamEndpoint {
                url: "http://10.0.0.1:8000/v1".into(),
                weight: 3
            },
            UpstreamEndpoint {
                url: "http://10.0.0.2:8000/v1".into(),
                weight: 1
            },
        ]
    );
    assert_eq!(
        u.timeouts,
        UpstreamTimeouts {
            connect: ms(250),
            first_byte: Duration::from_secs(2),
            total: Duration::from_secs(30)
        }
    );
    assert_eq!(
        u.retries,
        RetryPolicy {
            attempts: 4,
            backoff: ms(10),
            max_backoff: ms(200)
        }
    );
    assert_eq!(
        u.breaker,
        BreakerConfig {
            failures: 2,
            open_for: Duration::from_secs(1),
            probes: 3
        }
    );
}

#[test]
fn timeout_is_the_first_byte_timeout_and_total_grows_to_cover_it() {
    let c = ok(&with_upstreams(
        "  - { name: up, base_url: \"http://x:1/v1\", timeout: 900s }\n",
    ));
    let t = c.upstreams[0].timeouts;
    assert_eq!(t.first_byte, Duration::from_secs(900));
    assert_eq!(
        t.total,
        Duration::from_secs(900),
        "never shorter than first_byte"
    );
}

#[test]
fn upstream_mistakes_are_named() {
    let errs = errors(&with_upstreams(
        r#"  - { name: both, base_url: "http://a:1", endpoints: [ { url: "http://b:1" } ] }
  - { name: neither }
  - { name: empty, endpoints: [] }
  - name: bad
    endpoints:
      - { url: "ftp://x", weight: 0 }
      - { url: "http://dup:1/v1" }
      - { url: "http://dup:1/v1/" }
    timeout: 1s
    timeouts: { first_byte: 2s, connect: 0s, total: 1s }
    retries: { attempts: 11, backoff: 100ms, max_backoff: 10ms }
    breaker: { failures: 0, probes: 0, open_for: soon }
  - { name: up, base_url: "http://127.0.0.1:9000/v1/", timeouts: { total: 1s } }
  - { name: typo, base_url: "http://a:1", retries: { attempt: 1 } }
"#,
    ));
    for path in [
        "upstreams[0].endpoints",
        "upstreams[1].base_url",
        "upstreams[2].endpoints",
        "upstreams[3].endpoints[0].url",
        "upstreams[3].endpoints[0].weight",
        "upstreams[3].endpoints[2].url",
        "upstreams[3].timeout",
        "upstreams[3].timeouts.connect",
        "upstreams[3].retries.attempts",
        "upstreams[3].retries.max_backoff",
        "upstreams[3].breaker.failures",
        "upstreams[3].breaker.probes",
        "upstreams[3].breaker.open_for",
        "upstreams[4].timeouts.total",
        "upstreams[5].retries.attempt",
    ] {
        assert!(
            has(&errs, path),
            "no error at `{path}` in:\n{}",
            errs.join("\n")
        );
    }
    assert!(!has(&errs, "upstreams[3].endpoints[1].url"), "{errs:#?}");
}

#[test]
fn the_example_config_keeps_its_upstreams_valid() {
    let c = ok(EXAMPLE);
    assert!(c.upstreams.iter().all(|u| !u.endpoints.is_empty()));
}

#[test]
fn an_upstream_speaks_openai_by_default_or_anthropic_and_nothing_else() {
    use crate::config::UpstreamApi;
    assert_eq!(ok(BASE).upstreams[0].api, UpstreamApi::OpenAi);
    let c = ok(&with_upstreams(
        "  - { name: up, base_url: \"https://api.anthropic.com/v1\", api: anthropic }\n",
    ));
    assert_eq!(c.upstreams[0].api, UpstreamApi::Anthropic);
    let e = errors(&with_upstreams(
        "  - { name: up, base_url: \"http://127.0.0.1:9000/v1\", api: grpc }\n",
    ));
    assert!(has(&e, "upstreams[0].api"), "{e:?}");
    assert!(
        e.iter().any(|m| m.contains("anthropic")),
        "says what to use: {e:?}"
    );
}
