//! Usage from JSON responses (being written).
