//! Generated content and cached token counts, so repeated requests cost no tokenizer work.
//!
//! - [`Completions`]: deterministic completion texts per (encoding, length), split into the
//!   deltas a stream sends, with their billed token count.
//! - [`PromptCounts`]: prompt token counts keyed by model, operation and the exact body bytes.
//! - ids (`chatcmpl-…`, request ids), deterministic embedding vectors and base64.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;
use serde_json::Value;

use crate::simulate::route::ModelApi;
use spillway_sidecar::usage::tokenizer::{self, Encoding};

/// Words that are one token each (with their leading space) in both o200k and cl100k.
const WORDS: &[&str] = &[
    " the", " quick", " brown", " fox", " jumps", " over", " lazy", " dog", " and", " then",
    " runs", " to", " a", " small", " house", " in", " green", " field", " with", " many",
    " people", " who", " like", " water", " from", " that", " river", " every", " day", " at",
    " night", " when", " it", " is", " very", " cold", " so", " they", " make", " fire",
];

/// One generated completion.
#[derive(Debug)]
pub struct Completion {
    /// What a stream sends, one delta per token.
    pub deltas: Vec<&'static str>,
    /// All deltas joined.
    pub text: String,
    /// Tokens billed for `text`.
    pub tokens: u64,
}

/// Completion texts cached per encoding and length.
#[derive(Debug, Default)]
pub struct Completions {
    cache: RwLock<HashMap<(bool, u32), Arc<Completion>>>,
}

impl Completions {
    /// The completion of `length` deltas for `model` (billed with `model`'s tokenizer).
    pub fn get(&self, model: &str, length: u32) -> Arc<Completion> {
        let o200k = tokenizer::encoding_for_model(model) == Encoding::O200k;
        let key = (o200k, length);
        if let Some(hit) = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Arc::clone(hit);
        }
        let deltas: Vec<&'static str> = (0..length as usize)
            .map(|i| {
                if i == 0 {
                    "Hello"
                } else {
                    WORDS[(i - 1) % WORDS.len()]
                }
            })
            .collect();
        let text = deltas.concat();
        let tokens = tokenizer::count_text(model, &text);
        let completion = Arc::new(Completion {
            deltas,
            text,
            tokens,
        });
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(cache.entry(key).or_insert(completion))
    }
}

/// Bodies larger than this are counted every time rather than cached.
const PROMPT_CACHE_MAX_BODY: usize = 64 << 10;
/// Entries kept before the cache starts over.
const PROMPT_CACHE_ENTRIES: usize = 4096;

/// What a prompt count is cached under: model, operation and the exact body bytes.
type PromptKey = (Arc<str>, ModelApi, Bytes);

/// Prompt token counts cached by (model, operation, body bytes).
#[derive(Debug, Default)]
pub struct PromptCounts {
    cache: Mutex<HashMap<PromptKey, u64>>,
}

impl PromptCounts {
    /// Prompt tokens of `body` (already parsed as `request`) under `model`.
    pub fn count(&self, model: &str, operation: ModelApi, body: &Bytes, request: &Value) -> u64 {
        if body.len() > PROMPT_CACHE_MAX_BODY {
            return tokenizer::count_prompt(model, operation.tokenizer(), request);
        }
        let key = (Arc::<str>::from(model), operation, body.clone());
        if let Some(hit) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return *hit;
        }
        let tokens = tokenizer::count_prompt(model, operation.tokenizer(), request);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= PROMPT_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, tokens);
        tokens
    }
}

/// `prefix` followed by 24 random letters and digits, like OpenAI's ids.
pub fn object_id(prefix: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + 24);
    id.push_str(prefix);
    id.extend((0..24).map(|_| fastrand::alphanumeric()));
    id
}

/// A random UUID-shaped request id.
pub fn request_id() -> String {
    let v = fastrand::u128(..);
    let hex = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A unit-length vector of `dimensions` floats, deterministic in `input`.
pub fn embedding(input: &str, dimensions: usize) -> Vec<f32> {
    // FNV-1a seeds a small generator so equal inputs embed equally.
    let seed = input.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut rng = fastrand::Rng::with_seed(seed);
    let raw: Vec<f32> = (0..dimensions).map(|_| rng.f32() * 2.0 - 1.0).collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    raw.into_iter().map(|x| x / norm).collect()
}

/// Standard base64 (with padding) of `bytes`.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_delta_is_one_token_in_both_encodings() {
        let completions = Completions::default();
        for model in ["gpt-4o", "gpt-4", "gpt-35-turbo"] {
            for length in [1, 5, 20, 97] {
                let c = completions.get(model, length);
                assert_eq!(c.deltas.len(), length as usize);
                assert_eq!(c.tokens, u64::from(length), "{model} {length}");
                assert_eq!(c.text, c.deltas.concat());
            }
        }
        let a = completions.get("gpt-4o", 5);
        let b = completions.get("gpt-4o-mini", 5);
        assert!(
            Arc::ptr_eq(&a, &b),
            "same encoding and length share one text"
        );
    }

    #[test]
    fn prompt_counts_are_cached_and_correct() {
        let counts = PromptCounts::default();
        let request = json!({"messages": [{"role": "user", "content": "hello world"}]});
        let body = Bytes::from(request.to_string());
        let expected =
            tokenizer::count_prompt("gpt-4o", ModelApi::ChatCompletions.tokenizer(), &request);
        let first = counts.count("gpt-4o", ModelApi::ChatCompletions, &body, &request);
        let second = counts.count("gpt-4o", ModelApi::ChatCompletions, &body, &request);
        assert_eq!((first, second), (expected, expected));
        assert_eq!(counts.cache.lock().map(|c| c.len()).unwrap_or(0), 1);
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding("hello", 16);
        assert_eq!(a, embedding("hello", 16));
        assert_ne!(a, embedding("world", 16));
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        assert_eq!(request_id().len(), 36);
        assert!(object_id("chatcmpl-").starts_with("chatcmpl-"));
    }
}
