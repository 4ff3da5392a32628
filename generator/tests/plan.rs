//! Which recorded response is the source of a recorded use: the analyzer's one definition
//! (`tokens::SourceJoin`, `tokens::correlation_sources`), as the generator relies on it.

use tapedeck_analyzer::tokens::{Flow, SourceJoin, correlation_sources};
use tapedeck_proto::Exchange;

use crate::support::inbound;

/// An exchange whose request carries `sent` in `x-v` and whose response carries `returned`
/// at `$.v`, starting at `start_ms` and lasting `ms`.
fn exchange(
    n: u64,
    start_ms: u64,
    ms: u64,
    sent: Option<&str>,
    returned: Option<&str>,
) -> Exchange {
    let header = sent.map(|v| vec![("x-v", v)]).unwrap_or_default();
    let response = returned
        .map(|v| format!(r#"{{"v":"{v}"}}"#))
        .unwrap_or_else(|| "{}".into());
    let mut e = inbound(
        n,
        start_ms,
        "GET",
        &format!("/step/{n}"),
        &header,
        "",
        200,
        &response,
    );
    e.duration_nanos = ms * 1_000_000;
    e
}

#[test]
fn the_join_rules_first_source_ended_responses_and_request_first_values() {
    let exchanges = vec![
        // tok_aaa111 is sent before any response carries it: never a source.
        exchange(0, 0, 5, Some("tok_aaa111"), None),
        exchange(1, 10, 5, None, Some("tok_aaa111")),
        exchange(2, 50, 5, Some("tok_aaa111"), None),
        // tok_bbb222's response ends at 150; a request at 120 is too early, and having seen the
        // value in a request first, no later use has a source either.
        exchange(3, 100, 50, None, Some("tok_bbb222")),
        exchange(4, 120, 5, Some("tok_bbb222"), None),
        exchange(5, 200, 5, Some("tok_bbb222"), None),
        // tok_ccc333: two responses carry it; the first wins, and a use after its end has it.
        exchange(6, 300, 5, None, Some("tok_ccc333")),
        exchange(7, 310, 5, None, Some("tok_ccc333")),
        exchange(8, 400, 5, Some("tok_ccc333"), None),
        // A response that ends exactly at the next request's start counts as ended.
        exchange(9, 500, 10, None, Some("tok_ddd444")),
        exchange(10, 510, 5, Some("tok_ddd444"), None),
    ];
    let window = (crate::support::T0, crate::support::T0 + 1_000_000_000);
    let uses = correlation_sources(&exchanges, Flow::Inbound, window);
    let found: Vec<(usize, &str, usize)> = uses
        .iter()
        .map(|u| (u.index, u.value.as_str(), u.source))
        .collect();
    assert_eq!(found, vec![(8, "tok_ccc333", 6), (10, "tok_ddd444", 9)]);
    assert_eq!(uses[0].at.describe(), "inbound request header x-v");
    assert_eq!(
        uses[0].source_at.describe(),
        "inbound response json $.v (GET /step/{id})"
    );

    // The same rules through the join itself.
    let mut join: SourceJoin<&str, usize> = SourceJoin::new();
    join.response(150, vec![("b", 3)]);
    join.advance(120);
    assert_eq!(join.request_value("b"), None);
    join.advance(200);
    assert_eq!(
        join.request_value("b"),
        None,
        "seen in a request first: never a source"
    );
    join.response(305, vec![("c", 6)]);
    join.response(315, vec![("c", 7)]);
    join.advance(400);
    assert_eq!(join.request_value("c"), Some(&6), "the first source wins");
}
