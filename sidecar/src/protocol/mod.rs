//! The OpenAI wire protocol as the gateway needs it on the request path.
//!
//! - [`headers`]: `Retry-After`, `retry-after-ms` and `x-ratelimit-reset-*` values.
//! - [`request`]: inspect a client request body (model, stream, `stream_options`, output
//!   token limit) without building a JSON tree, and apply the gateway's targeted edits to it
//!   (model name, `stream_options.include_usage`) without re-serialising the body.

pub mod headers;
pub mod request;

pub use request::{Edits, InspectError, RequestInfo, RewriteError, inspect, rewrite};
