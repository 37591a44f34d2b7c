//! simulate (being written).
