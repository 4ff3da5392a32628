//! The demo's sample system, on loopback: `orders` (a JWT-authenticated API that creates orders
//! with server-minted ids and timestamps and, per order, calls `payments` and `mail` through an
//! HTTP proxy), `payments` and `mail`; and a synthetic [`users`] population that logs in,
//! creates and reads orders.
//!
//! `orders` comes in two versions: [`Version::V1`], and [`Version::V2`] with two planted
//! regressions: part of its work on `POST /orders` runs under one process-wide lock (slower
//! under concurrency only), and its `status` field says `PAID` where v1 says `paid`.
//!
//! `orders` routes:
//! - `POST /login` `{"user", "password"}` → `{"token", "user", "expires_at"}` (HS256 JWT signed
//!   with [`JWT_SECRET`]; the password of user `u007` is `pw-u007`, see [`password`]);
//! - `POST /orders` (Bearer) `{"items": [{"sku", "qty"}]}` → 201 with the order;
//! - `GET /orders/{id}` (Bearer) → the order; `GET /orders` (Bearer) → the user's orders.

pub mod users;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

/// The HS256 secret `orders` signs and checks its tokens with (a demo secret, not a real one).
pub const JWT_SECRET: &str = "tapedeck-demo-jwt-secret";
/// How long a token is valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// The authority `orders` calls `payments` at.
pub const PAYMENTS_HOST: &str = "payments.shop.svc";
/// The authority `orders` calls `mail` at.
pub const MAIL_HOST: &str = "mail.shop.svc";
/// The authority users call `orders` at.
pub const ORDERS_HOST: &str = "orders.shop.svc";
/// The catalogue: SKU and unit price in cents.
pub const CATALOGUE: [(&str, u64); 5] = [
    ("book-rust", 3990),
    ("mug-ferris", 1250),
    ("sticker-pack", 450),
    ("hoodie-crab", 5400),
    ("poster-tokio", 1800),
];
/// How long `orders` spends pricing an order (v2 spends it under a process-wide lock, so v2
/// prices at most 50 orders a second: the demo's 10× replay asks for more while a copy runs).
pub const PRICING: Duration = Duration::from_millis(20);

/// The demo password of `user`.
pub fn password(user: &str) -> String {
    format!("pw-{user}")
}

/// Which build of `orders`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The baseline.
    V1,
    /// The candidate with the planted regressions.
    V2,
}

impl Version {
    fn status_paid(self) -> &'static str {
        match self {
            Version::V1 => "paid",
            Version::V2 => "PAID",
        }
    }
}

/// How `orders` reaches its dependencies: every call goes to the HTTP proxy `proxy` (absolute
/// URL in the request line, as `HTTP_PROXY` makes clients do), or straight to the host named
/// in the URL when there is no proxy.
#[derive(Debug, Clone)]
pub struct OrdersConfig {
    /// The build.
    pub version: Version,
    /// The HTTP proxy (`HTTP_PROXY`); `None` connects to the URL's host directly.
    pub proxy: Option<SocketAddr>,
    /// The base URL of `payments`.
    pub payments: String,
    /// The base URL of `mail`.
    pub mail: String,
}

impl OrdersConfig {
    /// `version` calling `http://payments.shop.svc` and `http://mail.shop.svc` through `proxy`.
    pub fn new(version: Version, proxy: Option<SocketAddr>) -> Self {
        Self {
            version,
            proxy,
            payments: format!("http://{PAYMENTS_HOST}"),
            mail: format!("http://{MAIL_HOST}"),
        }
    }

    /// The proxy of the `HTTP_PROXY` (or `http_proxy`) environment variable, if any.
    pub fn proxy_from_env() -> Option<SocketAddr> {
        let value = std::env::var("HTTP_PROXY")
            .or_else(|_| std::env::var("http_proxy"))
            .ok()?;
        let value = value
            .trim()
            .trim_start_matches("http://")
            .trim_end_matches('/');
        value.parse().ok()
    }
}

/// A response body of the shop's services.
type Body = Full<Bytes>;

