//! Times the phases of a snapshot in process, without the store: generate shop exchanges,
//! build (sort, link, discover tokens), write. For profiling the analyzer alone; the system
//! figure (store → snapshot through the CLI) is `./x bench analyzer`.
//!
//! `cargo run --release -p tapedeck-analyzer --example snapshot_phases -- [EXCHANGES] [DIR]`

use std::time::Instant;

use tapedeck_analyzer::fixture::Shop;
use tapedeck_analyzer::snapshot::{Spec, build};

/// The `tapedeck` binary's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let exchanges: u64 = args.next().map_or(Ok(200_000), |a| a.parse())?;
    let dir = args
        .next()
        .unwrap_or_else(|| "/tmp/tapedeck-snapshot-phases".to_owned());
    let shop = Shop {
        seed: 11,
        sessions: exchanges.div_ceil(11),
        session_gap_ns: 40_000_000,
        receipt_bytes: 2048,
        ..Shop::default()
    };
    let began = Instant::now();
    let exchanges = shop.exchanges();
    eprintln!(
        "generated {} exchanges in {:.2} s",
        exchanges.len(),
        began.elapsed().as_secs_f64()
    );
    let spec = Spec {
        service: "orders".into(),
        sql: "SELECT … FROM exchanges WHERE service = 'orders'".into(),
        predicate: None,
        from: None,
        to: None,
    };
    let began = Instant::now();
    let built = build(&spec, exchanges);
    eprintln!(
        "built (sort, link, {} token rules) in {:.2} s",
        built.manifest().tokens.len(),
        began.elapsed().as_secs_f64()
    );
    let began = Instant::now();
    let manifest = built.write(std::path::Path::new(&dir), true)?;
    eprintln!(
        "wrote {} in {:.2} s",
        manifest.id,
        began.elapsed().as_secs_f64()
    );
    Ok(())
}
