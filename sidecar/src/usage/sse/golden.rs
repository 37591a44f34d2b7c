//! Golden streams from `tests/fixtures/sse/` (see the README there).

use std::path::PathBuf;

use bytes::Bytes;

use super::{ScanOptions, StreamScanner, StreamSummary};
use crate::usage::Usage;

struct Expect {
    name: &'static str,
    usage: (u64, u64),
    /// The `without_usage` stream still reports usage (Responses API).
    usage_without: bool,
    model: &'static str,
    text: &'static str,
    saw_done: bool,
    events: u64,
    malformed: u64,
}

const GOLDEN: [Expect; 9] = [
    Expect {
        name: "openai_chat",
        usage: (13, 9),
        usage_without: false,
        model: "gpt-4o-mini-2024-07-18",
        text: "Hello! How can I help \"you\"\ntoday? \u{1F642}",
        saw_done: true,
        events: 8,
        malformed: 0,
    },
    Expect {
        name: "openai_tools",
        usage: (60, 16),
        usage_without: false,
        model: "gpt-4o-mini-2024-07-18",
        text: "get_weather{\"city\":\"Paris\"}",
        saw_done: true,
        events: 6,
        malformed: 0,
    },
    Expect {
        name: "azure_chat",
        usage: (25, 4),
        usage_without: false,
        model: "gpt-4o-2024-11-20",
        text: "Azure says hi.",
        saw_done: true,
        events: 8,
        malformed: 0,
    },
    Expect {
        name: "completions",
        usage: (5, 7),
        usage_without: false,
        model: "gpt-3.5-turbo-instruct",
        text: "\n\nThis is a test.",
        saw_done: true,
        events: 6,
        malformed: 0,
    },
    Expect {
        name: "responses",
        usage: (37, 11),
        usage_without: true,
        model: "gpt-4.1-2025-04-14",
        text: "Silent circuits hum.{\"city\":\"Oslo\"}",
        saw_done: false,
        events: 14,
        malformed: 0,
    },
    Expect {
        name: "framing",
        usage: (9, 3),
        usage_without: false,
        model: "gpt-4o",
        text: "multi\nline end",
        saw_done: true,
        events: 5,
        malformed: 0,
    },
    Expect {
        name: "cr_only",
        usage: (13, 9),
        usage_without: false,
        model: "gpt-4o-mini-2024-07-18",
        text: "Hello!",
        saw_done: true,
        events: 5,
        malformed: 0,
    },
    Expect {
        name: "unterminated",
        usage: (13, 9),
        usage_without: false,
        model: "gpt-4o-mini-2024-07-18",
        text: "Hello!",
        saw_done: false,
        events: 4,
        malformed: 0,
    },
    Expect {
        name: "malformed",
        usage: (13, 9),
        usage_without: false,
        model: "gpt-4o-mini-2024-07-18",
        text: "AB",
        saw_done: true,
        events: 7,
        malformed: 3,
    },
];

fn fixture(file: &str) -> Bytes {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/fixtures/sse", file]
        .iter()
        .collect();
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Bytes::from(bytes)
}

fn pair(name: &str) -> (Bytes, Bytes) {
    (
        fixture(&format!("{name}.with_usage.sse")),
        fixture(&format!("{name}.without_usage.sse")),
    )
}

/// Feeds `input` cut at the (ascending) offsets `cuts`; returns the output and summary.
fn run(input: &Bytes, strip: bool, cuts: &[usize]) -> (Vec<u8>, StreamSummary) {
    let mut scanner = StreamScanner::new(ScanOptions {
        strip_injected_usage: strip,
    });
    let mut out = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain([input.len()].iter()) {
        scanner.feed(input.slice(from..to), &mut out);
        from = to;
    }
    let summary = scanner.finish(&mut out);
    (out.concat(), summary)
}

fn usage((prompt_tokens, completion_tokens): (u64, u64)) -> Usage {
    Usage::totals(prompt_tokens, completion_tokens)
}

