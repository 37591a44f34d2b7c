//! The bounds every listener of the gateway applies to its clients, so a connection that never
//! finishes is never held forever: a header-read timeout (which also bounds an idle
//! keep-alive connection: hyper starts it whenever it waits for a request's head), a deadline
//! for reading a request body, and a cap on open connections (past it the listener stops
//! accepting until one closes; new clients wait in the kernel's backlog).
//!
//! Input: `spillway run` flags. Output: a [`ConnectionLimits`] the data path and the admin
//! port apply ([`configure`], [`Admission`]).

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioExecutor;
use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bounds on the clients of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time a client gets to send a request's headers, counted from when the connection
    /// waits for them: a new connection, or an idle keep-alive one. Default 30 s (hyper's
    /// default; nginx uses 60 s).
    pub header_read_timeout: Duration,
    /// Time a client gets to send a whole request body once its headers arrived. Default
    /// 60 s (a 16 MiB body at ~2 Mbit/s).
    pub body_read_timeout: Duration,
    /// Open connections at most. Default 10,000 on the data path.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            max_connections: 10_000,
        }
    }
}

impl ConnectionLimits {
    /// The admin port's: the same timeouts, at most 256 connections.
    pub fn admin(self) -> Self {
        Self {
            max_connections: self.max_connections.min(256),
            ..self
        }
    }
}

/// A connection builder (HTTP/1.1 and h2c) with `limits`' header-read timeout and keep-alive
/// pings on HTTP/2 (30 s, a peer that does not answer in 10 s is dropped).
pub fn configure(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}

/// Waits until a new connection has sent something (or closed), at most the header-read
/// timeout: the HTTP/1-or-h2 detection reads before hyper's own timer runs, so a socket that
/// never sends a byte would otherwise be held forever. `false`: close it.
pub async fn first_bytes(stream: &tokio::net::TcpStream, limits: &ConnectionLimits) -> bool {
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout(limits.header_read_timeout, stream.peek(&mut first)).await,
        Ok(Ok(1..))
    )
}

/// The connection cap of one listener: a permit per open connection.
#[derive(Clone, Debug)]
pub struct Admission(Arc<Semaphore>);

impl Admission {
    /// At most `limits.max_connections` (at least 1) at once.
    pub fn new(limits: &ConnectionLimits) -> Self {
        Self(Arc::new(Semaphore::new(limits.max_connections.max(1))))
    }

    /// Waits until a connection may be accepted; hold the permit while it is open. (`None`
    /// only if the cap were closed, which it never is.)
    pub async fn permit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.0).acquire_owned().await.ok()
    }
}
