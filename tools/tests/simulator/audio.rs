//! The audio API over real HTTP: transcriptions and translations (multipart) in every
//! format and path shape, a token-billed transcription streamed as SSE, and speech as a
//! chunked binary body paced in several frames or as SSE audio events; the ledger's audio
//! seconds, characters and token types.

use base64::Engine as _;
use serde_json::json;
use spillway_sidecar::usage::tokenizer::count_text;
use spillway_tools::simulate::{Api, BackendConfig};

use super::client::{Part, post, post_form, sse_json};
use super::start;

const CLASSIC_VERSION: &str = "api-version=2025-04-01-preview";

/// 4 seconds of "audio" at 32,000 bytes a second.
fn four_seconds() -> Vec<u8> {
    vec![0x55; 3 * 32_000 + 1]
}

#[tokio::test]
async fn transcriptions_and_translations_answer_every_format() {
    let (sim, addr) = start(BackendConfig::new("audio")).await;
    let audio = four_seconds();
    let form = |model: &'static str, format: &'static str| {
        vec![
            Part::File("file", "speech.wav", &audio),
            Part::Field("model", model),
            Part::Field("response_format", format),
        ]
    };
    let json_answer = post_form(
        addr,
        "/v1/audio/transcriptions",
        &form("whisper-1", "json"),
        &[],
    )
    .await;
    assert_eq!(json_answer.status, 200, "{}", json_answer.text());
    let body = json_answer.json();
    let text = body["text"].as_str().expect("text").to_owned();
    assert_eq!(text.split(' ').count(), 8, "2 words a second");
    assert_eq!(body["usage"], json!({"type": "duration", "seconds": 4}));
    let again = post_form(
        addr,
        "/openai/v1/audio/transcriptions",
        &form("whisper-1", "json"),
        &[],
    )
    .await;
    assert_eq!(
        again.json()["text"],
        text.as_str(),
        "the same length transcribes the same"
    );

    let plain = post_form(
        addr,
        "/v1/audio/transcriptions",
        &form("whisper-1", "text"),
        &[],
    )
    .await;
    assert!(
        plain
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain"))
    );
    assert_eq!(plain.text(), format!("{text}\n"));
    let verbose = post_form(
        addr,
        "/v1/audio/transcriptions",
        &form("whisper-1", "verbose_json"),
        &[],
    )
    .await
    .json();
    assert_eq!(
        (verbose["duration"].as_f64(), verbose["language"].as_str()),
        (Some(4.0), Some("english"))
    );
    assert_eq!(verbose["segments"][0]["text"], text.as_str());
    let srt = post_form(
        addr,
        "/v1/audio/transcriptions",
        &form("whisper-1", "srt"),
        &[],
    )
    .await;
    assert_eq!(
        srt.text(),
        format!("1\n00:00:00,000 --> 00:00:04,000\n{text}\n\n")
    );
    let vtt = post_form(
        addr,
        "/v1/audio/transcriptions",
        &form("whisper-1", "vtt"),
        &[],
    )
    .await;
    assert!(
        vtt.text()
            .starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:04.000\n")
    );

    let classic =
        format!("/openai/deployments/gpt-4o-transcribe/audio/transcriptions?{CLASSIC_VERSION}");
    let parts = [
        Part::File("file", "a.wav", &audio),
        Part::Field("prompt", "Spillway, PTU"),
    ];
    let tokens = post_form(addr, &classic, &parts, &[]).await;
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    let usage = tokens.json()["usage"].clone();
    let prompt_tokens = count_text("gpt-4o-transcribe", "Spillway, PTU");
    let output = count_text("gpt-4o-transcribe", &text);
    assert_eq!(
        usage,
        json!({"type": "tokens", "input_tokens": 40 + prompt_tokens,
            "input_token_details": {"text_tokens": prompt_tokens, "audio_tokens": 40},
            "output_tokens": output, "total_tokens": 40 + prompt_tokens + output})
    );
    let refused = post_form(
        addr,
        &classic,
        &[
            Part::File("file", "a.wav", &audio),
            Part::Field("response_format", "srt"),
        ],
        &[],
    )
    .await;
    assert_eq!(
        refused.status, 400,
        "token-billed models answer json or text"
    );

    for path in [
        "/v1/audio/translations".to_owned(),
        "/openai/v1/audio/translations".to_owned(),
        format!("/openai/deployments/whisper/audio/translations?{CLASSIC_VERSION}"),
    ] {
        let model = if path.contains("deployments") {
            vec![]
        } else {
            vec![Part::Field("model", "whisper-1")]
        };
        let mut parts = vec![Part::File("file", "a.wav", &audio)];
        parts.extend(model);
        let got = post_form(addr, &path, &parts, &[]).await;
        assert_eq!(got.status, 200, "{path}: {}", got.text());
        assert_eq!(got.json(), json!({"text": text}), "{path}");
    }

    let ledger = sim.ledger();
    let whisper = &ledger.entries[0];
    assert_eq!(whisper.operation, Some(Api::AudioTranscriptions));
    assert_eq!(
        (
            whisper.audio_seconds,
            whisper.prompt_tokens,
            whisper.completion_tokens
        ),
        (4, 0, 0)
    );
    assert!(whisper.upload_bytes.is_some_and(|b| b > audio.len() as u64));
    let billed = ledger
        .entries
        .iter()
        .find(|e| e.deployment.as_deref() == Some("gpt-4o-transcribe"))
        .expect("entry");
    assert_eq!(
        (billed.prompt_tokens, billed.audio_input_tokens),
        (40 + prompt_tokens, 40)
    );
    assert_eq!(billed.completion_tokens, output);
    assert_eq!(
        ledger.entries.last().map(|e| e.operation),
        Some(Some(Api::AudioTranslations))
    );
    assert_eq!(
        ledger.totals.audio_seconds,
        4 * 10,
        "ten served, one refused"
    );
    assert_eq!(ledger.totals.audio_input_tokens, 40);
}

