//! The OpenAI wire protocol as the gateway needs it on the request path.
//!
//! - [`headers`]: `Retry-After`, `retry-after-ms` and `x-ratelimit-reset-*` values.
//! - [`request`]: inspect a client request body (model, stream, `stream_options`, output
//!   token limit) without building a JSON tree, and apply the gateway's targeted edits to it
//!   (model name, `stream_options.include_usage`) without re-serialising the body.
//! - [`responses`]: the id of a Responses API response just created, and whether a retrieved
//!   one has finished (for routing id-addressed calls).

pub mod headers;
pub mod request;
pub mod responses;

pub use request::{Edits, InspectError, RequestInfo, RewriteError, inspect, rewrite};
