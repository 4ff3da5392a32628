//! A collector on loopback, and builders for what is pushed to it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use object_store::ObjectStore;
use tapedeck_collector::store::{StoreHandle, open_store};
use tapedeck_collector::{CollectorArgs, Listeners, run_with, writer};
use tapedeck_proto::arrow::from_record_batch;
use tapedeck_proto::capture::v1::capture_client::CaptureClient;
use tapedeck_proto::{Direction, Exchange, ExchangeBatch, Header, Message, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// How long any wait in these tests may take.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// 2026-11-27T13:00:00Z in ns.
pub(crate) const T13: u64 = 1_795_784_400_000_000_000;
/// One hour in ns.
pub(crate) const HOUR: u64 = 3_600_000_000_000;

/// Flags for a test collector: data in `data`, no time-triggered flush.
pub(crate) fn args(data: &Path) -> CollectorArgs {
    CollectorArgs {
        data: data.to_path_buf(),
        flush_interval: 3_600,
        ..Default::default()
    }
}

/// A running collector.
pub(crate) struct Collector {
    pub(crate) grpc: SocketAddr,
    pub(crate) http: SocketAddr,
    /// The Flight SQL endpoint, when the flags ask for one.
    pub(crate) flight: Option<SocketAddr>,
    pub(crate) store: StoreHandle,
    pub(crate) data: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<tapedeck_collector::Result<()>>,
}

impl Collector {
    /// Starts a collector with the store its flags name.
    pub(crate) async fn start(args: CollectorArgs) -> Self {
        let store = open_store(&args.data, args.store.as_deref()).expect("store opens");
        Self::start_with(args, store).await
    }

    /// Starts a collector with an opened store.
    pub(crate) async fn start_with(args: CollectorArgs, store: StoreHandle) -> Self {
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let flight = match args.flight_listen {
            Some(_) => Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
            None => None,
        };
        let flight_addr = flight
            .as_ref()
            .map(|listener| listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let data = args.data.clone();
        let listeners = Listeners { grpc, http, flight };
        let task = tokio::spawn(run_with(args, listeners, store.clone(), async move {
            let _ = stopped.await;
        }));
        Self {
            grpc: grpc_addr,
            http: http_addr,
            flight: flight_addr,
            store,
            data,
            stop: Some(stop),
            task,
        }
    }

    /// A gRPC client of the ingest endpoint.
    pub(crate) async fn client(&self) -> CaptureClient<Channel> {
        within(
            "connecting to the collector",
            CaptureClient::connect(format!("http://{}", self.grpc)),
        )
        .await
        .expect("collector accepts connections")
    }

    /// A gRPC channel to the ingest endpoint.
    pub(crate) async fn channel(&self) -> Channel {
        within(
            "connecting to the collector",
            Channel::from_shared(format!("http://{}", self.grpc))
                .unwrap()
                .connect(),
        )
        .await
        .expect("collector accepts connections")
    }

    /// Graceful shutdown (final flush included); returns what `run_with` returned.
    pub(crate) async fn stop(mut self) -> tapedeck_collector::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        within("collector shutdown", &mut self.task)
            .await
            .expect("collector task does not panic")
    }

    /// Stops every task at once, with no flush: what a crash leaves behind.
    pub(crate) async fn crash(self) {
        self.task.abort();
        let _ = within("collector abort", self.task).await;
    }

    /// The files of the store, as `exchanges/…` paths, sorted.
    pub(crate) async fn files(&self) -> Vec<String> {
        files(&self.store.store).await
    }

    /// GETs a path of the HTTP endpoint.
    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
        http_request(self.http, "GET", path).await
    }

    /// The value of a metric in the `/metrics` exposition (0 when absent).
    pub(crate) async fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.get("/metrics").await;
        metric_value(&text, series)
    }
}

/// The value of `series` (name with labels) in an exposition text.
pub(crate) fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Awaits `future`, failing the test with `what` after [`WAIT`].
pub(crate) async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {WAIT:?}"))
}

