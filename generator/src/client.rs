//! Sending live requests: targets (`--target URL`, `--target HOST=URL`), HTTP/1.1, HTTP/2
//! (prior knowledge on `http://`, ALPN on `https://` through tokio-rustls with the ring
//! provider) and gRPC, over pooled connections that are reused as real clients reuse them, with
//! at most `--max-connections` requests in flight per target.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tapedeck_analyzer::replay::edit::LiveMessage;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

use crate::live::LiveRequest;
use crate::plan::Protocol;
use crate::{Error, Result};

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http` or `https`.
    pub scheme: String,
    /// `host:port`.
    pub authority: String,
    /// A path prefix, without a trailing `/` (usually empty).
    pub prefix: String,
}

impl Target {
    /// Parses `http://host:port[/prefix]`.
    pub fn parse(url: &str) -> Result<Target> {
        let bad = |why: &str| Error::Target(format!("{url:?}: {why}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected http://host:port or https://host:port"))?;
        if scheme != "http" && scheme != "https" {
            return Err(bad("the scheme must be http or https"));
        }
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Target {
            scheme: scheme.to_owned(),
            authority: authority.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// The URL of a path on this target.
    pub fn url(&self, path: &str) -> String {
        format!(
            "{}://{}{}{}",
            self.scheme, self.authority, self.prefix, path
        )
    }
}

/// The `--target` list: a default and host mappings.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    default: Option<Target>,
    mapped: Vec<(String, Target)>,
}

impl Targets {
    /// Parses `--target` values: `URL` (the default) or `HOST=URL`.
    pub fn parse(specs: &[String]) -> Result<Targets> {
        let mut targets = Targets::default();
        for spec in specs {
            match spec.split_once('=') {
                Some((host, url)) if !host.contains("://") => {
                    targets.mapped.push((host.to_owned(), Target::parse(url)?));
                }
                _ => {
                    if targets.default.is_some() {
                        return Err(Error::Target(format!(
                            "{spec:?}: a second default target (map hosts with HOST=URL)"
                        )));
                    }
                    targets.default = Some(Target::parse(spec)?);
                }
            }
        }
        if targets.default.is_none() && targets.mapped.is_empty() {
            return Err(Error::Target("no --target given".to_owned()));
        }
        Ok(targets)
    }

    /// The target of a recorded authority: a mapping whose HOST is the authority, its host
    /// without the port, or the host's first label (`orders` for `orders.shop.svc:8080`); else
    /// the default.
    pub fn resolve(&self, authority: &str) -> Option<&Target> {
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        let label = host.split('.').next().unwrap_or(host);
        self.mapped
            .iter()
            .find(|(h, _)| h == authority)
            .or_else(|| self.mapped.iter().find(|(h, _)| h == host))
            .or_else(|| self.mapped.iter().find(|(h, _)| h == label))
            .map(|(_, t)| t)
            .or(self.default.as_ref())
    }

    /// Every target, for the report.
    pub fn describe(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .mapped
            .iter()
            .map(|(h, t)| format!("{h}={}", t.url("")))
            .collect();
        if let Some(t) = &self.default {
            out.push(t.url(""));
        }
        out
    }
}

/// A live response.
#[derive(Debug, Clone, Default)]
pub struct LiveResponse {
    /// The status.
    pub status: u16,
    /// Headers and body.
    pub message: LiveMessage,
    /// Trailers (gRPC's `grpc-status`).
    pub trailers: Vec<(String, Vec<u8>)>,
}

type Body = Full<Bytes>;

/// One open connection.
enum Conn {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

/// The connections to one target over one protocol family: HTTP/1.1 connections are kept
/// alive and reused one request at a time (as browsers and client libraries do); HTTP/2 (h2c,
/// or h2 negotiated by ALPN) multiplexes every request on one connection. At most `limit`
/// requests are in flight (and so at most `limit` HTTP/1.1 connections are open); more wait
/// for a slot, and that wait counts in their latency.
struct Pool {
    target: Target,
    /// h2c with prior knowledge (recorded HTTP/2 or gRPC on `http://`).
    h2c: bool,
    tls: Option<TlsConnector>,
    idle: Mutex<Vec<http1::SendRequest<Body>>>,
    shared: tokio::sync::Mutex<Option<http2::SendRequest<Body>>>,
    slots: Semaphore,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("target", &self.target)
            .field("h2c", &self.h2c)
            .field("available", &self.slots.available_permits())
            .finish()
    }
}

