//! A small sample service to put behind the sidecar: HTTP/1.1 and h2c on one port, plus the
//! `Capture` gRPC service (any request with `content-type: application/grpc*`).
//!
//! Routes:
//! - `GET /hello`: a short text.
//! - `POST /echo`: the request body back, with its `content-type`.
//! - `POST /upload`: consumes the body; answers `{"bytes": N, "fnv1a64": "<hex>"}`.
//! - `GET /download?bytes=N`: N bytes of [`pattern`], streamed in chunks.
//! - `GET /binary`: [`BINARY_BODY`], which is not UTF-8.
//! - `GET /login`: sets a `session` cookie ([`LOGIN_SESSION`]).
//! - `POST /orders`: calls the dependency's `POST /pay` with a JSON body (passing on
//!   `x-request-id` and `traceparent`) and answers with what it said.
//! - `POST /pay`: answers `{"paid": true, "order": <the request JSON>}` with status 201.
//! - gRPC `tapedeck.capture.v1.Capture/Push`: acks every exchange of the batch.

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tapedeck_proto::capture::v1::capture_server::{Capture, CaptureServer};
use tapedeck_proto::tonic::codegen::Service as _;
use tapedeck_proto::{ExchangeBatch, PushAck};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// The boxed error of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A response body of the sample service.
pub type SampleBody = UnsyncBoxBody<Bytes, BoxError>;
/// A request body for clients: full or streamed.
pub type ClientBody = BoxBody<Bytes, Infallible>;

/// What `GET /binary` answers: bytes that are not UTF-8.
pub const BINARY_BODY: &[u8] = &[
    0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, b't', b'd', 0xa0, 0xa1, 0xf0, 0x28, 0x8c, 0xbc, 0x00,
];
/// The session cookie value `GET /login` sets (a secret the filter must redact).
pub const LOGIN_SESSION: &str = "s3cr3t-session-4f1c2a";
/// The chunk size of streamed responses.
pub const DOWNLOAD_CHUNK: usize = 16 * 1024;
/// The largest `GET /download` answered.
pub const MAX_DOWNLOAD: usize = 256 * 1024 * 1024;

/// A dependency the service calls on `POST /orders`, usually through the sidecar's outbound
/// listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// Base URL, for example `http://127.0.0.1:15001`.
    pub base_url: String,
    /// The `Host` header to send (the outbound route matches on it); `None` keeps the URL's.
    pub authority: Option<String>,
}

/// How the sample service behaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleConfig {
    /// Where `POST /orders` sends its payment; without one, `/orders` answers 503.
    pub dependency: Option<Dependency>,
}

/// `len` bytes of the deterministic pattern `GET /download` sends (byte `i` is
/// `(i * 31 + i / 251) % 256`, so shifted or dropped chunks show).
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(pattern_byte).collect()
}

fn pattern_byte(i: usize) -> u8 {
    (i.wrapping_mul(31).wrapping_add(i / 251) % 256) as u8
}

/// FNV-1a (64 bit) of `data`, as `POST /upload` reports it.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut hash = Fnv::default();
    hash.update(data);
    hash.0
}

#[derive(Debug)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn update(&mut self, data: &[u8]) {
        for byte in data {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A client request body of `data`, sent in `chunk`-byte frames with no length known up front
/// (HTTP/1.1 chunked transfer encoding).
pub fn chunked_body(data: Bytes, chunk: usize) -> ClientBody {
    let chunk = chunk.max(1);
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = (0..data.len())
        .step_by(chunk)
        .map(|start| {
            Ok(Frame::data(
                data.slice(start..(start + chunk).min(data.len())),
            ))
        })
        .collect();
    BoxBody::new(StreamBody::new(tokio_stream::iter(frames)))
}

/// A client request body holding `data`, with its length known.
pub fn full_body(data: impl Into<Bytes>) -> ClientBody {
    BoxBody::new(Full::new(data.into()))
}

/// Serves the sample service on `listener` until `shutdown` completes; open connections are
/// closed then.
pub async fn serve(
    listener: TcpListener,
    config: SampleConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let app = Arc::new(App {
        config,
        client: Client::builder(TokioExecutor::new()).build_http(),
        grpc: CaptureServer::new(SampleCapture),
    });
    let local = listener
        .local_addr()
        .context("reading the sample service's address")?;
    tracing::debug!(%local, "Sample service listening.");
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "Sample service failed to accept a connection.");
                    continue;
                }
            },
        };
        let app = app.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.handle(request).await) }
            });
            if let Err(error) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, %peer, "Sample service connection ended with an error.");
            }
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
    Ok(())
}

#[derive(Debug)]
struct App {
    config: SampleConfig,
    client: Client<HttpConnector, ClientBody>,
    grpc: CaptureServer<SampleCapture>,
}

