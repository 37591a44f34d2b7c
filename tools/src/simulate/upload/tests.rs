use std::convert::Infallible;

use bytes::Bytes;
use futures_util::stream;
use http::Request;
use http_body::Frame;
use http_body_util::StreamBody;

use super::form::FormError;
use super::*;
use spillway_sidecar::clock::SystemClock;

const BOUNDARY: &str = "sim-boundary";

/// A multipart body: `(name, filename, content)` parts.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, content) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let disposition = match filename {
            Some(file) => format!("form-data; name=\"{name}\"; filename=\"{file}\""),
            None => format!("form-data; name=\"{name}\""),
        };
        body.extend_from_slice(format!("Content-Disposition: {disposition}\r\n\r\n").as_bytes());
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

type Chunks = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// `body` as a request in chunks of `chunk` bytes.
fn request(body: &[u8], chunk: usize, content_type: &str) -> Request<Chunks> {
    let frames: Vec<_> = body
        .chunks(chunk.max(1))
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    Request::builder()
        .header("content-type", content_type)
        .body(StreamBody::new(stream::iter(frames)))
        .expect("request")
}

fn form_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

async fn read(
    request: Request<Chunks>,
    rules: FormRules<'_>,
    rate: u64,
) -> (UploadStats, Result<Form, FormError>) {
    read_form(request, Arc::new(SystemClock), Instant::now(), rate, rules).await
}

const AUDIO: FormRules<'static> = FormRules {
    file_fields: &["file"],
    keep_up_to: None,
};

#[tokio::test]
async fn reads_fields_and_counts_files_without_keeping_them() {
    let audio = vec![7_u8; 100_000];
    let body = multipart(&[
        ("model", None, b"whisper-1"),
        ("file", Some("a.wav"), &audio),
        ("extra", Some("x.bin"), b"dropped"),
        ("response_format", None, b"text"),
    ]);
    let (stats, form) = read(request(&body, 4096, &form_type()), AUDIO, 0).await;
    let form = form.expect("parses");
    assert_eq!(form.field("model"), Some("whisper-1"));
    assert_eq!(form.field("response_format"), Some("text"));
    assert_eq!(
        form.field("extra"),
        None,
        "a file part that is not a file field"
    );
    assert_eq!(form.files.len(), 1);
    let file = &form.files[0];
    assert_eq!((file.name.as_str(), file.bytes), ("file", 100_000));
    assert_eq!(file.filename.as_deref(), Some("a.wav"));
    assert_eq!(file.content, None, "counted, not kept");
    assert_eq!(stats.bytes, body.len() as u64);
    assert!(stats.first_byte.is_some() && stats.last_byte >= stats.first_byte);
}

#[tokio::test]
async fn keeps_files_within_the_budget() {
    let body = multipart(&[
        ("purpose", None, b"batch"),
        ("file", Some("in.jsonl"), b"{}\n{}\n"),
    ]);
    let keep = FormRules {
        file_fields: &["file"],
        keep_up_to: Some(6),
    };
    let form = read(request(&body, 5, &form_type()), keep, 0)
        .await
        .1
        .expect("parses");
    let file = form.files_named(&["file"]).next().expect("file");
    assert_eq!(file.content.as_deref(), Some(&b"{}\n{}\n"[..]));

    let tight = FormRules {
        keep_up_to: Some(5),
        ..keep
    };
    let err = read(request(&body, 5, &form_type()), tight, 0)
        .await
        .1
        .expect_err("over budget");
    assert!(matches!(err, FormError::KeepLimit(5)), "{err:?}");
    assert_eq!(err.reply(5).status, 413);
}

#[tokio::test]
async fn refuses_what_is_not_a_well_formed_form() {
    let (_, err) = read(request(b"{}", 2, "application/json"), AUDIO, 0).await;
    let err = err.expect_err("not multipart");
    assert!(matches!(err, FormError::NotMultipart(_)), "{err:?}");
    assert_eq!(err.reply(0).status, 400);

    let mut cut = multipart(&[("file", Some("a.wav"), b"abc")]);
    cut.truncate(cut.len() - 10);
    let (stats, err) = read(request(&cut, 7, &form_type()), AUDIO, 0).await;
    let err = err.expect_err("no closing boundary");
    assert!(matches!(err, FormError::Malformed(_)), "{err:?}");
    assert_eq!(stats.bytes, cut.len() as u64, "what arrived is still noted");

    let long = vec![b'a'; MAX_TEXT_FIELD + 1];
    let body = multipart(&[("prompt", None, &long)]);
    let err = read(request(&body, 65_536, &form_type()), AUDIO, 0).await.1;
    assert!(matches!(err, Err(FormError::FieldTooLong(name)) if name == "prompt"));
}

#[tokio::test]
async fn a_body_without_boundaries_is_refused_not_buffered() {
    let garbage = vec![b'x'; (MAX_UNPARSED as usize) * 2];
    let (stats, err) = read(request(&garbage, 65_536, &form_type()), AUDIO, 0).await;
    let err = err.expect_err("no boundary");
    assert!(
        err.to_string().contains("no multipart part boundary"),
        "{err}"
    );
    assert!(
        stats.bytes <= MAX_UNPARSED + 65_536,
        "stopped reading at the bound, read {}",
        stats.bytes
    );
}

#[tokio::test(start_paused = true)]
async fn paces_reading_to_the_upload_rate() {
    let body = multipart(&[("file", Some("a.wav"), &[1; 4000])]);
    let started = tokio::time::Instant::now();
    let (stats, form) = read(request(&body, 1000, &form_type()), AUDIO, 1000).await;
    form.expect("parses");
    let took = started.elapsed();
    // Reading the last chunk waits until the bytes before it are within 1000 bytes a second.
    let before_last = ((body.len() as u64 - 1) / 1000) * 1000;
    assert!(
        took >= Duration::from_millis(before_last),
        "{took:?} for {} bytes",
        stats.bytes
    );
    assert!(
        took < Duration::from_millis(body.len() as u64 + 100),
        "{took:?}"
    );
}
