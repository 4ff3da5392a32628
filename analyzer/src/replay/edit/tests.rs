use super::*;
use crate::tokens::Flow;

fn location(message: Side, part: Part) -> Location {
    Location {
        direction: Flow::Inbound,
        message,
        part,
        name: None,
        scheme: None,
        path: None,
        segment: None,
        endpoint: None,
    }
}

fn header(name: &str) -> Location {
    Location {
        name: Some(name.to_owned()),
        ..location(Side::Request, Part::Header)
    }
}

fn json(path: &str) -> Location {
    Location {
        path: Some(path.to_owned()),
        ..location(Side::Request, Part::Json)
    }
}

fn message(headers: &[(&str, &str)], body: &str) -> LiveMessage {
    LiveMessage {
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

/// Replaces every value with `f(value)` and returns the new path and message.
fn replace(
    location: &Location,
    method: &str,
    path: &str,
    message: &LiveMessage,
    with: &dyn Fn(&str, ValueType) -> Option<String>,
) -> (String, LiveMessage, usize) {
    let mut path = path.to_owned();
    let mut message = message.clone();
    let changed = rewrite_at(location, method, &mut path, &mut message, &mut |v, t| {
        with(v, t)
    });
    (path, message, changed)
}

#[test]
fn json_leaves_are_edited_in_place_keeping_types() {
    let body = r#"{ "order" : {"id":"ord_1", "n": 5196},"items":[{"sku":"a1"},{"sku":"b\u00e92"}], "odd key":"v" }"#;
    let msg = message(&[], body);
    assert_eq!(
        values_at(&json("$.items[*].sku"), "POST", "/orders", &msg),
        [
            ("a1".to_owned(), ValueType::Text),
            ("bé2".to_owned(), ValueType::Text)
        ]
    );
    let (_, edited, changed) = replace(&json("$.items[*].sku"), "POST", "/o", &msg, &|v, _| {
        Some(format!("{v}-live \"q\""))
    });
    assert_eq!(changed, 2);
    assert_eq!(
        String::from_utf8(edited.body).unwrap(),
        r#"{ "order" : {"id":"ord_1", "n": 5196},"items":[{"sku":"a1-live \"q\""},{"sku":"bé2-live \"q\""}], "odd key":"v" }"#
    );
    // A number stays a number when the new text is one, and becomes a string otherwise.
    let (_, edited, _) = replace(&json("$.order.n"), "POST", "/o", &msg, &|_, t| {
        assert_eq!(t, ValueType::Number);
        Some("7001".into())
    });
    assert!(
        String::from_utf8(edited.body)
            .unwrap()
            .contains(r#""n": 7001}"#)
    );
    let (_, edited, _) = replace(&json("$.order.n"), "POST", "/o", &msg, &|_, _| {
        Some("ch_1".into())
    });
    assert!(
        String::from_utf8(edited.body)
            .unwrap()
            .contains(r#""n": "ch_1"}"#)
    );
    let (_, edited, _) = replace(&json(r#"$["odd key"]"#), "POST", "/o", &msg, &|_, _| {
        Some("w".into())
    });
    assert!(
        String::from_utf8(edited.body)
            .unwrap()
            .ends_with(r#""odd key":"w" }"#)
    );
    // Unchanged values and bodies that are not JSON objects or arrays give nothing.
    assert_eq!(
        replace(&json("$.order.id"), "POST", "/o", &msg, &|_, _| None).2,
        0
    );
    assert!(values_at(&json("$"), "POST", "/o", &message(&[], "\"text\"")).is_empty());
    assert!(values_at(&json("$.a"), "POST", "/o", &message(&[], "{\"a\":1")).is_empty());
}

#[test]
fn json_paths_are_the_ones_discovery_writes() {
    use tapedeck_proto::{Exchange, Message};
    let body =
        br#"{"a":{"b-c":[1,{"x y":"ord_1"}],"_k":"tok_123456","n":-12.5e3},"z":[[true,null,"s"]]}"#;
    let exchange = Exchange {
        method: "POST".into(),
        path: "/x".into(),
        request: Some(Message {
            body: body.to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut discovered = Vec::new();
    crate::tokens::extract(&exchange, &mut |o| {
        if o.part == Part::Json {
            discovered.push((o.key.into_owned(), o.value.into_owned()));
        }
    });
    let msg = message(&[], std::str::from_utf8(body).unwrap());
    let mut scanned = Vec::new();
    for (path, _) in &discovered {
        for (value, _) in values_at(&json(path), "POST", "/x", &msg) {
            scanned.push((path.clone(), value));
        }
    }
    discovered.sort();
    scanned.sort();
    scanned.dedup();
    assert_eq!(scanned, discovered);
}

#[test]
fn headers_keep_their_scheme_and_cookies_their_neighbours() {
    let msg = message(
        &[
            ("Authorization", "Bearer eyJ.old.sig"),
            ("Cookie", "theme=dark; session=\"s1\";lang=en"),
            ("x-api-key", "k1"),
            ("X-Api-Key", "k2"),
        ],
        "",
    );
    let bearer = Location {
        scheme: Some("bearer".into()),
        ..header("authorization")
    };
    let (_, edited, changed) = replace(&bearer, "GET", "/", &msg, &|v, _| {
        assert_eq!(v, "eyJ.old.sig");
        Some("eyJ.new.sig".into())
    });
    assert_eq!(changed, 1);
    assert_eq!(edited.header("authorization"), Some("Bearer eyJ.new.sig"));
    // Without a scheme in the rule, a schemed value is another location.
    assert!(values_at(&header("authorization"), "GET", "/", &msg).is_empty());
    let session = Location {
        name: Some("session".into()),
        ..location(Side::Request, Part::Cookie)
    };
    assert_eq!(
        values_at(&session, "GET", "/", &msg),
        [("s1".to_owned(), ValueType::Text)]
    );
    let (_, edited, _) = replace(&session, "GET", "/", &msg, &|_, _| Some("s2".into()));
    assert_eq!(
        edited.header("cookie"),
        Some("theme=dark; session=\"s2\";lang=en")
    );
    let (_, edited, changed) = replace(&header("x-api-key"), "GET", "/", &msg, &|v, _| {
        Some(format!("{v}!"))
    });
    assert_eq!(changed, 2);
    assert_eq!(edited.headers[3].1, b"k2!");

    let set = message(
        &[
            ("set-cookie", "session=abc; Path=/; HttpOnly"),
            ("Set-Cookie", "other=1"),
        ],
        "",
    );
    let set_session = Location {
        name: Some("session".into()),
        ..location(Side::Response, Part::Cookie)
    };
    assert_eq!(
        values_at(&set_session, "GET", "/", &set),
        [("abc".to_owned(), ValueType::Text)]
    );
    let (_, edited, _) = replace(&set_session, "GET", "/", &set, &|_, _| Some("xyz".into()));
    assert_eq!(
        edited.header("set-cookie"),
        Some("session=xyz; Path=/; HttpOnly")
    );
    assert_eq!(edited.headers[1].1, b"other=1");
}

#[test]
fn paths_and_queries_are_encoded_only_where_needed() {
    let segment = Location {
        segment: Some(2),
        endpoint: Some("GET /orders/{id}".into()),
        ..location(Side::Request, Part::Path)
    };
    let msg = LiveMessage::default();
    assert_eq!(
        values_at(&segment, "GET", "/orders/ord_010000?x=1", &msg),
        [("ord_010000".to_owned(), ValueType::Text)]
    );
    let (path, _, changed) = replace(&segment, "GET", "/orders/ord_010000?x=1", &msg, &|_, _| {
        Some("a b/c%zz%20é".into())
    });
    assert_eq!(changed, 1);
    assert_eq!(path, "/orders/a%20b%2Fc%25zz%20%C3%A9?x=1");
    // Another endpoint: not this rule's.
    assert_eq!(
        replace(&segment, "POST", "/orders/ord_010000", &msg, &|_, _| Some(
            "x".into()
        ))
        .2,
        0
    );
    assert!(values_at(&segment, "GET", "/carts/ord_010000", &msg).is_empty());

    let since = Location {
        name: Some("since".into()),
        ..location(Side::Request, Part::Query)
    };
    let (path, _, changed) = replace(
        &since,
        "GET",
        "/orders?since=2026-11-27T13:00:00+01:00&since=&x=1&since=1795784400#frag",
        &msg,
        &|v, _| Some(format!("{v}&1")),
    );
    assert_eq!(changed, 2);
    assert_eq!(
        path,
        "/orders?since=2026-11-27T13:00:00+01:00%261&since=&x=1&since=1795784400%261#frag"
    );
    // A response location never reads the request line.
    let response_query = Location {
        message: Side::Response,
        ..since
    };
    assert!(values_at(&response_query, "GET", "/orders?since=1", &msg).is_empty());
}
