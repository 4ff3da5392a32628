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
        baseline: Vec::new(),
        calibrate: 0,
        noise: None,
        gate: tapedeck_generator::gate_defaults(),
        shard: None,
        command: None,
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

/// A seeded pseudo-random generator (SplitMix64) for synthetic servers.
#[derive(Debug)]
pub(crate) struct Rng(std::sync::Mutex<u64>);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(std::sync::Mutex::new(seed))
    }

    pub(crate) fn next(&self) -> u64 {
        let mut state = self.0.lock().expect("the rng");
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How a synthetic item server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// Noisy but correct: a random `updated_at` near now, a random UUID `request_id`, the
    /// `items` array shuffled, `price` with a relative jitter below 1e-6.
    Noisy,
    /// Noisy, and every typed field broken: `updated_at` not a time, `request_id` not a UUID,
    /// one item's `qty` changed, `price` 8 % up, `status` changed.
    Broken,
}

/// The recorded body of item `n` (`GET /items/item_000n`), at the recorded time `at_ns`.
pub(crate) fn item_body(n: u64, at_ns: u64) -> String {
    serde_json::json!({
        "id": format!("item_{n:04}"),
        "status": "ok",
        "updated_at": tapedeck_har::time::format(at_ns),
        "request_id": format!("3f2b8c1e-0d4a-4c6b-9a7e-{:012x}", n),
        "price": 12.5,
        "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}, {"sku": "c", "qty": 3}],
    })
    .to_string()
}

/// A synthetic item server, seeded.
pub(crate) fn item_server(seed: u64, behaviour: Behaviour) -> Handler {
    let rng = Arc::new(Rng::new(seed));
    Arc::new(move |r: &Received| {
        let id = r.path.rsplit('/').next().unwrap_or_default().to_owned();
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_nanos() as u64;
        let at = now_ns - (rng.unit() * 5e9) as u64;
        let uuid = format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            rng.next() as u32,
            rng.next() as u16,
            rng.next() & 0xfff,
            rng.next() & 0xfff,
            rng.next() & 0xffff_ffff_ffff
        );
        let mut items = [("a", 1), ("b", 2), ("c", 3)];
        for i in (1..items.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
        let jitter = 12.5 * (1.0 + (rng.unit() - 0.5) * 2e-6);
        let broken = behaviour == Behaviour::Broken;
        let body = serde_json::json!({
            "id": id,
            "status": if broken { "degraded" } else { "ok" },
            "updated_at": if broken { "never".to_owned() } else { tapedeck_har::time::format(at) },
            "request_id": if broken { "not-a-uuid".to_owned() } else { uuid },
            "price": if broken { 13.5 } else { jitter },
            "items": items
                .iter()
                .map(|(sku, qty)| serde_json::json!({
                    "sku": sku,
                    "qty": if broken && *sku == "b" { 99 } else { *qty },
                }))
                .collect::<Vec<_>>(),
        });
        Reply::json(200, &body.to_string())
    })
}

/// A snapshot of `n` item reads, 5 ms apart.
pub(crate) fn item_snapshot(dir: &Path, n: u64) -> PathBuf {
    let exchanges = (0..n)
        .map(|i| {
            let at = T0 + i * 5_000_000;
            inbound(
                i,
                i * 5,
                "GET",
                &format!("/items/item_{i:04}"),
                &[],
                "",
                200,
                &item_body(i, at),
            )
        })
        .collect();
    write_snapshot(dir, "items", exchanges)
}
