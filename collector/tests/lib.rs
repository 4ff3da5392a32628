//! Integration tests of the collector: a real collector (`run_with`) on loopback listeners,
//! pushed to over gRPC, read back from its Parquet store and write-ahead log.
//!
//! The S3 test runs a real S3-compatible server, `moto_server` from PyPI `moto[server]`
//! (`$TAPEDECK_MOTO_SERVER`, else `.venv/bin/moto_server` of the workspace); without it that
//! test fails and says what is missing.

#[path = "lib/clients.rs"]
mod clients;
#[path = "lib/flush.rs"]
mod flush;
#[path = "lib/fuzz_smoke.rs"]
mod fuzz_smoke;
#[path = "lib/ingest.rs"]
mod ingest;
#[path = "lib/multiwriter.rs"]
mod multiwriter;
#[path = "lib/recovery.rs"]
mod recovery;
#[path = "lib/s3.rs"]
mod s3;
#[path = "lib/serve.rs"]
mod serve;
#[path = "lib/snapshots.rs"]
mod snapshots;
#[path = "lib/support.rs"]
mod support;
