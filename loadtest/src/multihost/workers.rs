//! Classifier workers started in a host's network namespace (`ip netns exec NS classifier-worker
//! serve …`, which execs the worker, so the child's pid is the worker's), each waited for until it
//! prints `classifier-worker ready:`, stopped with SIGTERM (the worker drains: stops taking
//! requests, answers those it holds, exits) and killed if still running when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::io::Write as _;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use super::MultihostError;

/// The line a worker prints once it serves.
const READY_PREFIX: &str = "classifier-worker ready:";
/// The log line a worker writes after draining (`requests=N` on the same line).
const DRAINED_MARK: &str = "drained; exiting";
/// A namespace name that means "no namespace: run here" (for trying the driver without root).
pub const NO_NETNS: &str = "-";

/// Where workers of one host run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerHost {
    /// Network namespace (`ip netns exec`), or [`NO_NETNS`].
    pub netns: String,
    /// The host's own NATS node, e.g. `nats://10.77.0.2:4222`.
    pub nats_url: String,
}

impl std::str::FromStr for WorkerHost {
    type Err = String;

    /// `NETNS=NATS_URL`, e.g. `rmh-h2=nats://10.77.0.2:4222`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (netns, url) = s.split_once('=').ok_or_else(|| {
            format!("`{s}`: use NETNS=NATS_URL, e.g. rmh-h2=nats://10.77.0.2:4222")
        })?;
        let ok = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if netns.is_empty() || !netns.chars().all(ok) {
            return Err(format!("`{netns}` is not a namespace name"));
        }
        if url.is_empty() {
            return Err(format!("`{s}`: the NATS URL is empty"));
        }
        Ok(Self {
            netns: netns.to_owned(),
            nats_url: url.to_owned(),
        })
    }
}

/// How every worker is started.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub bin: PathBuf,
    pub pool: String,
    pub cost: Duration,
    pub max_batch: usize,
}

impl WorkerSpec {
    /// The program and arguments that start a worker on `host`.
    pub fn command_line(&self, host: &WorkerHost) -> Vec<String> {
        let mut argv = Vec::new();
        if host.netns != NO_NETNS {
            argv.extend(["ip", "netns", "exec", &host.netns].map(str::to_owned));
        }
        argv.push(self.bin.display().to_string());
        argv.extend(
            [
                "serve",
                "--nats-url",
                &host.nats_url,
                "--pool",
                &self.pool,
                "--simulated-cost",
                &humantime::format_duration(self.cost).to_string(),
                "--max-batch",
                &self.max_batch.to_string(),
                "--max-wait",
                "0ms",
            ]
            .map(str::to_owned),
        );
        argv
    }
}

/// A running worker.
#[derive(Debug)]
pub struct Worker {
    /// 1-based, in start order.
    pub id: usize,
    pub host: WorkerHost,
    pub pid: u32,
    child: Child,
    /// Requests the worker says it served, from its `drained; exiting` line.
    served: Arc<Mutex<Option<u64>>>,
    ready: Option<oneshot::Receiver<()>>,
    /// The tasks copying stdout and stderr to the logs; they end at EOF.
    pipes: Vec<tokio::task::JoinHandle<()>>,
}

/// How a stopped worker ended.
#[derive(Debug, Clone)]
pub struct Stopped {
    /// Exit code, or `None` when a signal ended it.
    pub code: Option<i32>,
    /// From SIGTERM to exit.
    pub drain: Duration,
    /// Requests served over its life, as the worker reported.
    pub served: Option<u64>,
}

impl Worker {
    /// Starts worker `id` on `host`; its stdout goes to `logs/worker-ID.log`, stderr to
    /// `logs/worker-ID.stderr.log`.
    pub async fn start(
        spec: &WorkerSpec,
        id: usize,
        host: &WorkerHost,
        logs: &Path,
    ) -> Result<Self, MultihostError> {
        let io =
            |what: String| move |e: std::io::Error| MultihostError::Worker(format!("{what}: {e}"));
        let argv = spec.command_line(host);
        let stdout_log = std::fs::File::create(logs.join(format!("worker-{id}.log")))
            .map_err(io(format!("cannot create the log of worker {id}")))?;
        let stderr_log = std::fs::File::create(logs.join(format!("worker-{id}.stderr.log")))
            .map_err(io(format!("cannot create the stderr log of worker {id}")))?;
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            // Plain log lines (no ANSI colours), so `requests=N` can be read back.
            .env("NO_COLOR", "1")
            .env("ROUTEMESH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("cannot start `{}`", argv.join(" "))))?;
        let pid = child
            .id()
            .ok_or_else(|| MultihostError::Worker(format!("worker {id} exited at once")))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(MultihostError::Worker(
                "no stdout or stderr pipe".to_owned(),
            ));
        };
        let (ready_tx, ready_rx) = oneshot::channel();
        let served = Arc::new(Mutex::new(None));
        // The ready line is on stdout, the log (with the drain line) on stderr.
        let mut ready_tx = Some(ready_tx);
        let stdout_done = copy_lines(stdout, stdout_log, move |line| {
            if line.starts_with(READY_PREFIX)
                && let Some(tx) = ready_tx.take()
            {
                let _ = tx.send(());
            }
        });
        let served_in = Arc::clone(&served);
        let stderr_done = copy_lines(stderr, stderr_log, move |line| {
            if line.contains(DRAINED_MARK)
                && let Ok(mut s) = served_in.lock()
            {
                *s = served_requests(line);
            }
        });
        Ok(Self {
            id,
            host: host.clone(),
            pid,
            child,
            served,
            ready: Some(ready_rx),
            pipes: vec![stdout_done, stderr_done],
        })
    }

