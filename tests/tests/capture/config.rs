//! Generated configs: every variant passes `envoy --mode validate`, Envoy without the filter
//! just proxies, and an invalid plugin config is refused loudly.

use anyhow::Result;
use serde_json::json;
use std::net::SocketAddr;
use tapedeck_e2e::{RigBuilder, base_plugin_config};
use tapedeck_local::{Envoy, EnvoyOptions};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::test]
async fn every_generated_config_passes_envoy_validate() -> Result<()> {
    let envoy = tapedeck_local::find_envoy()?;
    let variants = [
        (
            "filter",
            RigBuilder::new().bootstrap(addr(18080), None, addr(18090))?,
        ),
        (
            "filter + outbound",
            RigBuilder::new().bootstrap(addr(18080), Some(addr(18081)), addr(18090))?,
        ),
        (
            "no filter",
            RigBuilder::new()
                .without_filter()
                .bootstrap(addr(18080), None, addr(18090))?,
        ),
        (
            "no filter + outbound",
            RigBuilder::new().without_filter().bootstrap(
                addr(18080),
                Some(addr(18081)),
                addr(18090),
            )?,
        ),
    ];
    for (name, bootstrap) in variants {
        tapedeck_local::validate(&envoy, &bootstrap)
            .await
            .map_err(|error| error.context(format!("variant {name}")))?;
    }
    Ok(())
}

#[tokio::test]
async fn without_the_filter_envoy_proxies_and_defines_no_tapedeck_stats() -> Result<()> {
    let mut rig = RigBuilder::new().without_filter().start().await?;
    let reply = rig.get("/hello").await?;
    assert_eq!(reply.status, 200);
    let stats = rig.envoy.stats().await?;
    assert!(
        !stats.keys().any(|name| name.contains("tapedeck.")),
        "{stats:?}"
    );
    let received =
        tapedeck_local::sink::collect_for(&mut rig.received, std::time::Duration::from_millis(200))
            .await;
    assert!(received.is_empty());
    Ok(())
}

/// Starts Envoy with `plugin` as the filter's config and expects it to be refused, with
/// `expected` in the log Envoy leaves; `envoy --mode validate` must refuse it too.
async fn assert_refused(plugin: serde_json::Value, expected: &str) -> Result<()> {
    let envoy = tapedeck_local::find_envoy()?;
    let bootstrap =
        RigBuilder::new()
            .raw_plugin(plugin)
            .bootstrap(addr(18080), None, addr(18090))?;
    match Envoy::start(&envoy, &bootstrap, EnvoyOptions::default()).await {
        Ok(running) => panic!(
            "Envoy started with an invalid plugin config; its log:\n{}",
            running.log_text()
        ),
        Err(error) => {
            let error = format!("{error:#}");
            assert!(error.contains("Envoy exited during start"), "{error}");
            assert!(
                error.contains("Unable to create Wasm plugin tapedeck"),
                "{error}"
            );
            assert!(
                error.contains(expected),
                "the refusal should name the problem ({expected:?}):\n{error}"
            );
        }
    }
    let error = match tapedeck_local::validate(&envoy, &bootstrap).await {
        Ok(()) => panic!("envoy --mode validate passed an invalid plugin config"),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        error.contains(expected),
        "validate should name the problem ({expected:?}):\n{error}"
    );
    Ok(())
}

#[tokio::test]
async fn an_unknown_plugin_config_field_is_refused() -> Result<()> {
    let mut plugin = base_plugin_config();
    plugin["colector"] = json!({"cluster": "x"});
    assert_refused(plugin, "unknown field `colector`").await
}

#[tokio::test]
async fn plugin_config_version_2_is_refused() -> Result<()> {
    let mut plugin = base_plugin_config();
    plugin["version"] = json!(2);
    assert_refused(plugin, "version 2 is not supported").await
}