/// Serves `handler` on `listener` until `shutdown`; open connections are closed then.
async fn serve_with<H, F>(
    what: &'static str,
    listener: TcpListener,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> Result<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, what, "Failed to accept a connection.");
                    continue;
                }
            },
        };
        let handler = handler.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(request).await) }
            });
            if let Err(error) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, what, "Connection ended with an error.");
            }
        });
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
    Ok(())
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({"error": message}))
}

async fn read_json(request: Request<Incoming>) -> Result<(http::request::Parts, Value)> {
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await.context("reading the body")?.to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).context("the body is not JSON")?
    };
    Ok((parts, value))
}

/// A small, fast, seedable generator (SplitMix64) for ids and the population's choices.
#[derive(Debug)]
pub struct Rng(AtomicU64);

impl Rng {
    /// Seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(AtomicU64::new(seed))
    }

    /// Seeded from the clock.
    pub fn from_clock() -> Self {
        Rng::new(unix_nanos() ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `prefix` and 16 random hex digits: `ord_3f9a0c2b7d1e4a55`.
    pub fn id(&self, prefix: &str) -> String {
        format!("{prefix}_{:016x}", self.next_u64())
    }

    /// A random UUID (version 4 layout).
    pub fn uuid(&self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// RFC 3339 UTC with milliseconds: `2026-11-29T23:41:07.123Z`.
pub fn rfc3339(unix_nanos: u64) -> String {
    let secs = unix_nanos / 1_000_000_000;
    let millis = (unix_nanos / 1_000_000) % 1000;
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rest / 3600,
        (rest / 60) % 60,
        rest % 60
    )
}

/// Signs `claims` as an HS256 JWT with `secret`.
pub fn sign_jwt(claims: &Value, secret: &[u8]) -> String {
    use hmac::Mac as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signing_input = format!(
        "{}.{}",
        b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64.encode(claims.to_string())
    );
    // HMAC takes keys of any length.
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        b64.encode(mac.finalize().into_bytes())
    )
}

/// Checks an HS256 JWT's signature and `exp`; returns its claims.
pub fn verify_jwt(token: &str, secret: &[u8]) -> Result<Value> {
    use hmac::Mac as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (signing_input, signature) = token.rsplit_once('.').context("not a JWT")?;
    let (header, claims) = signing_input.split_once('.').context("not a JWT")?;
    let header: Value = serde_json::from_slice(&b64.decode(header).context("JWT header")?)?;
    if header["alg"] != "HS256" {
        bail!("JWT alg {} is not HS256", header["alg"]);
    }
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(signing_input.as_bytes());
    mac.verify_slice(&b64.decode(signature).context("JWT signature")?)
        .map_err(|_| anyhow::anyhow!("bad JWT signature"))?;
    let claims: Value = serde_json::from_slice(&b64.decode(claims).context("JWT claims")?)?;
    let now = unix_nanos() / 1_000_000_000;
    if claims["exp"].as_u64().is_none_or(|exp| exp < now) {
        bail!("JWT expired");
    }
    Ok(claims)
}

/// A client for the dependencies: through an HTTP proxy (absolute-form request lines) or
/// straight to the host, with HTTP/1.1 connections kept and reused.
#[derive(Debug, Clone)]
pub struct ProxyClient {
    proxy: Option<SocketAddr>,
    idle:
        Arc<std::sync::Mutex<HashMap<String, Vec<hyper::client::conn::http1::SendRequest<Body>>>>>,
}

impl ProxyClient {
    /// A client sending every request through `proxy` (or directly, without one).
    pub fn new(proxy: Option<SocketAddr>) -> Self {
        Self {
            proxy,
            idle: Arc::default(),
        }
    }

    /// POSTs `body` as JSON to `url`, passing on `headers`; returns the status and JSON answer.
    pub async fn post_json(
        &self,
        url: &str,
        body: &Value,
        headers: &[(&str, String)],
    ) -> Result<(StatusCode, Value)> {
        let uri: http::Uri = url.parse().with_context(|| format!("{url} is not a URL"))?;
        let authority = uri
            .authority()
            .with_context(|| format!("{url} has no host"))?
            .to_string();
        let target = match self.proxy {
            Some(proxy) => proxy.to_string(),
            None if authority.contains(':') => authority.clone(),
            None => format!("{authority}:80"),
        };
        let mut request = Request::post(match self.proxy {
            // Absolute form, as clients speak to an HTTP proxy.
            Some(_) => uri.clone(),
            None => uri.path_and_query().map_or("/", |p| p.as_str()).parse()?,
        })
        .header(header::HOST, &authority)
        .header(header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request.body(Full::new(Bytes::from(body.to_string())))?;
        let mut sender = self.checkout(&target).await?;
        let response = tokio::time::timeout(Duration::from_secs(30), sender.send_request(request))
            .await
            .with_context(|| format!("POST {url} timed out"))?
            .with_context(|| format!("POST {url} via {target}"))?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !sender.is_closed()
            && let Ok(mut idle) = self.idle.lock()
        {
            idle.entry(target).or_default().push(sender);
        }
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }

    async fn checkout(
        &self,
        target: &str,
    ) -> Result<hyper::client::conn::http1::SendRequest<Body>> {
        loop {
            let idle = self
                .idle
                .lock()
                .ok()
                .and_then(|mut idle| idle.get_mut(target).and_then(Vec::pop));
            match idle {
                Some(mut sender) => {
                    if sender.ready().await.is_ok() {
                        return Ok(sender);
                    }
                }
                None => break,
            }
        }
        let stream = TcpStream::connect(target)
            .await
            .with_context(|| format!("connecting to {target}"))?;
        stream.set_nodelay(true).ok();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP/1.1 handshake with {target}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

#[derive(Debug)]
struct Orders {
    config: OrdersConfig,
    client: ProxyClient,
    rng: Rng,
    /// The orders. A plain (blocking) mutex, held only for a lookup or an insert and never
    /// across an `.await`: a fair async mutex here hands the lock from waiter to waiter through
    /// the runtime's run queue, so on a busy runtime every `GET /orders/{id}` queued behind the
    /// others for one scheduling round each (a lock convoy), and the instance that fell into it
    /// stayed slower for the rest of the run (issue 11, docs/local-mode.md).
    store: std::sync::Mutex<Store>,
    /// v2's regression: the pricing step runs under this one lock.
    pricing: Mutex<()>,
}

/// Serves `orders` on `listener` until `shutdown`.
pub async fn serve_orders(
    listener: TcpListener,
    config: OrdersConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let orders = Arc::new(Orders {
        client: ProxyClient::new(config.proxy),
        config,
        rng: Rng::from_clock(),
        store: std::sync::Mutex::default(),
        pricing: Mutex::new(()),
    });
    serve_with(
        "orders",
        listener,
        move |request| {
            let orders = orders.clone();
            async move { orders.handle(request).await }
        },
        shutdown,
    )
    .await
}

/// The orders `orders` created, by id and by user (so listing one user's orders does not scan
/// everyone's).
#[derive(Debug, Default)]
struct Store {
    by_id: HashMap<String, Value>,
    by_user: HashMap<String, Vec<String>>,
}

impl Store {
    fn insert(&mut self, user: &str, id: String, order: Value) {
        self.by_user
            .entry(user.to_owned())
            .or_default()
            .push(id.clone());
        self.by_id.insert(id, order);
    }
}

impl Orders {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let result = match (&method, path.as_str()) {
            (&Method::POST, "/login") => self.login(request).await,
            (&Method::POST, "/orders") => self.create(request).await,
            (&Method::GET, "/orders") => self.list(request).await,
            (&Method::GET, p) if p.starts_with("/orders/") => self.get(request).await,
            (&Method::GET, "/healthz") => Ok(json_response(StatusCode::OK, &json!({"ok": true}))),
            _ => Ok(error(StatusCode::NOT_FOUND, "no such route")),
        };
        result.unwrap_or_else(|e| {
            tracing::debug!(error = format!("{e:#}"), %method, %path, "orders request failed");
            error(StatusCode::BAD_REQUEST, &format!("{e:#}"))
        })
    }

    fn user(&self, parts: &http::request::Parts) -> Option<String> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?;
        let claims = verify_jwt(token, JWT_SECRET.as_bytes()).ok()?;
        claims["sub"].as_str().map(str::to_owned)
    }

    async fn login(&self, request: Request<Incoming>) -> Result<Response<Body>> {
        let (_, body) = read_json(request).await?;
        let user = body["user"].as_str().unwrap_or_default();
        if user.is_empty() || body["password"].as_str() != Some(password(user).as_str()) {
            return Ok(error(StatusCode::UNAUTHORIZED, "wrong user or password"));
        }
        let now = unix_nanos();
        let iat = now / 1_000_000_000;
        let exp = iat + TOKEN_LIFETIME.as_secs();
        let token = sign_jwt(
            &json!({"sub": user, "iat": iat, "exp": exp, "iss": "orders.shop.svc"}),
            JWT_SECRET.as_bytes(),
        );
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "token": token,
                "user": user,
                "expires_at": rfc3339(now + TOKEN_LIFETIME.as_nanos() as u64),
            }),
        ))
    }

    async fn create(&self, request: Request<Incoming>) -> Result<Response<Body>> {
        let started = Instant::now();
        let (parts, body) = read_json(request).await?;
        let Some(user) = self.user(&parts) else {
            return Ok(error(StatusCode::UNAUTHORIZED, "missing or invalid token"));
        };
        let items = body["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            return Ok(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "an order needs items",
            ));
        }
        let mut total = 0u64;
        for item in &items {
            let sku = item["sku"].as_str().unwrap_or_default();
            let Some((_, price)) = CATALOGUE.iter().find(|(s, _)| *s == sku) else {
                return Ok(error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("unknown sku {sku:?}"),
                ));
            };
            total += price * item["qty"].as_u64().unwrap_or(1).max(1);
        }
        // Pricing: v1 prices orders side by side; v2 (the regression) under one lock.
        match self.config.version {
            Version::V1 => tokio::time::sleep(PRICING).await,
            Version::V2 => {
                let _guard = self.pricing.lock().await;
                tokio::time::sleep(PRICING).await;
            }
        }
        let id = self.rng.id("ord");
        let created = unix_nanos();
        let trace: Vec<(&str, String)> = ["traceparent", "x-request-id"]
            .into_iter()
            .filter_map(|name| Some((name, parts.headers.get(name)?.to_str().ok()?.to_owned())))
            .collect();
        let (status, payment) = self
            .client
            .post_json(
                &format!("{}/v1/charges", self.config.payments),
                &json!({
                    "order_id": id,
                    "amount_cents": total,
                    "currency": "EUR",
                    "customer": user,
                    "idempotency_key": self.rng.uuid(),
                }),
                &trace,
            )
            .await?;
        if !status.is_success() {
            return Ok(json_response(
                StatusCode::BAD_GATEWAY,
                &json!({"error": "payment failed", "payment_status": status.as_u16()}),
            ));
        }
        let (mail_status, mail) = self
            .client
            .post_json(
                &format!("{}/v1/messages", self.config.mail),
                &json!({
                    "to": format!("{user}@example.test"),
                    "template": "order-confirmation",
                    "order_id": id,
                }),
                &trace,
            )
            .await?;
        let order = json!({
            "id": id,
            "user": user,
            "items": items,
            "total_cents": total,
            "currency": "EUR",
            "status": self.config.version.status_paid(),
            "created_at": rfc3339(created),
            "payment": {"id": payment["id"], "status": payment["status"]},
            "confirmation": if mail_status.is_success() { mail["id"].clone() } else { Value::Null },
        });
        self.store().insert(&user, id.clone(), order.clone());
        let mut answer = order;
        answer["processing_ms"] =
            json!((started.elapsed().as_secs_f64() * 1e3 * 100.0).round() / 100.0);
        Ok(json_response(StatusCode::CREATED, &answer))
    }

    async fn get(&self, request: Request<Incoming>) -> Result<Response<Body>> {
        let (parts, _) = read_json(request).await?;
        let Some(user) = self.user(&parts) else {
            return Ok(error(StatusCode::UNAUTHORIZED, "missing or invalid token"));
        };
        let id = parts.uri.path().trim_start_matches("/orders/");
        let order = self.store().by_id.get(id).cloned();
        match order {
            Some(order) if order["user"] == user.as_str() => {
                Ok(json_response(StatusCode::OK, &order))
            }
            _ => Ok(error(StatusCode::NOT_FOUND, "no such order")),
        }
    }

    async fn list(&self, request: Request<Incoming>) -> Result<Response<Body>> {
        let (parts, _) = read_json(request).await?;
        let Some(user) = self.user(&parts) else {
            return Ok(error(StatusCode::UNAUTHORIZED, "missing or invalid token"));
        };
        let mut mine: Vec<Value> = {
            let store = self.store();
            store
                .by_user
                .get(&user)
                .into_iter()
                .flatten()
                .filter_map(|id| store.by_id.get(id).cloned())
                .collect()
        };
        mine.sort_by(|a, b| a["created_at"].as_str().cmp(&b["created_at"].as_str()));
        let total: u64 = mine.iter().filter_map(|o| o["total_cents"].as_u64()).sum();
        let recent: Vec<Value> = mine
            .iter()
            .rev()
            .take(5)
            .map(|o| json!({"id": o["id"], "total_cents": o["total_cents"], "status": o["status"], "created_at": o["created_at"]}))
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({"user": user, "count": mine.len(), "spent_cents": total, "recent": recent}),
        ))
    }
}

