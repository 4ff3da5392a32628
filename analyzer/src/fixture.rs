//! A realistic, seeded traffic generator: the `orders` service of a shop, as its sidecar would
//! capture it. Tests use it for golden snapshots, benchmarks scale it to millions of exchanges,
//! and demos show it.
//!
//! Each session: `POST /login` (returns a JWT, sets a session cookie, says when the token
//! expires), then per order `POST /orders` (mints an order id; the service calls
//! `POST /v1/charges` on `payments.shop.svc:8080` with the order, the caller's customer ref and
//! an idempotency key, inside the same trace), `GET /orders/{id}`, `PUT /orders/{id}` (with a
//! client timestamp header) and `GET /orders/{id}/receipt` (a binary PDF). Credentials are
//! redaction markers, as the filter writes them by default; responses carry `date` headers and
//! timestamps in their bodies.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tapedeck_proto::{Direction, Exchange, Header, Message, Protocol};

/// The service's workload name.
pub const SERVICE: &str = "orders";
/// Where the service is called.
pub const SERVICE_AUTHORITY: &str = "orders.shop.svc:8080";
/// The payment dependency.
pub const PAYMENTS_AUTHORITY: &str = "payments.shop.svc:8080";
/// The constant API key the service sends to payments (redacted, as captured).
pub const PAYMENTS_API_KEY: &str = "tapedeck-redacted:hmac-sha256:5f1d2c3b4a5968778695a4b3c2d1e0f0";

/// The redacted form of the `theme=dark` cookie value.
const THEME_MARKER: &str = "tapedeck-redacted:hmac-sha256:0d8c1f4e2b7a69350c4d3e2f1a0b9c8d";

const NANOS: u64 = 1_000_000_000;
const MILLIS: u64 = 1_000_000;

/// How much traffic to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shop {
    /// Seeds every random choice: the same seed gives the same exchanges.
    pub seed: u64,
    /// Login sessions.
    pub sessions: u64,
    /// Orders per session.
    pub orders_per_session: u64,
    /// Start of the first session, nanoseconds since the Unix epoch.
    pub start: u64,
    /// Time between session starts.
    pub session_gap_ns: u64,
    /// Bytes of each receipt PDF.
    pub receipt_bytes: usize,
}

impl Default for Shop {
    /// 4 sessions of 2 orders from 2026-11-27T13:00:00Z: 44 exchanges.
    fn default() -> Self {
        Self {
            seed: 7,
            sessions: 4,
            orders_per_session: 2,
            start: 1_795_784_400 * NANOS,
            session_gap_ns: 2 * NANOS,
            receipt_bytes: 96,
        }
    }
}

impl Shop {
    /// Exchanges per session.
    pub fn exchanges_per_session(&self) -> u64 {
        1 + 5 * self.orders_per_session
    }

    /// All exchanges, in session order (not sorted by time: sessions overlap).
    pub fn exchanges(&self) -> Vec<Exchange> {
        let mut out = Vec::with_capacity((self.sessions * self.exchanges_per_session()) as usize);
        for session in 0..self.sessions {
            self.session(session, &mut out);
        }
        out
    }

