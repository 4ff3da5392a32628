//! The generator's integration tests: `tapedeck replay` against a local hyper server that
//! records every request it receives.

mod fuzz_smoke;
mod load;
mod noise;
mod plan;
mod protocols;
mod reports;
mod requests;
mod shard;
mod support;
mod verdict;
