//! Prometheus metrics: a scrape finds the named series, and they move with
//! traffic by exactly what was sent (gateway, embedded batcher, cache,
//! and a NATS worker's own listener).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use routemesh_test_support::gateway::{Fake, Fakes, Gateway, SHIPPED_HEADS, chat, header};
use routemesh_test_support::nats_server::NatsServer;
use routemesh_test_support::{model_dir, workspace};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// One sample of a scrape: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// A parsed text-format scrape.
#[derive(Debug)]
struct Scrape {
    samples: Vec<Sample>,
    text: String,
}

impl Scrape {
    async fn get(url: &str) -> Result<Self> {
        let resp = reqwest::get(url).await?;
        ensure!(resp.status() == 200, "scrape answered {}", resp.status());
        let text = resp.text().await?;
        Ok(Self {
            samples: parse(&text)?,
            text,
        })
    }

    /// The sum of `name` over the series whose labels include `labels`
    /// (0 when there is none yet).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.samples.iter().any(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
        })
    }
}

/// The Prometheus text format, as much of it as the exporter writes:
/// `name{k="v",...} value` lines and `#` comments.
fn parse(text: &str) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').context("no value")?;
        let value: f64 = value
            .parse()
            .with_context(|| format!("value of {line:?}"))?;
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').context("unclosed labels")?;
                let mut labels = BTreeMap::new();
                for pair in body.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').context("label without =")?;
                    labels.insert(k.to_owned(), v.trim_matches('"').to_owned());
                }
                (name, labels)
            }
        };
        out.push((name.to_owned(), labels, value));
    }
    Ok(out)
}

/// A `routemesh serve` with a metrics listener; killed on drop.
struct Launched {
    api: String,
    metrics: String,
    _child: Child,
    _dir: tempfile::TempDir,
}

/// Starts the gateway with `config` (plus `args`) and waits for the
/// metrics line and readiness.
async fn launch(config: &str, args: &[&str]) -> Result<Launched> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("routemesh.yaml");
    std::fs::write(&path, config)?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_routemesh"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .args(args)
        .env("ROUTEMESH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let wait = async {
        let (mut api, mut metrics) = (None, None);
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = line.strip_prefix("routemesh metrics on ") {
                metrics = Some(url.to_owned());
            }
            if let Some(addr) = line.strip_prefix("routemesh listening on ") {
                api = Some(addr.to_owned());
            }
            if line == "routemesh ready" {
                return Ok((
                    api.context("ready before listening")?,
                    metrics.context("no `routemesh metrics on` line")?,
                ));
            }
        }
        bail!("the gateway exited before it was ready")
    };
    let (api, metrics) = tokio::time::timeout(Duration::from_secs(120), wait)
        .await
        .context("the gateway was not ready within 120 s")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Launched {
        api,
        metrics,
        _child: child,
        _dir: dir,
    })
}

impl Launched {
    async fn chat(&self, model: &str, prompt: &str) -> Result<reqwest::Response> {
        Ok(reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", self.api))
            .header("content-type", "application/json")
            .body(chat(model, prompt))
            .send()
            .await?)
    }

    async fn scrape(&self) -> Result<Scrape> {
        Scrape::get(&self.metrics).await
    }
}

const MATH: &[&str] = &[
    "Solve the equation 3x + 7 = 22 for x.",
    "What is the derivative of x^3 * sin(x)?",
    "Compute the integral of 1/(1+x^2) from 0 to 1.",
];
const CODE: &[&str] = &[
    "Write a Python function that reverses a linked list.",
    "Implement binary search in JavaScript.",
];

