//! The native tap bootstrap that `./x bench filter` measures the filter against is one Envoy
//! accepts (`envoy --mode validate`), with and without the filter beside it.

use std::net::SocketAddr;

use anyhow::Result;
use serde_json::json;
use tapedeck_local::EnvoyBootstrap;

#[tokio::test]
async fn the_native_tap_bootstrap_passes_envoy_validate() -> Result<()> {
    let envoy = tapedeck_local::find_envoy()?;
    let app = SocketAddr::from(([127, 0, 0, 1], 18080));
    let collector = SocketAddr::from(([127, 0, 0, 1], 18090));
    let dir = tempfile::tempdir()?;
    let tap = EnvoyBootstrap::new(app, collector).tap(dir.path().join("tap"), 65536);
    tapedeck_local::validate(&envoy, &tap.render()).await?;
    let wasm = dir.path().join("filter.wasm");
    let with_filter = tap.filter(&wasm, json!({"version": 1}));
    let rendered = with_filter.render();
    assert!(rendered.contains("envoy.filters.http.tap"));
    assert!(rendered.contains("envoy.filters.http.wasm"));
    Ok(())
}
