//! A real `nats-server` on a free loopback port, for tests and benchmarks
//! (Debian package `nats-server`; scripts/test.sh installs it).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starting the server failed.
#[derive(Debug, thiserror::Error)]
pub enum NatsServerError {
    #[error(
        "nats-server is not installed (looked in PATH and /usr/sbin, /usr/local/bin); \
         install the Debian package: `apt-get install nats-server` (scripts/test.sh does it)"
    )]
    NotInstalled,
    #[error("cannot start nats-server: {0}")]
    Io(#[from] std::io::Error),
    #[error("nats-server did not accept connections on port {0} within 10 s")]
    NotListening(u16),
}

/// A running `nats-server`; killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    port: u16,
    /// The JetStream store, kept across [`NatsServer::restart`].
    store: Option<tempfile::TempDir>,
}

impl NatsServer {
    /// Starts a plain server (no JetStream).
    pub fn start() -> Result<Self, NatsServerError> {
        Self::launch(false)
    }

    /// Starts a server with JetStream, storing in a temporary folder.
    pub fn start_with_jetstream() -> Result<Self, NatsServerError> {
        Self::launch(true)
    }

    fn launch(jetstream: bool) -> Result<Self, NatsServerError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let store = if jetstream {
            Some(tempfile::tempdir()?)
        } else {
            None
        };
        let child = spawn(port, store.as_ref().map(tempfile::TempDir::path))?;
        Ok(Self { child, port, store })
    }

    /// SIGKILL: the server vanishes (its JetStream store stays for
    /// [`NatsServer::restart`]).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port and JetStream store, as a
    /// NATS outage ends (call [`NatsServer::stop`] first).
    pub fn restart(&mut self) -> Result<(), NatsServerError> {
        self.stop();
        self.child = spawn(self.port, self.store.as_ref().map(tempfile::TempDir::path))?;
        Ok(())
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `nats-server` on `port` (with JetStream storing in `store`, if
/// any) and waits until it accepts connections.
fn spawn(port: u16, store: Option<&std::path::Path>) -> Result<Child, NatsServerError> {
    let binary = binary().ok_or(NatsServerError::NotInstalled)?;
    let mut cmd = Command::new(binary);
    cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(dir) = store {
        cmd.arg("-js").arg("-sd").arg(dir);
    }
    let mut child = cmd.spawn()?;
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(child);
        }
        // Real time: nats-server is a child process on the wall clock;
        // this is the poll interval of a bounded wait for its port.
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(NatsServerError::NotListening(port))
}

fn binary() -> Option<PathBuf> {
    let in_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nats-server"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    in_path
        .into_iter()
        .chain(
            [
                "/usr/sbin/nats-server",
                "/usr/local/bin/nats-server",
                "/usr/bin/nats-server",
            ]
            .map(PathBuf::from),
        )
        .find(|p| p.is_file())
}