#[tokio::test]
async fn a_scrape_finds_the_named_series_and_they_move_with_traffic() -> Result<()> {
    let fakes = Fakes::start().await?;
    let config = format!(
        "{}\nmetrics: {{ listen: \"127.0.0.1:0\" }}\n",
        fakes.example_config()?
    );
    let gw = launch(&config, &[]).await?;
    let before = gw.scrape().await?;
    // The route examples went through the embedded batcher at start.
    ensure!(
        before.value("routemesh_worker_batch_size_count", &[]) > 0.0,
        "{}",
        before.text
    );
    ensure!(before.has("routemesh_worker_queue_depth", &[]));

    for (prompts, decision) in [(MATH, "math"), (CODE, "code")] {
        for p in prompts {
            let resp = gw.chat("auto", p).await?;
            ensure!(resp.status() == 200, "{p}: {}", resp.status());
            ensure!(header(&resp, "x-routemesh-decision") == decision, "{p}");
            resp.bytes().await?;
        }
    }
    let resp = gw.chat("llama-3.2-1b", "Hello there").await?;
    ensure!(resp.status() == 200);
    resp.bytes().await?;
    let resp = gw.chat("no-such-model", "Hello there").await?;
    ensure!(resp.status() == 404);

    let after = gw.scrape().await?;
    for name in ["routemesh_requests_total", "routemesh_stage_seconds"] {
        ensure!(
            after.text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}:\n{}",
            after.text
        );
    }
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let requests = "routemesh_requests_total";
    let ok = ("outcome", "ok");
    assert_eq!(
        delta(
            requests,
            &[("decision", "math"), ("model", "qwen-math-7b"), ok]
        ),
        3.0,
        "{}",
        after.text
    );
    assert_eq!(
        delta(
            requests,
            &[("decision", "code"), ("model", "qwen-coder-7b"), ok]
        ),
        2.0
    );
    assert_eq!(
        delta(
            requests,
            &[("decision", "passthrough"), ("model", "llama-3.2-1b"), ok]
        ),
        1.0
    );
    assert_eq!(
        delta(
            requests,
            &[
                ("decision", "none"),
                ("model", "none"),
                ("outcome", "client_error")
            ]
        ),
        1.0
    );
    assert_eq!(delta(requests, &[]), 7.0, "nothing else was counted");
    assert_eq!(delta(requests, &[("api", "chat_completions")]), 7.0);

    // Stages: 5 routed (classify, decide), 6 forwarded (upstream,
    // overhead), 7 in all (total).
    let stage = |s: &str| delta("routemesh_stage_seconds_count", &[("stage", s)]);
    assert_eq!(stage("classify"), 5.0);
    assert_eq!(stage("decide"), 5.0);
    assert_eq!(stage("upstream"), 6.0);
    assert_eq!(stage("overhead"), 6.0);
    assert_eq!(stage("total"), 7.0);
    ensure!(
        after.has(
            "routemesh_stage_seconds_bucket",
            &[("stage", "total"), ("le", "0.005")]
        ),
        "explicit buckets: {}",
        after.text
    );
    // The embedded batcher ran one pass of one text per routed request.
    assert_eq!(delta("routemesh_worker_batch_size_count", &[]), 5.0);
    assert_eq!(delta("routemesh_worker_batch_size_sum", &[]), 5.0);
    assert_eq!(delta("routemesh_worker_inference_seconds_count", &[]), 5.0);
    // Posterior means of configured arms (static selection: the prior).
    let mean = after.value(
        "routemesh_posterior_mean",
        &[("decision", "math"), ("model", "qwen-math-7b")],
    );
    ensure!(mean > 0.0 && mean < 1.0, "posterior mean {mean}");
    // Bounded labels: no request id, no prompt text.
    ensure!(!after.text.contains("request_id") && !after.text.contains("derivative"));
    Ok(())
}

