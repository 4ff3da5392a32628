//! Shared test helpers: the fixture snapshot, a running responder, and HTTP/1.1 and h2c
//! clients that set `Host` / `:authority` as the service under test would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tapedeck_analyzer::snapshot::{self, Snapshot};
use tapedeck_responder::{Running, ServeArgs, fixture, serve};
use tokio::net::{TcpListener, TcpStream};

/// How long any one client call may take.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A snapshot of the fixture in a temporary directory.
pub(crate) struct Fixture {
    _dir: tempfile::TempDir,
    /// The snapshot directory.
    pub(crate) path: PathBuf,
    /// The snapshot as read back.
    pub(crate) snapshot: Snapshot,
}

/// Builds the fixture snapshot through the analyzer (sorting, linking, discovery).
pub(crate) fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders-snapshot");
    fixture::write_snapshot(&path).unwrap();
    let snapshot = snapshot::read(&path).unwrap();
    Fixture {
        _dir: dir,
        path,
        snapshot,
    }
}

/// Starts a responder with an admin listener.
pub(crate) async fn start(args: ServeArgs) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve(args, listener, Some(admin)).await.unwrap()
}

/// The defaults for the fixture: no recorded latency, a fixed seed, times not shifted.
pub(crate) fn args(path: &Path) -> ServeArgs {
    let mut args = ServeArgs::new(path);
    args.seed = Some(1);
    args.replay_start = Some("2026-11-27T13:00:00Z".to_owned());
    args
}

/// A response as the client saw it.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) trailers: Option<HeaderMap>,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// One request: over HTTP/1.1 (`Host` header) or h2c with prior knowledge (`:authority`).
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) h2: bool,
    pub(crate) method: String,
    pub(crate) host: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Call {
    pub(crate) fn get(host: &str, path: &str) -> Call {
        Call {
            h2: false,
            method: "GET".to_owned(),
            host: host.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub(crate) fn post(host: &str, path: &str, body: impl Into<Vec<u8>>) -> Call {
        Call {
            method: "POST".to_owned(),
            body: body.into(),
            ..Call::get(host, path)
        }
    }

    pub(crate) fn h2(mut self) -> Call {
        self.h2 = true;
        self
    }

    pub(crate) fn header(mut self, name: &str, value: impl Into<String>) -> Call {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Sends the call on a new connection; `Err` when the stream or connection failed.
    pub(crate) async fn send(&self, addr: SocketAddr) -> Result<Reply, String> {
        self.send_within(addr, CALL_TIMEOUT).await
    }

    /// Sends the call, giving up after `limit`.
    pub(crate) async fn send_within(
        &self,
        addr: SocketAddr,
        limit: Duration,
    ) -> Result<Reply, String> {
        match tokio::time::timeout(limit, self.exchange(addr)).await {
            Ok(result) => result,
            Err(_) => Err("timed out".to_owned()),
        }
    }

    async fn exchange(&self, addr: SocketAddr) -> Result<Reply, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        let mut builder = Request::builder().method(self.method.as_str());
        builder = if self.h2 {
            builder.uri(format!("http://{}{}", self.host, self.path))
        } else {
            builder
                .uri(self.path.as_str())
                .header("host", self.host.as_str())
        };
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder
            .body(Full::new(Bytes::from(self.body.clone())))
            .map_err(|e| e.to_string())?;
        let response = if self.h2 {
            let (mut send, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            send.send_request(request)
                .await
                .map_err(|e| e.to_string())?
        } else {
            let (mut send, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            send.send_request(request)
                .await
                .map_err(|e| e.to_string())?
        };
        let (parts, body) = response.into_parts();
        let collected = body.collect().await.map_err(|e| format!("body: {e}"))?;
        let trailers = collected.trailers().cloned();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body: collected.to_bytes(),
            trailers,
        })
    }
}

/// A GET on the admin listener.
pub(crate) async fn admin_get(running: &Running, path: &str) -> Reply {
    let addr = running.admin_addr().unwrap();
    Call::get(&addr.to_string(), path).send(addr).await.unwrap()
}

/// The line of `inbound.jsonl` (1-based) holding the inbound request with this id.
pub(crate) fn inbound_line(snapshot: &Snapshot, id: &str) -> u32 {
    snapshot
        .inbound
        .iter()
        .position(|e| e.id == id)
        .map(|i| i as u32 + 1)
        .unwrap()
}

/// The 1-based line of `outbound.jsonl` whose entry satisfies `pick`.
pub(crate) fn outbound_line(
    snapshot: &Snapshot,
    pick: impl Fn(&tapedeck_analyzer::snapshot::Entry) -> bool,
) -> u64 {
    snapshot
        .outbound
        .iter()
        .position(pick)
        .map(|i| i as u64 + 1)
        .unwrap()
}

/// `x-tapedeck-recording` for a line.
pub(crate) fn recording_name(snapshot: &Snapshot, line: u64) -> String {
    format!("{}/{line}", snapshot.manifest.id)
}
