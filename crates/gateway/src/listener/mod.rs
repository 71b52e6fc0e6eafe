//! The HTTP listener: accepts client connections under
//! `server.max_connections`, serves each with hyper's HTTP/1.1, and bounds
//! how long a client may hold a connection without a request in flight.
//!
//! - **Timeouts** (`server.timeouts`): a connection with nothing in flight
//!   is closed after `idle` without a byte, or `header_read` after the
//!   first byte of a head that is not complete by then (however slowly it
//!   trickles). A body must arrive within `body_read` (the body reader in
//!   [`crate::http`] answers 408). A request in flight, a long stream
//!   included, is never cut by the listener.
//! - **The limit**: at `max_connections` (default: three quarters of the
//!   open-file limit, which is raised to its hard maximum at start) a new
//!   connection evicts the one silent longest among those idle or still
//!   sending a head or body; when every connection is busy with a request,
//!   the new one gets a 503 in the API's error shape and is closed. When
//!   the process runs out of file descriptors, the listener evicts one and
//!   accepts again at once rather than pausing. So slow or idle clients
//!   cannot keep out a client that sends its request at once (`/healthz`).
//! - **Rejections below the handlers** get the API's error body too (see
//!   [`io`]).

mod conn;
mod io;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use routemesh_common::config::ServerTimeouts;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::Service as _;

pub(crate) use conn::Conn;
use conn::{Closed, Registry};

use crate::api::openai::ApiError;
use crate::telemetry::{HTTP_CONNECTIONS, HTTP_CONNECTIONS_CLOSED_TOTAL};

/// Open files kept for everything but client connections (upstreams,
/// NATS, stores, logs) when `max_connections` is derived.
const RESERVED_FILES: u64 = 64;

/// How the listener bounds its clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub timeouts: ServerTimeouts,
}

impl Limits {
    /// `server.max_connections` or, for `auto`, three quarters of the
    /// open-file limit (at least 16, at most 100,000; the rest is kept for
    /// upstreams, NATS and the stores). Raises the soft open-file limit to
    /// the hard one first, as servers do; warns when the configured limit
    /// is above what the process can open.
    pub fn from_config(server: &routemesh_common::config::ServerConfig) -> Self {
        let files = raise_open_file_limit();
        let max_connections = match (server.max_connections, files) {
            (Some(n), Some(files)) => {
                if n as u64 + RESERVED_FILES > files {
                    tracing::warn!(
                        max_connections = n,
                        open_file_limit = files,
                        "server.max_connections is above what the open-file limit allows; connections past it are refused by the system (raise `ulimit -n`)"
                    );
                }
                n
            }
            (Some(n), None) => n,
            (None, Some(files)) => {
                let spare = files.saturating_sub(RESERVED_FILES.max(files / 4));
                usize::try_from(spare.clamp(16, 100_000)).unwrap_or(100_000)
            }
            (None, None) => 1024,
        };
        Self {
            max_connections,
            timeouts: server.timeouts,
        }
    }
}

/// The soft open-file limit after raising it to the hard one; `None` where
/// it cannot be read.
fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read or raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

/// Serves `app` on `listener` until `stop` resolves; then stops accepting,
/// lets each connection finish the request it has in flight (closing it
/// after), and resolves when all have closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: impl Future<Output = ()> + Send,
) {
    let registry = Arc::new(Registry::new());
    let (stopping_tx, stopping_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tracing::info!(
        max_connections = limits.max_connections,
        header_read = ?limits.timeouts.header_read,
        body_read = ?limits.timeouts.body_read,
        idle = ?limits.timeouts.idle,
        "HTTP listener limits"
    );
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
            // Finished connection tasks are reaped as they end.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) if out_of_files(&e) => {
                // Close the longest-silent connection and accept again.
                if !registry.evict_one() {
                    tracing::warn!(error = %e, open = registry.len(), "out of file descriptors and every connection is busy; waiting");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                } else {
                    // Give the evicted connection's task a moment to close
                    // its socket.
                    tokio::task::yield_now().await;
                }
                continue;
            }
            Err(e) => {
                // ECONNABORTED and the like: one connection, not the listener.
                tracing::debug!(error = %e, "accept failed");
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        if registry.len() >= limits.max_connections && !registry.evict_one() {
            tasks.spawn(shed(tcp, limits.max_connections));
            continue;
        }
        let (conn, registered) = registry.open();
        metrics::gauge!(HTTP_CONNECTIONS).set(registry.len() as f64);
        let app = app.clone();
        let stopping = stopping_rx.clone();
        let registry = registry.clone();
        tasks.spawn(async move {
            serve_connection(tcp, conn, app, limits.timeouts, stopping).await;
            drop(registered);
            metrics::gauge!(HTTP_CONNECTIONS).set(registry.len() as f64);
        });
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    while tasks.join_next().await.is_some() {}
}

fn out_of_files(e: &std::io::Error) -> bool {
    // EMFILE (24): this process; ENFILE (23): the system.
    matches!(e.raw_os_error(), Some(23 | 24))
}

/// Answers a connection over the limit with a 503 and closes it.
async fn shed(mut tcp: TcpStream, limit: usize) {
    metrics::counter!(HTTP_CONNECTIONS_CLOSED_TOTAL, "reason" => "shed").increment(1);
    tracing::warn!(
        limit,
        "a connection was refused: every connection is busy (server.max_connections)"
    );
    let response = io::http1_response(&ApiError::AtCapacity(limit));
    let write = async {
        tcp.write_all(&response).await?;
        tcp.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

async fn serve_connection(
    tcp: TcpStream,
    conn: Arc<Conn>,
    app: Router,
    timeouts: ServerTimeouts,
    mut stopping: watch::Receiver<bool>,
) {
    let io = TokioIo::new(io::ConnIo::new(tcp, conn.clone()));
    let service = Tracked {
        app,
        conn: conn.clone(),
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The watchdog bounds the head; hyper's own timer stays off.
    builder.header_read_timeout(None).keep_alive(true);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut graceful = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "client connection ended with an error");
                }
                return;
            }
            why = conn.watch(timeouts) => {
                metrics::counter!(HTTP_CONNECTIONS_CLOSED_TOTAL, "reason" => why.label()).increment(1);
                if why != Closed::Idle {
                    tracing::debug!(reason = why.label(), "closing a client connection");
                }
                return;
            }
            changed = stopping.changed(), if !graceful => {
                if changed.is_err() || *stopping.borrow() {
                    // Finish the request in flight, then close.
                    connection.as_mut().graceful_shutdown();
                    graceful = true;
                }
            }
        }
    }
}

/// The router as a hyper service that keeps the connection's [`Conn`] up
/// to date: a request is in flight from its head until its response body
/// is done; handlers find the `Conn` in the request's extensions.
#[derive(Clone)]
struct Tracked {
    app: Router,
    conn: Arc<Conn>,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.conn.begin();
        let mut request = request.map(Body::new);
        request
            .extensions_mut()
            .insert(ConnHandle(self.conn.clone()));
        let mut app = self.app.clone();
        Box::pin(async move {
            let response = app.call(request).await?;
            Ok(response.map(|body| {
                Body::new(Ending {
                    body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked").finish_non_exhaustive()
    }
}

/// The connection a request came on (a request extension).
#[derive(Debug, Clone)]
pub(crate) struct ConnHandle(pub(crate) Arc<Conn>);

/// A response body that ends its request when done or dropped.
struct Ending {
    body: Body,
    _in_flight: conn::InFlight,
}

impl http_body::Body for Ending {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
