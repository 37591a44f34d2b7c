//! breaker (being written).
