use super::*;

fn entry(backend: &str, prompt: u64, completion: u64, raw: Option<&str>) -> LedgerEntry {
    LedgerEntry {
        backend: backend.into(),
        prompt_tokens: prompt,
        completion_tokens: completion,
        cached_tokens: prompt / 2,
        reasoning_tokens: completion / 3,
        raw_stream: raw.map(str::to_owned),
        ..LedgerEntry::default()
    }
}

#[test]
fn totals_filters_and_clear() {
    let ledger = Ledger::default();
    assert_eq!(ledger.record(entry("a", 10, 5, None)), 1);
    assert_eq!(ledger.record(entry("b", 7, 3, None)), 2);
    assert_eq!(ledger.record(entry("a", 1, 1, None)), 3);
    let all = ledger.snapshot(&LedgerQuery::default());
    assert_eq!(all.entries.len(), 3);
    assert_eq!(
        all.totals,
        Totals {
            requests: 3,
            prompt_tokens: 18,
            completion_tokens: 9,
            total_tokens: 27,
            cached_tokens: 5 + 3,
            reasoning_tokens: 1 + 1,
            ..Totals::default()
        }
    );
    let a = ledger.snapshot(&LedgerQuery {
        backend: Some("a".into()),
        since: Some(1),
    });
    assert_eq!(a.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);
    assert_eq!((a.totals.prompt_tokens, a.totals.cached_tokens), (11, 5));
    assert_eq!(
        (a.totals.completion_tokens, a.totals.reasoning_tokens),
        (6, 1)
    );
    ledger.clear();
    let empty = ledger.snapshot(&LedgerQuery::default());
    assert!(empty.entries.is_empty());
    assert_eq!(empty.totals, Totals::default());
    assert_eq!(ledger.record(entry("a", 0, 0, None)), 4);
}

#[test]
fn entries_and_totals_without_token_types_still_read() {
    let mut entry = serde_json::to_value(entry("a", 3, 6, None)).expect("serializes");
    let mut totals = serde_json::to_value(Totals::default()).expect("serializes");
    assert_eq!(entry["reasoningTokens"], 2, "camelCase on the wire");
    for value in [&mut entry, &mut totals] {
        for field in [
            "cachedTokens",
            "reasoningTokens",
            "imageInputTokens",
            "audioInputTokens",
            "imageOutputTokens",
            "audioOutputTokens",
            "images",
            "audioSeconds",
            "characters",
            "uploadBytes",
            "firstByteMs",
            "lastByteMs",
            "batchId",
        ] {
            value.as_object_mut().map(|o| o.remove(field));
        }
    }
    let entry: LedgerEntry = serde_json::from_value(entry).expect("older entry");
    assert_eq!((entry.prompt_tokens, entry.cached_tokens), (3, 0));
    assert_eq!((entry.completion_tokens, entry.reasoning_tokens), (6, 0));
    let totals: Totals = serde_json::from_value(totals).expect("older totals");
    assert_eq!(totals, Totals::default());
}

#[test]
fn capacity_evicts_oldest_but_totals_remain() {
    let ledger = Ledger::new(2, 1 << 20);
    for _ in 0..5 {
        ledger.record(entry("a", 1, 2, None));
    }
    let snap = ledger.snapshot(&LedgerQuery::default());
    assert_eq!(
        snap.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [4, 5]
    );
    assert_eq!(snap.evicted, 3);
    assert_eq!(snap.totals.requests, 5);
    assert_eq!(snap.totals.completion_tokens, 10);
}

#[test]
fn raw_budget_drops_oldest_raw_bytes_first() {
    let ledger = Ledger::new(10, 10);
    ledger.record(entry("a", 0, 0, Some("12345")));
    ledger.record(entry("a", 0, 0, None));
    ledger.record(entry("a", 0, 0, Some("123456")));
    let snap = ledger.snapshot(&LedgerQuery::default());
    assert_eq!(snap.entries[0].raw_stream, None);
    assert!(snap.entries[0].raw_stream_truncated);
    assert!(!snap.entries[1].raw_stream_truncated);
    assert_eq!(snap.entries[2].raw_stream.as_deref(), Some("123456"));
}

#[test]
fn totals_sum_images_audio_characters_and_uploads() {
    let ledger = Ledger::default();
    let image = LedgerEntry {
        backend: "a".into(),
        prompt_tokens: 140,
        image_input_tokens: 130,
        completion_tokens: 1056,
        image_output_tokens: 1056,
        images: 1,
        upload_bytes: Some(4000),
        first_byte_ms: Some(1),
        last_byte_ms: Some(3),
        ..LedgerEntry::default()
    };
    let speech = LedgerEntry {
        backend: "a".into(),
        prompt_tokens: 9,
        completion_tokens: 70,
        audio_output_tokens: 70,
        audio_seconds: 7,
        characters: 100,
        ..LedgerEntry::default()
    };
    let transcription = LedgerEntry {
        backend: "b".into(),
        prompt_tokens: 40,
        audio_input_tokens: 40,
        audio_seconds: 4,
        upload_bytes: Some(128_000),
        batch_id: None,
        ..LedgerEntry::default()
    };
    for entry in [image, speech, transcription] {
        ledger.record(entry);
    }
    let totals = ledger.snapshot(&LedgerQuery::default()).totals;
    assert_eq!((totals.images, totals.characters), (1, 100));
    assert_eq!(totals.audio_seconds, 11);
    assert_eq!(
        (totals.image_input_tokens, totals.image_output_tokens),
        (130, 1056)
    );
    assert_eq!(
        (totals.audio_input_tokens, totals.audio_output_tokens),
        (40, 70)
    );
    assert_eq!(totals.upload_bytes, 132_000);
    assert_eq!(totals.total_tokens, 140 + 1056 + 9 + 70 + 40);
    let a = ledger.snapshot(&LedgerQuery {
        backend: Some("a".into()),
        since: None,
    });
    assert_eq!((a.totals.upload_bytes, a.totals.audio_seconds), (4000, 7));
    let wire = serde_json::to_value(&a.entries[0]).expect("serializes");
    assert_eq!(wire["imageOutputTokens"], 1056);
    assert_eq!(
        (wire["firstByteMs"].as_u64(), wire["lastByteMs"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(wire["batchId"], serde_json::Value::Null);
}
