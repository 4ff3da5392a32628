//! Local mode (placeholder while being written).
