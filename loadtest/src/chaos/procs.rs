//! The processes a scenario starts — the gateway, classifier workers, nats-server, FAKE upstreams —
//! as children with their output in log files, waited for by the line each prints when it is
//! up, SIGKILLed or SIGTERMed on purpose, and killed when dropped (nothing outlives a run).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

use super::ChaosError;

/// How to start one process.
#[derive(Debug, Clone)]
pub struct Spawn {
    /// Names the logs: `<dir>/<name>.stdout.log`, `<dir>/<name>.stderr.log`.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Run under `sh -c 'ulimit -n N; exec …'` (the process keeps the pid).
    pub fd_limit: Option<u32>,
    pub log_dir: PathBuf,
}

impl Spawn {
    pub fn new(name: &str, program: &Path, log_dir: &Path) -> Self {
        Self {
            name: name.to_owned(),
            program: program.to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            fd_limit: None,
            log_dir: log_dir.to_path_buf(),
        }
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The command line, for the report.
    pub fn command_line(&self) -> String {
        let mut argv = vec![self.program.display().to_string()];
        argv.extend(self.args.iter().cloned());
        let line = crate::bench::shell_command(argv);
        match self.fd_limit {
            Some(n) => format!("(ulimit -n {n}; exec {line})"),
            None => line,
        }
    }
}

/// Lines a child printed on stdout so far, and whether its stdout closed.
#[derive(Debug, Default)]
struct Lines {
    lines: Vec<String>,
    closed: bool,
}

/// A running child process; SIGKILLed on drop.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub pid: u32,
    child: Child,
    stdout: Arc<(Mutex<Lines>, Notify)>,
    stderr_log: PathBuf,
}

impl Proc {
    pub fn start(spec: &Spawn) -> Result<Self, ChaosError> {
        std::fs::create_dir_all(&spec.log_dir)?;
        let stderr_log = spec.log_dir.join(format!("{}.stderr.log", spec.name));
        let stdout_log = spec.log_dir.join(format!("{}.stdout.log", spec.name));
        let mut cmd = match spec.fd_limit {
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(&spec.program)
                    .args(&spec.args);
                c
            }
            None => {
                let mut c = Command::new(&spec.program);
                c.args(&spec.args);
                c
            }
        };
        let mut child = cmd
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log)?)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ChaosError::Start {
                what: spec.name.clone(),
                detail: format!("cannot run {}: {e}", spec.program.display()),
            })?;
        let pid = child.id().ok_or_else(|| ChaosError::Start {
            what: spec.name.clone(),
            detail: "exited at once".to_owned(),
        })?;
        let stdout = child.stdout.take().ok_or_else(|| ChaosError::Start {
            what: spec.name.clone(),
            detail: "no stdout pipe".to_owned(),
        })?;
        let shared = Arc::new((Mutex::new(Lines::default()), Notify::new()));
        let sink = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut log = tokio::fs::File::create(&stdout_log).await.ok();
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(f) = log.as_mut() {
                    let _ = f.write_all(format!("{line}\n").as_bytes()).await;
                }
                if let Ok(mut l) = sink.0.lock() {
                    l.lines.push(line);
                }
                sink.1.notify_waiters();
            }
            if let Ok(mut l) = sink.0.lock() {
                l.closed = true;
            }
            sink.1.notify_waiters();
        });
        Ok(Self {
            name: spec.name.clone(),
            pid,
            child,
            stdout: shared,
            stderr_log,
        })
    }

    /// Waits for a stdout line starting with `prefix`; returns the rest of it.
    pub async fn wait_line(&self, prefix: &str, within: Duration) -> Result<String, ChaosError> {
        let wait = async {
            loop {
                let notified = self.stdout.1.notified();
                {
                    let l = self
                        .stdout
                        .0
                        .lock()
                        .map_err(|_| ChaosError::setup("stdout lock poisoned"))?;
                    if let Some(rest) = l.lines.iter().find_map(|x| x.strip_prefix(prefix)) {
                        return Ok(rest.to_owned());
                    }
                    if l.closed {
                        return Err(self.failed(&format!("exited before printing `{prefix}`")));
                    }
                }
                notified.await;
            }
        };
        match tokio::time::timeout(within, wait).await {
            Ok(r) => r,
            Err(_) => Err(self.failed(&format!(
                "did not print `{prefix}` within {} s",
                within.as_secs()
            ))),
        }
    }

    fn failed(&self, why: &str) -> ChaosError {
        let tail: Vec<String> = self
            .stderr()
            .lines()
            .rev()
            .take(6)
            .map(str::to_owned)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        ChaosError::Start {
            what: self.name.clone(),
            detail: format!(
                "{why}; last log lines ({}): {}",
                self.stderr_log.display(),
                tail.join(" / ")
            ),
        }
    }

    /// Everything the process wrote on stderr (its log) so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// SIGKILL, and reaps the process.
    pub async fn kill9(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }

    /// SIGTERM, then waits up to `within` for the exit code (SIGKILL after that).
    pub async fn terminate(&mut self, within: Duration) -> Option<i32> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => {
                self.kill9().await;
                None
            }
        }
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// VmRSS in KiB from `/proc/PID/status`.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid)
    }
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// A free loopback port (bound, then released).
pub fn free_port() -> Result<u16, ChaosError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A running `routemesh serve`.
#[derive(Debug)]
pub struct GatewayProc {
    pub proc: Proc,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub spawn: Spawn,
}