#[tokio::test]
async fn a_token_billed_transcription_streams_its_text() {
    let config = BackendConfig {
        tokens_per_second: 200,
        ..BackendConfig::new("audio")
    };
    let (sim, addr) = start(config).await;
    let audio = four_seconds();
    let parts = [
        Part::File("file", "a.wav", &audio),
        Part::Field("model", "gpt-4o-mini-transcribe"),
        Part::Field("stream", "true"),
    ];
    let got = post_form(addr, "/v1/audio/transcriptions", &parts, &[]).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.header("content-type"), Some("text/event-stream"));
    let events = sse_json(&got.body);
    let (done, deltas) = events.split_last().expect("events");
    assert_eq!(deltas.len(), 8);
    assert!(deltas.iter().all(|d| d["type"] == "transcript.text.delta"));
    let joined: String = deltas.iter().filter_map(|d| d["delta"].as_str()).collect();
    assert_eq!(done["type"], "transcript.text.done");
    assert_eq!(done["text"], joined.as_str());
    assert_eq!(done["usage"]["input_token_details"]["audio_tokens"], 40);
    assert!(got.frames.len() > 1, "paced: {} frames", got.frames.len());
    let entry = &sim.ledger().entries[0];
    assert!(entry.stream);
    assert_eq!(entry.completion_tokens, done["usage"]["output_tokens"]);
    assert_eq!(
        entry.raw_stream.as_deref().map(str::as_bytes),
        Some(&got.body[..])
    );
}

#[tokio::test]
async fn speech_arrives_as_a_paced_chunked_body_or_as_events() {
    let config = BackendConfig {
        tokens_per_second: 40,
        ..BackendConfig::new("tts")
    };
    let (sim, addr) = start(config).await;
    let input = "The gateway spills over to the next backend when the first is full.".repeat(2);
    assert!(input.len() > 100);
    let seconds = (input.chars().count() as u64).div_ceil(15);
    let body = json!({"model": "gpt-4o-mini-tts", "input": input, "voice": "alloy"});
    let mp3 = post(addr, "/v1/audio/speech", &body, &[]).await;
    assert_eq!(mp3.status, 200);
    assert_eq!(mp3.header("content-type"), Some("audio/mpeg"));
    assert_eq!(mp3.header("content-length"), None, "chunked");
    assert_eq!(mp3.body.len() as u64, seconds * 4000);
    assert!(mp3.frames.len() >= 3, "{} frames", mp3.frames.len());
    let (first, last) = (mp3.frames[0], mp3.frames[mp3.frames.len() - 1]);
    assert!(
        last > first,
        "the first bytes came before the last: {first:?} {last:?}"
    );
    let same = post(addr, "/openai/v1/audio/speech", &body, &[]).await;
    assert_eq!(same.body, mp3.body, "deterministic");

    let classic = format!("/openai/deployments/tts-1/audio/speech?{CLASSIC_VERSION}");
    let wav = post(
        addr,
        &classic,
        &json!({"input": "hello", "voice": "nova", "response_format": "wav"}),
        &[],
    )
    .await;
    assert_eq!(wav.header("content-type"), Some("audio/wav"));
    assert!(wav.body.starts_with(b"RIFF"));
    assert_eq!(wav.body.len(), 44 + 32_000);

    let mut sse_body = body.clone();
    sse_body["stream_format"] = json!("sse");
    let events = post(addr, "/v1/audio/speech", &sse_body, &[]).await;
    assert_eq!(events.header("content-type"), Some("text/event-stream"));
    let events = sse_json(&events.body);
    let (done, deltas) = events.split_last().expect("events");
    assert_eq!(deltas.len() as u64, seconds);
    let audio: Vec<u8> = deltas
        .iter()
        .flat_map(|d| {
            let b64 = d["audio"].as_str().expect("audio");
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64")
        })
        .collect();
    assert_eq!(audio, mp3.body, "the same audio, as events");
    let input_tokens = count_text("gpt-4o-mini-tts", &input);
    assert_eq!(
        done,
        &json!({"type": "speech.audio.done", "usage": {"input_tokens": input_tokens,
            "output_tokens": 10 * seconds, "total_tokens": input_tokens + 10 * seconds}})
    );
    let tts1 = post(
        addr,
        "/v1/audio/speech",
        &json!({"model": "tts-1", "input": "x", "voice": "a", "stream_format": "sse"}),
        &[],
    )
    .await;
    assert_eq!(tts1.status, 400);

    let ledger = sim.ledger();
    let entry = &ledger.entries[0];
    assert_eq!(entry.operation, Some(Api::AudioSpeech));
    assert_eq!(
        (entry.characters, entry.audio_seconds),
        (input.len() as u64, seconds)
    );
    assert_eq!(
        (entry.prompt_tokens, entry.completion_tokens),
        (input_tokens, 10 * seconds)
    );
    assert_eq!(entry.audio_output_tokens, 10 * seconds);
    assert_eq!(entry.raw_stream, None, "audio bytes are not kept");
    let wav_entry = &ledger.entries[2];
    assert_eq!(
        (wav_entry.characters, wav_entry.completion_tokens),
        (5, 0),
        "tts-1 bills characters"
    );
    assert_eq!(ledger.totals.characters, 3 * input.len() as u64 + 5);
}
