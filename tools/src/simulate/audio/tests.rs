use serde_json::json;

use super::speech::{COMPRESSED_BYTES_PER_SECOND, PCM_BYTES_PER_SECOND, SpeechAsk};
use super::transcript::{Format, render, token_billed};
use super::*;
use crate::simulate::route::Api;
use crate::simulate::text::Completions;
use crate::simulate::upload::form::{FilePart, Form};

fn form(fields: &[(&str, &str)], file: Option<u64>) -> Form {
    Form {
        fields: fields
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        files: file
            .map(|bytes| FilePart {
                name: "file".into(),
                filename: Some("a.wav".into()),
                bytes,
                content: None,
            })
            .into_iter()
            .collect(),
    }
}

fn transcription(fields: &[(&str, &str)], bytes: u64) -> TranscriptionAsk {
    TranscriptionAsk::from_form(Api::AudioTranscriptions, &form(fields, Some(bytes)), None)
        .expect("valid")
}

#[test]
fn the_file_length_is_the_audio_length() {
    let ask = transcription(&[("model", "whisper-1")], 64_001);
    assert_eq!(ask.seconds, 3, "⌈64001 / 32000⌉");
    assert_eq!(ask.format, Format::Json);
    assert!(!ask.stream);
    assert!(token_billed("gpt-4o-mini-transcribe") && !token_billed("whisper-1"));
}

#[test]
fn usage_is_tokens_or_duration_by_model() {
    let completion = Completions::default().get("gpt-4o-transcribe", 6);
    let tokens = transcription(
        &[
            ("model", "gpt-4o-transcribe"),
            ("prompt", "names"),
            ("stream", "true"),
        ],
        96_000,
    );
    assert!(tokens.stream);
    let usage = tokens.usage(&completion, |_| 4);
    assert_eq!((usage.audio_tokens, usage.text_tokens), (30, 4));
    assert_eq!(usage.output_tokens, completion.tokens);
    assert_eq!(
        usage.json(),
        json!({"type": "tokens", "input_tokens": 34,
            "input_token_details": {"text_tokens": 4, "audio_tokens": 30},
            "output_tokens": completion.tokens, "total_tokens": 34 + completion.tokens})
    );
    let whisper = transcription(&[("model", "whisper-1"), ("stream", "true")], 96_000);
    assert!(!whisper.stream, "whisper-1 ignores stream");
    let usage = whisper.usage(&completion, |_| 4);
    assert_eq!(usage.json(), json!({"type": "duration", "seconds": 3}));
    assert_eq!(usage.input_tokens() + usage.output_tokens, 0);
}

#[test]
fn refuses_forms_it_cannot_transcribe() {
    let read = |fields: &[(&str, &str)], file| {
        TranscriptionAsk::from_form(Api::AudioTranscriptions, &form(fields, file), None)
    };
    assert_eq!(read(&[], Some(10)).expect_err("no model").param, "model");
    assert_eq!(
        read(&[("model", "whisper-1")], None)
            .expect_err("no file")
            .param,
        "file"
    );
    assert_eq!(
        read(&[("model", "whisper-1")], Some(0))
            .expect_err("empty")
            .param,
        "file"
    );
    let format = [("model", "whisper-1"), ("response_format", "mp3")];
    assert_eq!(
        read(&format, Some(10)).expect_err("format").param,
        "response_format"
    );
    let verbose = [("model", "gpt-4o-transcribe"), ("response_format", "srt")];
    assert_eq!(
        read(&verbose, Some(10)).expect_err("not offered").param,
        "response_format"
    );
    let deployed =
        TranscriptionAsk::from_form(Api::AudioTranslations, &form(&[], Some(1)), Some("whisper"));
    assert_eq!(
        deployed.expect("deployment names the model").model,
        "whisper"
    );
}