impl Pool {
    /// A reused connection, or a new one. HTTP/2 connections are made one at a time (the lock
    /// is held while connecting), so concurrent first requests share one.
    async fn checkout(&self) -> Result<(Conn, bool), String> {
        // Plain http:// HTTP/1.1 pools never hold an HTTP/2 connection: no lock for them.
        if self.h2c || self.tls.is_some() {
            let mut shared = self.shared.lock().await;
            if let Some(h2) = shared.as_ref().filter(|h2| !h2.is_closed()) {
                return Ok((Conn::H2(h2.clone()), true));
            }
            if self.h2c {
                let conn = self.connect().await?;
                if let Conn::H2(h2) = &conn {
                    *shared = Some(h2.clone());
                }
                return Ok((conn, false));
            }
        }
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match idle {
                Some(h1) if !h1.is_closed() => return Ok((Conn::H1(h1), true)),
                Some(_) => continue,
                None => break,
            }
        }
        let conn = self.connect().await?;
        if let Conn::H2(h2) = &conn {
            *self.shared.lock().await = Some(h2.clone());
        }
        Ok((conn, false))
    }

    async fn connect(&self) -> Result<Conn, String> {
        let tcp = TcpStream::connect(&self.target.authority)
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.target.authority))?;
        let _ = tcp.set_nodelay(true);
        let executor = TokioExecutor::new();
        match &self.tls {
            Some(tls) => {
                let host = self
                    .target
                    .authority
                    .rsplit_once(':')
                    .map_or(self.target.authority.as_str(), |(h, _)| h)
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned();
                let name = ServerName::try_from(host)
                    .map_err(|e| format!("tls server name {}: {e}", self.target.authority))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("tls handshake with {}: {e}", self.target.authority))?;
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                if h2 {
                    let (send, conn) = http2::handshake(executor, TokioIo::new(stream))
                        .await
                        .map_err(|e| error_chain(&e))?;
                    tokio::spawn(conn);
                    Ok(Conn::H2(send))
                } else {
                    let (send, conn) = http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(|e| error_chain(&e))?;
                    tokio::spawn(conn);
                    Ok(Conn::H1(send))
                }
            }
            None if self.h2c => {
                let (send, conn) = http2::handshake(executor, TokioIo::new(tcp))
                    .await
                    .map_err(|e| error_chain(&e))?;
                tokio::spawn(conn);
                Ok(Conn::H2(send))
            }
            None => {
                let (send, conn) = http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|e| error_chain(&e))?;
                tokio::spawn(conn);
                Ok(Conn::H1(send))
            }
        }
    }

    /// Sends on a connection; a reused HTTP/1.1 connection that the server closed meanwhile is
    /// replaced once.
    async fn send(
        &self,
        build: &(dyn Fn(bool) -> http::Request<Body> + Sync),
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        let (conn, reused) = self.checkout().await?;
        match self.send_on(conn, build).await {
            Err(error) if reused => {
                tracing::debug!(%error, "A reused connection failed; retrying on a new one.");
                let conn = self.connect().await?;
                self.send_on(conn, build).await
            }
            other => other,
        }
    }

    async fn send_on(
        &self,
        conn: Conn,
        build: &(dyn Fn(bool) -> http::Request<Body> + Sync),
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        match conn {
            Conn::H1(mut send) => {
                send.ready().await.map_err(|e| error_chain(&e))?;
                let response = send
                    .send_request(build(false))
                    .await
                    .map_err(|e| error_chain(&e))?;
                // Back in the idle list at once: a later checkout's `ready()` waits until this
                // response's body has been read (it is read right after, in `Clients::send`).
                self.idle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(send);
                Ok(response)
            }
            Conn::H2(mut send) => {
                send.ready().await.map_err(|e| error_chain(&e))?;
                send.send_request(build(true))
                    .await
                    .map_err(|e| error_chain(&e))
            }
        }
    }
}

