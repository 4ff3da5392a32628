//! The bootstrap `tapedeck proxy` generates is one Envoy accepts (`envoy --mode validate`):
//! inbound listeners, the outbound dynamic forward proxy with CONNECT, pinned hosts.

use anyhow::Result;
use std::path::Path;
use tapedeck_local::proxy::{ProxyArgs, bootstrap};

#[tokio::test]
async fn the_proxy_bootstrap_passes_envoy_validate() -> Result<()> {
    let envoy = tapedeck_local::find_envoy()?;
    let wasm = tapedeck_local::find_filter_wasm()?;
    let mut args = ProxyArgs::new("orders");
    args.inbound.push(
        "127.0.0.1:0=127.0.0.1:18081"
            .parse()
            .map_err(anyhow::Error::msg)?,
    );
    args.inbound.push(
        "127.0.0.1:0=127.0.0.1:18082"
            .parse()
            .map_err(anyhow::Error::msg)?,
    );
    args.outbound = Some("127.0.0.1:0".parse()?);
    args.resolve.push(
        "payments.shop.svc=127.0.0.1:17001"
            .parse()
            .map_err(anyhow::Error::msg)?,
    );
    let config = bootstrap(&args, "127.0.0.1:19090".parse()?, Path::new(&wasm));
    tapedeck_local::validate(&envoy, &serde_json::to_string_pretty(&config)?).await?;
    Ok(())
}
