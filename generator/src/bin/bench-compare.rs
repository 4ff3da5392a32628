//! `./x bench verdict` (after the power table): the cost of comparing a response, µs per
//! response, for a 2 KiB JSON body over a 10 000-request replay.
//!
//! Each request's recorded response is compared with a live one that differs where live
//! responses do (a fresh timestamp and UUID, the array reordered, float jitter), the way
//! `tapedeck replay` compares it: the comparer with the comparators calibration learns, then
//! the difference summary, then the noise rules applied at the end. Three cases: exact
//! comparison (no comparator: every noisy field is a difference), with learned comparators, and
//! a paired run (baseline and candidate: three comparisons per request).

use std::collections::HashSet;
use std::hint::black_box;
use std::time::Instant;

use tapedeck_analyzer::replay::edit::LiveMessage;
use tapedeck_generator::compare::{Clocks, Comparator, Comparer, Origin, Set};
use tapedeck_generator::diff::{Compared, DiffSummary, ResponseView, Skips};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REQUESTS: u64 = 10_000;
const NOW: i64 = 1_796_000_000;

/// `arm`: 0 recorded, 1 candidate, 2 baseline.
fn body(n: u64, arm: u8) -> Vec<u8> {
    let live = arm > 0;
    let at = |s: i64| {
        tapedeck_har::time::format(u64::try_from(s).unwrap_or(0) * 1_000_000_000 + n * 1000)
    };
    let mut lines: Vec<serde_json::Value> = (0..20)
        .map(|i| {
            serde_json::json!({
                "sku": format!("sku-{i:04}"),
                "name": format!("Product number {i} with a longer name"),
                "qty": i % 4 + 1,
                "price": 9.99 + f64::from(i) + f64::from(arm) * 1e-9,
            })
        })
        .collect();
    if arm == 1 {
        lines.reverse();
    }
    let value = serde_json::json!({
        "id": format!("ord_{n:08}"),
        "status": "paid",
        "customer": {"id": format!("cus_{:06}", n % 997), "email": "someone@example.com", "tier": "gold"},
        "created_at": at(if live { NOW } else { NOW - 86_400 }),
        "request_id": format!("3f2b8c1e-0d4a-4c6b-9a7e-{:012x}", n + u64::from(arm)),
        "total": 155.88,
        "currency": "EUR",
        "lines": lines,
    });
    value.to_string().into_bytes()
}

fn comparer(learned: bool) -> Comparer {
    let sets = if learned {
        [
            ("$.created_at", Comparator::Timestamp { skew_s: 300.0 }),
            ("$.request_id", Comparator::Uuid),
            ("$.lines", Comparator::Array { key: None }),
            (
                "$.lines[*].price",
                Comparator::Number {
                    absolute: 0.0,
                    relative: 1e-6,
                },
            ),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (field, comparator))| Set {
            endpoint: Some("GET /orders/{id}".to_owned()),
            field: field.to_owned(),
            comparator,
            origin: Origin::Learned(i),
        })
        .collect()
    } else {
        Vec::new()
    };
    Comparer::new(
        vec!["content-type".to_owned()],
        sets,
        (NOW - 10 * 86_400)..=(NOW + 86_400),
    )
}

fn message(body: Vec<u8>) -> LiveMessage {
    LiveMessage {
        headers: vec![("content-type".to_owned(), b"application/json".to_vec())],
        body,
    }
}

fn view(m: &LiveMessage) -> ResponseView<'_> {
    ResponseView {
        status: 200,
        message: m,
        trailers: &[],
    }
}

/// µs per request, and differences left.
fn run(comparer: &Comparer, paired: bool) -> (f64, u64) {
    let recorded: Vec<LiveMessage> = (0..64).map(|n| message(body(n, 0))).collect();
    let live: Vec<LiveMessage> = (0..64).map(|n| message(body(n, 1))).collect();
    let base: Vec<LiveMessage> = (0..64).map(|n| message(body(n, 2))).collect();
    let skips = Skips::default();
    let deterministic = HashSet::new();
    let mut summary = DiffSummary::new(paired);
    let clocks = Clocks {
        left: NOW - 86_400,
        right: NOW,
    };
    let start = Instant::now();
    for n in 0..REQUESTS {
        let i = (n % 64) as usize;
        let compare = |l: &LiveMessage, r: &LiveMessage| {
            comparer.compare(
                "GET /orders/{id}",
                view(l),
                view(r),
                clocks,
                Some(&deterministic),
                &skips,
                false,
            )
        };
        let (primary, rc, rb) = if paired {
            (
                compare(&base[i], &live[i]),
                Some(compare(&recorded[i], &live[i])),
                Some(compare(&recorded[i], &base[i])),
            )
        } else {
            (compare(&recorded[i], &live[i]), None, None)
        };
        summary.add(Compared {
            endpoint: "GET /orders/{id}",
            line: (i + 1) as u32,
            copy: 0,
            iteration: (n / 64) as u32,
            primary,
            recorded_vs_candidate: rc,
            recorded_vs_baseline: rb,
        });
    }
    let finished = black_box(summary.finish(&|_, _| None, comparer, &|i| i.to_string()));
    let us = start.elapsed().as_secs_f64() * 1e6 / REQUESTS as f64;
    (us, finished.groups.iter().map(|g| g.count).sum())
}

fn main() {
    let size = body(1, 0).len();
    println!("compare: {REQUESTS} requests, recorded body {size} bytes (JSON), release build");
    println!("| case | µs per request | differences left |");
    println!("| --- | ---: | ---: |");
    for (name, learned, paired) in [
        ("exact (no comparator)", false, false),
        ("learned comparators", true, false),
        ("paired: three comparisons", true, true),
    ] {
        // Best of three runs.
        let mut best = f64::MAX;
        let mut left = 0;
        for _ in 0..3 {
            let (us, l) = run(&comparer(learned), paired);
            best = best.min(us);
            left = l;
        }
        println!("| {name} | {best:.1} | {left} |");
    }
}
