use bytes::Bytes;

use super::*;

fn scanner(strip: bool) -> StreamScanner {
    StreamScanner::new(ScanOptions {
        strip_injected_usage: strip,
    })
}

/// Feeds each chunk and returns what came out, per feed.
fn feed_each(scanner: &mut StreamScanner, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
    chunks
        .iter()
        .map(|chunk| {
            let mut out = Vec::new();
            scanner.feed(Bytes::copy_from_slice(chunk), &mut out);
            out.concat()
        })
        .collect()
}

/// The whole output of one stripped stream, and its summary.
fn strip(input: &[u8]) -> (String, StreamSummary) {
    let mut scanner = scanner(true);
    let mut out = Vec::new();
    scanner.feed(Bytes::copy_from_slice(input), &mut out);
    let summary = scanner.finish(&mut out);
    (String::from_utf8(out.concat()).expect("utf-8"), summary)
}

const USAGE_CHUNK: &[u8] =
    b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n";

#[test]
fn without_stripping_every_chunk_goes_out_at_once_untouched() {
    let mut scanner = scanner(false);
    let chunks: [&[u8]; 4] = [
        b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\nda",
        b"ta: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,",
        b"\"completion_tokens\":2}}\n\n",
        b"data: [DONE]\n\n",
    ];
    for chunk in chunks {
        let chunk = Bytes::from_static(chunk);
        let mut out = Vec::new();
        scanner.feed(chunk.clone(), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].as_ptr(), chunk.as_ptr());
        assert_eq!(out[0].len(), chunk.len());
    }
    let mut out = Vec::new();
    let summary = scanner.finish(&mut out);
    assert!(out.is_empty());
    assert_eq!(summary.usage, Some(Usage::totals(1, 2)));
    assert_eq!(summary.text, "a");
    assert!(summary.saw_done);
    assert_eq!(summary.events, 3);
}

#[test]
fn stripping_holds_back_only_an_incomplete_event() {
    let mut scanner = scanner(true);
    let out = feed_each(
        &mut scanner,
        &[
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"cho",
            b"ices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n",
            b"\ndata: [DONE]\n\n",
        ],
    );
    assert_eq!(
        out,
        [
            &b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"[..],
            b"",
            b"data: [DONE]\n\n",
        ]
    );
    assert_eq!(scanner.usage().map(|u| u.total()), Some(3));
}

#[test]
fn an_event_too_big_to_hold_is_forwarded_unmodified() {
    let mut input = b"data: {\"choices\":[{\"delta\":{\"content\":\"".to_vec();
    input.extend(std::iter::repeat_n(b'x', 2 << 20));
    input.extend_from_slice(b"\"}}],\"usage\":null}\n\n");
    let big = input.len();
    input.extend_from_slice(
        b"data: {\"choices\":[{\"delta\":{\"content\":\"y\"}}],\"usage\":null}\n\n",
    );
    input.extend_from_slice(USAGE_CHUNK);
    let input = Bytes::from(input);
    let mut scanner = scanner(true);
    let (mut sent, mut received) = (0, 0);
    let mut out = Vec::new();
    for start in (0..input.len()).step_by(64 << 10) {
        let chunk = input.slice(start..(start + (64 << 10)).min(input.len()));
        received += chunk.len() as u64;
        scanner.feed(chunk, &mut out);
        sent = out.iter().map(|b| b.len() as u64).sum();
        assert!(
            received - sent <= HOLD_LIMIT + (64 << 10),
            "{received} {sent}"
        );
    }
    let summary = scanner.finish(&mut out);
    assert!(sent > 0);
    let out = out.concat();
    assert_eq!(
        &out[..big],
        &input[..big],
        "the big event passes unmodified"
    );
    assert_eq!(
        &out[big..],
        b"data: {\"choices\":[{\"delta\":{\"content\":\"y\"}}]}\n\n",
        "later events are stripped again"
    );
    assert_eq!(summary.text.len(), (2 << 20) + 1);
}

#[test]
fn azure_prompt_filter_and_content_filter_chunks_are_kept() {
    let prompt_filter = "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\
        \"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{}}]}\n\n";
    let content_filter = "data: {\"choices\":[{\"content_filter_offsets\":{\"check_offset\":0},\
        \"content_filter_results\":{},\"finish_reason\":null,\"index\":0}],\"created\":0,\"id\":\"\"}\n\n";
    let input = format!("{prompt_filter}{content_filter}");
    assert_eq!(strip(input.as_bytes()).0, input);
    // With a null usage member, only the member goes.
    let with_null = prompt_filter.replace("}]}\n", "}],\"usage\":null}\n");
    assert_eq!(strip(with_null.as_bytes()).0, prompt_filter);
}

