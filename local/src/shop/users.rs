//! The synthetic user population: each user logs in, creates a few orders (reading some of them
//! back) with a think time between requests, and lists its orders at the end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::{CATALOGUE, ORDERS_HOST, Rng, password};

/// Who the population is and how it behaves.
#[derive(Debug, Clone)]
pub struct Population {
    /// How many users (`u001`, `u002`, …).
    pub users: usize,
    /// Orders each user creates.
    pub orders_per_user: usize,
    /// The share of created orders read back with `GET /orders/{id}`.
    pub read_back: f64,
    /// The think time between two requests of a user: uniform in this range.
    pub think: (Duration, Duration),
    /// Users start spread over this time.
    pub ramp_up: Duration,
    /// The seed of every choice (items, think times, read-backs).
    pub seed: u64,
}

impl Default for Population {
    fn default() -> Self {
        Self {
            users: 24,
            orders_per_user: 4,
            read_back: 0.6,
            think: (Duration::from_millis(300), Duration::from_millis(1200)),
            ramp_up: Duration::from_secs(8),
            seed: 7,
        }
    }
}

/// What the population did.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Requests whose answer was not a success (or that got none).
    pub failures: AtomicU64,
    /// Orders created.
    pub orders: AtomicU64,
}

/// A reading of [`Tally`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    /// Requests answered.
    pub requests: u64,
    /// Requests that failed.
    pub failures: u64,
    /// Orders created.
    pub orders: u64,
}

impl Tally {
    /// The current counts.
    pub fn read(&self) -> Counted {
        Counted {
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            orders: self.orders.load(Ordering::Relaxed),
        }
    }
}

/// The user name of the `index`-th user (0-based).
pub fn user_name(index: usize) -> String {
    format!("u{:03}", index + 1)
}

/// Runs the population against `orders` (its address, usually Envoy's inbound listener),
/// counting into `tally`; returns when every user is done.
pub async fn run(
    orders: SocketAddr,
    population: &Population,
    tally: Arc<Tally>,
) -> Result<Counted> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut users = JoinSet::new();
    for index in 0..population.users {
        let user = User {
            name: user_name(index),
            client: client.clone(),
            orders,
            rng: Rng::new(
                population
                    .seed
                    .wrapping_mul(1000)
                    .wrapping_add(index as u64),
            ),
            population: population.clone(),
            tally: tally.clone(),
        };
        let delay = population
            .ramp_up
            .mul_f64(index as f64 / population.users.max(1) as f64);
        users.spawn(async move {
            tokio::time::sleep(delay).await;
            user.session().await
        });
    }
    while let Some(done) = users.join_next().await {
        done.context("a user task panicked")??;
    }
    Ok(tally.read())
}

#[derive(Debug)]
struct User {
    name: String,
    client: Client<HttpConnector, Full<Bytes>>,
    orders: SocketAddr,
    rng: Rng,
    population: Population,
    tally: Arc<Tally>,
}

impl User {
    async fn session(&self) -> Result<()> {
        let login = self
            .call(
                "POST",
                "/login",
                None,
                Some(json!({"user": self.name, "password": password(&self.name)})),
            )
            .await?;
        let Some(token) = login.and_then(|body| body["token"].as_str().map(str::to_owned)) else {
            return Ok(());
        };
        for _ in 0..self.population.orders_per_user {
            self.think().await;
            let items: Vec<Value> = (0..1 + self.rng.below(3))
                .map(|_| {
                    let (sku, _) = CATALOGUE[self.rng.below(CATALOGUE.len() as u64) as usize];
                    json!({"sku": sku, "qty": 1 + self.rng.below(3)})
                })
                .collect();
            let created = self
                .call(
                    "POST",
                    "/orders",
                    Some(&token),
                    Some(json!({"items": items})),
                )
                .await?;
            let Some(id) = created.and_then(|order| order["id"].as_str().map(str::to_owned)) else {
                continue;
            };
            self.tally.orders.fetch_add(1, Ordering::Relaxed);
            if (self.rng.below(1000) as f64) < self.population.read_back * 1000.0 {
                self.think().await;
                self.call("GET", &format!("/orders/{id}"), Some(&token), None)
                    .await?;
            }
        }
        self.think().await;
        self.call("GET", "/orders", Some(&token), None).await?;
        Ok(())
    }

    async fn think(&self) {
        let (low, high) = self.population.think;
        let span = high.saturating_sub(low).as_millis() as u64;
        tokio::time::sleep(low + Duration::from_millis(self.rng.below(span + 1))).await;
    }

    /// Sends one request; returns the JSON answer of a success, `None` otherwise.
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Option<Value>> {
        let traceparent = format!(
            "00-{:016x}{:016x}-{:016x}-01",
            self.rng.next_u64(),
            self.rng.next_u64(),
            self.rng.next_u64() | 1
        );
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.orders))
            .header("host", ORDERS_HOST)
            .header("traceparent", traceparent)
            .header("user-agent", "tapedeck-demo-user/1");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let bytes = match &body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = request.body(Full::new(bytes))?;
        let answer = tokio::time::timeout(Duration::from_secs(30), async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        })
        .await;
        self.tally.requests.fetch_add(1, Ordering::Relaxed);
        match answer {
            Ok(Ok((status, body))) if status.is_success() => Ok(serde_json::from_slice(&body).ok()),
            Ok(Ok((status, body))) => {
                self.tally.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%status, method, path, body = %String::from_utf8_lossy(&body), "A demo user's request failed.");
                Ok(None)
            }
            Ok(Err(error)) => {
                self.tally.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    error = format!("{error:#}"),
                    method,
                    path,
                    "A demo user's request failed."
                );
                Ok(None)
            }
            Err(_) => {
                self.tally.failures.fetch_add(1, Ordering::Relaxed);
                ensure!(false, "{method} {path} timed out after 30 s");
                Ok(None)
            }
        }
    }
}
