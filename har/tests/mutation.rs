//! Spec-valid HAR mutated field by field: every field of one entry, in turn, is replaced by
//! values of every other JSON type (or removed). The file is never refused, nothing panics, the
//! mutated entry imports or is skipped with a diagnostic naming it, and the other entries
//! import exactly as before.

use serde_json::{Value, json};
use tapedeck_har::{Event, ImportOptions, from_exchanges, parse, stream, to_exchanges, to_json};
use tapedeck_proto::Exchange;

use crate::schema::validate_against_har_schema;
use crate::support::{BROWSER_HAR, Gen, skipped};

/// What each field is replaced with, in turn.
fn replacements() -> Vec<Option<Value>> {
    vec![
        None,
        Some(Value::Null),
        Some(json!(-1)),
        Some(json!(1.5e300)),
        Some(json!(true)),
        Some(json!("")),
        Some(json!("x")),
        Some(json!({"k": [1, {"v": null}]})),
        Some(json!([])),
        Some(json!([{"name": 1}])),
    ]
}

/// The JSON pointer of every value below `value` (objects and arrays included).
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let child_at = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                out.push(child_at.clone());
                pointers(child, child_at, out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                let child_at = format!("{at}/{index}");
                out.push(child_at.clone());
                pointers(child, child_at, out);
            }
        }
        _ => {}
    }
}

fn set(document: &mut Value, pointer: &str, replacement: Option<Value>) {
    let (parent, last) = pointer.rsplit_once('/').expect("a pointer below the entry");
    let last = last.replace("~1", "/").replace("~0", "~");
    match (document.pointer_mut(parent), replacement) {
        (Some(Value::Object(map)), Some(value)) => {
            map.insert(last, value);
        }
        (Some(Value::Object(map)), None) => {
            map.remove(&last);
        }
        (Some(Value::Array(items)), Some(value)) => items[last.parse::<usize>().unwrap()] = value,
        (Some(Value::Array(items)), None) => {
            items.remove(last.parse::<usize>().unwrap());
        }
        _ => panic!("no parent at {parent}"),
    }
}

fn ids_cleared(mut exchanges: Vec<Exchange>) -> Vec<Exchange> {
    for exchange in &mut exchanges {
        exchange.id.clear();
    }
    exchanges
}

/// Mutates every field of entry `target` in `document` and checks each result.
fn mutate_every_field(document: &Value, target: usize) -> usize {
    let options = ImportOptions {
        id_seed: Some(1),
        ..ImportOptions::new("mutated")
    };
    let baseline = to_exchanges(&parse(document.to_string().as_bytes()).unwrap(), &options);
    assert_eq!(baseline.1, vec![], "the unmutated document imports cleanly");
    let entries = baseline.0.len();
    let mut fields = Vec::new();
    let entry_at = format!("/log/entries/{target}");
    pointers(
        &document.pointer(&entry_at).unwrap().clone(),
        entry_at,
        &mut fields,
    );
    let mut cases = 0;
    for field in &fields {
        for replacement in replacements() {
            let mut mutated = document.clone();
            set(&mut mutated, field, replacement.clone());
            let text = mutated.to_string();
            let har = parse(text.as_bytes())
                .unwrap_or_else(|e| panic!("{field} = {replacement:?} refused the file: {e}"));
            let (exchanges, diagnostics) = to_exchanges(&har, &options);
            let skips = skipped(&diagnostics);
            assert_eq!(
                exchanges.len() + skips,
                entries,
                "{field} = {replacement:?}"
            );
            assert!(
                diagnostics.iter().all(|d| d.entry == Some(target)),
                "{field} = {replacement:?}: diagnostics outside the entry: {diagnostics:?}"
            );
            // The other entries are untouched (ids aside: a skipped entry takes none).
            let others = |list: &[Exchange]| -> Vec<Exchange> {
                let mut list = list.to_vec();
                if skips == 0 {
                    list.remove(target);
                }
                ids_cleared(list)
            };
            let mut expected = baseline.0.clone();
            expected.remove(target);
            assert_eq!(
                others(&exchanges),
                ids_cleared(expected),
                "{field} = {replacement:?}"
            );
            // The streaming reader reports the same.
            let mut streamed = Vec::new();
            let mut notes = Vec::new();
            let summary = stream(text.as_bytes(), &options, |event| match event {
                Event::Exchange(e) => streamed.push(*e),
                Event::Diagnostic(d) => notes.push(d),
            })
            .unwrap();
            assert_eq!((summary.entries, summary.skipped), (entries, skips));
            assert_eq!(streamed, exchanges, "{field} = {replacement:?}");
            assert_eq!(notes, diagnostics, "{field} = {replacement:?}");
            cases += 1;
        }
    }
    cases
}

#[test]
fn every_field_of_a_browser_entry_mutated_never_refuses_the_file() {
    let document: Value = serde_json::from_slice(BROWSER_HAR).unwrap();
    let cases: usize = [1].iter().map(|&i| mutate_every_field(&document, i)).sum();
    assert!(cases > 400, "{cases} cases");
}

#[test]
fn every_field_of_generated_spec_valid_entries_mutated_never_refuses_the_file() {
    let mut g = Gen::new(14);
    let mut cases = 0;
    for _ in 0..3 {
        let exchanges: Vec<Exchange> = (0..3).map(|_| crate::property::exchange(&mut g)).collect();
        let document: Value =
            serde_json::from_str(&to_json(&from_exchanges(&exchanges, "mutation"))).unwrap();
        assert_eq!(validate_against_har_schema(&document), Vec::<String>::new());
        cases += mutate_every_field(&document, 1);
    }
    assert!(cases > 400, "{cases} cases");
}
