//! Test helpers: a local hyper server that records every request it receives into a channel,
//! snapshots written from exchanges, and replay arguments.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tapedeck_analyzer::snapshot::{Spec, build};
use tapedeck_generator::ReplayArgs;
use tapedeck_proto::{Direction, Exchange, Header, Message, Protocol};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// One request the server received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) version: http::Version,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) at: Instant,
    /// Requests in flight at the server when this one arrived (itself included).
    pub(crate) in_flight: usize,
}

impl Received {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The replay trace (copy, iteration, line) of the request.
    pub(crate) fn trace(&self) -> tapedeck_analyzer::replay::trace::ReplayTrace {
        let value = self.header("traceparent").expect("a traceparent");
        tapedeck_analyzer::replay::trace::ReplayTrace::from_traceparent(value)
            .expect("a replay traceparent")
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) delay: Duration,
    pub(crate) trailers: Vec<(String, String)>,
}

impl Reply {
    pub(crate) fn json(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
            trailers: Vec::new(),
        }
    }
}

pub(crate) type Handler = Arc<dyn Fn(&Received) -> Reply + Send + Sync>;

/// A running test server.
pub(crate) struct Server {
    pub(crate) url: String,
    pub(crate) received: mpsc::UnboundedReceiver<Received>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Serves HTTP/1.1 and h2c on 127.0.0.1, answering with `handler`.
    pub(crate) async fn start(handler: Handler) -> Server {
        Self::serve(handler, None).await
    }

    /// Serves HTTPS (h2 and http/1.1 by ALPN) on 127.0.0.1 with a certificate and key (PEM).
    pub(crate) async fn start_tls(handler: Handler, cert: &Path, key: &Path) -> Server {
        use rustls_pki_types::pem::PemObject as _;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .expect("a cert file")
            .collect::<Result<_, _>>()
            .expect("certificates");
        let key = PrivateKeyDer::from_pem_file(key).expect("a private key");
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("a server config");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self::serve(
            handler,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
        .await
    }

    async fn serve(handler: Handler, tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().expect("an address"));
        let (tx, received) = mpsc::unbounded_channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                let handler = handler.clone();
                let in_flight = in_flight.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: http::Request<hyper::body::Incoming>| {
                            let tx = tx.clone();
                            let handler = handler.clone();
                            let in_flight = in_flight.clone();
                            async move {
                                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                                let (parts, body) = request.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|c| c.to_bytes())
                                    .unwrap_or_default();
                                let received = Received {
                                    method: parts.method.to_string(),
                                    path: parts
                                        .uri
                                        .path_and_query()
                                        .map(|p| p.as_str().to_owned())
                                        .unwrap_or_default(),
                                    version: parts.version,
                                    headers: parts
                                        .headers
                                        .iter()
                                        .map(|(n, v)| {
                                            (
                                                n.as_str().to_owned(),
                                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                            )
                                        })
                                        .collect(),
                                    body: body.to_vec(),
                                    at: Instant::now(),
                                    in_flight: now,
                                };
                                let reply = handler(&received);
                                let _ = tx.send(received);
                                if !reply.delay.is_zero() {
                                    tokio::time::sleep(reply.delay).await;
                                }
                                in_flight.fetch_sub(1, Ordering::SeqCst);
                                let mut response = http::Response::builder().status(reply.status);
                                for (n, v) in &reply.headers {
                                    response = response.header(n.as_str(), v.as_str());
                                }
                                let trailers = reply.trailers.clone();
                                let body =
                                    Full::new(Bytes::from(reply.body)).with_trailers(async move {
                                        if trailers.is_empty() {
                                            return None;
                                        }
                                        let mut map = http::HeaderMap::new();
                                        for (n, v) in trailers {
                                            map.insert(
                                                http::HeaderName::from_bytes(n.as_bytes())
                                                    .expect("a trailer name"),
                                                http::HeaderValue::from_str(&v)
                                                    .expect("a trailer value"),
                                            );
                                        }
                                        Some(Ok::<_, Infallible>(map))
                                    });
                                Ok::<_, Infallible>(response.body(body).expect("a valid response"))
                            }
                        });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Server {
            url,
            received,
            task,
        }
    }

    /// Everything received so far (after the replay returned, all of it).
    pub(crate) fn drain(&mut self) -> Vec<Received> {
        let mut out = Vec::new();
        while let Ok(r) = self.received.try_recv() {
            out.push(r);
        }
        out
    }
}