    /// One session's exchanges, appended to `out`.
    pub fn session(&self, session: u64, out: &mut Vec<Exchange>) {
        // Each session's stream starts from a mixed seed: plain `seed ^ session` would start
        // neighbouring sessions one step apart on the same SplitMix sequence.
        let mut rng = Rng(Rng(self.seed).next() ^ Rng(session).next().rotate_left(17));
        let mut now = self.start + session * self.session_gap_ns;
        let customer = format!("cus_{:06}", 1000 + session);
        let user = format!("shopper{session}@example.com");

        // Login: a JWT (signature redacted) and a session cookie (value redacted).
        let iat = now / NANOS;
        let claims = format!(
            r#"{{"sub":"{customer}","iss":"https://auth.shop.example","aud":"orders","iat":{iat},"exp":{}}}"#,
            iat + 3600
        );
        let jwt = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#),
            URL_SAFE_NO_PAD.encode(claims.as_bytes()),
            rng.marker()
        );
        let cookie = rng.marker();
        let login_ms = 20 + rng.below(30);
        let password = rng.marker();
        out.push(
            self.inbound(
                &mut rng,
                now,
                login_ms,
                "POST",
                "/login",
                vec![h("content-type", "application/json")],
                format!(r#"{{"user":"{user}","password":"{password}"}}"#).into_bytes(),
                200,
                vec![
                    h("content-type", "application/json"),
                    h(
                        "set-cookie",
                        &format!("session={cookie}; Path=/; HttpOnly; Secure"),
                    ),
                ],
                format!(
                    r#"{{"token":"{jwt}","token_type":"Bearer","expires_at":"{}"}}"#,
                    rfc3339(now + 3600 * NANOS)
                )
                .into_bytes(),
            ),
        );
        now += (login_ms + 100 + rng.below(400)) * MILLIS;

        let auth = format!("Bearer {jwt}");
        // The filter redacts every cookie value; `theme=dark` is the same marker for everyone.
        let cookie_header = format!("session={cookie}; theme={THEME_MARKER}");
        for order in 0..self.orders_per_session {
            let order_id = format!("ord_{:06}", session * 100 + order + 10_000);
            let sku = ["sku-kettle", "sku-teapot", "sku-mug", "sku-tray"][rng.below(4) as usize];
            let quantity = 1 + rng.below(4);
            let amount = 1299 * quantity;
            let common = |extra: Vec<Header>| {
                let mut headers = vec![
                    h("authorization", &auth),
                    h("cookie", &cookie_header),
                    h("accept", "application/json"),
                ];
                headers.extend(extra);
                headers
            };

            // POST /orders, which calls payments inside its trace.
            let create_ms = 30 + rng.below(40);
            let create = self.inbound(
                &mut rng,
                now,
                create_ms,
                "POST",
                "/orders",
                common(vec![h("content-type", "application/json")]),
                format!(r#"{{"customer_ref":"{customer}","sku":"{sku}","quantity":{quantity}}}"#)
                    .into_bytes(),
                201,
                vec![h("content-type", "application/json")],
                format!(
                    r#"{{"id":"{order_id}","status":"paid","amount":{amount},"currency":"EUR","created_at":"{}"}}"#,
                    rfc3339(now + 3 * MILLIS)
                )
                .into_bytes(),
            );
            let charge_at = now + (5 + rng.below(5)) * MILLIS;
            let charge_ms = 10 + rng.below(15);
            let charge_id = format!("ch_{:08}", rng.below(100_000_000));
            let idempotency_key = rng.uuid();
            let mut charge = self.exchange(
                &mut rng,
                Direction::Outbound,
                PAYMENTS_AUTHORITY,
                charge_at,
                charge_ms,
                "POST",
                "/v1/charges",
                vec![
                    h("content-type", "application/json"),
                    h("x-api-key", PAYMENTS_API_KEY),
                ],
                format!(
                    r#"{{"order":"{order_id}","customer":"{customer}","amount":{amount},"currency":"EUR","idempotency_key":"{idempotency_key}"}}"#
                )
                .into_bytes(),
                200,
                vec![h("content-type", "application/json")],
                format!(
                    r#"{{"charge":"{charge_id}","status":"succeeded","created":{}}}"#,
                    (charge_at + charge_ms * MILLIS) / NANOS
                )
                .into_bytes(),
            );
            charge.trace_id = create.trace_id.clone();
            // The sidecar propagates the caller's trace: the call carries the same trace id.
            if let Some(request) = charge.request.as_mut() {
                for header in &mut request.headers {
                    if header.name == "traceparent" {
                        header.value =
                            format!("00-{}-{}-01", create.trace_id, rng.hex(8)).into_bytes();
                    }
                }
            }
            charge.upstream_cluster = "outbound|8080||payments.shop.svc.cluster.local".into();
            out.push(create);
            out.push(charge);
            now += (create_ms + 200 + rng.below(800)) * MILLIS;

            let path = format!("/orders/{order_id}");
            let get_ms = 3 + rng.below(10);
            out.push(self.inbound(
                &mut rng,
                now,
                get_ms,
                "GET",
                &path,
                common(Vec::new()),
                Vec::new(),
                200,
                vec![h("content-type", "application/json")],
                format!(
                    r#"{{"id":"{order_id}","status":"paid","sku":"{sku}","quantity":{quantity},"updated_at":"{}"}}"#,
                    rfc3339(now - 150 * MILLIS)
                )
                .into_bytes(),
            ));
            now += (get_ms + 300 + rng.below(900)) * MILLIS;

            let put_ms = 8 + rng.below(20);
            out.push(
                self.inbound(
                    &mut rng,
                    now,
                    put_ms,
                    "PUT",
                    &path,
                    common(vec![
                        h("content-type", "application/json"),
                        h("x-client-time", &rfc3339(now - 40 * MILLIS)),
                    ]),
                    br#"{"note":"leave at the door","quantity":2}"#.to_vec(),
                    200,
                    vec![h("content-type", "application/json")],
                    format!(
                        r#"{{"id":"{order_id}","status":"paid","quantity":2,"updated_at":"{}"}}"#,
                        rfc3339(now + 2 * MILLIS)
                    )
                    .into_bytes(),
                ),
            );
            now += (put_ms + 300 + rng.below(900)) * MILLIS;

            let receipt_ms = 10 + rng.below(20);
            let mut pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
            while pdf.len() < self.receipt_bytes {
                pdf.push(rng.next() as u8);
            }
            pdf.truncate(self.receipt_bytes.max(15));
            out.push(self.inbound(
                &mut rng,
                now,
                receipt_ms,
                "GET",
                &format!("{path}/receipt"),
                common(Vec::new()),
                Vec::new(),
                200,
                vec![h("content-type", "application/pdf")],
                pdf,
            ));
            now += (receipt_ms + 500 + rng.below(1500)) * MILLIS;
        }
    }

    #[allow(clippy::too_many_arguments)] // A request and its response, spelled out.
    fn inbound(
        &self,
        rng: &mut Rng,
        start: u64,
        millis: u64,
        method: &str,
        path: &str,
        request_headers: Vec<Header>,
        request_body: Vec<u8>,
        status: u32,
        response_headers: Vec<Header>,
        response_body: Vec<u8>,
    ) -> Exchange {
        let mut exchange = self.exchange(
            rng,
            Direction::Inbound,
            SERVICE_AUTHORITY,
            start,
            millis,
            method,
            path,
            request_headers,
            request_body,
            status,
            response_headers,
            response_body,
        );
        exchange.upstream_cluster = "inbound|8080||".into();
        exchange
    }

    #[allow(clippy::too_many_arguments)] // A request and its response, spelled out.
    fn exchange(
        &self,
        rng: &mut Rng,
        direction: Direction,
        authority: &str,
        start: u64,
        millis: u64,
        method: &str,
        path: &str,
        mut request_headers: Vec<Header>,
        request_body: Vec<u8>,
        status: u32,
        mut response_headers: Vec<Header>,
        response_body: Vec<u8>,
    ) -> Exchange {
        let trace_id = rng.hex(16);
        request_headers.push(h(
            "traceparent",
            &format!("00-{trace_id}-{}-01", rng.hex(8)),
        ));
        request_headers.push(h("x-request-id", &rng.uuid()));
        let end = start + millis * MILLIS;
        response_headers.push(h("date", &http_date(end / NANOS)));
        response_headers.push(h("content-length", &response_body.len().to_string()));
        let mut id = [0u8; 16];
        for chunk in id.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next().to_le_bytes());
        }
        let mut exchange = Exchange {
            id: id.to_vec(),
            trace_id,
            start_unix_nanos: start,
            duration_nanos: millis * MILLIS,
            response_headers_nanos: (millis * MILLIS).saturating_sub(MILLIS / 2),
            workload: SERVICE.into(),
            namespace: "shop".into(),
            pod: "orders-7d9f8c6b5-x2k4q".into(),
            peer_address: if direction == Direction::Inbound {
                "10.42.0.17:51234".into()
            } else {
                "10.42.3.9:8080".into()
            },
            scheme: "http".into(),
            authority: authority.into(),
            method: method.into(),
            path: path.into(),
            request: Some(Message {
                headers: request_headers,
                body_size: request_body.len() as u64,
                body: request_body,
                ..Default::default()
            }),
            status,
            response: Some(Message {
                headers: response_headers,
                body_size: response_body.len() as u64,
                body: response_body,
                ..Default::default()
            }),
            sample_rate: 1.0,
            filter_version: "0.1.0".into(),
            ..Default::default()
        };
        exchange.set_direction(direction);
        exchange.set_protocol(Protocol::Http11);
        exchange
    }
}

