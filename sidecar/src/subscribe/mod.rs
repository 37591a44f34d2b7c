//! subscribe (being written).
