//! A cheap prompt-token estimate for admission, from the raw request body.
//!
//! Input: the client's request body bytes. Output: an estimate of its prompt tokens, good
//! enough to reserve (the reservation is trued up with the real usage afterwards), in one
//! `memchr`-speed pass with no JSON parsing and no tokenizer: one token per
//! [`BYTES_PER_TOKEN`] bytes (English text averages about four characters per token; JSON
//! punctuation makes it an overestimate), except that base64 `data:` URLs (inline images,
//! files) count [`TOKENS_PER_INLINE_IMAGE`] each instead of their size — otherwise one
//! inline image would be counted as hundreds of thousands of tokens.

use memchr::memmem;

/// Body bytes per estimated token.
pub const BYTES_PER_TOKEN: u64 = 4;
/// Tokens counted for each base64 `data:` URL: a high-detail image of any size after
/// OpenAI's scaling to 768 px on the short side (4 tiles × 170 + 85).
pub const TOKENS_PER_INLINE_IMAGE: u64 = 765;

/// Estimated prompt tokens of `body`.
pub fn estimate_prompt_tokens(body: &[u8]) -> u64 {
    let finder = memmem::Finder::new(b";base64,");
    let mut text_bytes = 0u64;
    let mut inline = 0u64;
    let mut rest = body;
    while let Some(at) = finder.find(rest) {
        text_bytes += at as u64;
        inline += 1;
        let payload = &rest[at..];
        // The payload ends at the closing quote of its JSON string (base64 has none).
        match memchr::memchr(b'"', payload) {
            Some(end) => rest = &payload[end..],
            None => {
                rest = &[];
                break;
            }
        }
    }
    text_bytes += rest.len() as u64;
    text_bytes.div_ceil(BYTES_PER_TOKEN) + inline * TOKENS_PER_INLINE_IMAGE
}

/// Output tokens one call to a model of this family can produce at most, by name (a deployment
/// or model name as the client sent it; the pool's `maxOutputTokens` overrides it). The
/// first matching prefix wins, so `gpt-4o` is matched before `gpt-4`.
pub fn output_limit(model: &str) -> u64 {
    const FAMILIES: [(&str, u64); 10] = [
        ("gpt-5", 128_000),
        ("gpt-4.1", 32_768),
        ("gpt-4o", 16_384),
        ("chatgpt-4o", 16_384),
        ("gpt-4-turbo", 4_096),
        ("gpt-4", 8_192),
        ("gpt-35-turbo", 4_096),
        ("gpt-3.5-turbo", 4_096),
        ("o1", 100_000),
        ("o3", 100_000),
    ];
    let model = model.to_ascii_lowercase();
    if model.starts_with("o4") {
        return 100_000;
    }
    FAMILIES
        .iter()
        .find(|(prefix, _)| model.starts_with(prefix))
        .map_or(DEFAULT_OUTPUT_LIMIT, |(_, limit)| *limit)
}

/// Output tokens one generated image can cost, by model, `size` and `quality`, for the
/// reservation of an images call (trued up with the answer's `usage` where the model reports
/// one). `gpt-image-*` models bill image output tokens: 272 / 1056 / 4160 for a 1024×1024
/// image at low / medium / high quality, about 1.5× that for 1024×1536 or 1536×1024; `auto`
/// or no quality reserves high, an unknown size reserves the largest. Other image models
/// (`dall-e-*`) report no tokens: they reserve nothing here and are counted by their prompt.
pub fn image_output_tokens(model: &str, size: Option<&str>, quality: Option<&str>) -> u64 {
    if !model.to_ascii_lowercase().starts_with("gpt-image") {
        return 0;
    }
    let square = match quality.map(str::to_ascii_lowercase).as_deref() {
        Some("low") => 272,
        Some("medium" | "standard") => 1056,
        _ => 4160,
    };
    match size {
        Some("1024x1024") => square,
        Some("256x256" | "512x512") => square,
        _ => square * 3 / 2,
    }
}

/// [`output_limit`] of a model of no known family.
pub const DEFAULT_OUTPUT_LIMIT: u64 = 32_768;

#[cfg(test)]
mod tests {
    use super::{
        TOKENS_PER_INLINE_IMAGE, estimate_prompt_tokens, image_output_tokens, output_limit,
    };

    #[test]
    fn image_output_follows_model_size_and_quality() {
        assert_eq!(
            image_output_tokens("gpt-image-1", Some("1024x1024"), Some("low")),
            272
        );
        assert_eq!(
            image_output_tokens("gpt-image-1", Some("1024x1024"), Some("medium")),
            1056
        );
        assert_eq!(
            image_output_tokens("gpt-image-1", Some("1024x1024"), None),
            4160
        );
        assert_eq!(
            image_output_tokens("GPT-IMAGE-1", Some("1536x1024"), Some("high")),
            6240
        );
        assert_eq!(
            image_output_tokens("gpt-image-1", Some("auto"), Some("low")),
            408
        );
        assert_eq!(
            image_output_tokens("dall-e-3", Some("1024x1024"), Some("hd")),
            0
        );
    }

    #[test]
    fn output_limits_follow_the_model_family() {
        for (model, limit) in [
            ("gpt-4o", 16_384),
            ("gpt-4o-mini", 16_384),
            ("GPT-4O-2024-08-06", 16_384),
            ("gpt-4", 8_192),
            ("gpt-4.1-nano", 32_768),
            ("gpt-5-chat", 128_000),
            ("o3-mini", 100_000),
            ("o4-mini", 100_000),
            ("gpt-35-turbo", 4_096),
            ("my-deployment", 32_768),
        ] {
            assert_eq!(output_limit(model), limit, "{model}");
        }
    }

    #[test]
    fn text_counts_a_token_per_four_bytes() {
        assert_eq!(estimate_prompt_tokens(b""), 0);
        let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hello there"}]}"#;
        assert_eq!(
            estimate_prompt_tokens(body),
            (body.len() as u64).div_ceil(4)
        );
    }

    #[test]
    fn inline_images_count_a_fixed_amount_not_their_size() {
        let image = "A".repeat(1_000_000);
        let body = format!(
            r#"{{"messages":[{{"role":"user","content":[{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{image}"}}}},{{"type":"image_url","image_url":{{"url":"data:image/jpeg;base64,{image}"}}}}]}}]}}"#
        );
        let estimate = estimate_prompt_tokens(body.as_bytes());
        assert!(estimate >= 2 * TOKENS_PER_INLINE_IMAGE, "{estimate}");
        assert!(estimate < 2 * TOKENS_PER_INLINE_IMAGE + 100, "{estimate}");
    }

    #[test]
    fn a_truncated_payload_does_not_panic() {
        let before = b"{\"url\":\"data:image/png";
        let estimate = estimate_prompt_tokens(b"{\"url\":\"data:image/png;base64,AAAA");
        assert_eq!(
            estimate,
            (before.len() as u64).div_ceil(4) + TOKENS_PER_INLINE_IMAGE
        );
    }
}