fn h(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: value.as_bytes().to_vec(),
    }
}

/// RFC 3339 in UTC with milliseconds.
fn rfc3339(unix_nanos: u64) -> String {
    tapedeck_har::time::format(unix_nanos)
}

/// An IMF-fixdate.
fn http_date(unix_seconds: u64) -> String {
    i64::try_from(unix_seconds)
        .ok()
        .and_then(tapedeck_har::time::format_http_date)
        .unwrap_or_default()
}

/// SplitMix64: small, seeded, good enough for test data.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn hex(&mut self, bytes: usize) -> String {
        let mut out = String::with_capacity(bytes * 2);
        while out.len() < bytes * 2 {
            out.push_str(&format!("{:016x}", self.next()));
        }
        out.truncate(bytes * 2);
        out
    }

    fn uuid(&mut self) -> String {
        let hex = self.hex(16);
        format!(
            "{}-{}-4{}-a{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[13..16],
            &hex[17..20],
            &hex[20..32]
        )
    }

    /// A redaction marker as the filter writes it.
    fn marker(&mut self) -> String {
        format!(
            "{}hmac-sha256:{}",
            tapedeck_proto::REDACTED_PREFIX,
            self.hex(16)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_have_the_right_weekday() {
        assert_eq!(http_date(1_795_784_400), "Fri, 27 Nov 2026 13:00:00 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn the_same_seed_gives_the_same_traffic() {
        let shop = Shop::default();
        assert_eq!(shop.exchanges(), shop.exchanges());
        assert_eq!(
            shop.exchanges().len() as u64,
            shop.sessions * shop.exchanges_per_session()
        );
        let other = Shop { seed: 8, ..shop };
        assert_ne!(shop.exchanges(), other.exchanges());
    }
}
