//! A minimal hyper HTTP/1.1 client for the simulator tests: one fresh connection per request,
//! the body bytes received before any body error (so a mid-stream reset is observable) and
//! when each body frame arrived; multipart forms, whole or as a stream of chunks.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// Every request in these tests completes (or fails) within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// What came back.
#[derive(Debug)]
pub struct Received {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// Body bytes received (all of them, or those before `body_error`).
    pub body: Bytes,
    /// The error that ended the body early, if any.
    pub body_error: Option<String>,
    /// When each body data frame arrived, after the response head.
    pub frames: Vec<Duration>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("<not utf-8>")
    }
}

/// Sends one request; `Err` when no response head arrived.
pub async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Received, String> {
    let mut all = Vec::with_capacity(headers.len() + 1);
    if !body.is_empty() {
        all.push(("content-type", "application/json"));
    }
    all.extend_from_slice(headers);
    send_body(
        addr,
        method,
        path,
        &all,
        Full::new(Bytes::from(body.to_owned())),
    )
    .await
}

/// Sends one request with any body; `Err` when no response head arrived.
pub async fn send_body<B>(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: B,
) -> Result<Received, String>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let exchange = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(body).map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let head = Instant::now();
        let (parts, mut incoming) = response.into_parts();
        let mut received = BytesMut::new();
        let mut body_error = None;
        let mut frames = Vec::new();
        while let Some(frame) = incoming.frame().await {
            match frame {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        frames.push(head.elapsed());
                        received.extend_from_slice(&data);
                    }
                }
                Err(err) => {
                    body_error = Some(format!("{err:?}"));
                    break;
                }
            }
        }
        Ok(Received {
            status: parts.status,
            headers: parts.headers,
            body: received.freeze(),
            body_error,
            frames,
        })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| "request timed out".to_owned())?
}

/// POSTs `json` to `path` and expects a response head.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    json: &Value,
    headers: &[(&str, &str)],
) -> Received {
    send(addr, Method::POST, path, headers, &json.to_string())
        .await
        .unwrap_or_else(|e| panic!("POST {path} failed: {e}"))
}

/// GETs `path`.
pub async fn get(addr: SocketAddr, path: &str) -> Received {
    send(addr, Method::GET, path, &[], "")
        .await
        .unwrap_or_else(|e| panic!("GET {path} failed: {e}"))
}

/// The SSE events of a body: `(event name, data)` per blank-line-terminated block.
pub fn sse_events(body: &[u8]) -> Vec<(Option<String>, String)> {
    let text = std::str::from_utf8(body).expect("SSE is UTF-8");
    text.split_terminator("\n\n")
        .map(|block| {
            let mut event = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = Some(name.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push(d);
                }
            }
            (event, data.join("\n"))
        })
        .collect()
}

/// The JSON payloads of the `data:` events (skipping `[DONE]`).
pub fn sse_json(body: &[u8]) -> Vec<Value> {
    sse_events(body)
        .into_iter()
        .filter(|(_, data)| data != "[DONE]")
        .map(|(_, data)| serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data}")))
        .collect()
}

/// The boundary of the forms these tests send.
pub const BOUNDARY: &str = "spillway-sim-test-boundary";

/// One part of a multipart form.
#[derive(Clone, Copy, Debug)]
pub enum Part<'a> {
    /// A text field: name, value.
    Field(&'a str, &'a str),
    /// A file: name, filename, bytes.
    File(&'a str, &'a str, &'a [u8]),
}

/// The `content-type` of the forms these tests send.
pub fn form_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// The head of a part (the boundary line and its headers).
pub fn part_head(name: &str, filename: Option<&str>) -> String {
    let disposition = match filename {
        Some(file) => format!(
            "form-data; name=\"{name}\"; filename=\"{file}\"\r\ncontent-type: application/octet-stream"
        ),
        None => format!("form-data; name=\"{name}\""),
    };
    format!("--{BOUNDARY}\r\ncontent-disposition: {disposition}\r\n\r\n")
}

/// The closing boundary.
pub fn form_end() -> String {
    format!("--{BOUNDARY}--\r\n")
}

/// A whole multipart body.
pub fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        let (head, content) = match part {
            Part::Field(name, value) => (part_head(name, None), value.as_bytes()),
            Part::File(name, file, bytes) => (part_head(name, Some(file)), *bytes),
        };
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(form_end().as_bytes());
    body
}

/// POSTs a multipart form of `parts`.
pub async fn post_form(
    addr: SocketAddr,
    path: &str,
    parts: &[Part<'_>],
    headers: &[(&str, &str)],
) -> Received {
    post_raw_form(addr, path, multipart(parts), headers).await
}

/// POSTs `body` as a multipart form (well formed or not).
pub async fn post_raw_form(
    addr: SocketAddr,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Received {
    let content_type = form_type();
    let mut all = vec![("content-type", content_type.as_str())];
    all.extend_from_slice(headers);
    send_body(addr, Method::POST, path, &all, Full::new(Bytes::from(body)))
        .await
        .unwrap_or_else(|e| panic!("POST {path} failed: {e}"))
}
