//! The bounds the operator's servers (the HTTPS stream server and the admin port) apply to
//! their clients, so a connection that never finishes is never held forever.
//!
//! Input: `--header-read-timeout`. Output: [`ServerLimits`]: a connection builder with a
//! header-read timeout (which also bounds an idle keep-alive connection) and HTTP/2
//! keep-alive pings, a TLS handshake deadline, a wait for a silent socket's first bytes, and
//! a connection cap. A leaf module.

use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

/// Bounds on the clients of one of the operator's listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Time a client gets to send a request's headers (and how long an idle keep-alive
    /// connection stays open). Default 30 s.
    pub header_read_timeout: Duration,
    /// Time a client gets to finish the TLS handshake. Default 10 s.
    pub handshake_timeout: Duration,
    /// Open connections at most. Default 20,000 (one stream per sidecar, plus webhook and
    /// report calls).
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 20_000,
        }
    }
}

impl ServerLimits {
    /// The admin port's: the same timeouts, at most 256 connections.
    pub fn admin(self) -> Self {
        Self {
            max_connections: self.max_connections.min(256),
            ..self
        }
    }

    /// A connection builder (HTTP/1.1 and HTTP/2) that closes connections whose headers do
    /// not arrive within the header-read timeout, and pings idle HTTP/2 peers.
    pub fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        builder
    }

    /// Waits until a plain-HTTP connection has sent something (or closed), at most the
    /// header-read timeout: hyper's HTTP/1-or-h2 detection reads before its own timer runs.
    /// `false`: close it.
    pub async fn first_bytes(&self, stream: &tokio::net::TcpStream) -> bool {
        let mut first = [0u8; 1];
        matches!(
            tokio::time::timeout(self.header_read_timeout, stream.peek(&mut first)).await,
            Ok(Ok(1..))
        )
    }
}
