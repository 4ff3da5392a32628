//! Broken snapshots: every problem is reported with its file and line, none panics.

use std::fs;
use std::path::{Path, PathBuf};

use tapedeck_analyzer::fixture::Shop;
use tapedeck_analyzer::snapshot::{self, INBOUND_FILE, MANIFEST_FILE, OUTBOUND_FILE, Problem};

/// A fresh, valid snapshot of the shop in a temporary directory.
fn valid() -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("snap");
    crate::snapshot::write(Shop::default().exchanges(), &dir);
    assert_eq!(snapshot::validate(&dir).1, vec![]);
    (temp, dir)
}

fn edit(dir: &Path, file: &str, change: impl FnOnce(String) -> String) {
    let path = dir.join(file);
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, change(text)).unwrap();
}

fn edit_line(dir: &Path, file: &str, line: usize, change: impl FnOnce(&str) -> String) {
    edit(dir, file, |text| {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines[line - 1] = change(&lines[line - 1]);
        lines.join("\n") + "\n"
    });
}

fn problems(dir: &Path) -> Vec<String> {
    let (_, problems) = snapshot::validate(dir);
    problems.iter().map(Problem::to_string).collect()
}

#[test]
fn a_broken_json_line_is_named_by_file_line_and_column() {
    let (_temp, dir) = valid();
    edit_line(&dir, INBOUND_FILE, 3, |line| {
        line.replacen(r#""method":"#, r#""method"="#, 1)
    });
    let found = problems(&dir);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].starts_with("inbound.jsonl:3:"), "{found:#?}");
    assert!(found[0].contains("expected `:`"), "{found:#?}");
    let error = snapshot::read(&dir).unwrap_err().to_string();
    assert!(error.contains("inbound.jsonl:3:"), "{error}");
}

#[test]
fn every_broken_line_is_reported_not_just_the_first() {
    let (_temp, dir) = valid();
    edit_line(&dir, INBOUND_FILE, 2, |_| "{not json".to_owned());
    edit_line(&dir, INBOUND_FILE, 7, |line| {
        line.replacen(r#"{"id""#, r#"{"colour":"red","id""#, 1)
    });
    edit_line(&dir, OUTBOUND_FILE, 4, |line| {
        line.replacen(r#""status":200"#, r#""status":"ok""#, 1)
    });
    let found = problems(&dir);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].starts_with("inbound.jsonl:2:"), "{found:#?}");
    assert!(
        found[1].starts_with("inbound.jsonl:7:") && found[1].contains("unknown field `colour`"),
        "{found:#?}"
    );
    assert!(
        found[2].starts_with("outbound.jsonl:4:") && found[2].contains("invalid type"),
        "{found:#?}"
    );
}

#[test]
fn an_unknown_version_is_refused_by_name() {
    let (_temp, dir) = valid();
    edit(&dir, MANIFEST_FILE, |text| {
        text.replace(r#""version": 1"#, r#""version": 2"#)
    });
    assert_eq!(
        problems(&dir),
        ["snapshot.json:2: unknown format version 2 (this tapedeck reads version 1)"]
    );
}

#[test]
fn a_truncated_file_is_reported_at_its_last_line() {
    let (_temp, dir) = valid();
    edit(&dir, OUTBOUND_FILE, |text| {
        text[..text.len() - 40].to_owned()
    });
    let lines = fs::read_to_string(dir.join(OUTBOUND_FILE))
        .unwrap()
        .lines()
        .count();
    let found = problems(&dir);
    assert_eq!(found.len(), 2, "{found:#?}");
    for problem in &found {
        assert!(
            problem.starts_with(&format!("outbound.jsonl:{lines}")),
            "{found:#?}"
        );
    }
    assert!(found.iter().any(|p| p.contains("truncated")), "{found:#?}");
}

#[test]
fn a_truncated_manifest_is_an_error_with_its_position() {
    let (_temp, dir) = valid();
    edit(&dir, MANIFEST_FILE, |text| {
        text[..text.len() / 2].to_owned()
    });
    let found = problems(&dir);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].starts_with("snapshot.json:"), "{found:#?}");
    assert!(found[0].contains("EOF"), "{found:#?}");
}

#[test]
fn missing_files_are_named() {
    let (_temp, dir) = valid();
    fs::remove_file(dir.join(OUTBOUND_FILE)).unwrap();
    let found = problems(&dir);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("outbound.jsonl: cannot be read"),
        "{found:#?}"
    );
}

#[test]
fn inconsistent_contents_are_found() {
    let (_temp, dir) = valid();
    // A line removed: the counts no longer hold, and a link now points nowhere.
    edit(&dir, INBOUND_FILE, |text| {
        let mut lines: Vec<&str> = text.lines().collect();
        let first_order = lines
            .iter()
            .position(|l| l.contains(r#""method":"POST","path":"/orders""#))
            .expect("the fixture has orders");
        lines.remove(first_order);
        lines.join("\n") + "\n"
    });
    // Two lines swapped: out of order.
    edit(&dir, OUTBOUND_FILE, |text| {
        let mut lines: Vec<&str> = text.lines().collect();
        lines.swap(0, 1);
        lines.join("\n") + "\n"
    });
    // A rule made inconsistent.
    edit(&dir, MANIFEST_FILE, |text| {
        text.replacen(r#""replay": "resign""#, r#""replay": "substitute""#, 1)
    });
    let found = problems(&dir);
    let expect = [
        "snapshot.json:",
        "counts.inbound is 36 but the files hold 35",
        // The call of the removed request: second after the swap.
        "outbound.jsonl:2: caused_by",
        "outbound.jsonl:2: out of order",
        "replay substitute does not apply to a jwt rule",
    ];
    for part in expect {
        assert!(
            found.iter().any(|p| p.contains(part)),
            "no {part:?} in {found:#?}"
        );
    }
}

#[test]
fn hostile_bytes_do_not_panic() {
    let (_temp, dir) = valid();
    let mut junk = Vec::new();
    for i in 0..4096u32 {
        junk.push((i.wrapping_mul(2_654_435_761) >> 13) as u8);
    }
    fs::write(dir.join(INBOUND_FILE), &junk).unwrap();
    fs::write(dir.join(MANIFEST_FILE), &junk[..100]).unwrap();
    let found = problems(&dir);
    assert!(!found.is_empty());
    assert!(
        found
            .iter()
            .all(|p| p.starts_with("inbound.jsonl") || p.starts_with("snapshot.json")),
        "{found:#?}"
    );
}

#[test]
fn hand_edit_mistakes_get_errors_that_show_the_right_shape() {
    let (_temp, dir) = valid();
    edit_line(&dir, INBOUND_FILE, 1, |line| {
        line.replacen(r#""body":{"json":"#, r#""body":{"text":"x","json":"#, 1)
    });
    edit_line(&dir, INBOUND_FILE, 2, |line| {
        line.replacen(
            r#"["content-type","application/json"]"#,
            r#"["content-type","application/json","utf-8"]"#,
            1,
        )
    });
    edit_line(&dir, INBOUND_FILE, 3, |line| {
        line.replacen(r#"["accept","application/json"]"#, r#"["accept",42]"#, 1)
    });
    let found = problems(&dir);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found[0].starts_with("inbound.jsonl:1:")
            && found[0].contains(r#"a body has one kind, this one has "text" and "json""#),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with("inbound.jsonl:2:")
            && found[1].contains(r#"header "content-type" has more than 2 items"#),
        "{found:#?}"
    );
    assert!(
        found[2].starts_with("inbound.jsonl:3:")
            && found[2].contains("expected a header value: a string"),
        "{found:#?}"
    );
}
