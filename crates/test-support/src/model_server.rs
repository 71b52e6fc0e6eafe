//! A REAL model server: llama.cpp's OpenAI-compatible server (PyPI
//! `llama-cpp-python`) serving SmolLM2-135M-Instruct, as
//! `scripts/model-server.sh install` puts it under `.cache/model-server/`.
//! Not a fixture: its answers are a language model's, its SSE framing,
//! usage and errors are llama.cpp's.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

use crate::workspace;

/// The model name the server answers to.
pub const MODEL: &str = "smollm2-135m";

/// A running `python -m llama_cpp.server`; killed on drop.
#[derive(Debug)]
pub struct ModelServer {
    /// `http://127.0.0.1:PORT/v1`: an upstream's `base_url`.
    pub base_url: String,
    child: Child,
    log: tempfile::NamedTempFile,
}

/// Where `scripts/model-server.sh install` puts the server and the model.
fn installed() -> Result<(PathBuf, PathBuf)> {
    let dir = std::env::var_os("ROUTEMESH_MODEL_SERVER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".cache/model-server"));
    let python = dir.join("venv/bin/python");
    let model = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if !python.is_file() || !model.is_file() {
        bail!(
            "the real model server is not installed under {}: run `scripts/model-server.sh install` \
             (scripts/test.sh does; the first install builds llama.cpp, about 10 minutes on 2 cores)",
            dir.display()
        );
    }
    Ok((python, model))
}

impl ModelServer {
    /// Starts the server on a free loopback port and waits (up to 120 s)
    /// until it answers `GET /v1/models`.
    pub async fn start() -> Result<Self> {
        let (python, model) = installed()?;
        routemesh_runtime::install_tls_provider();
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = tempfile::NamedTempFile::new()?;
        let child = Command::new(python)
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(&model)
            .args(["--model_alias", MODEL, "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(["--n_threads", "2", "--n_ctx", "2048", "--seed", "7"])
            // Its prints (a client hanging up) reach the log at once.
            .env("PYTHONUNBUFFERED", "1")
            .stdout(log.reopen()?)
            .stderr(log.reopen()?)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start python -m llama_cpp.server")?;
        let mut server = Self {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            child,
            log,
        };
        let client = reqwest::Client::new();
        let url = format!("{}/models", server.base_url);
        crate::eventually(
            "the model server answering",
            Duration::from_secs(120),
            || {
                let exited = server.child.try_wait();
                let asked = client.get(&url).send();
                async {
                    if let Some(status) = exited? {
                        bail!("the model server exited ({status})");
                    }
                    Ok(match asked.await {
                        Ok(r) if r.status().is_success() => Ok(()),
                        Ok(r) => Err(format!("GET /v1/models: {}", r.status())),
                        Err(e) => Err(e.to_string()),
                    })
                }
            },
        )
        .await
        .with_context(|| server.logs())?;
        Ok(server)
    }

    /// SIGKILL: the server vanishes mid-whatever.
    pub async fn kill(&mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// What the server printed so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}