/// Writes a snapshot of `exchanges` into `dir/name` and returns its path.
pub(crate) fn write_snapshot(dir: &Path, name: &str, exchanges: Vec<Exchange>) -> PathBuf {
    let spec = Spec {
        service: "orders".into(),
        sql: "SELECT * FROM exchanges WHERE service = 'orders'".into(),
        predicate: None,
        from: None,
        to: None,
    };
    let path = dir.join(name);
    build(&spec, exchanges)
        .write(&path, false)
        .expect("writing the snapshot");
    path
}

/// The shop fixture's snapshot (4 sessions of 2 orders).
pub(crate) fn shop_snapshot(dir: &Path) -> PathBuf {
    write_snapshot(
        dir,
        "shop",
        tapedeck_analyzer::fixture::Shop::default().exchanges(),
    )
}

pub(crate) const T0: u64 = 1_795_784_400 * 1_000_000_000;

/// A plain inbound exchange.
#[allow(clippy::too_many_arguments)] // A request and its response, spelled out.
pub(crate) fn inbound(
    n: u64,
    offset_ms: u64,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    status: u32,
    response: &str,
) -> Exchange {
    let h = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(n, v)| Header {
                name: (*n).into(),
                value: v.as_bytes().to_vec(),
            })
            .collect::<Vec<_>>()
    };
    let mut id = [0u8; 16];
    id[8..].copy_from_slice(&(n + 1).to_be_bytes());
    let mut exchange = Exchange {
        id: id.to_vec(),
        trace_id: format!("{:032x}", n + 1),
        start_unix_nanos: T0 + offset_ms * 1_000_000,
        duration_nanos: 5_000_000,
        authority: "orders.shop.svc:8080".into(),
        scheme: "http".into(),
        method: method.into(),
        path: path.into(),
        request: Some(Message {
            headers: h(headers),
            body_size: body.len() as u64,
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }),
        status,
        response: Some(Message {
            headers: h(&[("content-type", "application/json")]),
            body_size: response.len() as u64,
            body: response.as_bytes().to_vec(),
            ..Default::default()
        }),
        sample_rate: 1.0,
        filter_version: "test".into(),
        ..Default::default()
    };
    exchange.set_direction(Direction::Inbound);
    exchange.set_protocol(Protocol::Http11);
    exchange
}

/// Replay arguments with defaults for tests (no progress line, short timeout).
pub(crate) fn args(snapshot: &Path, target: &str) -> ReplayArgs {
    ReplayArgs {
        snapshot: snapshot.to_owned(),
        target: vec![target.to_owned()],
        speed: 1.0,
        copies: 1,
        rate: None,
        concurrency: None,
        duration: None,
        iterations: None,
        ramp_up: Duration::ZERO,
        timeout: Duration::from_secs(10),
        jwt_key: None,
        jwt_claim: Vec::new(),
        secrets: None,
        strict_redacted: false,
        ignore: Vec::new(),
        compare_header: vec!["content-type".into()],
        slo: None,
        report: None,
        max_connections: 256,
        ca_cert: None,
        progress: tapedeck_generator::When::Never,
    }
}

/// Runs a replay with a 60 s guard.
pub(crate) async fn replay(
    args: ReplayArgs,
) -> tapedeck_generator::Result<tapedeck_generator::Report> {
    tokio::time::timeout(
        Duration::from_secs(60),
        tapedeck_generator::run(args, std::future::pending()),
    )
    .await
    .expect("the replay ends within 60 s")
}
