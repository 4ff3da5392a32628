//! Property of the `responder_chaos` fuzz target, shared with its stable smoke test
//! (`responder/tests/fuzz_smoke.rs` includes this file).
//!
//! Any text is a chaos rules file (`chaos::parse_rules`, YAML or JSON), compiled against the
//! responder's fixture snapshot (`Chaos::new`) as `--chaos-rules` is, then planned for the
//! first requests of every recorded endpoint, as the server does for each request. Never a
//! panic (at parse, compile or plan time: a planned latency is a `Duration`); a planned
//! latency is the sum of the latencies fired, and a planned action is a fault of a rule that
//! fired.

use std::sync::OnceLock;

use tapedeck_responder::chaos::{self, Chaos};
use tapedeck_responder::fixture;
use tapedeck_responder::store::{Recording, Store};

fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("orders-snapshot");
        fixture::write_snapshot(&path).expect("writing the fixture snapshot");
        Store::load(&path).expect("loading the fixture snapshot")
    })
}

/// The property; panics when it does not hold.
pub(crate) fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(rules) = chaos::parse_rules(&text) else {
        return;
    };
    let store = store();
    let Ok(chaos) = Chaos::new(rules, 7, store, std::path::Path::new("fuzz.yaml")) else {
        return;
    };
    let mut sequence = 0;
    for recording in &store.recordings {
        let recorded: Vec<&Recording> = store
            .bucket(recording.host, &recording.endpoint)
            .map(|b| {
                b.recordings
                    .iter()
                    .map(|i| &store.recordings[*i as usize])
                    .collect()
            })
            .unwrap_or_default();
        for host in [Some(recording.host), None] {
            sequence += 1;
            let plan = chaos.plan(
                sequence,
                host,
                &recording.endpoint,
                &recording.method,
                &recorded,
            );
            let fired: f64 = plan.fired.iter().filter_map(|f| f.latency_ms).sum();
            for f in &plan.fired {
                if let Some(ms) = f.latency_ms {
                    assert!(ms.is_finite() && ms >= 0.0, "latency {ms} ms");
                }
            }
            let planned = plan.latency.as_secs_f64() * 1000.0;
            assert!(
                (planned - fired).abs() <= 1e-6 * fired.max(1.0) + 1e-5 * plan.fired.len() as f64,
                "planned {planned} ms, fired {fired} ms"
            );
            if let Some(action) = &plan.action {
                assert!(
                    plan.fired.iter().any(|f| &f.fault == action),
                    "planned a fault no rule fired"
                );
            }
        }
    }
}
