//! Request identity on the wire: the request id (`x-request-id`) and the W3C trace context
//! (`traceparent`). The request id is taken from the client when well-formed, else created.
//! The trace is continued from the client's `traceparent` (same trace id and sampled flag, the
//! client's span becomes the parent of the gateway's server span) or started; each upstream
//! attempt gets its own span id, and the `traceparent` sent to that backend carries it.

use http::{HeaderMap, HeaderValue};

use crate::telemetry::Sampler;
use crate::usage::record::RequestTrace;

/// The client's request id (`x-request-id`, then `x-ms-client-request-id`) when it is a
/// reasonable token, else a new random one.
pub(crate) fn request_id(headers: &HeaderMap) -> HeaderValue {
    ["x-request-id", "x-ms-client-request-id"]
        .iter()
        .filter_map(|name| headers.get(*name))
        .find(|v| {
            let b = v.as_bytes();
            !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| hex_header(16))
}

/// The trace of one client request: continued from the client's well-formed `traceparent`,
/// else a new trace; `sampler` decides whether it is sampled (a parent-based one keeps the
/// client's flag). The server span id is always new.
pub(crate) fn request_trace(sampler: &Sampler, headers: &HeaderMap) -> RequestTrace {
    let mut rng = fastrand::Rng::new();
    let span_id = span_id(&mut rng);
    if let Some((trace_id, parent, flags)) = headers
        .get("traceparent")
        .and_then(|v| parse_traceparent(v.as_bytes()))
    {
        return RequestTrace {
            trace_id,
            span_id,
            parent_span_id: Some(parent),
            sampled: sampler.sample(&trace_id, Some(flags & 1 == 1)),
            start: std::time::SystemTime::now(),
        };
    }
    let mut trace_id = [0; 16];
    while trace_id == [0; 16] {
        rng.fill(&mut trace_id);
    }
    RequestTrace {
        trace_id,
        span_id,
        parent_span_id: None,
        sampled: sampler.sample(&trace_id, None),
        start: std::time::SystemTime::now(),
    }
}

/// A new non-zero span id.
pub(crate) fn span_id(rng: &mut fastrand::Rng) -> [u8; 8] {
    let mut id = [0; 8];
    while id == [0; 8] {
        rng.fill(&mut id);
    }
    id
}

/// The `traceparent` for an upstream attempt whose span id is `attempt_span`.
pub(crate) fn attempt_traceparent(trace: &RequestTrace, attempt_span: [u8; 8]) -> HeaderValue {
    let text = format!(
        "00-{}-{}-{}",
        hex(&trace.trace_id),
        hex(&attempt_span),
        if trace.sampled { "01" } else { "00" }
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| {
        HeaderValue::from_static("00-00000000000000000000000000000001-0000000000000001-01")
    })
}

/// Trace id, parent span id and flags of a well-formed version-00-compatible `traceparent`;
/// all-zero ids and version `ff` are invalid (W3C Trace Context).
fn parse_traceparent(b: &[u8]) -> Option<([u8; 16], [u8; 8], u8)> {
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    // Future versions may append fields after a `-`; version 00 has exactly 55 bytes.
    if b.len() > 55 && (b[..2] == *b"00" || b[55] != b'-') {
        return None;
    }
    let version = decode::<1>(&b[0..2])?;
    let trace_id = decode::<16>(&b[3..35])?;
    let parent = decode::<8>(&b[36..52])?;
    let flags = decode::<1>(&b[53..55])?;
    let valid = version != [0xff] && trace_id != [0; 16] && parent != [0; 8];
    valid.then_some((trace_id, parent, flags[0]))
}

fn decode<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    let mut out = [0; N];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        *out.get_mut(i)? = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn hex_header(bytes: usize) -> HeaderValue {
    let mut raw = vec![0; bytes];
    fastrand::Rng::new().fill(&mut raw);
    HeaderValue::from_str(&hex(&raw)).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(traceparent: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_str(traceparent).unwrap());
        h
    }

    #[test]
    fn continues_the_clients_trace_with_a_new_server_span() {
        let trace = request_trace(
            &Sampler::default(),
            &headers("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
        );
        assert_eq!(hex(&trace.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            trace.parent_span_id.map(|p| hex(&p)).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_ne!(hex(&trace.span_id), "00f067aa0ba902b7");
        assert!(!trace.sampled, "the client's unsampled flag is kept");
        let sent = attempt_traceparent(&trace, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            sent.to_str().unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-00"
        );
    }

    #[test]
    fn starts_a_sampled_trace_without_a_valid_traceparent() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "garbage",
        ] {
            let trace = request_trace(&Sampler::default(), &headers(bad));
            assert_eq!(trace.parent_span_id, None, "{bad}");
            assert!(trace.sampled);
            assert_ne!(trace.trace_id, [0; 16]);
        }
        let future = request_trace(
            &Sampler::default(),
            &headers("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"),
        );
        assert_eq!(hex(&future.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
