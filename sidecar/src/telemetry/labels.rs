//! Bounded label values: the first `limit` distinct values of a dimension keep their own
//! label, later ones are folded into `other`, so that no client input can grow the number
//! of metric series without bound.
//!
//! Input: the raw value (an appId, a model name). Output: the value to use as the
//! attribute. Memory: at most `limit` stored values.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::StringValue;

use super::semconv::OTHER;

/// The admitted values of one dimension.
#[derive(Debug)]
pub struct BoundedValues {
    limit: usize,
    admitted: Mutex<HashSet<Arc<str>>>,
}

impl BoundedValues {
    /// At most `limit` distinct values keep their own label.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            admitted: Mutex::new(HashSet::new()),
        }
    }

    /// `value` itself when it is admitted (already, or now because there is room), else
    /// `other`.
    pub fn label(&self, value: &str) -> StringValue {
        let mut admitted = self.admitted.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = admitted.get(value) {
            return StringValue::from(Arc::clone(known));
        }
        if admitted.len() >= self.limit {
            return StringValue::from(OTHER);
        }
        let value: Arc<str> = Arc::from(value);
        admitted.insert(Arc::clone(&value));
        StringValue::from(value)
    }

    /// Whether `value` has its own label (without admitting it).
    pub fn is_admitted(&self, value: &str) -> bool {
        self.admitted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_beyond_the_limit_fold_into_other_and_admitted_ones_stay() {
        let apps = BoundedValues::new(2);
        assert_eq!(apps.label("a").as_str(), "a");
        assert_eq!(apps.label("b").as_str(), "b");
        assert_eq!(apps.label("c").as_str(), "other");
        assert_eq!(
            apps.label("a").as_str(),
            "a",
            "admitted values keep their label"
        );
        assert!(apps.is_admitted("b"));
        assert!(!apps.is_admitted("c"));
        assert_eq!(apps.label("d").as_str(), "other");
    }

    #[test]
    fn a_zero_limit_folds_everything() {
        let apps = BoundedValues::new(0);
        assert_eq!(apps.label("a").as_str(), "other");
    }
}
