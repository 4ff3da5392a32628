//! Integration tests of `tapedeck-analyzer`: one test binary, one module per capability.

mod support;

mod inventory;
mod malformed;
mod property;
mod schema;
mod snapshot;
