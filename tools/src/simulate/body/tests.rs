use http_body_util::BodyExt;

use super::*;
use crate::simulate::call::Call;
use crate::simulate::config::ReasoningUsage;
use crate::simulate::ledger::LedgerQuery;
use crate::simulate::route::Flavour;
use crate::simulate::route::ModelApi;
use crate::simulate::sse;
use crate::simulate::text::Completions;
use spillway_sidecar::clock::SystemClock;

fn stream(
    tokens_per_second: u32,
    reset_after: Option<usize>,
) -> (SimBody, Arc<Ledger>, ConnControl, Vec<SseEvent>) {
    thinking_stream(tokens_per_second, reset_after, 0)
}

/// A chat stream of 4 visible deltas after `reasoning` hidden reasoning tokens.
fn thinking_stream(
    tokens_per_second: u32,
    reset_after: Option<usize>,
    reasoning: u64,
) -> (SimBody, Arc<Ledger>, ConnControl, Vec<SseEvent>) {
    let call = Call {
        flavour: Flavour::OpenAi,
        operation: ModelApi::ChatCompletions,
        model: "gpt-4o".into(),
        stream: true,
        stream_options: false,
        include_usage: false,
        max_tokens: None,
        length: 4,
        reasoning_tokens: reasoning,
        reasoning_usage: ReasoningUsage::Included,
        prompt_tokens: 5,
        created: 0,
        context_tokens: 0,
        cached_tokens: 0,
        store: false,
        background: false,
        previous_response_id: None,
        conversation: None,
        conversation_revision: 0,
        instructions: None,
    };
    let completion = Completions::default().get("gpt-4o", 4);
    let events = sse::events(&call, &completion, "chatcmpl-t", None);
    let ledger = Arc::new(Ledger::default());
    let conn = ConnControl::default();
    let record = StreamRecord {
        ledger: Arc::clone(&ledger),
        entry: LedgerEntry {
            backend: "b".into(),
            prompt_tokens: 5,
            reasoning_tokens: reasoning,
            status: 200,
            ..LedgerEntry::default()
        },
        model: "gpt-4o".into(),
        full_tokens: completion.tokens + reasoning,
        reasoning_tokens: reasoning,
        clock: Arc::new(SystemClock),
        started: std::time::Instant::now(),
        bills_in_full: false,
        keeps_raw: true,
    };
    let body = SseStream::new(
        events.clone(),
        tokens_per_second,
        reset_after,
        conn.clone(),
        Some(record),
    );
    (SimBody::Stream(Box::new(body)), ledger, conn, events)
}

fn concat(events: &[SseEvent]) -> Vec<u8> {
    events.iter().flat_map(|e| e.bytes.to_vec()).collect()
}

