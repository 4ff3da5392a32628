//! Serving: one listener for every recorded host (HTTP/1.1 and HTTP/2 with prior knowledge,
//! gRPC over either), the admin listener, and clean shutdown.
//!
//! h2c by `Upgrade: h2c` is not switched to: the request is answered over HTTP/1.1, which RFC
//! 9113 §3.2 allows (a server may ignore the upgrade); clients that want HTTP/2 in cleartext
//! use prior knowledge, as gRPC clients and Envoy do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tapedeck_analyzer::replay::jwt::JwtKey;
use tapedeck_analyzer::template::endpoint;
use tapedeck_proto::Header;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::args::{Fallback, OnMiss, ServeArgs};
use crate::chaos::{self, Chaos, Fault, Plan};
use crate::consistency::Consistency;
use crate::explain::{Explain, Line, RequestInfo, Served};
use crate::fields;
use crate::matcher::{Decision, LiveFields, LiveRequest, MatchKind, Matcher, MissReason, Session};
use crate::metrics::{Metrics, inc};
use crate::store::{Recording, Store, header_map, served_headers, to_map};
use crate::{Error, Result};

pub use crate::store::{RECORDING_HEADER, TRUNCATED_HEADER};
/// The response header naming an injected fault.
pub const FAULT_HEADER: &str = "x-tapedeck-fault";
/// The B3 trace id header (carries the generator's trace id when a service copies it there).
pub const B3_TRACE_ID_HEADER: &str = "x-b3-traceid";
/// How long shutdown waits for requests in flight.
pub const DRAIN: Duration = Duration::from_secs(10);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type RespBody = BoxBody<Bytes, BoxError>;

/// The error a handler returns to reset the stream (HTTP/2 RST_STREAM, HTTP/1.1 close).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Reset(&'static str);

struct State {
    matcher: Matcher,
    chaos: Chaos,
    consistency: Consistency,
    explain: Explain,
    metrics: Arc<Metrics>,
    seq: AtomicU64,
    on_miss: OnMiss,
    passthrough_address: Option<String>,
    latency_factor: f64,
    max_body_bytes: usize,
    shutdown: watch::Receiver<bool>,
    client_h1: Client<HttpConnector, Full<Bytes>>,
    client_h2: Client<HttpConnector, Full<Bytes>>,
    ready: AtomicBool,
}

/// A running responder.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    explain: Explain,
    explain_task: Option<tokio::task::JoinHandle<()>>,
    state: Arc<StateHandle>,
}

/// Keeps the state's readiness reachable from [`Running`] without exposing it.
struct StateHandle(Arc<State>);

impl std::fmt::Debug for StateHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("State")
    }
}

impl Running {
    /// The serving address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin address, when there is an admin listener.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The seed of the chaos draws.
    pub fn seed(&self) -> u64 {
        self.state.0.chaos.seed
    }