/// Serves `payments` on `listener` until `shutdown`: `POST /v1/charges` answers 201 with a
/// charge id and its time.
pub async fn serve_payments(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let rng = Arc::new(Rng::from_clock());
    serve_with(
        "payments",
        listener,
        move |request| {
            let rng = rng.clone();
            async move {
                if request.method() != Method::POST || request.uri().path() != "/v1/charges" {
                    return error(StatusCode::NOT_FOUND, "no such route");
                }
                match read_json(request).await {
                    Ok((_, body)) => {
                        // A payment provider takes a moment.
                        tokio::time::sleep(Duration::from_millis(2 + rng.below(4))).await;
                        json_response(
                            StatusCode::CREATED,
                            &json!({
                                "id": rng.id("ch"),
                                "status": "succeeded",
                                "order_id": body["order_id"],
                                "amount_cents": body["amount_cents"],
                                "currency": body["currency"],
                                "created": unix_nanos() / 1_000_000_000,
                            }),
                        )
                    }
                    Err(e) => error(StatusCode::BAD_REQUEST, &format!("{e:#}")),
                }
            }
        },
        shutdown,
    )
    .await
}

/// Serves `mail` on `listener` until `shutdown`: `POST /v1/messages` answers 202 with a
/// message id.
pub async fn serve_mail(listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<()> {
    let rng = Arc::new(Rng::from_clock());
    serve_with(
        "mail",
        listener,
        move |request| {
            let rng = rng.clone();
            async move {
                if request.method() != Method::POST || request.uri().path() != "/v1/messages" {
                    return error(StatusCode::NOT_FOUND, "no such route");
                }
                match read_json(request).await {
                    Ok((_, body)) => json_response(
                        StatusCode::ACCEPTED,
                        &json!({
                            "id": rng.id("msg"),
                            "to": body["to"],
                            "queued_at": rfc3339(unix_nanos()),
                        }),
                    ),
                    Err(e) => error(StatusCode::BAD_REQUEST, &format!("{e:#}")),
                }
            }
        },
        shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_tampering_fails() {
        let token = sign_jwt(&json!({"sub": "u001", "exp": u64::MAX / 2}), b"k");
        assert_eq!(verify_jwt(&token, b"k").unwrap()["sub"], "u001");
        assert!(verify_jwt(&token, b"other").is_err());
        let expired = sign_jwt(&json!({"sub": "u001", "exp": 1}), b"k");
        assert!(
            verify_jwt(&expired, b"k")
                .unwrap_err()
                .to_string()
                .contains("expired")
        );
    }

    #[test]
    fn rfc3339_dates_are_civil() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(1_795_787_110_123_000_000),
            "2026-11-27T13:45:10.123Z"
        );
        let id = Rng::new(1).id("ord");
        assert!(id.starts_with("ord_") && id.len() == 20, "{id}");
        let uuid = Rng::new(1).uuid();
        assert_eq!(uuid.len(), 36, "{uuid}");
        assert_eq!(&uuid[14..15], "4");
    }
}