async fn frames(body: &mut SimBody) -> Vec<Bytes> {
    let mut out = Vec::new();
    for _ in 0..100 {
        match body.frame().await {
            Some(Ok(frame)) => out.push(frame.into_data().unwrap_or_default()),
            Some(Err(err)) => panic!("unexpected error {err}"),
            None => break,
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn paces_deltas_and_records_when_complete() {
    let (mut body, ledger, _, events) = stream(10, None);
    let start = Instant::now();
    let frames = frames(&mut body).await;
    // role, 4 deltas 100 ms apart, finish, [DONE]: one event per frame.
    assert_eq!(frames.len(), events.len());
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert!(body.is_end_stream());
    let snap = ledger.snapshot(&LedgerQuery::default());
    let entry = &snap.entries[0];
    assert_eq!(entry.completion_tokens, 4);
    assert!(!entry.aborted);
    assert_eq!(
        entry.raw_stream.as_deref().map(str::as_bytes),
        Some(&concat(&events)[..])
    );
}

#[tokio::test(start_paused = true)]
async fn unpaced_stream_is_one_frame() {
    let (mut body, ledger, _, events) = stream(0, None);
    let frames = frames(&mut body).await;
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].to_vec(), concat(&events));
    assert_eq!(
        ledger
            .snapshot(&LedgerQuery::default())
            .totals
            .completion_tokens,
        4
    );
}

#[tokio::test(start_paused = true)]
async fn reset_after_n_events_errors_and_bills_what_was_sent() {
    let (mut body, ledger, conn, events) = stream(0, Some(2));
    let first = body
        .frame()
        .await
        .and_then(|f| f.ok())
        .and_then(|f| f.into_data().ok());
    assert_eq!(first.map(|b| b.to_vec()), Some(concat(&events[..2])));
    assert!(!conn.reset_requested());
    let second = body.frame().await;
    assert!(matches!(second, Some(Err(SimulatedReset))));
    assert!(conn.reset_requested());
    let entry = &ledger.snapshot(&LedgerQuery::default()).entries[0];
    // The role chunk and one delta ("Hello") went out.
    assert_eq!(entry.completion_tokens, 1);
    assert!(!entry.aborted);
    assert_eq!(
        entry.raw_stream.as_deref().map(str::as_bytes),
        Some(&concat(&events[..2])[..])
    );
}

#[tokio::test(start_paused = true)]
async fn dropped_stream_is_recorded_as_aborted() {
    let (mut body, ledger, _, _) = stream(10, None);
    for _ in 0..3 {
        assert!(body.frame().await.is_some());
    }
    assert!(ledger.snapshot(&LedgerQuery::default()).entries.is_empty());
    drop(body);
    let entry = &ledger.snapshot(&LedgerQuery::default()).entries[0];
    assert!(entry.aborted);
    // role + two deltas sent.
    assert_eq!(entry.completion_tokens, 2);
}

#[tokio::test(start_paused = true)]
async fn a_cut_stream_bills_all_its_reasoning_and_the_deltas_sent() {
    let billed = |ledger: &Ledger| {
        let entry = ledger.snapshot(&LedgerQuery::default()).entries[0].clone();
        (
            entry.completion_tokens,
            entry.reasoning_tokens,
            entry.aborted,
        )
    };
    // Reset after the role chunk and one delta.
    let (mut reset, ledger, _, _) = thinking_stream(0, Some(2), 30);
    while let Some(Ok(_)) = reset.frame().await {}
    assert_eq!(billed(&ledger), (30 + 1, 30, false));
    // The client leaves after the role chunk and two deltas.
    let (mut gone, ledger, _, _) = thinking_stream(10, None, 30);
    for _ in 0..3 {
        assert!(gone.frame().await.is_some());
    }
    drop(gone);
    assert_eq!(billed(&ledger), (30 + 2, 30, true));
    // Reset before any delta: the reasoning was billed all the same.
    let (mut early, ledger, _, _) = thinking_stream(0, Some(0), 30);
    while let Some(Ok(_)) = early.frame().await {}
    assert_eq!(billed(&ledger), (30, 30, false));
    let (mut whole, ledger, _, _) = thinking_stream(0, None, 30);
    while let Some(Ok(_)) = whole.frame().await {}
    assert_eq!(billed(&ledger), (30 + 4, 30, false));
}

#[tokio::test]
async fn full_body_yields_once() {
    let mut body = SimBody::full("abc");
    assert_eq!(body.size_hint().exact(), Some(3));
    let frames = frames(&mut body).await;
    assert_eq!(frames, vec![Bytes::from_static(b"abc")]);
    assert!(body.is_end_stream());
}

#[tokio::test(start_paused = true)]
async fn a_binary_body_is_paced_in_chunks_billed_in_full_and_not_kept() {
    let ledger = Arc::new(Ledger::default());
    let chunks: Vec<SseEvent> = (0..4_u8)
        .map(|i| SseEvent::paced(Bytes::from(vec![i; 100])))
        .collect();
    let record = StreamRecord {
        ledger: Arc::clone(&ledger),
        entry: LedgerEntry::default(),
        model: "gpt-4o-mini-tts".into(),
        full_tokens: 40,
        reasoning_tokens: 0,
        clock: Arc::new(SystemClock),
        started: std::time::Instant::now(),
        bills_in_full: true,
        keeps_raw: false,
    };
    let stream = SseStream::new(chunks, 10, None, ConnControl::default(), Some(record));
    let mut body = SimBody::Stream(Box::new(stream));
    let start = Instant::now();
    let first = body
        .frame()
        .await
        .and_then(|f| f.ok())
        .and_then(|f| f.into_data().ok());
    assert_eq!(first.map(|b| b.to_vec()), Some(vec![0; 100]));
    assert!(body.frame().await.is_some());
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(100),
        "one chunk per tick"
    );
    drop(body);
    let entry = &ledger.snapshot(&LedgerQuery::default()).entries[0];
    assert!(entry.aborted);
    assert_eq!(entry.completion_tokens, 40, "generated audio bills in full");
    assert_eq!(
        (entry.raw_stream.as_deref(), entry.raw_stream_truncated),
        (None, false)
    );
}
