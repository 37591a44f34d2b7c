//! The bounds the operator's servers (the HTTPS stream server and the admin port) apply to
//! their clients, so a connection that never finishes is never held forever.
//!
//! Input: nothing. Output: a connection builder with a header-read timeout (which also bounds
//! an idle keep-alive connection) and HTTP/2 keep-alive pings. A leaf module.

use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

/// Time a client gets to send a request's headers (and how long an idle keep-alive
/// connection stays open).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection builder (HTTP/1.1 and HTTP/2) that closes connections whose headers do not
/// arrive within [`HEADER_READ_TIMEOUT`], and pings idle HTTP/2 peers.
pub fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}
