//! The part of the `tapedeck` CLI that is also a library: the whole-loop demo, which the
//! binary's `tapedeck demo` runs and the end-to-end test (`tests/`, `tapedeck-e2e`) asserts
//! stage by stage.

pub mod allocator;
pub mod demo;