    /// Stops accepting, lets requests in flight finish (at most [`DRAIN`]; hanging requests are
    /// reset), and flushes the explain log.
    pub async fn stop(mut self) {
        self.state.0.ready.store(false, Ordering::Relaxed);
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.explain.finish().await;
        if let Some(task) = self.explain_task.take() {
            let _ = task.await;
        }
    }
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Loads the snapshot and starts serving on `listener` (and the admin endpoints on `admin`).
pub async fn serve(
    args: ServeArgs,
    listener: TcpListener,
    admin: Option<TcpListener>,
) -> Result<Running> {
    let started_ns = unix_ns();
    let snapshot = args.snapshot.clone().ok_or(Error::Flag {
        flag: "--snapshot",
        message: "is required".to_owned(),
    })?;
    let store = Store::load(&snapshot)?;
    let seed = args.seed.unwrap_or(started_ns ^ 0x7461_7065_6465_636b);
    let mut rules = Vec::new();
    let mut rules_source = std::path::PathBuf::from("--chaos");
    if let Some(path) = &args.chaos_rules {
        rules = chaos::read_rules(path)?;
        rules_source = path.clone();
    }
    for flag in &args.chaos {
        rules.push(chaos::parse_flag(flag).map_err(|message| Error::Rules {
            path: "--chaos".into(),
            message,
        })?);
    }
    let chaos = Chaos::new(rules, seed, &store, &rules_source)?;
    let replay_start_ns = match &args.replay_start {
        Some(text) => tapedeck_har::time::parse(text).map_err(|message| Error::Flag {
            flag: "--replay-start",
            message,
        })?,
        None => started_ns,
    };
    let offset_ns = (i128::from(replay_start_ns) - i128::from(store.window_from_ns))
        .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    let jwt_key = match &args.jwt_key {
        Some(spec) => Some(JwtKey::parse_spec(spec).map_err(|e| Error::Flag {
            flag: "--jwt-key",
            message: e.to_string(),
        })?),
        None => None,
    };
    let metrics = Arc::new(Metrics::default());
    metrics
        .recordings
        .store(store.recordings.len() as u64, Ordering::Relaxed);
    let (explain, explain_task) = match &args.explain {
        Some(path) => {
            let start = serde_json::json!({
                "event": "start",
                "unix_ms": started_ns / 1_000_000,
                "snapshot": store.id,
                "recordings": store.recordings.len(),
                "seed": seed,
                "replay_offset_ns": offset_ns,
                "fallback": format!("{:?}", args.fallback).to_lowercase(),
            });
            let (explain, task) = Explain::open(path, &start, metrics.clone())?;
            (explain, Some(task))
        }
        None => (Explain::disabled(metrics.clone()), None),
    };
    let matcher = Matcher::new(
        store,
        args.redaction_key.as_deref(),
        (args.fallback == Fallback::Closest).then_some(args.fallback_min_score),
    )
    .with_descriptors(crate::fields::Descriptors::load(&args.descriptors)?);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let client_h1 = Client::builder(TokioExecutor::new()).build_http();
    let client_h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let state = Arc::new(State {
        matcher,
        chaos,
        consistency: Consistency { offset_ns, jwt_key },
        explain: explain.clone(),
        metrics: metrics.clone(),
        seq: AtomicU64::new(0),
        on_miss: args.on_miss,
        passthrough_address: args.passthrough_address.clone(),
        latency_factor: args.latency.factor(),
        max_body_bytes: args.max_body_bytes,
        shutdown: shutdown_rx.clone(),
        client_h1,
        client_h2,
        ready: AtomicBool::new(true),
    });
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        what: "--listen",
        addr: args.listen.clone(),
        source,
    })?;
    let mut tasks = JoinSet::new();
    {
        let state = state.clone();
        let shutdown = shutdown_rx.clone();
        tasks.spawn(accept_loop(listener, shutdown, move |req| {
            let state = state.clone();
            async move { handle(state, req).await }
        }));
    }
    let admin_addr = match admin {
        Some(admin) => {
            let admin_addr = admin.local_addr().ok();
            let state = state.clone();
            tasks.spawn(accept_loop(admin, shutdown_rx.clone(), move |req| {
                let state = state.clone();
                async move { Ok::<_, BoxError>(admin_response(&state, &req)) }
            }));
            admin_addr
        }
        None => None,
    };
    Ok(Running {
        addr,
        admin_addr,
        metrics,
        shutdown: shutdown_tx,
        tasks,
        explain,
        explain_task,
        state: Arc::new(StateHandle(state)),
    })
}

/// Resolves once shutdown is asked for (or the sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn accept_loop<F, Fut>(listener: TcpListener, mut shutdown: watch::Receiver<bool>, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = std::result::Result<Response<RespBody>, BoxError>>
        + Send
        + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "Accept failed.");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let mut shutdown = shutdown.clone();
                connections.spawn(async move {
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let service = service_fn(&handler);
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(connection);
                    tokio::select! {
                        _ = connection.as_mut() => {}
                        _ = stopped(&mut shutdown) => {
                            connection.as_mut().graceful_shutdown();
                            let _ = connection.await;
                        }
                    }
                });
            }
            _ = stopped(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN, drain).await.is_err() {
        tracing::warn!("Requests still in flight after the drain time; closing them.");
        connections.abort_all();
    }
}