impl GatewayProc {
    /// The spawn of `routemesh serve --config PATH --listen 127.0.0.1:0` (no reload polling).
    pub fn spawn(name: &str, bin: &Path, config: &Path, log_dir: &Path) -> Spawn {
        Spawn::new(name, bin, log_dir)
            .args(["serve", "--config"])
            .args([config.display().to_string()])
            .args([
                "--listen",
                "127.0.0.1:0",
                "--reload-poll",
                "0s",
                "--drain-timeout",
                "5s",
            ])
            .env("ROUTEMESH_LOG", "info")
    }

    /// Starts it and waits until it is ready (`routemesh ready`), at most 120 s.
    pub async fn start(spawn: Spawn) -> Result<Self, ChaosError> {
        let proc = Proc::start(&spawn)?;
        let base = proc
            .wait_line("routemesh listening on ", Duration::from_secs(60))
            .await?;
        proc.wait_line("routemesh ready", Duration::from_secs(120))
            .await?;
        Ok(Self { proc, base, spawn })
    }

    /// Starts it again with the same command line, logging as `<name>-<suffix>`.
    pub async fn restart(&self, suffix: &str) -> Result<Self, ChaosError> {
        let mut spawn = self.spawn.clone();
        spawn.name = format!("{}-{suffix}", self.spawn.name);
        Self::start(spawn).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> Result<std::net::SocketAddr, ChaosError> {
        self.base
            .trim_start_matches("http://")
            .parse()
            .map_err(|e| ChaosError::setup(format!("gateway address {}: {e}", self.base)))
    }

    /// Lines of its log that report a panic.
    pub fn panics(&self) -> Vec<String> {
        self.proc
            .stderr()
            .lines()
            .filter(|l| l.contains("panicked at"))
            .map(str::to_owned)
            .collect()
    }
}

/// A FAKE upstream: loadtest's `fake-upstream`, or `chaos upstream-fixture`.
#[derive(Debug)]
pub struct FakeProc {
    pub proc: Proc,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl FakeProc {
    /// `fake-upstream --name NAME --served-model MODEL` plus `extra` flags.
    pub async fn start(
        bin: &Path,
        name: &str,
        model: &str,
        extra: &[&str],
        log_dir: &Path,
    ) -> Result<Self, ChaosError> {
        let spawn = Spawn::new(&format!("fake-{name}"), bin, log_dir)
            .args(["--name", name, "--served-model", model])
            .args(extra.iter().copied());
        Self::start_spawn(&spawn).await
    }

    /// A process that prints `fake-upstream listening on http://ADDR`.
    pub async fn start_spawn(spawn: &Spawn) -> Result<Self, ChaosError> {
        let proc = Proc::start(spawn)?;
        let base = proc
            .wait_line("fake-upstream listening on ", Duration::from_secs(30))
            .await?;
        Ok(Self { proc, base })
    }
}

/// A `nats-server` on a fixed port, restartable on the same port and store.
#[derive(Debug)]
pub struct NatsProc {
    pub proc: Proc,
    pub port: u16,
    spawn: Spawn,
    restarts: u32,
}

impl NatsProc {
    /// Starts it (with JetStream in `store` when given) and waits for its port.
    pub async fn start(
        bin: &Path,
        port: u16,
        store: Option<&Path>,
        log_dir: &Path,
    ) -> Result<Self, ChaosError> {
        let mut spawn = Spawn::new("nats", bin, log_dir).args([
            "-a".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            port.to_string(),
        ]);
        if let Some(dir) = store {
            spawn = spawn.args([
                "-js".to_owned(),
                "-sd".to_owned(),
                dir.display().to_string(),
            ]);
        }
        let proc = Self::launch(&spawn, port).await?;
        Ok(Self {
            proc,
            port,
            spawn,
            restarts: 0,
        })
    }

    async fn launch(spawn: &Spawn, port: u16) -> Result<Proc, ChaosError> {
        let mut proc = Proc::start(spawn)?;
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(proc);
            }
            if !proc.running() {
                break;
            }
            // Real time: nats-server is another process; a bounded poll of its port.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(ChaosError::Start {
            what: "nats-server".to_owned(),
            detail: format!("not listening on port {port} within 10 s"),
        })
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL.
    pub async fn kill9(&mut self) {
        self.proc.kill9().await;
    }

    /// Starts it again on the same port and store.
    pub async fn restart(&mut self) -> Result<(), ChaosError> {
        self.restarts += 1;
        let mut spawn = self.spawn.clone();
        spawn.name = format!("nats-{}", self.restarts);
        self.proc = Self::launch(&spawn, self.port).await?;
        Ok(())
    }
}

/// A `classifier-worker serve` with the simulated fixed-cost model (no CPU: a sleep per pass).
#[derive(Debug)]
pub struct WorkerProc {
    pub proc: Proc,
    pub id: String,
}

impl WorkerProc {
    pub async fn start(
        bin: &Path,
        name: &str,
        nats_url: &str,
        pool: &str,
        cost: &str,
        max_batch: usize,
        log_dir: &Path,
    ) -> Result<Self, ChaosError> {
        let spawn = Spawn::new(name, bin, log_dir)
            .args([
                "serve",
                "--nats-url",
                nats_url,
                "--pool",
                pool,
                "--simulated-cost",
                cost,
                "--max-wait",
                "0ms",
                "--max-batch",
            ])
            .args([max_batch.to_string()])
            .env("ROUTEMESH_LOG", "info");
        let proc = Proc::start(&spawn)?;
        let line = proc
            .wait_line("classifier-worker ready:", Duration::from_secs(60))
            .await?;
        let id = line
            .rsplit_once("worker ")
            .map(|(_, id)| id.trim().to_owned())
            .unwrap_or_default();
        Ok(Self { proc, id })
    }
}
