//! The gateway's integration-test harness: fake upstreams in-process, the
//! gateway (and classifier workers) as child processes.
//!
//! The `routemesh` binary is the one Cargo built for the running test:
//! only the gateway's own integration tests can start a [`Gateway`] or a
//! [`Worker`] (see [`gateway_bin`]).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

use crate::fake::{self, FakeConfig};
use crate::{model_dir, workspace};

/// The `routemesh` binary of the gateway's integration tests. Cargo and
/// cargo-nextest set `CARGO_BIN_EXE_routemesh` for them at run time as well
/// as at build time (nextest also `NEXTEST_BIN_EXE_routemesh`); failing
/// both, it is looked for where Cargo puts it, beside the test binary's
/// `deps/` folder.
pub fn gateway_bin() -> Result<PathBuf> {
    let from_env = ["CARGO_BIN_EXE_routemesh", "NEXTEST_BIN_EXE_routemesh"]
        .into_iter()
        .find_map(std::env::var_os)
        .map(PathBuf::from);
    let bin = match from_env {
        Some(bin) => bin,
        None => std::env::current_exe()?
            .parent()
            .and_then(|deps| deps.parent())
            .context("the test binary has no grandparent folder")?
            .join("routemesh"),
    };
    if !bin.is_file() {
        bail!(
            "the gateway binary {} is not built: the harness runs from the gateway's \
             integration tests (`cargo nextest run -p routemesh-gateway` builds it)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A fake upstream on a free loopback port; stops with the test's runtime.
#[derive(Debug)]
pub struct Fake {
    pub base: String,
}

impl Fake {
    pub async fn start(cfg: FakeConfig) -> Result<Self> {
        // Test code builds reqwest clients; they need the process's TLS provider.
        routemesh_runtime::install_tls_provider();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            if let Err(e) = fake::serve(cfg, listener).await {
                eprintln!("fake upstream stopped: {e}");
            }
        });
        Ok(Self {
            base: format!("http://{addr}"),
        })
    }

    /// A fake named `name` serving exactly `model`.
    pub async fn serving(name: &str, model: &str) -> Result<Self> {
        Self::start(FakeConfig {
            name: name.into(),
            served_models: vec![model.into()],
            ..FakeConfig::default()
        })
        .await
    }

    /// Chat requests this fake has received.
    pub async fn requests(&self) -> Result<u64> {
        let v: serde_json::Value = reqwest::get(format!("{}/stats", self.base))
            .await?
            .json()
            .await?;
        v["requests"].as_u64().context("stats without requests")
    }
}

/// config/example.yaml with its relative paths (model, heads) made absolute,
/// so it can be written anywhere.
pub fn example_config_text() -> Result<String> {
    let text = std::fs::read_to_string(workspace().join("config/example.yaml"))?;
    let heads = format!("{}/", workspace().join("heads").display());
    let text = text
        .replace(
            "../models/all-MiniLM-L6-v2",
            &model_dir().display().to_string(),
        )
        .replace("../heads/", &heads);
    if text.contains("../") {
        bail!("config/example.yaml has a relative path the harness does not rewrite");
    }
    Ok(text)
}

/// Three fakes standing in for the example config's math, code and chat models.
#[derive(Debug)]
pub struct Fakes {
    pub math: Fake,
    pub code: Fake,
    pub chat: Fake,
}

impl Fakes {
    pub async fn start() -> Result<Self> {
        Ok(Self {
            math: Fake::serving("math", "qwen-math-7b").await?,
            code: Fake::serving("code", "qwen-coder-7b").await?,
            chat: Fake::serving("chat", "llama-3.2-1b").await?,
        })
    }

    /// The shipped example config, pointed at these fakes and the real model.
    pub fn example_config(&self) -> Result<String> {
        let text = example_config_text()?
            .replace("http://127.0.0.1:9101", &self.math.base)
            .replace("http://127.0.0.1:9102", &self.code.base)
            .replace("http://127.0.0.1:9103", &self.chat.base);
        if text.contains("http://127.0.0.1:910") {
            bail!("config/example.yaml changed shape; update the harness");
        }
        Ok(text)
    }
}

impl Fakes {
    /// The example config with the classifier on a NATS pool instead of
    /// in-process: no `encoder:` section, a `classifier:` and a `nats:` one.
    pub fn nats_config(&self, nats_url: &str, pool: &str, on_unavailable: &str) -> Result<String> {
        let text = self.example_config()?;
        let start = text.find("\nencoder:").context("no encoder section")?;
        let end = text[start + 1..]
            .find("\n\n")
            .map(|i| start + 1 + i)
            .context("encoder section end")?;
        Ok(format!(
            "{}\nclassifier: {{ transport: nats, pool: {pool}, deadline: 1s, on_unavailable: {on_unavailable} }}\n\
             nats: {{ url: \"{nats_url}\" }}{}",
            &text[..start],
            &text[end..]
        ))
    }
}

/// The heads shipped under heads/ that config/example.yaml names; a worker
/// that serves the example config's gateway runs all of them.
pub const SHIPPED_HEADS: [&str; 3] = ["domain", "injection", "pii"];

/// A `classifier-worker serve` process; killed on drop.
#[derive(Debug)]
pub struct Worker {
    child: Child,
    /// Its NATS service instance id.
    pub id: String,
}

impl Worker {
    /// Starts a worker for `pool` running the shipped heads, and waits
    /// until it serves.
    pub async fn start(nats_url: &str, pool: &str) -> Result<Self> {
        Self::start_with(nats_url, pool, &SHIPPED_HEADS).await
    }

    /// Starts a worker for `pool` running these shipped heads.
    pub async fn start_with(nats_url: &str, pool: &str, heads_run: &[&str]) -> Result<Self> {
        let binary = gateway_bin()?.with_file_name("classifier-worker");
        if !binary.is_file() {
            bail!(
                "{} is not built: run `cargo build -p routemesh-classifier-worker` \
                 (scripts/test.sh builds the whole workspace)",
                binary.display()
            );
        }
        let heads = workspace().join("heads");
        let classifiers: Vec<String> = heads_run
            .iter()
            .map(|h| format!("--classifier={h}={}", heads.join(h).display()))
            .collect();
        let mut child = Command::new(binary)
            .args([
                "serve",
                "--nats-url",
                nats_url,
                "--pool",
                pool,
                "--max-wait",
                "0ms",
                "--model-dir",
            ])
            .arg(model_dir())
            .args(classifiers)
            .env("ROUTEMESH_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let wait = async {
            while let Some(line) = lines.next_line().await? {
                if let Some((_, id)) = line.split_once(", worker ") {
                    return Ok(id.to_owned());
                }
            }
            bail!("the worker exited before serving")
        };
        let id = tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .context("worker not serving within 60 s")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, id })
    }

    /// SIGKILL: the worker vanishes with whatever it held.
    pub async fn kill(&mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// SIGTERM, then waits for the exit; returns the exit code.
    pub async fn terminate(&mut self) -> Result<Option<i32>> {
        terminate(&mut self.child).await
    }
}

