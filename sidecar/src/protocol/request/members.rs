//! One pass over a JSON object that finds chosen members without building a tree.
//!
//! Input: a byte slice holding one JSON object and the member names wanted. Output: each
//! wanted member's raw value (borrowed from the input, so its byte range is known), the
//! number of members, and — on failure — serde's error and which wanted member was repeated.
//! Every other member is validated and skipped with `IgnoredAny`.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A byte range in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    /// Where `raw`, borrowed from `base`, sits in `base`.
    pub fn of(base: &[u8], raw: &RawValue) -> Self {
        let text = raw.get();
        let start = text.as_ptr().addr().saturating_sub(base.as_ptr().addr());
        Self {
            start,
            end: start + text.len(),
        }
    }
}

/// The wanted members of an object, in the order of the key list.
pub(super) struct Members<'de, const N: usize> {
    /// All members, wanted or not.
    pub count: usize,
    pub values: [Option<&'de RawValue>; N],
    duplicate: Option<usize>,
}

/// A failed scan.
pub(super) struct ScanError {
    pub error: serde_json::Error,
    /// Index (in the key list) of a wanted member that appeared twice.
    pub duplicate: Option<usize>,
}

/// Scans `json`, which must be exactly one object (surrounding whitespace allowed).
pub(super) fn scan_object<'de, const N: usize>(
    json: &'de [u8],
    keys: &'static [&'static str; N],
) -> Result<Members<'de, N>, ScanError> {
    let mut found = Members {
        count: 0,
        values: [None; N],
        duplicate: None,
    };
    let mut de = serde_json::Deserializer::from_slice(json);
    let seed = MembersSeed {
        keys,
        found: &mut found,
    };
    match seed.deserialize(&mut de).and_then(|()| de.end()) {
        Ok(()) => Ok(found),
        Err(error) => Err(ScanError {
            error,
            duplicate: found.duplicate,
        }),
    }
}

struct MembersSeed<'a, 'de, const N: usize> {
    keys: &'static [&'static str; N],
    found: &'a mut Members<'de, N>,
}

impl<'de, const N: usize> DeserializeSeed<'de> for MembersSeed<'_, 'de, N> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for MembersSeed<'_, 'de, N> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(index) = map.next_key_seed(KeyIndex(self.keys))? {
            self.found.count += 1;
            let Some(slot) = index.and_then(|i| self.found.values.get_mut(i)) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let raw: &'de RawValue = map.next_value()?;
            if slot.replace(raw).is_some() {
                self.found.duplicate = index;
                return Err(de::Error::custom("duplicate member"));
            }
        }
        Ok(())
    }
}

/// A member name, as its position in the wanted list (`None`: not wanted).
struct KeyIndex<'k>(&'k [&'static str]);

impl<'de> DeserializeSeed<'de> for KeyIndex<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIndex<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, value: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|key| *key == value))
    }
}
