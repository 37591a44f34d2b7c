//! Upload bodies over real HTTP: read as they arrive (the ledger's `firstByteMs` and
//! `lastByteMs` show a slow client's pauses), paced by `uploadRateBytesPerSec`, and a 50 MiB
//! upload read by a `spillway simulate` process whose peak memory stays far below the body.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream;
use http::Method;
use http_body::Frame;
use http_body_util::StreamBody;
use serde_json::Value;
use spillway_tools::simulate::{BackendConfig, LedgerSnapshot};

use super::client::{
    self, Part, Received, form_end, form_type, get, multipart, part_head, post_raw_form,
};
use super::start;

/// Sends `pieces` as a form body, each after its delay.
async fn send_slowly(addr: SocketAddr, path: &str, pieces: Vec<(Duration, Bytes)>) -> Received {
    let body = stream::unfold(pieces.into_iter(), |mut pieces| async move {
        let (delay, bytes) = pieces.next()?;
        tokio::time::sleep(delay).await;
        Some((Ok::<_, Infallible>(Frame::data(bytes)), pieces))
    });
    let content_type = form_type();
    let headers = [("content-type", content_type.as_str())];
    client::send_body(addr, Method::POST, path, &headers, StreamBody::new(body))
        .await
        .expect("answered")
}

/// A whisper-1 transcription form's head, up to the file's bytes.
fn transcription_head() -> String {
    format!(
        "{}whisper-1\r\n{}",
        part_head("model", None),
        part_head("file", Some("a.wav"))
    )
}

#[tokio::test]
async fn a_slow_upload_is_read_as_it_arrives() {
    let (sim, addr) = start(BackendConfig::new("up")).await;
    let head = transcription_head();
    let pieces = vec![
        (
            Duration::ZERO,
            Bytes::from(format!("{head}{}", "a".repeat(1000))),
        ),
        (
            Duration::from_millis(400),
            Bytes::from(format!("{}\r\n{}", "b".repeat(1000), form_end())),
        ),
    ];
    let total: usize = pieces.iter().map(|(_, b)| b.len()).sum();
    let got = send_slowly(addr, "/v1/audio/transcriptions", pieces).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let entry = &sim.ledger().entries[0];
    assert_eq!(entry.upload_bytes, Some(total as u64));
    let (first, last) = (
        entry.first_byte_ms.expect("first"),
        entry.last_byte_ms.expect("last"),
    );
    assert!(first < 200, "the first bytes were read at once: {first} ms");
    assert!(
        last >= 390,
        "the last bytes came after the pause: {last} ms"
    );
    assert!(entry.duration_ms >= last);
}

#[tokio::test]
async fn upload_rate_paces_reading() {
    let config = BackendConfig {
        upload_rate_bytes_per_sec: Some(100_000),
        ..BackendConfig::new("slow")
    };
    let (sim, addr) = start(config).await;
    let audio = vec![1_u8; 50_000];
    let body = multipart(&[
        Part::Field("model", "whisper-1"),
        Part::File("file", "a.wav", &audio),
    ]);
    let started = Instant::now();
    let got = post_raw_form(addr, "/v1/audio/transcriptions", body, &[]).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    let entry = &sim.ledger().entries[0];
    assert!(
        entry.last_byte_ms.is_some_and(|ms| ms >= 400),
        "{:?}",
        entry.last_byte_ms
    );
    assert!(entry.first_byte_ms.is_some_and(|ms| ms < 100));

    let unpaced = post(addr, "/_sim/latency", r#"{"uploadRateBytesPerSec": 0}"#).await;
    assert_eq!(unpaced["uploadRateBytesPerSec"], 0);
    let started = Instant::now();
    let body = multipart(&[
        Part::Field("model", "whisper-1"),
        Part::File("file", "a.wav", &audio),
    ]);
    post_raw_form(addr, "/v1/audio/transcriptions", body, &[]).await;
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
}

async fn post(addr: SocketAddr, path: &str, body: &str) -> Value {
    client::send(addr, Method::POST, path, &[], body)
        .await
        .expect("answered")
        .json()
}

#[cfg(target_os = "linux")]
/// Kills the child when dropped, so a failed assertion leaves no process behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(target_os = "linux")]
/// The peak resident memory of process `pid`, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number of kB");
    kib * 1024
}

#[cfg(target_os = "linux")]
#[test]
fn a_50_mib_upload_is_read_in_bounded_memory() {
    const FILE: usize = 50 << 20;
    const CHUNK: usize = 256 << 10;
    let child = Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(["simulate", "--backend", "name=big"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn spillway simulate");
    let mut child = Running(child);
    let stdout = child.0.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let announced: Value = lines
        .next()
        .map(|l| serde_json::from_str(&l.expect("line")).expect("JSON line"))
        .expect("a backend line");
    // Keep reading what the simulator prints (its `ready` line, logs): a closed pipe would
    // make its next print fail and take the process down mid-test.
    std::thread::spawn(move || lines.for_each(drop));
    let url = announced["url"].as_str().expect("url");
    let addr: SocketAddr = url.trim_start_matches("http://").parse().expect("addr");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Warm up (the first request allocates the tokenizer and the like), then measure.
    runtime.block_on(async {
        let small = multipart(&[
            Part::Field("model", "whisper-1"),
            Part::File("file", "a.wav", &[1; 64_000]),
        ]);
        assert_eq!(
            post_raw_form(addr, "/v1/audio/transcriptions", small, &[])
                .await
                .status,
            200
        );
    });
    let before = peak_rss(child.0.id());
    let chunk = Bytes::from(vec![0x5a_u8; CHUNK]);
    let pieces = std::iter::once(Bytes::from(transcription_head()))
        .chain((0..FILE / CHUNK).map(move |_| chunk.clone()))
        .chain(std::iter::once(Bytes::from(format!("\r\n{}", form_end()))))
        .map(|bytes| Ok::<_, Infallible>(Frame::data(bytes)));
    let content_type = form_type();
    let headers = [("content-type", content_type.as_str())];
    let got = runtime
        .block_on(client::send_body(
            addr,
            Method::POST,
            "/v1/audio/transcriptions",
            &headers,
            StreamBody::new(stream::iter(pieces)),
        ))
        .expect("answered");
    assert_eq!(got.status, 200, "{}", got.text());
    let seconds = (FILE as u64).div_ceil(32_000);
    assert_eq!(got.json()["usage"]["seconds"], seconds);
    let ledger: LedgerSnapshot =
        serde_json::from_slice(&runtime.block_on(get(addr, "/_sim/ledger")).body)
            .expect("ledger JSON");
    let entry = ledger.entries.last().expect("entry");
    assert!(entry.upload_bytes.is_some_and(|b| b > FILE as u64));
    assert_eq!(entry.audio_seconds, seconds);
    let grown = peak_rss(child.0.id()).saturating_sub(before);
    assert!(
        grown < 16 << 20,
        "reading a {} MiB upload raised the simulator's peak memory by {} MiB",
        FILE >> 20,
        grown >> 20
    );
}
