//! The responder's integration tests: a real responder on loopback, real HTTP/1.1, h2c and
//! tonic clients, and the fixture snapshot built through the analyzer (discovery included).

mod chaos;
mod explain;
mod fuzz_smoke;
mod grpc;
mod matching;
mod memory;
mod schema;
mod serving;
mod sessions;
mod support;