/// SIGTERM to `child`, then waits (up to 30 s) for its exit code.
async fn terminate(child: &mut Child) -> Result<Option<i32>> {
    let pid = child.id().context("already exited")?;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -TERM failed");
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
    Ok(exit.code())
}

/// A running `routemesh serve`; killed on drop.
#[derive(Debug)]
pub struct Gateway {
    pub base: String,
    /// `http://ADDR` of the ext_proc gRPC service, when it runs.
    pub ext_proc: Option<String>,
    child: Child,
    dir: tempfile::TempDir,
}

impl Gateway {
    /// Writes `config` to a temp file, starts the gateway on a free port and
    /// waits until it is ready (encoder loaded).
    pub async fn start(config: &str) -> Result<Self> {
        Self::start_with_env(config, &[]).await
    }

    pub async fn start_with_env(config: &str, env: &[(&str, &str)]) -> Result<Self> {
        Self::start_with(config, env, &[]).await
    }

    /// With environment variables and extra `serve` arguments.
    pub async fn start_with(config: &str, env: &[(&str, &str)], args: &[&str]) -> Result<Self> {
        Self::spawn(Command::new(gateway_bin()?), config, env, args).await
    }

    /// Under an open-file limit of `files` (soft and hard, as `ulimit -n`
    /// sets it), so the gateway cannot raise it.
    pub async fn start_with_file_limit(config: &str, files: u32) -> Result<Self> {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {files} && exec \"$0\" \"$@\""))
            .arg(gateway_bin()?);
        Self::spawn(command, config, &[], &[]).await
    }

    async fn spawn(
        mut command: Command,
        config: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("routemesh.yaml");
        std::fs::write(&path, config)?;
        let log = dir.path().join("gateway.log");
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .args(args)
            .env("ROUTEMESH_LOG", "debug")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let wait = async {
            let mut base = None;
            let mut ext_proc = None;
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix("routemesh listening on ") {
                    base = Some(addr.to_owned());
                }
                if let Some(addr) = line.strip_prefix("routemesh ext_proc on grpc://") {
                    ext_proc = Some(format!("http://{addr}"));
                }
                if line == "routemesh ready" {
                    return Ok((base.context("ready before listening")?, ext_proc));
                }
            }
            bail!("the gateway exited before it was ready")
        };
        let (base, ext_proc) = tokio::time::timeout(Duration::from_secs(120), wait)
            .await
            .context("the gateway was not ready within 120 s")??;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            base,
            ext_proc,
            child,
            dir,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a raw body to a path.
    pub async fn post(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<reqwest::Response> {
        Ok(reqwest::Client::new()
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?)
    }

    /// Everything the gateway logged so far (at debug level unless the test
    /// set ROUTEMESH_LOG).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// GETs a path and parses the JSON body.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value> {
        Ok(reqwest::get(self.url(path)).await?.json().await?)
    }

    /// SIGKILL: no shutdown code runs.
    pub async fn kill(&mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// The config file the gateway was started with (rewrite it to reload).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("routemesh.yaml")
    }

    /// Sends a signal (`HUP`, `TERM`, ...) without waiting.
    pub fn signal(&self, name: &str) -> Result<()> {
        let pid = self.child.id().context("already exited")?;
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -{name} failed");
        Ok(())
    }

    /// Waits (up to 60 s) for the process to exit; returns the exit code.
    pub async fn wait(&mut self) -> Result<Option<i32>> {
        let exit = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await??;
        Ok(exit.code())
    }

    /// SIGTERM, then waits for the exit; returns the exit code.
    pub async fn terminate(&mut self) -> Result<Option<i32>> {
        terminate(&mut self.child).await
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- gateway log ---\n{}", self.logs());
        }
    }
}

/// A chat request for `model` with one user message.
pub fn chat(model: &str, prompt: &str) -> String {
    serde_json::json!({ "model": model, "messages": [{ "role": "user", "content": prompt }] })
        .to_string()
}

/// A header's value as a string ("" when absent).
pub fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}