#[tokio::test]
async fn cache_hits_and_shard_sizes_are_scraped_with_the_cli_listener() -> Result<()> {
    let fake = Fake::serving("a", "model-a").await?;
    let config = format!(
        "encoder: {{ model_dir: \"{}\" }}\n\
         upstreams: [{{ name: a, base_url: \"{}/v1\" }}]\n\
         models: [{{ name: model-a, upstream: a }}]\n\
         default: {{ model: model-a, cache: exact }}\n\
         cache: {{ shards: 2, capacity: 100 }}\n\
         metrics: {{ listen: \"192.0.2.1:9464\" }}\n",
        model_dir().display(),
        fake.base
    );
    // The flag wins over `metrics.listen` (a TEST-NET address: binding it
    // would fail).
    let gw = launch(&config, &["--metrics-listen", "127.0.0.1:0"]).await?;
    let before = gw.scrape().await?;
    for expected in ["miss", "hit"] {
        let resp = gw.chat("auto", "Tell me about the moon").await?;
        ensure!(resp.status() == 200);
        ensure!(header(&resp, "x-routemesh-cache") == expected);
        resp.bytes().await?;
        // The insert is asynchronous: the hit is only sent once the entry
        // counts (no timing assumed, the cache says so itself).
        if expected == "miss" {
            let mut tries = 0;
            while gw.scrape().await?.value("routemesh_cache_entries", &[]) < 1.0 {
                tries += 1;
                ensure!(tries < 500, "the answer was never stored");
                // Real: polling the gateway process's scrape until the insert counts.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    let after = gw.scrape().await?;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let requests = "routemesh_requests_total";
    assert_eq!(
        delta(requests, &[("decision", "default"), ("outcome", "ok")]),
        1.0,
        "{}",
        after.text
    );
    assert_eq!(
        delta(
            requests,
            &[("decision", "default"), ("outcome", "cache_hit")]
        ),
        1.0
    );
    assert_eq!(
        delta("routemesh_cache_lookups_total", &[("outcome", "hit_exact")]),
        1.0
    );
    assert_eq!(
        delta("routemesh_stage_seconds_count", &[("stage", "cache")]),
        2.0
    );
    // Only the forwarded one has an upstream stage and an overhead.
    assert_eq!(
        delta("routemesh_stage_seconds_count", &[("stage", "overhead")]),
        1.0
    );
    assert_eq!(after.value("routemesh_cache_entries", &[]), 1.0);
    ensure!(after.value("routemesh_cache_bytes", &[]) > 0.0);
    assert_eq!(after.value("routemesh_cache_shard_up", &[]), 2.0);
    Ok(())
}

/// A `classifier-worker serve --metrics-listen 127.0.0.1:0`; its metrics
/// URL. Killed on drop.
struct MeteredWorker {
    metrics: String,
    _child: Child,
}

async fn metered_worker(nats_url: &str, pool: &str) -> Result<MeteredWorker> {
    let binary: PathBuf =
        PathBuf::from(env!("CARGO_BIN_EXE_routemesh")).with_file_name("classifier-worker");
    ensure!(
        binary.is_file(),
        "{} is not built: run `cargo build -p routemesh-classifier-worker`",
        binary.display()
    );
    let heads = workspace().join("heads");
    let mut child = Command::new(binary)
        .args(["serve", "--nats-url", nats_url, "--pool", pool])
        .args(["--max-wait", "0ms", "--metrics-listen", "127.0.0.1:0"])
        .arg("--model-dir")
        .arg(model_dir())
        .args(SHIPPED_HEADS.map(|h| format!("--classifier={h}={}", heads.join(h).display())))
        .env("ROUTEMESH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let wait = async {
        let mut metrics = None;
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = line.strip_prefix("classifier-worker metrics on ") {
                metrics = Some(url.to_owned());
            }
            if line.contains(", worker ") {
                return metrics.context("serving without a metrics line");
            }
        }
        bail!("the worker exited before serving")
    };
    let metrics = tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .context("worker not serving within 60 s")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(MeteredWorker {
        metrics,
        _child: child,
    })
}

#[tokio::test]
async fn a_worker_serves_its_batch_queue_and_inference_metrics() -> Result<()> {
    let nats = NatsServer::start()?;
    let worker = metered_worker(&nats.url(), "metered").await?;
    let fakes = Fakes::start().await?;
    let gw = Gateway::start(&fakes.nats_config(&nats.url(), "metered", "reject")?).await?;
    // The gateway embedded its route examples through the worker.
    let before = Scrape::get(&worker.metrics).await?;
    ensure!(
        before.value("routemesh_worker_batch_size_count", &[]) > 0.0,
        "{}",
        before.text
    );
    for p in MATH {
        let resp = gw.post("/v1/chat/completions", chat("auto", p)).await?;
        ensure!(resp.status() == 200, "{}", resp.status());
        ensure!(header(&resp, "x-routemesh-degraded").is_empty());
    }
    let after = Scrape::get(&worker.metrics).await?;
    let delta = |name: &str| after.value(name, &[]) - before.value(name, &[]);
    // One job of one text per request, each its own pass (max_wait 0,
    // requests sent one after another).
    assert_eq!(delta("routemesh_worker_batch_size_count"), 3.0);
    assert_eq!(delta("routemesh_worker_batch_size_sum"), 3.0);
    assert_eq!(delta("routemesh_worker_inference_seconds_count"), 3.0);
    ensure!(after.has("routemesh_worker_queue_depth", &[]));
    ensure!(
        after.has("routemesh_worker_batch_size_bucket", &[("le", "32")]),
        "{}",
        after.text
    );
    Ok(())
}

/// `routemesh_requests_total` says which API each request came in.
#[tokio::test]
async fn requests_are_counted_by_the_api_they_came_in() -> Result<()> {
    let fakes = Fakes::start().await?;
    let config = format!(
        "{}\nmetrics: {{ listen: \"127.0.0.1:0\" }}\n",
        fakes.example_config()?
    );
    let gw = launch(&config, &[]).await?;
    let before = gw.scrape().await?;
    let client = reqwest::Client::new();
    let prompt = "Solve the equation 3x + 7 = 22 for x.";
    let calls = [
        ("/v1/chat/completions", chat("auto", prompt)),
        (
            "/v1/messages",
            serde_json::json!({ "model": "auto", "max_tokens": 16,
                                "messages": [{ "role": "user", "content": prompt }] })
            .to_string(),
        ),
        (
            "/v1/responses",
            serde_json::json!({ "model": "auto", "input": prompt }).to_string(),
        ),
    ];
    for (path, body) in calls {
        let resp = client
            .post(format!("{}{path}", gw.api))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        ensure!(resp.status() == 200, "{path}: {}", resp.status());
        resp.bytes().await?;
    }
    let after = gw.scrape().await?;
    for api in ["chat_completions", "messages", "responses"] {
        let labels = [("api", api), ("decision", "math"), ("outcome", "ok")];
        let delta = after.value("routemesh_requests_total", &labels)
            - before.value("routemesh_requests_total", &labels);
        assert_eq!(delta, 1.0, "{api}:\n{}", after.text);
    }
    Ok(())
}
