//! SSE scanning (being written).