#[test]
fn renders_every_format() {
    let completion = Completions::default().get("whisper-1", 50);
    let ask = |format: &str| {
        transcription(
            &[("model", "whisper-1"), ("response_format", format)],
            800_000,
        )
    };
    let usage = AudioUsage {
        seconds: 25,
        ..AudioUsage::default()
    };
    let (json_body, kind) = render(&ask("json"), &completion, &usage);
    assert_eq!(kind, "application/json");
    let parsed: Value = serde_json::from_slice(&json_body).expect("json");
    assert_eq!(parsed["text"], completion.text.as_str());
    assert_eq!(parsed["usage"]["seconds"], 25);

    let (text, kind) = render(&ask("text"), &completion, &usage);
    assert!(kind.starts_with("text/plain"));
    assert_eq!(text, format!("{}\n", completion.text));

    let (verbose, _) = render(&ask("verbose_json"), &completion, &usage);
    let verbose: Value = serde_json::from_slice(&verbose).expect("json");
    assert_eq!(verbose["task"], "transcribe");
    assert_eq!(verbose["duration"], 25.0);
    let segments = verbose["segments"].as_array().expect("segments");
    assert_eq!(segments.len(), 3, "20 words per 10 seconds");
    assert_eq!(
        (segments[2]["start"].as_f64(), segments[2]["end"].as_f64()),
        (Some(20.0), Some(25.0))
    );
    let joined: String = segments.iter().filter_map(|s| s["text"].as_str()).collect();
    assert_eq!(joined, completion.text);

    let (srt, _) = render(&ask("srt"), &completion, &usage);
    let srt = String::from_utf8_lossy(&srt);
    assert!(
        srt.starts_with("1\n00:00:00,000 --> 00:00:10,000\nHello"),
        "{srt}"
    );
    assert!(srt.contains("3\n00:00:20,000 --> 00:00:25,000\n"), "{srt}");
    let (vtt, _) = render(&ask("vtt"), &completion, &usage);
    assert!(String::from_utf8_lossy(&vtt).starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:10.000\n"));

    let translation = TranscriptionAsk::from_form(
        Api::AudioTranslations,
        &form(&[("model", "whisper-1")], Some(10)),
        None,
    )
    .expect("valid");
    let (body, _) = render(&translation, &completion, &usage);
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body, json!({"text": completion.text}));
}

fn speech(body: Value) -> Result<SpeechAsk, crate::simulate::reply::Reply> {
    SpeechAsk::from_json(&body, None)
}

#[test]
fn speech_length_follows_the_input() {
    let ask =
        speech(json!({"model": "gpt-4o-mini-tts", "input": "x".repeat(31), "voice": "alloy"}))
            .expect("valid");
    assert_eq!((ask.characters(), ask.seconds()), (31, 3));
    assert_eq!(ask.content_type(), "audio/mpeg");
    let chunks = ask.chunks();
    assert_eq!(chunks.len(), 3);
    assert!(
        chunks
            .iter()
            .all(|c| c.len() == COMPRESSED_BYTES_PER_SECOND)
    );
    assert_eq!(ask.chunks(), chunks, "deterministic");
    assert_eq!(ask.tokens().1, 30);

    let wav = speech(
        json!({"model": "tts-1", "input": "hi", "voice": {"id": "v1"},
        "response_format": "wav"}),
    )
    .expect("valid");
    let chunks = wav.chunks();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].len(), 44 + PCM_BYTES_PER_SECOND);
    assert_eq!(&chunks[0][..4], b"RIFF");
    assert_eq!(&chunks[0][36..40], b"data");
    assert_eq!(wav.tokens(), (0, 0), "tts-1 bills characters");
}

#[test]
fn refuses_speech_it_cannot_make() {
    let base = json!({"model": "gpt-4o-mini-tts", "input": "hi", "voice": "alloy"});
    for (field, value, param) in [
        ("model", Value::Null, "model"),
        ("input", Value::Null, "input"),
        ("input", json!("x".repeat(4097)), "input"),
        ("voice", Value::Null, "voice"),
        ("response_format", json!("ogg"), "response_format"),
        ("stream_format", json!("chunks"), "stream_format"),
    ] {
        let mut body = base.clone();
        match value {
            Value::Null => {
                body.as_object_mut().map(|o| o.remove(field));
            }
            value => body[field] = value,
        }
        let err = speech(body).expect_err(field);
        let message: Value = serde_json::from_slice(&err.body).expect("json");
        assert_eq!(message["error"]["param"], param);
    }
    let sse = json!({"model": "tts-1-hd", "input": "hi", "voice": "alloy", "stream_format": "sse"});
    assert!(speech(sse).is_err(), "tts-1 does not stream events");
}
