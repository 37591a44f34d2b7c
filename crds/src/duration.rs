//! Durations as users write them in manifests: Go/Kubernetes style strings such as `500ms`,
//! `10s`, `1m30s`, `2h`. Parsed once at compile time into milliseconds.

use std::time::Duration;

/// The JSON-schema pattern every duration field carries, so `kubectl apply` rejects typos.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

/// Parses a duration such as `250ms`, `10s`, `1m30s` or `1h`.
///
/// # Errors
/// Returns a message naming the accepted units when the text is not of that form.
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration; write e.g. 500ms, 10s, 1m30s or 2h");
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else {
            return Err(bad());
        };
        rest = &rest[len..];
        total = value
            .checked_mul(unit_ms)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(bad)?;
    }
    Ok(Duration::from_millis(total))
}

/// Formats milliseconds back into the shortest exact manifest form (`90000` → `1m30s`).
pub fn format_ms(ms: u64) -> String {
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, name) in [(3_600_000, "h"), (60_000, "m"), (1_000, "s"), (1, "ms")] {
        if rest >= unit {
            out.push_str(&format!("{}{name}", rest / unit));
            rest %= unit;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit_and_combinations() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1h1m1s1ms"), Ok(Duration::from_millis(3_661_001)));
    }

    #[test]
    fn rejects_bad_text_with_a_helpful_message() {
        for bad in ["", "10", "s", "10sec", "1.5s", "-1s", "10 s", "PT1M"] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains("500ms"), "{err}");
        }
        assert!(parse("99999999999999999999h").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for ms in [1, 999, 1000, 90_000, 3_661_001] {
            assert_eq!(parse(&format_ms(ms)), Ok(Duration::from_millis(ms)));
        }
        assert_eq!(format_ms(90_000), "1m30s");
    }
}