#[test]
fn usage_null_members_are_cut_cleanly_or_left_alone() {
    for (input, expected) in [
        ("{\"usage\":null,\"a\":1}", "{\"a\":1}"),
        ("{\"usage\" : null ,  \"a\":1}", "{\"a\":1}"),
        ("{ \"a\":1 , \"usage\" : null }", "{ \"a\":1  }"),
        ("{\"usage\":null}", "{}"),
        (
            "{\"a\":{\"usage\":null},\"usage\":null}",
            "{\"a\":{\"usage\":null}}",
        ),
        // Left alone: spelled with an escape, or repeated.
        (
            "{\"us\\u0061ge\":null,\"a\":1}",
            "{\"us\\u0061ge\":null,\"a\":1}",
        ),
        (
            "{\"usage\":null,\"usage\":null}",
            "{\"usage\":null,\"usage\":null}",
        ),
    ] {
        let (out, summary) = strip(format!("data: {input}\n\n").as_bytes());
        assert_eq!(out, format!("data: {expected}\n\n"), "{input}");
        assert_eq!(summary.malformed, 0, "{input}");
        serde_json::from_str::<serde_json::Value>(expected).expect("valid JSON");
    }
}

#[test]
fn first_content_is_reported_once() {
    let mut scanner = scanner(false);
    let mut out = Vec::new();
    let role = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
    assert!(!scanner.feed(Bytes::from(role), &mut out));
    assert!(!scanner.content_started());
    let first = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n";
    assert!(scanner.feed(Bytes::from(first), &mut out));
    assert!(scanner.content_started());
    assert!(!scanner.feed(Bytes::from(first), &mut out));
    // A tool call's arguments are content too.
    let mut scanner = super::StreamScanner::new(ScanOptions::default());
    let tool = "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"{\"}}]}}]}\n\n";
    assert!(scanner.feed(Bytes::from(tool), &mut out));
}

#[test]
fn model_is_the_first_non_empty_one() {
    let input = "data: {\"choices\":[],\"model\":\"\"}\n\n\
                 data: {\"choices\":[],\"model\":\"gpt-4o-2024-11-20\"}\n\n\
                 data: {\"choices\":[],\"model\":\"other\"}\n\n";
    let mut scanner = scanner(false);
    let mut out = Vec::new();
    scanner.feed(Bytes::from(input), &mut out);
    assert_eq!(scanner.model(), Some("gpt-4o-2024-11-20"));
    assert_eq!(
        scanner.finish(&mut out).model.as_deref(),
        Some("gpt-4o-2024-11-20")
    );
}

#[test]
fn the_last_usage_wins_and_responses_incomplete_counts() {
    let input = "data: {\"choices\":[{\"delta\":{}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\n\
                 data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":5}}\n\n";
    let (_, summary) = strip(input.as_bytes());
    assert_eq!(summary.usage.map(|u| u.total()), Some(12));
    let responses = "event: response.incomplete\ndata: {\"type\":\"response.incomplete\",\
        \"response\":{\"status\":\"incomplete\",\"model\":\"o4-mini\",\
        \"usage\":{\"input_tokens\":20,\"output_tokens\":64}}}\n\n";
    let (out, summary) = strip(responses.as_bytes());
    assert_eq!(out, responses);
    assert_eq!(summary.usage, Some(Usage::totals(20, 64)));
    assert_eq!(summary.model.as_deref(), Some("o4-mini"));
}

#[test]
fn responses_text_deltas_are_told_apart_by_type() {
    let input = "event: response.output_text.delta\ndata: {\"delta\":\"from event name\"}\n\n\
                 data: {\"type\":\"response.refusal.delta\",\"delta\":\" refused\"}\n\n\
                 event: response.audio.delta\ndata: {\"type\":\"response.audio.delta\",\"delta\":\"QUJD\"}\n\n\
                 data: {\"delta\":\" no type\"}\n\n\
                 data: {\"delta\":\" text\",\"type\":\"response.output_text.delta\"}\n\n";
    assert_eq!(
        strip(input.as_bytes()).1.text,
        "from event name refused text"
    );
}

#[test]
fn things_that_are_not_events_are_not_counted() {
    let input = ": hello\n\nid: 1\nretry: 10\n\nevent: ping\n\ndata:\n\ndata: \n\n\n\n";
    let (out, summary) = strip(input.as_bytes());
    assert_eq!(out, input);
    assert_eq!(summary.events, 0);
    assert_eq!(summary.malformed, 0);
    assert!(!summary.saw_done);
}