#[test]
fn summaries_match_the_streams() {
    for expect in &GOLDEN {
        let (with, without) = pair(expect.name);
        for strip in [false, true] {
            let (_, got) = run(&with, strip, &[]);
            let name = expect.name;
            assert_eq!(got.usage, Some(usage(expect.usage)), "{name} strip={strip}");
            assert_eq!(got.model.as_deref(), Some(expect.model), "{name}");
            assert_eq!(got.text, expect.text, "{name}");
            assert_eq!(got.saw_done, expect.saw_done, "{name}");
            assert_eq!(got.events, expect.events, "{name}");
            assert_eq!(got.malformed, expect.malformed, "{name}");

            let (_, plain) = run(&without, strip, &[]);
            let usage_without = expect.usage_without.then(|| usage(expect.usage));
            assert_eq!(plain.usage, usage_without, "{name} without usage");
            assert_eq!(plain.model, got.model, "{name} without usage");
            assert_eq!(plain.text, got.text, "{name} without usage");
            assert_eq!(plain.saw_done, got.saw_done, "{name} without usage");
            let usage_events = u64::from(!expect.usage_without);
            assert_eq!(
                plain.events,
                got.events - usage_events,
                "{name} without usage"
            );
            assert_eq!(plain.malformed, got.malformed, "{name} without usage");
        }
    }
}

#[test]
fn stripping_gives_the_stream_without_the_option() {
    for expect in &GOLDEN {
        let (with, without) = pair(expect.name);
        let (stripped, _) = run(&with, true, &[]);
        assert_eq!(
            String::from_utf8_lossy(&stripped),
            String::from_utf8_lossy(&without),
            "{}",
            expect.name
        );
        // Nothing to strip in a stream that never had the option.
        assert_eq!(run(&without, true, &[]).0, &without[..], "{}", expect.name);
        // Without stripping, the bytes are forwarded as they are.
        assert_eq!(run(&with, false, &[]).0, &with[..], "{}", expect.name);
    }
}

#[test]
fn every_split_point_gives_the_same_output_and_summary() {
    for expect in &GOLDEN {
        let (with, without) = pair(expect.name);
        for input in [&with, &without] {
            for strip in [false, true] {
                let whole = run(input, strip, &[]);
                for cut in 1..input.len() {
                    let split = run(input, strip, &[cut]);
                    assert!(split == whole, "{} strip={strip} cut={cut}", expect.name);
                }
                let bytes: Vec<usize> = (1..input.len()).collect();
                let split = run(input, strip, &bytes);
                assert!(
                    split == whole,
                    "{} strip={strip} 1-byte chunks",
                    expect.name
                );
            }
        }
    }
}

#[test]
fn random_multi_way_splits_give_the_same_output_and_summary() {
    let mut rng = fastrand::Rng::with_seed(0x5EED);
    for expect in &GOLDEN {
        let (with, _) = pair(expect.name);
        let whole = run(&with, true, &[]);
        for round in 0..200 {
            let mut cuts: Vec<usize> = (0..rng.usize(2..12))
                .map(|_| rng.usize(1..with.len()))
                .collect();
            cuts.sort_unstable();
            cuts.dedup();
            let split = run(&with, true, &cuts);
            assert!(
                split == whole,
                "{} round={round} cuts={cuts:?}",
                expect.name
            );
        }
    }
}

#[test]
fn event_aligned_chunks_are_forwarded_zero_copy() {
    let mut checked = 0;
    for expect in &GOLDEN {
        let (_, without) = pair(expect.name);
        if !without.ends_with(b"\n\n") {
            continue; // CR / CRLF framing, or a last event still open at the end
        }
        let mut scanner = StreamScanner::new(ScanOptions {
            strip_injected_usage: true,
        });
        let mut from = 0;
        for at in memchr::memmem::find_iter(&without, b"\n\n") {
            let chunk = without.slice(from..at + 2);
            from = at + 2;
            let mut out = Vec::new();
            scanner.feed(chunk.clone(), &mut out);
            assert_eq!(out.len(), 1, "{}", expect.name);
            assert_eq!(out[0].as_ptr(), chunk.as_ptr(), "{}", expect.name);
            assert_eq!(out[0].len(), chunk.len(), "{}", expect.name);
            checked += 1;
        }
        assert_eq!(from, without.len(), "{}", expect.name);
    }
    assert!(checked > 40, "{checked}");
}
