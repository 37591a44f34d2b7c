//! How the gateway (and the simulator) write the delay headers of the OpenAI / Azure OpenAI
//! protocol: `Retry-After` in whole seconds, `retry-after-ms`, and the Go-style durations of
//! `x-ratelimit-reset-*` (`250ms`, `8.64s`, `6m0s`).
//!
//! Delays are rounded **up** and are at least one unit, so a client that waits exactly what it
//! was told is never early.

use std::fmt::Write as _;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};

/// A delay as whole seconds for a `Retry-After` header: rounded up, at least 1.
pub fn retry_after_secs(delay: Duration) -> u64 {
    let secs = delay.as_secs();
    let rounded = if delay.subsec_nanos() > 0 {
        secs.saturating_add(1)
    } else {
        secs
    };
    rounded.max(1)
}

/// A delay as whole milliseconds for a `retry-after-ms` header: rounded up, at least 1.
pub fn retry_after_ms(delay: Duration) -> u64 {
    let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    let rounded = if !delay.subsec_nanos().is_multiple_of(1_000_000) {
        ms.saturating_add(1)
    } else {
        ms
    };
    rounded.max(1)
}

/// Sets `Retry-After` (seconds) and `retry-after-ms`, both rounded up and at least 1.
pub fn insert_retry_after(headers: &mut HeaderMap, delay: Duration) {
    headers.insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after_secs(delay)),
    );
    headers.insert("retry-after-ms", HeaderValue::from(retry_after_ms(delay)));
}

/// A duration the way OpenAI's `x-ratelimit-reset-*` headers write it (Go style, millisecond
/// precision): `250ms`, `1s`, `8.64s`, `6m0s`, `1h2m3s`.
pub fn reset_duration(duration: Duration) -> String {
    let total_ms = duration.as_millis();
    if total_ms < 1000 {
        return format!("{total_ms}ms");
    }
    let hours = total_ms / 3_600_000;
    let minutes = total_ms / 60_000 % 60;
    let seconds = total_ms / 1000 % 60;
    let millis = total_ms % 1000;
    let mut out = String::new();
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if hours > 0 || minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    let _ = write!(out, "{seconds}");
    if millis > 0 {
        let fraction = format!("{millis:03}");
        let _ = write!(out, ".{}", fraction.trim_end_matches('0'));
    }
    out.push('s');
    out
}

#[cfg(test)]
mod tests;
