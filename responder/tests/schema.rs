//! The chaos rules JSON Schema and the parser agree: the example of docs/responder.md is valid
//! for both, and broken files are refused by both.

use tapedeck_responder::chaos::parse_rules;

const SCHEMA: &str = include_str!("../../docs/responder-chaos-v1.schema.json");
const DOCS: &str = include_str!("../../docs/responder.md");

fn schema_accepts(yaml: &str) -> bool {
    let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let value: serde_json::Value = serde_yaml::from_str(yaml).unwrap();
    validator.is_valid(&value)
}

#[test]
fn the_documented_example_is_valid() {
    let start = DOCS.find("```yaml\n").unwrap() + "```yaml\n".len();
    let example = &DOCS[start..start + DOCS[start..].find("```").unwrap()];
    assert!(schema_accepts(example), "{example}");
    assert_eq!(parse_rules(example).unwrap().len(), 3);
}

#[test]
fn schema_and_parser_agree() {
    for (yaml, valid) in [
        ("version: 1\n", true),
        ("version: 1\nrules: []\n", true),
        (
            "version: 1\nrules:\n  - probability: 0.5\n    fault: {kind: hang}\n",
            true,
        ),
        (
            "version: 1\nrules:\n  - probability: 0.5\n    fault: {kind: latency, recorded_factor: 2}\n",
            true,
        ),
        (
            "version: 1\nrules:\n  - probability: 0.5\n    fault: {kind: slow_body, duration_ms: 10}\n",
            true,
        ),
        (
            "version: 1\nrules:\n  - probability: 1\n    fault: {kind: grpc_status, code: 14, message: down}\n",
            true,
        ),
        (
            "version: 1\nrules:\n  - probability: 0.5\n    fault: {kind: truncate, fraction: 0.2}\n",
            true,
        ),
        (
            "version: 1\nrules:\n  - probability: 1.5\n    fault: {kind: hang}\n",
            false,
        ),
        (
            "version: 1\nrules:\n  - probability: 0.5\n    fault: {kind: hang, x: 1}\n",
            false,
        ),
        (
            "version: 1\nrules:\n  - probability: 0.5\n    fault: {kind: latency}\n",
            false,
        ),
        (
            "version: 1\nrules:\n  - probability: 0.5\n    fault: {kind: latency, fixed_ms: 1, recorded_factor: 2}\n",
            false,
        ),
        (
            "version: 1\nrules:\n  - probability: 0.5\n    fault: {kind: status}\n",
            false,
        ),
        ("version: 1\nrules:\n  - fault: {kind: reset}\n", false),
        ("version: 1\nextra: true\n", false),
        ("version: 2\n", false),
    ] {
        assert_eq!(schema_accepts(yaml), valid, "schema: {yaml}");
        assert_eq!(parse_rules(yaml).is_ok(), valid, "parser: {yaml}");
    }
}