#[test]
fn done_comes_in_every_spelling() {
    for input in [
        "data: [DONE]\n\n",
        "data:[DONE]\n\n",
        "data: [DONE]",
        "[DONE]\n\n",
        "[DONE]",
        " [DONE] \r\n",
    ] {
        let (out, summary) = strip(input.as_bytes());
        assert!(summary.saw_done, "{input:?}");
        assert_eq!(summary.events, 1, "{input:?}");
        assert_eq!(out, input);
    }
}

#[test]
fn a_byte_order_mark_may_open_the_stream() {
    let input = "\u{feff}data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}],\"usage\":null}\n\n";
    let (out, summary) = strip(input.as_bytes());
    assert_eq!(
        out,
        "\u{feff}data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"
    );
    assert_eq!(summary.text, "x");
}

#[test]
fn oversized_events_are_counted_malformed_not_read() {
    let huge = "x".repeat(MAX_EVENT_DATA + 1);
    let single = format!("data: {{\"a\":\"{huge}\"}}\n\ndata: [DONE]\n\n");
    let multi = format!(
        "data: {{\"a\":\"{}\ndata: {}\"}}\n\ndata: [DONE]\n\n",
        &huge[..MAX_EVENT_DATA / 2],
        &huge[..MAX_EVENT_DATA / 2]
    );
    for input in [single, multi] {
        let input = Bytes::from(input);
        for chunk_size in [input.len(), 1 << 20] {
            let mut scanner = scanner(false);
            let mut out = Vec::new();
            for start in (0..input.len()).step_by(chunk_size) {
                let end = (start + chunk_size).min(input.len());
                scanner.feed(input.slice(start..end), &mut out);
            }
            let summary = scanner.finish(&mut out);
            assert_eq!(summary.malformed, 1);
            assert_eq!(summary.events, 2);
            assert!(summary.saw_done);
        }
    }
}

#[test]
fn hostile_data_never_panics() {
    let deep = format!(
        "data: {{\"choices\":[{{\"delta\":{{\"content\":{}{}}}}}]}}\n\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let cases = [
        deep.as_bytes(),
        b"data: {\"choices\":[{\"delta\":{\"content\":\"\xff\"}}]}\n\n",
        b"data: {\"usage\":null,\n\n",
        b"data: \"usage\":null}\n\n",
        b"data: {\"choices\":5,\"usage\":[]}\n\n",
        b"\r\r\r\n\n\r:\r\ndata\rdata:\r\n",
        b"\xEF\xBB",
    ];
    for input in cases {
        for strip_on in [false, true] {
            let mut scanner = scanner(strip_on);
            let mut out = Vec::new();
            for byte in input.chunks(7) {
                scanner.feed(Bytes::copy_from_slice(byte), &mut out);
            }
            let summary = scanner.finish(&mut out);
            assert!(summary.text.is_empty());
            if strip_on {
                assert_eq!(out.concat(), input, "{}", String::from_utf8_lossy(input));
            }
        }
    }
}

#[test]
fn feeding_after_finish_forwards_unscanned() {
    let mut scanner = scanner(true);
    let mut out = Vec::new();
    let summary = scanner.finish(&mut out);
    assert_eq!(summary, StreamSummary::default());
    let late = Bytes::from_static(USAGE_CHUNK);
    assert!(!scanner.feed(late.clone(), &mut out));
    assert_eq!(out, [late]);
    assert_eq!(scanner.usage(), None);
}

#[test]
fn stream_usage_carries_token_types() {
    let chat = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n\
                data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1500,\"completion_tokens\":90,\
                \"total_tokens\":1590,\"prompt_tokens_details\":{\"cached_tokens\":1280},\
                \"completion_tokens_details\":{\"reasoning_tokens\":64}}}\n\n\
                data: [DONE]\n\n";
    let (out, summary) = strip(chat.as_bytes());
    assert!(
        !out.contains("usage"),
        "the usage chunk the client did not ask for goes"
    );
    let usage = summary.usage.expect("usage");
    assert_eq!((usage.cached_tokens, usage.reasoning_tokens), (1280, 64));
    let responses = "event: response.completed\ndata: {\"type\":\"response.completed\",\
        \"response\":{\"status\":\"completed\",\"usage\":{\"input_tokens\":40,\"output_tokens\":20,\
        \"total_tokens\":130,\"input_tokens_details\":{\"cached_tokens\":0},\
        \"output_tokens_details\":{\"reasoning_tokens\":70}}}}\n\n";
    let usage = strip(responses.as_bytes()).1.usage.expect("usage");
    assert_eq!((usage.completion_tokens, usage.reasoning_tokens), (90, 70));
}