/// The connection pools of a run.
pub struct Clients {
    pools: Mutex<HashMap<(String, bool), Arc<Pool>>>,
    tls: TlsConnector,
    timeout: Duration,
    limit: usize,
}

impl fmt::Debug for Clients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clients")
            .field("timeout", &self.timeout)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// The TLS client config: the ring provider passed explicitly, roots from `--ca-cert`, ALPN h2
/// then http/1.1.
fn tls_config(ca_cert: Option<&std::path::Path>) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = ca_cert {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect())
            .map_err(|e| Error::Tls(format!("reading --ca-cert {}: {e}", path.display())))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| Error::Tls(format!("--ca-cert {}: {e}", path.display())))?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

impl Clients {
    /// Pools with a per-request timeout and at most `limit` requests in flight per target and
    /// protocol; `ca_cert` is the PEM file of the roots trusted on `https://` targets (none
    /// given: no TLS target verifies).
    pub fn new(
        timeout: Duration,
        limit: usize,
        ca_cert: Option<&std::path::Path>,
    ) -> Result<Clients> {
        Ok(Clients {
            pools: Mutex::new(HashMap::new()),
            tls: TlsConnector::from(Arc::new(tls_config(ca_cert)?)),
            timeout,
            limit: limit.max(1),
        })
    }

    fn pool(&self, target: &Target, h2c: bool) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools
            .entry((target.url(""), h2c))
            .or_insert_with(|| {
                Arc::new(Pool {
                    target: target.clone(),
                    h2c,
                    tls: (target.scheme == "https").then(|| self.tls.clone()),
                    idle: Mutex::new(Vec::new()),
                    shared: tokio::sync::Mutex::new(None),
                    slots: Semaphore::new(self.limit),
                })
            })
            .clone()
    }

    /// Sends a request and reads the whole response (trailers included). The timeout covers
    /// the exchange, not the wait for a free connection slot.
    pub async fn send(
        &self,
        target: &Target,
        protocol: Protocol,
        request: LiveRequest,
    ) -> std::result::Result<LiveResponse, String> {
        let h2c = protocol != Protocol::Http1 && target.scheme == "http";
        let pool = self.pool(target, h2c);
        let _slot = pool
            .slots
            .acquire()
            .await
            .map_err(|_| "the connection pool is closed".to_owned())?;
        let body = Bytes::from(request.message.body);
        let build = |h2: bool| {
            let uri = if h2 {
                target.url(&request.path)
            } else {
                format!("{}{}", target.prefix, request.path)
            };
            let mut builder = http::Request::builder()
                .method(request.method.as_str())
                .uri(uri);
            if h2 {
                builder = builder.version(http::Version::HTTP_2);
            } else {
                builder = builder.header(http::header::HOST, target.authority.as_str());
            }
            for (name, value) in &request.message.headers {
                builder = builder.header(name.as_str(), value.as_slice());
            }
            if protocol == Protocol::Grpc {
                builder = builder.header("te", "trailers");
            }
            builder
                .body(Full::new(body.clone()))
                .unwrap_or_else(|_| http::Request::new(Full::new(Bytes::new())))
        };
        let exchange = async {
            let response = pool.send(&build).await?;
            let (parts, body) = response.into_parts();
            let collected = body.collect().await.map_err(|e| format!("body: {e}"))?;
            let trailers = collected
                .trailers()
                .map(|t| {
                    t.iter()
                        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            let headers = parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect();
            Ok(LiveResponse {
                status: parts.status.as_u16(),
                message: LiveMessage {
                    headers,
                    body: Vec::from(collected.to_bytes()),
                },
                trailers,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("no response within {:?}", self.timeout)),
        }
    }
}

/// An error and its sources: `client error (Connect): tls handshake: invalid peer certificate`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}
