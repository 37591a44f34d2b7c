//! The delay a backend asked for in its response headers.
//!
//! Input: the response headers and the wall-clock now (for HTTP-dates). Output: the delay of
//! the first header, in precedence order, that holds a usable value:
//!
//! 1. `retry-after-ms` — milliseconds, possibly fractional (Azure OpenAI);
//! 2. `x-ms-retry-after-ms` — the same, older Azure name;
//! 3. `retry-after` — delta-seconds (fractional accepted) or an HTTP-date; a date in the past
//!    means "now" (zero);
//! 4. `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens` — OpenAI durations such as
//!    `1s`, `6m0s`, `20ms`, `1.5s`, `1h2m3s`, or plain seconds; the larger of the two when both
//!    are usable.
//!
//! A value that does not parse (negative, `inf`, words, bad units) is skipped and the next
//! header is tried; nothing here panics. Delays are clamped to [`MAX_RETRY_AFTER`] so callers
//! can add them to an `Instant` without overflow.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName};

/// Longest delay ever returned (one year); larger values are clamped to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(365 * 24 * 60 * 60);

const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const X_MS_RETRY_AFTER_MS: HeaderName = HeaderName::from_static("x-ms-retry-after-ms");
const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

/// The delay the backend asked for, or `None` when no header holds a usable value.
///
/// `now` is the wall-clock time the response arrived, used for `retry-after` HTTP-dates.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    first_usable(headers, &RETRY_AFTER_MS, parse_millis)
        .or_else(|| first_usable(headers, &X_MS_RETRY_AFTER_MS, parse_millis))
        .or_else(|| {
            first_usable(headers, &http::header::RETRY_AFTER, |v| {
                parse_retry_after(v, now)
            })
        })
        .or_else(|| {
            let requests = first_usable(headers, &RESET_REQUESTS, parse_reset);
            let tokens = first_usable(headers, &RESET_TOKENS, parse_reset);
            // `None < Some(_)`, so this is the larger usable value, if any.
            requests.max(tokens)
        })
}

/// The first value of `name` (a header may repeat) that `parse` accepts.
fn first_usable(
    headers: &HeaderMap,
    name: &HeaderName,
    parse: impl Fn(&str) -> Option<Duration>,
) -> Option<Duration> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| parse(value.trim()))
}

/// Milliseconds, possibly fractional: `"1500"`, `"12.5"`.
fn parse_millis(text: &str) -> Option<Duration> {
    parse_decimal(text).map(|ms| from_secs(ms / 1000.0))
}

/// Delta-seconds (`"30"`, `"1.5"`) or an HTTP-date relative to `now`.
fn parse_retry_after(text: &str, now: SystemTime) -> Option<Duration> {
    if let Some(secs) = parse_decimal(text) {
        return Some(from_secs(secs));
    }
    let date = httpdate::parse_http_date(text).ok()?;
    let delay = date.duration_since(now).unwrap_or(Duration::ZERO);
    Some(delay.min(MAX_RETRY_AFTER))
}

/// An OpenAI reset value: plain seconds or a Go-style duration (`"6m0s"`, `"20ms"`).
fn parse_reset(text: &str) -> Option<Duration> {
    match parse_decimal(text) {
        Some(secs) => Some(from_secs(secs)),
        None => parse_go_duration(text),
    }
}

/// A sequence of `<decimal><unit>` parts, units `h`, `m`, `s`, `ms`, `us`/`µs`, `ns`.
fn parse_go_duration(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total_secs = 0.0_f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !is_decimal_char(c))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_end);
        let value = parse_decimal(number)?;
        let unit_end = tail.find(is_decimal_char).unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        total_secs += value * unit_secs(unit)?;
        rest = tail;
    }
    Some(from_secs(total_secs))
}

fn unit_secs(unit: &str) -> Option<f64> {
    match unit {
        "h" => Some(3600.0),
        "m" => Some(60.0),
        "s" => Some(1.0),
        "ms" => Some(1e-3),
        "us" | "µs" | "μs" => Some(1e-6),
        "ns" => Some(1e-9),
        _ => None,
    }
}

fn is_decimal_char(c: char) -> bool {
    c.is_ascii_digit() || c == '.'
}

/// A non-negative decimal: digits with at most one `.` and at least one digit. Rejects the
/// signs, exponents, `inf` and `NaN` that `f64::from_str` would accept.
fn parse_decimal(text: &str) -> Option<f64> {
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    let dots = text.bytes().filter(|b| *b == b'.').count();
    if digits == 0 || dots > 1 || digits + dots != text.len() {
        return None;
    }
    text.parse().ok()
}

/// Seconds as a duration, clamped to `0..=MAX_RETRY_AFTER` (very long digit strings parse
/// to infinity, which clamps to the maximum).
fn from_secs(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    if secs >= MAX_RETRY_AFTER.as_secs_f64() {
        return MAX_RETRY_AFTER;
    }
    Duration::try_from_secs_f64(secs).unwrap_or(MAX_RETRY_AFTER)
}

#[cfg(test)]
mod tests;
