//! Request identity on the wire: the request id (`x-request-id`) and the W3C trace context
//! (`traceparent`), taken from the client when well-formed, else created — once per client
//! request, so every attempt carries the same ones.

use http::{HeaderMap, HeaderValue};

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

/// The client's W3C `traceparent` when well-formed, else a new sampled one.
pub(crate) fn traceparent(headers: &HeaderMap) -> HeaderValue {
    if let Some(value) = headers.get("traceparent") {
        let b = value.as_bytes();
        let ok = b.len() == 55
            && b[2] == b'-'
            && b[35] == b'-'
            && b[52] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| matches!(i, 2 | 35 | 52) || c.is_ascii_hexdigit());
        if ok {
            return value.clone();
        }
    }
    let trace = random_hex(16);
    let span = random_hex(8);
    HeaderValue::from_str(&format!("00-{trace}-{span}-01")).unwrap_or_else(|_| {
        HeaderValue::from_static("00-00000000000000000000000000000001-0000000000000001-01")
    })
}

fn random_hex(bytes: usize) -> String {
    let mut rng = fastrand::Rng::new();
    (0..bytes).map(|_| format!("{:02x}", rng.u8(..))).collect()
}

fn hex_header(bytes: usize) -> HeaderValue {
    HeaderValue::from_str(&random_hex(bytes)).unwrap_or_else(|_| HeaderValue::from_static("0"))
}