    /// Waits until the worker prints its ready line.
    pub async fn ready(&mut self, within: Duration) -> Result<(), MultihostError> {
        let Some(rx) = self.ready.take() else {
            return Ok(());
        };
        match tokio::time::timeout(within, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => {
                let status = self.child.wait().await.ok();
                Err(MultihostError::Worker(format!(
                    "worker {} exited before it was ready ({}); see its logs",
                    self.id,
                    status.map_or_else(|| "unknown status".to_owned(), |s| s.to_string())
                )))
            }
            Err(_) => Err(MultihostError::Worker(format!(
                "worker {} did not print `{READY_PREFIX}` within {}",
                self.id,
                humantime::format_duration(within)
            ))),
        }
    }

    /// Sends SIGTERM and waits (up to `within`) for the worker to drain and exit.
    pub async fn terminate(mut self, within: Duration) -> Result<Stopped, MultihostError> {
        let sent = tokio::time::Instant::now();
        // By pid, with the system's `kill` (this crate forbids `unsafe`, so no libc::kill).
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await
            .map_err(|e| MultihostError::Worker(format!("cannot run kill: {e}")))?;
        if !status.success() {
            return Err(MultihostError::Worker(format!(
                "kill -TERM {} (worker {}) failed: {status}",
                self.pid, self.id
            )));
        }
        let exit = tokio::time::timeout(within, self.child.wait())
            .await
            .map_err(|_| {
                MultihostError::Worker(format!(
                    "worker {} did not exit within {} of SIGTERM",
                    self.id,
                    humantime::format_duration(within)
                ))
            })?
            .map_err(|e| MultihostError::Worker(format!("waiting for worker {}: {e}", self.id)))?;
        let drain = sent.elapsed();
        // The last lines (the drain line among them) are read once the pipes reach EOF.
        for pipe in self.pipes.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(2), pipe).await;
        }
        let served = self.served.lock().ok().and_then(|s| *s);
        Ok(Stopped {
            code: exit.code(),
            drain,
            served,
        })
    }
}

/// Copies `from` line by line to `log` (small unbuffered writes to a local file: cheap enough on
/// the runtime), calling `each` on every line, until EOF; so the worker never blocks on a full
/// pipe.
fn copy_lines(
    from: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    mut log: std::fs::File,
    mut each: impl FnMut(&str) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(from).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = writeln!(log, "{line}");
            each(&line);
        }
    })
}

/// `N` of the first `requests=N` in a log line.
fn served_requests(line: &str) -> Option<u64> {
    let rest = &line[line.find("requests=")? + "requests=".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_as_namespace_and_url() {
        let h: WorkerHost = "rmh-h2=nats://10.77.0.2:4222".parse().unwrap();
        assert_eq!(h.netns, "rmh-h2");
        assert_eq!(h.nats_url, "nats://10.77.0.2:4222");
        for bad in ["rmh-h2", "=nats://x", "a b=nats://x", "rmh-h2="] {
            assert!(bad.parse::<WorkerHost>().is_err(), "{bad}");
        }
    }

    #[test]
    fn workers_start_in_their_namespace_with_the_simulated_model() {
        let spec = WorkerSpec {
            bin: "target/release/classifier-worker".into(),
            pool: "multihost".to_owned(),
            cost: Duration::from_millis(20),
            max_batch: 1,
        };
        let host: WorkerHost = "rmh-h3=nats://10.77.0.3:4222".parse().unwrap();
        assert_eq!(
            spec.command_line(&host).join(" "),
            "ip netns exec rmh-h3 target/release/classifier-worker serve --nats-url \
             nats://10.77.0.3:4222 --pool multihost --simulated-cost 20ms --max-batch 1 \
             --max-wait 0ms"
        );
        let here: WorkerHost = "-=nats://127.0.0.1:4222".parse().unwrap();
        assert!(spec.command_line(&here)[0].ends_with("classifier-worker"));
    }

    #[test]
    fn the_served_count_is_read_from_the_drain_line() {
        let line = "2026-11-21T18:00:00Z  INFO classifier_worker: drained; exiting requests=1234";
        assert_eq!(served_requests(line), Some(1234));
        assert_eq!(served_requests("drained; exiting"), None);
    }
}
