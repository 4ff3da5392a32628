//! How captured exchanges are shown to people: one summary line each, or JSON lines.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tapedeck_proto::{Exchange, Header, Message};

/// Text when the bytes are UTF-8, else `{"base64": …}`.
fn bytes_value(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_string()),
        Err(_) => json!({ "base64": STANDARD.encode(bytes) }),
    }
}

fn headers_value(headers: &[Header]) -> Value {
    headers
        .iter()
        .map(|h| json!([h.name, bytes_value(&h.value)]))
        .collect()
}

fn message_value(message: Option<&Message>) -> Value {
    let Some(m) = message else { return Value::Null };
    json!({
        "headers": headers_value(&m.headers),
        "body": bytes_value(&m.body),
        "body_size": m.body_size,
        "body_truncated": m.body_truncated,
        "trailers": headers_value(&m.trailers),
    })
}

/// The whole exchange as JSON, bodies and header values as text where they are UTF-8.
pub(crate) fn exchange_json(e: &Exchange) -> Value {
    let id: String = e.id.iter().map(|b| format!("{b:02x}")).collect();
    json!({
        "id": id,
        "trace_id": e.trace_id,
        "start_unix_nanos": e.start_unix_nanos,
        "duration_nanos": e.duration_nanos,
        "response_headers_nanos": e.response_headers_nanos,
        "direction": e.direction().as_word(),
        "workload": e.workload,
        "namespace": e.namespace,
        "pod": e.pod,
        "peer_address": e.peer_address,
        "upstream_cluster": e.upstream_cluster,
        "route_name": e.route_name,
        "protocol": e.protocol().as_word(),
        "scheme": e.scheme,
        "authority": e.authority,
        "method": e.method,
        "path": e.path,
        "request": message_value(e.request.as_ref()),
        "status": e.status,
        "response": message_value(e.response.as_ref()),
        "response_flags": e.response_flags,
        "response_code_details": e.response_code_details,
        "sample_rate": e.sample_rate,
        "redactions": e.redactions,
        "filter_version": e.filter_version,
    })
}

fn size(message: Option<&Message>) -> String {
    match message {
        Some(m) if m.body_truncated => format!("{}/{} B", m.body.len(), m.body_size),
        Some(m) => format!("{} B", m.body_size),
        None => "-".into(),
    }
}

/// One line: direction, method, path, status, protocol, body sizes, latency, redactions.
pub(crate) fn summary_line(e: &Exchange) -> String {
    let path: String = if e.path.chars().count() > 40 {
        e.path.chars().take(39).chain(['…']).collect()
    } else {
        e.path.clone()
    };
    let mut line = format!(
        "{:<9} {:<6} {:<22} {:<40} {:>3}  {:<8} req {:<14} resp {:<16} {:>8.2} ms",
        e.direction().as_word(),
        e.method,
        e.authority,
        path,
        e.status,
        e.protocol().as_word(),
        size(e.request.as_ref()),
        size(e.response.as_ref()),
        e.duration_nanos as f64 / 1e6,
    );
    if !e.redactions.is_empty() {
        line.push_str("  redacted: ");
        line.push_str(&e.redactions.join(", "));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapedeck_proto::Direction;

    #[test]
    fn binary_bodies_become_base64_and_text_stays_text() {
        let exchange = Exchange {
            direction: Direction::Inbound as i32,
            method: "GET".into(),
            path: "/binary".into(),
            status: 200,
            request: Some(Message {
                body: b"hi".to_vec(),
                body_size: 2,
                ..Default::default()
            }),
            response: Some(Message {
                body: vec![0xff, 0x00],
                body_size: 10,
                body_truncated: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        let value = exchange_json(&exchange);
        assert_eq!(value["request"]["body"], "hi");
        assert_eq!(value["response"]["body"], json!({"base64": "/wA="}));
        assert_eq!(value["direction"], "inbound");
        let line = summary_line(&exchange);
        assert!(line.starts_with("inbound   GET"), "{line}");
        assert!(line.contains("resp 2/10 B"), "{line}");
    }
}