impl App {
    async fn handle(&self, request: Request<Incoming>) -> Response<SampleBody> {
        let is_grpc = request
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"));
        if is_grpc {
            let mut grpc = self.grpc.clone();
            return match grpc.call(request).await {
                Ok(response) => response.map(|body| body.map_err(BoxError::from).boxed_unsync()),
                Err(never) => match never {},
            };
        }
        let result = match (request.method(), request.uri().path()) {
            (&Method::GET, "/hello") => {
                Ok(text(StatusCode::OK, "hello from the tapedeck sample\n"))
            }
            (&Method::POST, "/echo") => echo(request).await,
            (&Method::POST, "/upload") => upload(request).await,
            (&Method::GET, "/download") => download(&request),
            (&Method::GET, "/binary") => Ok(bytes_response(
                StatusCode::OK,
                "application/octet-stream",
                Bytes::from_static(BINARY_BODY),
            )),
            (&Method::GET, "/login") => Ok(login()),
            (&Method::POST, "/orders") => self.orders(request).await,
            (&Method::POST, "/pay") => pay(request).await,
            _ => Ok(text(StatusCode::NOT_FOUND, "no such route\n")),
        };
        result.unwrap_or_else(|error| {
            tracing::warn!(
                error = format!("{error:#}"),
                "Sample service request failed."
            );
            text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{error:#}\n"))
        })
    }

    async fn orders(&self, request: Request<Incoming>) -> Result<Response<SampleBody>> {
        let Some(dependency) = &self.config.dependency else {
            return Ok(text(
                StatusCode::SERVICE_UNAVAILABLE,
                "no dependency configured\n",
            ));
        };
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .context("reading the order")?
            .to_bytes();
        let order: serde_json::Value = if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&body).context("the order is not JSON")?
        };
        let payment = serde_json::json!({"order": order, "amount_cents": 1250});
        let mut call = Request::post(format!("{}/pay", dependency.base_url.trim_end_matches('/')))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(authority) = &dependency.authority {
            call = call.header(header::HOST, authority);
        }
        for name in ["x-request-id", "traceparent", "tracestate"] {
            if let Some(value) = parts.headers.get(name) {
                call = call.header(name, value);
            }
        }
        let call = call
            .body(full_body(payment.to_string()))
            .context("building the payment call")?;
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(call))
            .await
            .context("the payment call timed out")?
            .context("calling the dependency")?;
        let status = response.status();
        let paid = response
            .into_body()
            .collect()
            .await
            .context("reading the payment answer")?
            .to_bytes();
        let paid: serde_json::Value =
            serde_json::from_slice(&paid).unwrap_or(serde_json::Value::Null);
        let status = if status.is_success() {
            StatusCode::CREATED
        } else {
            StatusCode::BAD_GATEWAY
        };
        Ok(json(
            status,
            &serde_json::json!({"order": "created", "payment_status": status.as_u16(), "payment": paid}),
        ))
    }
}

async fn echo(request: Request<Incoming>) -> Result<Response<SampleBody>> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let body = request
        .into_body()
        .collect()
        .await
        .context("reading the body to echo")?
        .to_bytes();
    let mut response = Response::new(Full::new(body).map_err(BoxError::from).boxed_unsync());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    Ok(response)
}

async fn upload(request: Request<Incoming>) -> Result<Response<SampleBody>> {
    let mut body = request.into_body();
    let mut bytes = 0u64;
    let mut hash = Fnv::default();
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.context("reading the upload")?.data_ref() {
            bytes += data.len() as u64;
            hash.update(data);
        }
    }
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"bytes": bytes, "fnv1a64": format!("{:016x}", hash.0)}),
    ))
}

fn download(request: &Request<Incoming>) -> Result<Response<SampleBody>> {
    let len = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("bytes="))
        .context("GET /download needs ?bytes=N")?
        .parse::<usize>()
        .context("?bytes= is not a number")?;
    anyhow::ensure!(len <= MAX_DOWNLOAD, "?bytes={len} is above {MAX_DOWNLOAD}");
    let frames = (0..len).step_by(DOWNLOAD_CHUNK).map(move |start| {
        let end = (start + DOWNLOAD_CHUNK).min(len);
        Ok::<_, BoxError>(Frame::data(Bytes::from(
            (start..end).map(pattern_byte).collect::<Vec<u8>>(),
        )))
    });
    let mut response = Response::new(UnsyncBoxBody::new(StreamBody::new(tokio_stream::iter(
        frames,
    ))));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

fn login() -> Response<SampleBody> {
    let mut response = json(StatusCode::OK, &serde_json::json!({"ok": true}));
    let cookie = format!("session={LOGIN_SESSION}; Path=/; HttpOnly; SameSite=Lax");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

async fn pay(request: Request<Incoming>) -> Result<Response<SampleBody>> {
    let body = request
        .into_body()
        .collect()
        .await
        .context("reading the payment")?
        .to_bytes();
    let order: serde_json::Value =
        serde_json::from_slice(&body).context("the payment is not JSON")?;
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({"paid": true, "order": order}),
    ))
}

fn text(status: StatusCode, body: &str) -> Response<SampleBody> {
    bytes_response(
        status,
        "text/plain; charset=utf-8",
        Bytes::copy_from_slice(body.as_bytes()),
    )
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<SampleBody> {
    bytes_response(status, "application/json", Bytes::from(value.to_string()))
}

fn bytes_response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<SampleBody> {
    let mut response = Response::new(Full::new(body).map_err(BoxError::from).boxed_unsync());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The sample's `Capture` service: acks every exchange, stores nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct SampleCapture;

#[tapedeck_proto::tonic::async_trait]
impl Capture for SampleCapture {
    async fn push(
        &self,
        request: tapedeck_proto::tonic::Request<ExchangeBatch>,
    ) -> Result<tapedeck_proto::tonic::Response<PushAck>, tapedeck_proto::tonic::Status> {
        let accepted = request.get_ref().exchanges.len() as u64;
        Ok(tapedeck_proto::tonic::Response::new(PushAck { accepted }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_is_deterministic_and_not_periodic_in_256() {
        let data = pattern(1024);
        assert_eq!(data, pattern(1024));
        assert_ne!(data[..256], data[256..512]);
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
