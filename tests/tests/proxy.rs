//! `tapedeck proxy` with the real Envoy and `filter.wasm`: an inbound listener in front of an
//! app, the outbound HTTP proxy (a pinned host, a host reached by the dynamic forward proxy,
//! and a CONNECT tunnel), captures relayed to a collector and counted by direction.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use tapedeck_local::proxy::{Proxy, ProxyArgs, resolved_cluster};
use tapedeck_local::sample::{self, SampleConfig};
use tapedeck_local::sink::{self, SinkMode};
use tapedeck_proto::Direction;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

async fn bind() -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Sends `request` (head and body, as bytes) to `addr` over a fresh connection and reads the
/// answer until the server closes it.
async fn raw(addr: SocketAddr, request: &[u8]) -> Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .context("no answer within 20 s")??;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn both_directions_are_captured_and_connect_only_as_a_connection() -> Result<()> {
    let (stop, stopped) = watch::channel(());
    let shutdown = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.changed().await;
        }
    };
    let (sink_listener, collector) = bind().await?;
    let (tx, mut received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(sink::serve(sink_listener, SinkMode::Accept, tx, shutdown()));
    let (app_listener, app) = bind().await?;
    tokio::spawn(sample::serve(
        app_listener,
        SampleConfig::default(),
        shutdown(),
    ));
    let (dep_listener, dependency) = bind().await?;
    tokio::spawn(sample::serve(
        dep_listener,
        SampleConfig::default(),
        shutdown(),
    ));
    // A TCP echo server: what a CONNECT tunnel reaches.
    let (echo_listener, echo) = bind().await?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = echo_listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });

    let mut args = ProxyArgs::new("orders");
    args.inbound.push(
        format!("127.0.0.1:0={app}")
            .parse()
            .map_err(anyhow::Error::msg)?,
    );
    args.outbound = Some("127.0.0.1:0".parse()?);
    args.resolve.push(
        format!("payments.shop.svc={dependency}")
            .parse()
            .map_err(anyhow::Error::msg)?,
    );
    let proxy = Proxy::start(&args, &collector.to_string()).await?;
    let (inbound, _) = proxy.inbound()[0];
    let outbound = proxy.outbound().context("no outbound listener")?;
    let described = proxy.describe();
    assert!(
        described.contains(&format!("HTTP_PROXY=http://{outbound}")),
        "{described}"
    );

    // Inbound: a caller reaches the app through the inbound listener.
    let answer = raw(
        inbound,
        b"GET /hello HTTP/1.1\r\nhost: orders.local\r\nconnection: close\r\n\r\n",
    )
    .await?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Outbound, a pinned host: what a client with HTTP_PROXY sends (absolute-form URL).
    let body = r#"{"amount":12}"#;
    let pay = format!(
        "POST http://payments.shop.svc/pay HTTP/1.1\r\nhost: payments.shop.svc\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw(outbound, pay.as_bytes()).await?;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    // Outbound, the dynamic forward proxy: any host:port in the URL.
    let hello = format!(
        "GET http://{dependency}/hello HTTP/1.1\r\nhost: {dependency}\r\nconnection: close\r\n\r\n"
    );
    let answer = raw(outbound, hello.as_bytes()).await?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // CONNECT: tunnelled; the bytes go through untouched.
    let mut tunnel = TcpStream::connect(outbound).await?;
    tunnel
        .write_all(format!("CONNECT {echo} HTTP/1.1\r\nhost: {echo}\r\n\r\n").as_bytes())
        .await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(20), tunnel.read(&mut byte)).await??;
        ensure!(
            n == 1,
            "the proxy closed the tunnel: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tunnel.write_all(b"secret tls bytes").await?;
    let mut echoed = [0u8; 16];
    tokio::time::timeout(Duration::from_secs(20), tunnel.read_exact(&mut echoed)).await??;
    assert_eq!(&echoed, b"secret tls bytes");
    drop(tunnel);

    let collected = sink::collect_exchanges(&mut received, 4, Duration::from_secs(30)).await?;
    let exchanges: Vec<_> = collected.exchanges().cloned().collect();
    let counts = proxy.settle(Duration::from_secs(10)).await;
    assert_eq!(
        (counts.inbound, counts.outbound, counts.failed_pushes),
        (1, 3, 0),
        "{counts}"
    );

    let find = |method: &str, path: &str| {
        exchanges
            .iter()
            .find(|e| e.method == method && e.path == path)
            .with_context(|| {
                format!(
                    "no {method} {path} among {:?}",
                    exchanges
                        .iter()
                        .map(|e| format!("{} {} {}", e.method, e.authority, e.path))
                        .collect::<Vec<_>>()
                )
            })
    };
    let inbound_hello = exchanges
        .iter()
        .find(|e| e.direction() == Direction::Inbound)
        .context("no inbound exchange")?;
    assert_eq!(inbound_hello.authority, "orders.local");
    assert_eq!(inbound_hello.workload, "orders");
    let pay = find("POST", "/pay")?;
    assert_eq!(pay.direction(), Direction::Outbound);
    assert_eq!(pay.authority, "payments.shop.svc");
    assert_eq!(pay.upstream_cluster, resolved_cluster("payments.shop.svc"));
    assert_eq!(
        pay.request.as_ref().map(|m| m.body.as_slice()),
        Some(body.as_bytes())
    );
    let forwarded = exchanges
        .iter()
        .find(|e| e.direction() == Direction::Outbound && e.path == "/hello")
        .context("no outbound GET /hello")?;
    assert_eq!(forwarded.authority, dependency.to_string());
    assert_eq!(
        forwarded.upstream_cluster,
        tapedeck_local::proxy::FORWARD_PROXY_CLUSTER
    );
    let connect = exchanges
        .iter()
        .find(|e| e.method == "CONNECT")
        .context("no CONNECT exchange")?;
    assert_eq!(connect.direction(), Direction::Outbound);
    assert_eq!(connect.authority, echo.to_string());
    assert_eq!(connect.status, 200);
    // A connection only: the tunnel's bytes are counted, never kept.
    let request = connect.request.clone().unwrap_or_default();
    let response = connect.response.clone().unwrap_or_default();
    assert!(
        request.body.is_empty() && response.body.is_empty(),
        "{connect:?}"
    );
    assert_eq!(
        (request.body_size, response.body_size),
        (16, 16),
        "{connect:?}"
    );

    let counts = proxy.stop().await?;
    assert_eq!(counts.total(), 4);
    drop(stop);
    Ok(())
}
