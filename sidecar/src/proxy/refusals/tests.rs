use std::convert::Infallible;

use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

#[test]
fn only_hyper_shaped_empty_refusals_are_recognised() {
    let date = "date: Mon, 07 Dec 2026 05:00:00 GMT\r\n";
    let auto = |status: &str| format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n{date}\r\n");
    assert_eq!(
        hyper_refusal(auto("431 Request Header Fields Too Large").as_bytes()),
        Some(HeadRefusal::HeadersTooLarge)
    );
    assert_eq!(
        hyper_refusal(auto("414 URI Too Long").as_bytes()),
        Some(HeadRefusal::UriTooLong)
    );
    assert_eq!(
        hyper_refusal(auto("400 Bad Request").as_bytes()),
        Some(HeadRefusal::Malformed)
    );
    // Other statuses, answers with any other header, bodies or a non-zero length are not.
    for other in [
        auto("404 Not Found"),
        auto("500 Internal Server Error"),
        format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-request-id: r\r\n{date}\r\n"),
        format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n{date}\r\n{{}}"),
        format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n{date}\r\n"),
        format!("HTTP/1.1 400 Bad Request\r\n{date}\r\n"),
        "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n".to_owned(),
        "{\"data\":\"HTTP/1.1 400 \"}".to_owned(),
        String::new(),
    ] {
        assert_eq!(hyper_refusal(other.as_bytes()), None, "{other:?}");
    }
}

/// Serves one connection with a real hyper HTTP/1.1 server behind [`JsonRefusals`], sends
/// `request` and returns everything the server wrote until it closed.
async fn exchange(request: Vec<u8>) -> String {
    let (client, server) = tokio::io::duplex(1 << 20);
    let service = service_fn(|_req| async {
        Ok::<_, Infallible>(
            http::Response::builder()
                .status(400)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(b"{\"handler\":true}")))
                .unwrap_or_default(),
        )
    });
    let served = tokio::spawn(async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(JsonRefusals::new(server)), service)
            .await;
    });
    let (mut read, mut write) = tokio::io::split(client);
    let sent = tokio::spawn(async move {
        // Not half-closed: hyper would drop the connection before answering.
        let _ = write.write_all(&request).await;
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        read.read_to_end(&mut answer),
    )
    .await;
    let _ = sent.await;
    let _ = served.await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn json_body(answer: &str) -> serde_json::Value {
    let (_, body) = answer.split_once("\r\n\r\n").unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

#[tokio::test]
async fn parser_refusals_reach_the_client_as_openai_json() {
    let many_headers = {
        let mut head = b"GET /v1/models HTTP/1.1\r\nhost: x\r\n".to_vec();
        for i in 0..10_000 {
            head.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        head
    };
    let huge_header = format!(
        "GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    )
    .into_bytes();
    let long_uri = format!(
        "GET /v1/models?q={} HTTP/1.1\r\nhost: x\r\n\r\n",
        "a".repeat(100_000)
    )
    .into_bytes();
    let garbage = b"HELLO THERE\r\n\r\n".to_vec();
    for (request, status, code) in [
        (many_headers, 431, "request_headers_too_large"),
        (huge_header, 431, "request_headers_too_large"),
        (long_uri, 414, "uri_too_long"),
        (garbage, 400, "malformed_request"),
    ] {
        let answer = exchange(request).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer:?}"
        );
        assert!(answer.contains("content-type: application/json\r\n"));
        let json = json_body(&answer);
        assert_eq!(json["error"]["code"], code, "{answer}");
        assert_eq!(json["error"]["type"], "invalid_request_error");
        assert!(
            json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
}

#[tokio::test]
async fn answers_of_the_handler_pass_untouched() {
    let answer =
        exchange(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec()).await;
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer:?}"
    );
    assert_eq!(json_body(&answer), serde_json::json!({"handler": true}));
}