/// Polls `check` every 20 ms until it is true, failing the test with `what` after [`WAIT`].
pub(crate) async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    within(what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Data file paths of a store, sorted.
pub(crate) async fn files(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    let partitions = writer::list_partitions(store).await.expect("store lists");
    let mut paths: Vec<String> = partitions
        .values()
        .flatten()
        .map(|(_, meta)| meta.location.to_string())
        .collect();
    paths.sort();
    paths
}

/// Every exchange in the store, sorted by id.
pub(crate) async fn stored(store: &Arc<dyn ObjectStore>) -> Vec<Exchange> {
    let partitions = writer::list_partitions(store).await.expect("store lists");
    let mut exchanges = Vec::new();
    for (_, meta) in partitions.values().flatten() {
        for batch in writer::read_file(store, &meta.location)
            .await
            .expect("file reads")
        {
            exchanges.extend(from_record_batch(&batch).expect("batch converts"));
        }
    }
    exchanges.sort_by(|a, b| a.id.cmp(&b.id));
    exchanges
}

/// Sorts exchanges by id, as [`stored`] returns them.
pub(crate) fn by_id(mut exchanges: Vec<Exchange>) -> Vec<Exchange> {
    exchanges.sort_by(|a, b| a.id.cmp(&b.id));
    exchanges
}

fn header(name: &str, value: &[u8]) -> Header {
    Header {
        name: name.into(),
        value: value.to_vec(),
    }
}

/// An exchange with every field set, distinct per `i`.
pub(crate) fn exchange(i: u8, workload: &str, start_unix_nanos: u64) -> Exchange {
    Exchange {
        id: [[i; 8], [0xa5; 8]].concat(),
        trace_id: format!("4bf92f3577b34da6a3ce929d0e0e47{i:02x}"),
        start_unix_nanos,
        duration_nanos: 1_500_000 + u64::from(i),
        response_headers_nanos: 700_000,
        direction: if i.is_multiple_of(2) {
            Direction::Inbound
        } else {
            Direction::Outbound
        } as i32,
        workload: workload.into(),
        namespace: "shop".into(),
        pod: format!("{workload}-7d9f-{i}"),
        peer_address: format!("10.0.0.{i}:40000"),
        upstream_cluster: "outbound|8080||payments.shop.svc.cluster.local".into(),
        route_name: "default".into(),
        protocol: Protocol::Http2 as i32,
        scheme: "https".into(),
        authority: "payments.shop:8080".into(),
        method: "POST".into(),
        path: format!("/charges/{i}?currency=EUR"),
        request: Some(Message {
            headers: vec![
                header("content-type", b"application/json"),
                header("x-binary", &[0xff, 0x00, i]),
                header("x-dup", b"1"),
                header("x-dup", b"2"),
            ],
            body: format!("{{\"amount\":{i}}}").into_bytes(),
            body_size: 4_096,
            body_truncated: true,
            trailers: vec![header("x-request-trailer", b"t")],
        }),
        status: 201,
        response: Some(Message {
            headers: vec![header("content-type", b"application/grpc")],
            body: vec![0, 1, 2, i],
            body_size: 4,
            body_truncated: false,
            trailers: vec![header("grpc-status", b"0"), header("grpc-message", b"")],
        }),
        response_flags: "UF,URX".into(),
        response_code_details: "upstream_reset_before_response_started".into(),
        sample_rate: 0.5,
        redactions: vec![
            "request.header:authorization".into(),
            "request.body:$.card".into(),
        ],
        filter_version: "0.1.0".into(),
    }
}

/// A batch of exchanges.
pub(crate) fn batch(sequence: u64, exchanges: Vec<Exchange>) -> ExchangeBatch {
    ExchangeBatch {
        exchanges,
        filter_version: "0.1.0".into(),
        sequence,
        dropped_since_last: 0,
        sent_unix_nanos: T13,
    }
}

/// Sends one HTTP/1.1 request and returns the status and body.
pub(crate) async fn http_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    try_http_request(addr, method, path)
        .await
        .unwrap_or_else(|error| panic!("{method} {path} on {addr}: {error:#}"))
}

/// Sends one HTTP/1.1 request and returns the status and body.
pub(crate) async fn try_http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> anyhow::Result<(u16, String)> {
    within(&format!("{method} {path}"), async {
        let mut stream = TcpStream::connect(addr).await.context("connecting")?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let response = String::from_utf8_lossy(&response).into_owned();
        let Some((head, body)) = response.split_once("\r\n\r\n") else {
            bail!("no end of headers in {response:?}");
        };
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|status| status.parse().ok())
            .with_context(|| format!("no status in {head:?}"))?;
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        Ok((status, if chunked { dechunk(body) } else { body.to_string() }))
    })
    .await
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
