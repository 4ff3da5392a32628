//! Filter (being written).
