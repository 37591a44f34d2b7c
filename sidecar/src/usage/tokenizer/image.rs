//! Image prompt tokens by OpenAI's tile formula.
//!
//! `detail: low` costs 85 tokens. Otherwise the image is scaled to fit 2048×2048, then its
//! shorter side to 768 px, and costs 85 + 170 per 512-px tile. Dimensions are read from the
//! header of a `data:` URL (PNG, JPEG, GIF); a remote URL is never fetched, so its size is
//! assumed to be 1024×1024 (765 tokens), the common case for chat playgrounds.

const BASE: u64 = 85;
const PER_TILE: u64 = 170;
const ASSUMED: (u32, u32) = (1024, 1024);

/// Tokens for one image part with `url` (`https://…` or `data:image/…;base64,…`) and
/// `detail` (`low`, `high` or `auto`).
pub fn image_tokens(url: &str, detail: &str) -> u64 {
    if detail == "low" {
        return BASE;
    }
    let (w, h) = data_url_dimensions(url).unwrap_or(ASSUMED);
    tiles(w, h) * PER_TILE + BASE
}

fn tiles(width: u32, height: u32) -> u64 {
    if width == 0 || height == 0 {
        return 0;
    }
    let (mut w, mut h) = (f64::from(width), f64::from(height));
    if w > 2048.0 || h > 2048.0 {
        let scale = 2048.0 / w.max(h);
        w *= scale;
        h *= scale;
    }
    let shortest = w.min(h);
    if shortest > 768.0 {
        let scale = 768.0 / shortest;
        w *= scale;
        h *= scale;
    }
    ((w / 512.0).ceil() * (h / 512.0).ceil()) as u64
}

fn data_url_dimensions(url: &str) -> Option<(u32, u32)> {
    let payload = url.strip_prefix("data:")?.split_once(";base64,")?.1;
    // The headers we read sit within the first few hundred bytes (JPEG SOF may be later).
    let head = decode_base64_prefix(payload, 64 * 1024);
    png(&head).or_else(|| gif(&head)).or_else(|| jpeg(&head))
}

fn png(b: &[u8]) -> Option<(u32, u32)> {
    if b.len() < 24 || &b[..8] != b"\x89PNG\r\n\x1a\n" {
        return None;
    }
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    Some((be(16), be(20)))
}

fn gif(b: &[u8]) -> Option<(u32, u32)> {
    if b.len() < 10 || !b.starts_with(b"GIF8") {
        return None;
    }
    Some((
        u32::from(u16::from_le_bytes([b[6], b[7]])),
        u32::from(u16::from_le_bytes([b[8], b[9]])),
    ))
}

fn jpeg(b: &[u8]) -> Option<(u32, u32)> {
    if b.len() < 4 || b[0] != 0xFF || b[1] != 0xD8 {
        return None;
    }
    let mut i = 2;
    while i + 9 < b.len() {
        if b[i] != 0xFF {
            return None;
        }
        let marker = b[i + 1];
        let len = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
        let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            let h = u16::from_be_bytes([b[i + 5], b[i + 6]]);
            let w = u16::from_be_bytes([b[i + 7], b[i + 8]]);
            return Some((u32::from(w), u32::from(h)));
        }
        i += 2 + len;
    }
    None
}

/// Decodes standard base64 up to `max` output bytes, stopping at the first invalid byte.
fn decode_base64_prefix(text: &str, max: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(max.min(text.len()));
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => break,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            if out.len() >= max {
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                s.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        s
    }

    #[test]
    fn tile_formula_matches_openai_examples() {
        // OpenAI's documented examples: 1024×1024 high → 765; 2048×4096 → 1105; low → 85.
        assert_eq!(tiles(1024, 1024) * PER_TILE + BASE, 765);
        assert_eq!(tiles(2048, 4096) * PER_TILE + BASE, 1105);
        assert_eq!(image_tokens("https://x/y.png", "low"), 85);
        assert_eq!(image_tokens("https://x/y.png", "auto"), 765);
    }

    #[test]
    fn reads_png_and_gif_dimensions_from_data_urls() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&512u32.to_be_bytes());
        png.extend_from_slice(&512u32.to_be_bytes());
        png.extend_from_slice(&[8, 6, 0, 0, 0]);
        let url = format!("data:image/png;base64,{}", b64(&png));
        assert_eq!(data_url_dimensions(&url), Some((512, 512)));
        assert_eq!(image_tokens(&url, "high"), 255);

        let gif = b"GIF89a\x00\x04\x00\x02\x00\x00";
        let url = format!("data:image/gif;base64,{}", b64(gif));
        assert_eq!(data_url_dimensions(&url), Some((1024, 512)));
    }

    #[test]
    fn reads_jpeg_sof_and_survives_garbage() {
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0, 0xFF, 0xC0, 0, 11, 8, 0x01, 0x00, 0x02, 0x00, 3, 0,
            0,
        ];
        let url = format!("data:image/jpeg;base64,{}", b64(&jpeg));
        assert_eq!(data_url_dimensions(&url), Some((512, 256)));
        assert_eq!(data_url_dimensions("data:image/png;base64,!!!!"), None);
        assert_eq!(data_url_dimensions("data:text/plain,hi"), None);
        assert_eq!(tiles(0, 10), 0);
    }
}
