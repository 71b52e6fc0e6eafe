//! A fleet of `classifier-worker` processes for one scaling step: started together, each waited
//! for until it prints `classifier-worker ready:`, and all killed when the fleet is dropped
//! (after the step, on an error, on a panic, or when an interrupted run is dropped).

use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::MeshBenchError;

/// The line a worker prints once it serves.
pub(super) const READY_PREFIX: &str = "classifier-worker ready:";

/// How each worker is started.
#[derive(Debug, Clone)]
pub(super) struct WorkerSpec {
    pub(super) bin: PathBuf,
    pub(super) pool: String,
    pub(super) cost: Duration,
    pub(super) max_batch: usize,
}

impl WorkerSpec {
    /// The worker's arguments, after the binary.
    pub(super) fn args(&self, nats_url: &str) -> Vec<String> {
        vec![
            "serve".to_owned(),
            "--nats-url".to_owned(),
            nats_url.to_owned(),
            "--pool".to_owned(),
            self.pool.clone(),
            "--simulated-cost".to_owned(),
            humantime::format_duration(self.cost).to_string(),
            "--max-batch".to_owned(),
            self.max_batch.to_string(),
            "--max-wait".to_owned(),
            "0ms".to_owned(),
        ]
    }
}

/// Running workers; killed and reaped on drop.
#[derive(Debug)]
pub(super) struct Fleet {
    children: Vec<Child>,
    /// Each worker's stderr, read back when one fails to start.
    logs: tempfile::TempDir,
}

impl Fleet {
    /// Starts `n` workers against `nats_url` and waits (up to `ready_within`) until all are ready.
    pub(super) fn start(
        spec: &WorkerSpec,
        nats_url: &str,
        n: usize,
        ready_within: Duration,
    ) -> Result<Self, MeshBenchError> {
        let io =
            |what: String| move |e: std::io::Error| MeshBenchError::Worker(format!("{what}: {e}"));
        let logs = tempfile::tempdir().map_err(io("cannot create a log folder".to_owned()))?;
        let mut fleet = Self {
            children: Vec::with_capacity(n),
            logs,
        };
        let (ready_tx, ready_rx) = mpsc::channel::<usize>();
        for i in 0..n {
            let log = std::fs::File::create(fleet.log_path(i))
                .map_err(io(format!("cannot create the log of worker {i}")))?;
            let mut child = Command::new(&spec.bin)
                .args(spec.args(nats_url))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(log))
                .spawn()
                .map_err(io(format!("cannot start {}", spec.bin.display())))?;
            let stdout = child.stdout.take();
            fleet.children.push(child);
            if let Some(stdout) = stdout {
                let ready_tx = ready_tx.clone();
                // Reads to EOF, so the worker never blocks on a full pipe.
                std::thread::Builder::new()
                    .name(format!("bench-worker-{i}-stdout"))
                    .spawn(move || {
                        for line in BufReader::new(stdout).lines() {
                            let Ok(line) = line else { break };
                            if line.starts_with(READY_PREFIX) {
                                let _ = ready_tx.send(i);
                            }
                        }
                    })
                    .map_err(io("cannot start a thread".to_owned()))?;
            }
        }
        drop(ready_tx);
        let until = Instant::now() + ready_within;
        let mut ready = vec![false; n];
        while ready.iter().any(|r| !r) {
            match ready_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(i) => ready[i] = true,
                Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => {}
            }
            for (i, child) in fleet.children.iter_mut().enumerate() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(MeshBenchError::Worker(format!(
                        "worker {i} exited ({status}) before it was ready; its stderr ends:\n{}",
                        tail(&fleet.logs.path().join(format!("worker-{i}.log")))
                    )));
                }
            }
            if Instant::now() >= until && ready.iter().any(|r| !r) {
                let missing = ready.iter().filter(|r| !**r).count();
                return Err(MeshBenchError::Worker(format!(
                    "{missing} of {n} workers did not print `{READY_PREFIX}` within {}",
                    humantime::format_duration(ready_within)
                )));
            }
        }
        Ok(fleet)
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.logs.path().join(format!("worker-{i}.log"))
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
    }
}

/// The last ~2 KB of a log file, or a note that it cannot be read.
fn tail(path: &Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut f = std::fs::File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(2048)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    read().unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_get_the_simulated_model_and_no_batching_wait() {
        let spec = WorkerSpec {
            bin: "classifier-worker".into(),
            pool: "scale".to_owned(),
            cost: Duration::from_millis(20),
            max_batch: 1,
        };
        assert_eq!(
            spec.args("nats://127.0.0.1:4222").join(" "),
            "serve --nats-url nats://127.0.0.1:4222 --pool scale --simulated-cost 20ms \
             --max-batch 1 --max-wait 0ms"
        );
    }
}
