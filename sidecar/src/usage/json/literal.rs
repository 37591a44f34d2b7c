//! JSON string literals decoded straight into the caller's buffer.
//!
//! Input: the raw text of a JSON string value, quotes included, as serde_json validated it.
//! Output: its characters appended to a `String`. serde_json decodes a string with escapes
//! into a scratch buffer owned by the deserializer, and the stream scanner makes one
//! deserializer per event, so decoding here instead saves an allocation per event whose text
//! contains a `\n` or a quote. A lone surrogate becomes U+FFFD.

/// Appends the decoded content of the JSON string literal `literal` to `out`; anything that
/// is not a string literal appends nothing.
pub(crate) fn push_unescaped(literal: &str, out: &mut String) {
    let Some(mut rest) = literal
        .strip_prefix('"')
        .and_then(|body| body.strip_suffix('"'))
    else {
        return;
    };
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let escape = &rest[at + 1..];
        let mut used = 1;
        match escape.as_bytes().first() {
            Some(b'"') => out.push('"'),
            Some(b'\\') => out.push('\\'),
            Some(b'/') => out.push('/'),
            Some(b'b') => out.push('\u{8}'),
            Some(b'f') => out.push('\u{c}'),
            Some(b'n') => out.push('\n'),
            Some(b'r') => out.push('\r'),
            Some(b't') => out.push('\t'),
            Some(b'u') => {
                let (c, len) = unicode_escape(escape);
                out.push(c);
                used = len;
            }
            _ => {}
        }
        rest = escape.get(used..).unwrap_or_default();
    }
    out.push_str(rest);
}

/// Decodes `uXXXX` (and a following `\uXXXX` low surrogate) at the start of `escape`: the
/// character and the bytes used.
fn unicode_escape(escape: &str) -> (char, usize) {
    let hex = |at: usize| {
        escape
            .get(at..at + 4)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|h| u16::from_str_radix(h, 16).ok())
    };
    let Some(first) = hex(1) else {
        return (char::REPLACEMENT_CHARACTER, 1);
    };
    if (0xD800..0xDC00).contains(&first) {
        let low = hex(7).filter(|low| (0xDC00..0xE000).contains(low));
        if escape.get(5..7) == Some("\\u")
            && let Some(low) = low
        {
            let code = 0x10000 + ((u32::from(first) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
            let c = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
            return (c, 11);
        }
    }
    let c = char::from_u32(u32::from(first)).unwrap_or(char::REPLACEMENT_CHARACTER);
    (c, 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(literal: &str) -> String {
        let mut out = String::from(">");
        push_unescaped(literal, &mut out);
        out
    }

    #[test]
    fn decodes_like_serde_json() {
        let literals = [
            r#""""#,
            r#""plain""#,
            r#""line\nbreak \"quoted\" back\\slash \/ \b\f\r\t""#,
            r#""\u00e9t\u00E9 \u20ac \ud83d\ude00 end""#,
            r#""\\u0041 is not an escape""#,
            r#""trailing backslash \\""#,
            "\"raw é ☃ 🙂\"",
        ];
        for literal in literals {
            let expected: String = serde_json::from_str(literal).expect("valid literal");
            assert_eq!(decode(literal), format!(">{expected}"), "{literal}");
        }
        for text in [
            "",
            "a\u{0}b\u{1f}",
            "\"\\\"",
            "\u{10FFFF}\u{7f}",
            "mixed \n\t\"é🙂",
        ] {
            let literal = serde_json::to_string(text).expect("encode");
            assert_eq!(decode(&literal), format!(">{text}"), "{literal}");
        }
    }

    #[test]
    fn lone_surrogates_and_non_literals_do_not_panic() {
        assert_eq!(decode(r#""a\ud83db""#), ">a\u{FFFD}b");
        assert_eq!(decode(r#""a\ude00b""#), ">a\u{FFFD}b");
        assert_eq!(decode(r#""\ud83d\u0041""#), ">\u{FFFD}A");
        assert_eq!(decode(r#""\u12""#), ">\u{FFFD}12");
        assert_eq!(decode(r#""\u+123x""#), ">\u{FFFD}+123x");
        assert_eq!(decode("42"), ">");
        assert_eq!(decode("\""), ">");
        assert_eq!(decode("\"\\\""), ">");
    }
}
