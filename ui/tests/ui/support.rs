//! A store with known traffic (the analyzer's shop fixture), the UI served on it, and a small
//! HTTP/1.1 client for its API and for chromedriver.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use tapedeck_proto::Exchange;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The shop fixture's exchanges (44: 4 sessions of 2 orders).
pub(crate) fn shop() -> Vec<Exchange> {
    tapedeck_analyzer::fixture::Shop::default().exchanges()
}

/// The UI on a temporary data directory holding [`shop`].
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) snapshots: Option<PathBuf>,
    _temp: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), tapedeck_ui::Error>>>,
}

impl Server {
    /// Serves the shop; with `writable`, snapshots may be cut into and edited in a temporary
    /// `--snapshots` directory.
    pub(crate) async fn start(writable: bool) -> Result<Server> {
        Server::start_with(writable, Vec::new(), None, true).await
    }

    /// Serves `reports` (`--report`) with `noise` (`--noise`), and the shop when `traffic`
    /// (else no data directory: the replay pages alone).
    pub(crate) async fn start_with(
        writable: bool,
        reports: Vec<PathBuf>,
        noise: Option<PathBuf>,
        traffic: bool,
    ) -> Result<Server> {
        Server::start_on(writable, reports, noise, traffic.then(shop)).await
    }

    /// Serves `exchanges` (when given) as [`Server::start_with`] serves the shop.
    pub(crate) async fn start_on(
        writable: bool,
        reports: Vec<PathBuf>,
        noise: Option<PathBuf>,
        exchanges: Option<Vec<Exchange>>,
    ) -> Result<Server> {
        let temp = tempfile::tempdir()?;
        let data = temp.path().join("data");
        if let Some(exchanges) = exchanges {
            std::fs::create_dir_all(&data)?;
            let store = tapedeck_collector::store::open_store(&data, None)?;
            tapedeck_collector::writer::write_exchanges(
                &store.store,
                tapedeck_collector::writer::random_writer_id(),
                &exchanges,
            )
            .await?;
        }
        let snapshots = writable.then(|| temp.path().join("snapshots"));
        if let Some(dir) = &snapshots {
            std::fs::create_dir_all(dir)?;
        }
        let args = tapedeck_ui::UiArgs {
            collector: None,
            token: None,
            data,
            store: None,
            listen: "127.0.0.1:0".parse()?,
            snapshots: snapshots.clone(),
            reports,
            noise,
            limits: tapedeck_collector::query::QueryArgs {
                timeout: 60,
                memory: 1 << 30,
                max_rows: 1_000_000,
                concurrency: 4,
            },
        };
        let ui = Arc::new(tapedeck_ui::open(&args).await?);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(tapedeck_ui::serve(listener, ui, async {
            let _ = stopped.await;
        }));
        Ok(Server {
            addr,
            snapshots,
            _temp: temp,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) async fn get(&self, path: &str) -> Result<(u16, serde_json::Value)> {
        let (status, body) = request(self.addr, "GET", path, None).await?;
        Ok((status, json(&body)?))
    }

    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value)> {
        let (status, body) = request(self.addr, method, path, Some(&body.to_string())).await?;
        Ok((status, json(&body)?))
    }

    /// Stops the server and waits for it to finish.
    pub(crate) async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }
}

fn json(body: &[u8]) -> Result<serde_json::Value> {
    serde_json::from_slice(body)
        .with_context(|| format!("not JSON: {}", String::from_utf8_lossy(body)))
}

/// Query-string encoding of one value.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// One HTTP/1.1 request (`Connection: close`); returns the status and the body (chunked
/// bodies decoded).
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, Vec<u8>)> {
    request_with(addr, method, path, body, None).await
}

/// [`request`] with an `authorization` header.
pub(crate) async fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    authorization: Option<&str>,
) -> Result<(u16, Vec<u8>)> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let body = body.unwrap_or("");
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    // Read until the body is complete (by Content-Length; chromedriver does not close the
    // connection after its answer despite `Connection: close`), or to the end of the stream.
    let mut response = Vec::new();
    let read = async {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            if let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
                let length = head.lines().find_map(|line| {
                    line.strip_prefix("content-length:")
                        .and_then(|v| v.trim().parse::<usize>().ok())
                });
                if let Some(length) = length
                    && response.len() >= split + 4 + length
                {
                    return Ok::<_, std::io::Error>(());
                }
            }
            let n = stream.read(&mut buffer).await?;
            if n == 0 {
                return Ok(());
            }
            response.extend_from_slice(&buffer[..n]);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), read)
        .await
        .with_context(|| format!("{method} {path}: no answer in 60 s"))??;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let mut rest = response[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut decoded = Vec::new();
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .context("bad chunk")?;
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&rest[..line_end]).trim(), 16)?;
            if size == 0 {
                break;
            }
            let start = line_end + 2;
            if rest.len() < start + size {
                bail!("short chunk");
            }
            decoded.extend_from_slice(&rest[start..start + size]);
            rest.drain(..start + size + 2);
        }
        rest = decoded;
    }
    Ok((status, rest))
}