fn admin_response(state: &State, req: &Request<Incoming>) -> Response<RespBody> {
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            state.metrics.render(),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" if state.ready.load(Ordering::Relaxed) => {
            (StatusCode::OK, "text/plain", "ready\n".to_owned())
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "shutting down\n".to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: /metrics, /healthz, /readyz\n".to_owned(),
        ),
    };
    let mut response = Response::new(full(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn full(body: Bytes) -> RespBody {
    Full::new(body).map_err(|never| match never {}).boxed()
}

/// How the body goes out.
#[derive(Debug, Clone, Copy)]
enum Delivery {
    /// At once.
    Whole,
    /// After a delay (recorded time from headers to the end).
    After(Duration),
    /// In pieces over a duration.
    Slow(Duration),
    /// Only this many bytes, then the stream is cut.
    Cut(usize),
}

fn body_of(body: Bytes, trailers: Option<HeaderMap>, delivery: Delivery) -> RespBody {
    match (delivery, trailers) {
        (Delivery::Whole, None) => full(body),
        (Delivery::Whole, Some(trailers)) => {
            let mut frames = Vec::new();
            if !body.is_empty() {
                frames.push(Ok(Frame::data(body)));
            }
            frames.push(Ok(Frame::trailers(trailers)));
            StreamBody::new(futures::stream::iter(frames)).boxed()
        }
        (delivery, trailers) => {
            let (tx, rx) = mpsc::channel::<std::result::Result<Frame<Bytes>, BoxError>>(4);
            tokio::spawn(async move {
                match delivery {
                    Delivery::After(delay) => {
                        tokio::time::sleep(delay).await;
                        if !body.is_empty() && tx.send(Ok(Frame::data(body))).await.is_err() {
                            return;
                        }
                    }
                    Delivery::Slow(duration) => {
                        let pieces = body.len().clamp(1, 16);
                        let size = body.len().div_ceil(pieces).max(1);
                        let step = duration / pieces as u32;
                        let mut at = 0;
                        while at < body.len() {
                            let end = (at + size).min(body.len());
                            if tx.send(Ok(Frame::data(body.slice(at..end)))).await.is_err() {
                                return;
                            }
                            at = end;
                            if at < body.len() {
                                tokio::time::sleep(step).await;
                            }
                        }
                        if body.is_empty() {
                            tokio::time::sleep(duration).await;
                        }
                    }
                    Delivery::Cut(keep) => {
                        let keep = keep.min(body.len());
                        if keep > 0 {
                            let _ = tx.send(Ok(Frame::data(body.slice(..keep)))).await;
                        }
                        let _ = tx
                            .send(Err(Box::new(Reset("body truncated by a chaos fault"))))
                            .await;
                        return;
                    }
                    Delivery::Whole => {}
                }
                if let Some(trailers) = trailers {
                    let _ = tx.send(Ok(Frame::trailers(trailers))).await;
                }
            });
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|frame| (frame, rx))
            });
            StreamBody::new(stream).boxed()
        }
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<RespBody> {
    let mut response = Response::new(full(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn grpc_status(headers: &HeaderMap, trailers: Option<&HeaderMap>) -> Option<String> {
    trailers
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// One request as the server decided it: what it names, and the matcher's decision.
#[derive(Debug)]
pub struct Decided {
    /// The request's authority (the URI's, else the `host` header; empty when neither).
    pub authority: String,
    /// The method.
    pub method: String,
    /// The path and query (`/` when the URI has none).
    pub path: String,
    /// `METHOD /template` ([`tapedeck_analyzer::template::endpoint`]).
    pub endpoint: String,
    /// Whether the request is gRPC (by its content type).
    pub grpc: bool,
    /// The session its trace headers name.
    pub session: Session,
    /// What the matcher decided.
    pub decision: Decision,
}

/// Decides one received request exactly as the server does before it serves anything: the
/// authority, path and method from `parts`, the request's fields (`fields::flatten` over its
/// headers and `body`; `over_limit` when the body was larger than `--max-body-bytes` and was
/// not kept), its endpoint and session, then [`Matcher::decide`]. Faults, consistency edits
/// and the response come after, in the server.
pub fn decide(
    matcher: &Matcher,
    parts: &http::request::Parts,
    body: &[u8],
    over_limit: bool,
) -> Decided {
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            parts
                .headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let method = parts.method.as_str().to_owned();
    let headers: Vec<Header> = parts
        .headers
        .iter()
        .map(|(name, value)| Header {
            name: name.as_str().to_owned(),
            value: value.as_bytes().to_vec(),
        })
        .collect();
    let grpc = fields::is_grpc(&headers);
    let mut live_fields: LiveFields = HashMap::new();
    for field in fields::flatten(&path, &headers, body, over_limit) {
        live_fields
            .entry(field.key)
            .or_default()
            .push((field.value, field.number));
    }
    let endpoint = endpoint(&method, &path);
    let header_text = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let session = Session::of(
        header_text(tapedeck_proto::TRACEPARENT_HEADER),
        header_text(B3_TRACE_ID_HEADER),
        header_text(tapedeck_proto::REQUEST_ID_HEADER),
    );
    let decision = matcher.decide(&LiveRequest {
        authority: &authority,
        method: &method,
        path: &path,
        endpoint: &endpoint,
        fields: &live_fields,
        session: &session,
    });
    Decided {
        authority,
        method,
        path,
        endpoint,
        grpc,
        session,
        decision,
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> std::result::Result<Response<RespBody>, BoxError> {
    let arrived = Instant::now();
    let seq = state.seq.fetch_add(1, Ordering::Relaxed);
    inc(&state.metrics.requests);
    let (parts, body) = req.into_parts();
    let (body, over_limit) = match Limited::new(body, state.max_body_bytes).collect().await {
        Ok(collected) => (collected.to_bytes(), false),
        Err(error) => {
            if error.is::<http_body_util::LengthLimitError>() {
                (Bytes::new(), true)
            } else {
                return Err(error);
            }
        }
    };
    let Decided {
        authority,
        method,
        path,
        endpoint,
        grpc,
        session,
        decision,
    } = decide(&state.matcher, &parts, &body, over_limit);
    let store = &state.matcher.store;
    let host = store.host(&authority);
    let plan = if state.chaos.is_empty() {
        Plan::default()
    } else {
        let recorded: Vec<&Recording> = host
            .and_then(|h| store.bucket(h, &endpoint))
            .map(|b| {
                b.recordings
                    .iter()
                    .map(|i| &store.recordings[*i as usize])
                    .collect()
            })
            .unwrap_or_default();
        state.chaos.plan(seq, host, &endpoint, &method, &recorded)
    };
    for fired in &plan.fired {
        state.metrics.fault(fired.fault.kind());
    }
    let mut line = state.explain.enabled().then(|| Line {
        event: "request",
        seq,
        unix_ms: unix_ns() / 1_000_000,
        request: RequestInfo {
            method: method.clone(),
            authority: authority.clone(),
            path: path.clone(),
            endpoint: endpoint.clone(),
            version: format!("{:?}", parts.version),
            grpc,
        },
        session: session.clone(),
        host: host.map(|h| store.hosts[h].authority.clone()),
        decision: "miss",
        kind: None,
        reason: None,
        recording: None,
        score: None,
        sequence: None,
        caused_by: None,
        differing: Vec::new(),
        wildcards: Vec::new(),
        notes: Vec::new(),
        candidates: Vec::new(),
        others: Vec::new(),
        faults: plan.fired.clone(),
        served: Served::default(),
    });
    let mut served = Served::default();
    let outcome = respond(
        &state,
        decision,
        &plan,
        &mut served,
        line.as_mut(),
        &parts,
        &authority,
        &path,
        body,
    )
    .await;
    state.metrics.observe(arrived.elapsed().as_secs_f64());
    if let Some(mut line) = line {
        line.served = served;
        state.explain.write(&line);
    }
    outcome
}

#[allow(clippy::too_many_arguments)] // One request's pieces, passed once.
async fn respond(
    state: &State,
    decision: Decision,
    plan: &Plan,
    served: &mut Served,
    mut line: Option<&mut Line>,
    parts: &http::request::Parts,
    authority: &str,
    path: &str,
    request_body: Bytes,
) -> std::result::Result<Response<RespBody>, BoxError> {
    let store = &state.matcher.store;
    match &decision {
        Decision::Matched { kind, .. } => inc(&state.metrics.matches[match kind {
            MatchKind::Exact => 0,
            MatchKind::Fallback => 1,
        }]),
        Decision::Miss { reason, .. } => inc(&state.metrics.misses[match reason {
            MissReason::UnknownHost => 0,
            MissReason::UnknownEndpoint => 1,
            MissReason::NoMatch => 2,
        }]),
    }
    // Faults that replace the response come before anything is served.
    if !plan.latency.is_zero() {
        tokio::time::sleep(plan.latency).await;
    }
    match &plan.action {
        Some(Fault::Reset {}) => {
            served.reset = true;
            note_decision(&decision, state, line.as_deref_mut());
            return Err(Box::new(Reset("connection reset by a chaos fault")));
        }
        Some(Fault::Hang {}) => {
            note_decision(&decision, state, line.as_deref_mut());
            served.reset = true;
            let mut shutdown = state.shutdown.clone();
            stopped(&mut shutdown).await;
            return Err(Box::new(Reset("hanging request ended by shutdown")));
        }
        Some(Fault::Status { status }) => {
            note_decision(&decision, state, line.as_deref_mut());
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            served.status = Some(status.as_u16());
            let mut response = json_response(
                status,
                &serde_json::json!({"error": "tapedeck chaos fault", "status": status.as_u16()}),
            );
            response
                .headers_mut()
                .insert(FAULT_HEADER, HeaderValue::from_static("status"));
            return Ok(response);
        }
        Some(Fault::GrpcStatus { code, message }) => {
            note_decision(&decision, state, line.as_deref_mut());
            served.status = Some(200);
            served.grpc_status = Some(code.to_string());
            let mut response = Response::new(full(Bytes::new()));
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            headers.insert("grpc-status", HeaderValue::from(*code));
            let message = message.as_deref().unwrap_or("tapedeck chaos fault");
            if let Ok(value) = HeaderValue::from_str(message) {
                headers.insert("grpc-message", value);
            }
            headers.insert(FAULT_HEADER, HeaderValue::from_static("grpc_status"));
            return Ok(response);
        }
        _ => {}
    }
    let (chosen, kind) = match decision {
        Decision::Matched {
            kind,
            chosen,
            sequence,
            others,
            caused_by,
        } => {
            if let Some(line) = line.as_deref_mut() {
                line.decision = "matched";
                line.kind = Some(match kind {
                    MatchKind::Exact => "exact",
                    MatchKind::Fallback => "fallback",
                });
                line.recording = Some(chosen.recording.clone());
                line.score = Some(chosen.score);
                line.sequence = Some([sequence.0, sequence.1 as u64]);
                line.caused_by = caused_by;
                line.differing = chosen.differing.clone();
                line.wildcards = chosen.wildcards.clone();
                line.notes = chosen.notes.clone();
                line.others = others;
            }
            (chosen, kind)
        }
        Decision::Miss { reason, candidates } => {
            let reason_word = match reason {
                MissReason::UnknownHost => "unknown_host",
                MissReason::UnknownEndpoint => "unknown_endpoint",
                MissReason::NoMatch => "no_match",
            };
            if let Some(line) = line.as_deref_mut() {
                line.reason = Some(reason_word);
                line.candidates = candidates.clone();
            }
            if state.on_miss == OnMiss::Passthrough {
                if let Some(line) = line {
                    line.decision = "passthrough";
                }
                inc(&state.metrics.passthrough);
                return passthrough(state, parts, authority, path, request_body, served).await;
            }
            let status = match state.on_miss {
                OnMiss::BadGateway => StatusCode::BAD_GATEWAY,
                _ => StatusCode::NOT_FOUND,
            };
            served.status = Some(status.as_u16());
            let body = serde_json::json!({
                "error": "no recording matches this request",
                "reason": reason_word,
                "request": {"method": parts.method.as_str(), "authority": authority, "path": path},
                "snapshot": store.id,
                "candidates": candidates,
            });
            return Ok(json_response(status, &body));
        }
    };
    let _ = kind;
    let rec = state.matcher.recording(&chosen);
    if rec.status == 0 {
        inc(&state.metrics.resets);
        served.reset = true;
        return Err(Box::new(Reset("status 0 recorded: no response")));
    }
    let edited = state.consistency.edit(store, rec, &chosen.substitutions);
    let body = match &edited {
        Some(e) => e.body.clone(),
        None => rec.body.clone(),
    };
    let mut map = match &edited {
        Some(e) => {
            served.shifted = e.shifted;
            served.resigned = e.resigned;
            served.substituted = e.substituted;
            served_headers(
                &store.id,
                rec.line,
                rec.status,
                &e.headers,
                e.body.len(),
                rec.served_trailers.is_some(),
                rec.truncated.then_some(rec.size),
            )
        }
        None => to_map(&rec.served_headers),
    };
    let trailers = rec.served_trailers.clone();
    let status = StatusCode::from_u16(rec.status as u16).unwrap_or(StatusCode::BAD_GATEWAY);
    if rec.truncated {
        inc(&state.metrics.truncated);
        served.truncated = true;
    }
    let full_len = body.len();
    let mut delivery = Delivery::Whole;
    let factor = state.latency_factor;
    let headers_ns = if rec.headers_ns > 0 {
        rec.headers_ns
    } else {
        rec.duration_ns
    };
    let to_headers = Duration::from_nanos((headers_ns as f64 * factor) as u64);
    let to_end =
        Duration::from_nanos((rec.duration_ns.saturating_sub(headers_ns) as f64 * factor) as u64);
    if !to_end.is_zero() {
        delivery = Delivery::After(to_end);
    }
    match &plan.action {
        Some(Fault::SlowBody { duration_ms }) => {
            delivery = Delivery::Slow(Duration::from_millis(*duration_ms));
            map.insert(FAULT_HEADER, HeaderValue::from_static("slow_body"));
        }
        Some(Fault::Truncate { fraction }) => {
            delivery = Delivery::Cut((full_len as f64 * fraction) as usize);
            map.insert(FAULT_HEADER, HeaderValue::from_static("truncate"));
        }
        _ => {}
    }
    served.status = Some(status.as_u16());
    served.grpc_status = grpc_status(&map, trailers.as_ref());
    served.body_bytes = match delivery {
        Delivery::Cut(n) => n.min(full_len),
        _ => full_len,
    };
    served.latency_ms = to_headers.as_secs_f64() * 1000.0;
    if !to_headers.is_zero() {
        tokio::time::sleep(to_headers).await;
    }
    if !plan.latency.is_zero() && !map.contains_key(FAULT_HEADER) {
        map.insert(FAULT_HEADER, HeaderValue::from_static("latency"));
    }
    let mut response = Response::new(body_of(body, trailers, delivery));
    *response.status_mut() = status;
    *response.headers_mut() = map;
    Ok(response)
}

/// Fills the line's decision for a request a fault answered.
fn note_decision(decision: &Decision, state: &State, line: Option<&mut Line>) {
    let Some(line) = line else { return };
    match decision {
        Decision::Matched { kind, chosen, .. } => {
            line.decision = "matched";
            line.kind = Some(match kind {
                MatchKind::Exact => "exact",
                MatchKind::Fallback => "fallback",
            });
            line.recording = Some(chosen.recording.clone());
            line.score = Some(chosen.score);
        }
        Decision::Miss { candidates, .. } => {
            line.candidates = candidates.clone();
        }
    }
    let _ = state;
}

async fn passthrough(
    state: &State,
    parts: &http::request::Parts,
    authority: &str,
    path: &str,
    body: Bytes,
    served: &mut Served,
) -> std::result::Result<Response<RespBody>, BoxError> {
    let target = state
        .passthrough_address
        .clone()
        .unwrap_or_else(|| authority.to_owned());
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(format!("http://{target}{path}"));
    if let Some(headers) = builder.headers_mut() {
        *headers = header_map(
            &parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect::<Vec<_>>(),
            true,
        );
        if let Ok(value) = HeaderValue::from_str(authority) {
            headers.insert(HOST, value);
        }
    }
    let request = builder.body(Full::new(body))?;
    let client = if parts.version == Version::HTTP_2 {
        &state.client_h2
    } else {
        &state.client_h1
    };
    match client.request(request).await {
        Ok(response) => {
            served.status = Some(response.status().as_u16());
            Ok(response.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed()))
        }
        Err(error) => {
            served.status = Some(502);
            Ok(json_response(
                StatusCode::BAD_GATEWAY,
                &serde_json::json!({
                    "error": format!("passthrough to {target} failed: {error}"),
                }),
            ))
        }
    }
}
