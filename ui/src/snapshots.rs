//! Snapshots: cut one from the page's filter and time range, browse a snapshot's token rules
//! with their evidence, and change a rule's action or delete it. Everything goes through the
//! analyzer (`Cut`, `snapshot::build`, `snapshot::write_manifest`, `snapshot::validate`), and
//! only inside the `--snapshots` directory.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use tapedeck_analyzer::cut::Cut;
use tapedeck_analyzer::rows::{BatchView, rows_of};
use tapedeck_analyzer::snapshot::{self, MANIFEST_FILE, Manifest, Spec};
use tapedeck_analyzer::tokens::ReplayAction;

use crate::sql::{check_predicate, now_nanos};
use crate::{ApiError, Ui, json_response, ok};

/// The writable snapshot directory, or 403.
fn root(ui: &Ui) -> Result<&std::path::Path, ApiError> {
    ui.snapshots.as_deref().ok_or_else(|| {
        ApiError::forbidden(
            "read-only: start `tapedeck ui --snapshots DIR` to cut and edit snapshots",
        )
    })
}

/// A snapshot's directory by name: one path component of letters, digits, `-`, `_` and `.`,
/// not starting with a dot, so nothing outside `--snapshots` can be named.
fn dir_of(ui: &Ui, name: &str) -> Result<PathBuf, ApiError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        return Err(ApiError::bad_request(format!(
            "snapshot name {name:?}: expected letters, digits, '-', '_' and '.'"
        )));
    }
    Ok(root(ui)?.join(name))
}

pub(crate) async fn list(State(ui): State<Arc<Ui>>) -> Result<Response, ApiError> {
    let Some(root) = ui.snapshots.as_deref() else {
        return Ok(ok(json!({ "writable": false, "snapshots": [] })));
    };
    let mut snapshots = Vec::new();
    let entries = std::fs::read_dir(root)
        .map_err(|error| ApiError::internal(format!("reading {}: {error}", root.display())))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path().join(MANIFEST_FILE)) else {
            continue;
        };
        let manifest = serde_json::from_str::<Manifest>(&text).ok();
        snapshots.push(json!({
            "name": name,
            "id": manifest.as_ref().map(|m| m.id.clone()),
            "service": manifest.as_ref().map(|m| m.service.clone()),
            "inbound": manifest.as_ref().map(|m| m.counts.inbound),
            "outbound": manifest.as_ref().map(|m| m.counts.outbound),
            "rules": manifest.as_ref().map(|m| m.tokens.len()),
        }));
    }
    snapshots.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(ok(json!({
        "writable": true,
        "dir": root.display().to_string(),
        "snapshots": snapshots,
    })))
}

/// `POST /api/snapshots`: `{"name", "service", "q", "from", "to"}`.
#[derive(Debug, Deserialize)]
struct CreateRequest {
    name: String,
    service: String,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

fn blank(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

pub(crate) async fn create(State(ui): State<Arc<Ui>>, body: Bytes) -> Result<Response, ApiError> {
    let request: CreateRequest = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request(format!("request body: {error}")))?;
    let dir = dir_of(&ui, &request.name)?;
    if dir.exists() {
        return Err(ApiError::bad_request(format!(
            "{} exists; choose another name",
            dir.display()
        )));
    }
    let predicate = blank(&request.q)
        .map(check_predicate)
        .transpose()
        .map_err(|error| ApiError::bad_request(error.to_string()))?;
    let cut = Cut::new(
        request.service.trim(),
        blank(&request.from),
        blank(&request.to),
        predicate.as_deref(),
        now_nanos(),
    )
    .map_err(|error| ApiError::bad_request(error.to_string()))?;
    let sql = cut.snapshot_sql();
    let batches = ui.backend.query(&sql).await?;
    let views = batches
        .iter()
        .map(BatchView::new)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ApiError::internal(format!("reading the cut's rows: {error}")))?;
    let exchanges = rows_of(&views);
    if exchanges.is_empty() {
        return Err(ApiError::bad_request(format!(
            "no exchanges of service {:?} match ({})",
            cut.service,
            cut.where_clause()
        )));
    }
    let spec = Spec {
        service: cut.service.clone(),
        sql,
        predicate: cut.predicate.clone(),
        from: cut.from,
        to: cut.to,
    };
    let built = snapshot::build(&spec, exchanges);
    let manifest = built
        .write(&dir, false)
        .map_err(|error| ApiError::internal(error.to_string()))?;
    tracing::info!(dir = %dir.display(), id = %manifest.id, "ui cut a snapshot");
    Ok(json_response(
        StatusCode::CREATED,
        &json!({
            "name": request.name,
            "id": manifest.id,
            "inbound": manifest.counts.inbound,
            "outbound": manifest.counts.outbound,
            "rules": manifest.tokens.len(),
        }),
    ))
}

/// A snapshot's manifest and rules, with every problem `tapedeck snapshot validate` reports.
fn describe(name: &str, dir: &std::path::Path) -> Result<Value, ApiError> {
    if !dir.join(MANIFEST_FILE).is_file() {
        return Err(ApiError::not_found(format!("no snapshot {name}")));
    }
    let (snapshot, problems) = snapshot::validate(dir);
    let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let manifest = snapshot.map(|s| s.manifest);
    let rules: Vec<Value> = manifest
        .iter()
        .flat_map(|m| m.tokens.iter().enumerate())
        .map(|(index, rule)| {
            let mut value = serde_json::to_value(rule).unwrap_or(Value::Null);
            value["index"] = json!(index);
            value["where"] = json!(rule.at.describe());
            value["uses"] = json!(rule.to.iter().map(|l| l.describe()).collect::<Vec<_>>());
            value
        })
        .collect();
    Ok(json!({
        "name": name,
        "id": manifest.as_ref().map(|m| m.id.clone()),
        "service": manifest.as_ref().map(|m| m.service.clone()),
        "window": manifest.as_ref().map(|m| json!({
            "from": tapedeck_har::time::format_exact(m.window.from.0),
            "to": tapedeck_har::time::format_exact(m.window.to.0),
        })),
        "counts": manifest.as_ref().map(|m| m.counts),
        "rules": rules,
        "valid": problems.is_empty(),
        "problems": problems,
    }))
}

pub(crate) async fn show(
    State(ui): State<Arc<Ui>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let dir = dir_of(&ui, &name)?;
    Ok(ok(describe(&name, &dir)?))
}

/// `GET /api/snapshots/{name}/entries?file=inbound.jsonl&line=N`: one line of a snapshot file
/// (a rule's evidence), with the exchange id to find it in the store.
#[derive(Debug, Deserialize)]
pub(crate) struct EntryParams {
    file: String,
    line: u64,
}

pub(crate) async fn entry(
    State(ui): State<Arc<Ui>>,
    Path(name): Path<String>,
    Query(params): Query<EntryParams>,
) -> Result<Response, ApiError> {
    let dir = dir_of(&ui, &name)?;
    if params.file != snapshot::INBOUND_FILE && params.file != snapshot::OUTBOUND_FILE {
        return Err(ApiError::bad_request(format!(
            "file {:?}: expected {} or {}",
            params.file,
            snapshot::INBOUND_FILE,
            snapshot::OUTBOUND_FILE
        )));
    }
    let path = dir.join(&params.file);
    let file = std::fs::File::open(&path)
        .map_err(|error| ApiError::not_found(format!("{}: {error}", path.display())))?;
    let line = std::io::BufReader::new(file)
        .lines()
        .nth(params.line.saturating_sub(1) as usize)
        .and_then(Result::ok)
        .ok_or_else(|| {
            ApiError::not_found(format!("{}: no line {}", path.display(), params.line))
        })?;
    let entry: Value = serde_json::from_str(&line).map_err(|error| {
        ApiError::bad_request(format!("{}:{}: {error}", params.file, params.line))
    })?;
    Ok(ok(
        json!({ "file": params.file, "line": params.line, "entry": entry }),
    ))
}

/// `PUT /api/snapshots/{name}/rules/{index}`: `{"replay": "keep"}`.
#[derive(Debug, Deserialize)]
struct EditRequest {
    replay: ReplayAction,
}

pub(crate) async fn edit_rule(
    State(ui): State<Arc<Ui>>,
    Path((name, index)): Path<(String, usize)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: EditRequest = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request(format!("request body: {error}")))?;
    rewrite(&ui, &name, index, |tokens| {
        tokens[index].replay = request.replay;
    })
}

pub(crate) async fn delete_rule(
    State(ui): State<Arc<Ui>>,
    Path((name, index)): Path<(String, usize)>,
) -> Result<Response, ApiError> {
    rewrite(&ui, &name, index, |tokens| {
        tokens.remove(index);
    })
}

/// Changes the rules of a snapshot's manifest, writes it back through the analyzer and
/// validates the snapshot; a change that makes it invalid is undone and answered with the
/// validator's problems (422).
fn rewrite(
    ui: &Ui,
    name: &str,
    index: usize,
    change: impl FnOnce(&mut Vec<tapedeck_analyzer::tokens::TokenRule>),
) -> Result<Response, ApiError> {
    let dir = dir_of(ui, name)?;
    let path = dir.join(MANIFEST_FILE);
    let before = std::fs::read_to_string(&path)
        .map_err(|error| ApiError::not_found(format!("{}: {error}", path.display())))?;
    let mut manifest: Manifest = serde_json::from_str(&before).map_err(|error| {
        ApiError::bad_request(format!(
            "{name}/{MANIFEST_FILE}: {error} (fix it by hand; `tapedeck snapshot validate` says more)"
        ))
    })?;
    if index >= manifest.tokens.len() {
        return Err(ApiError::not_found(format!(
            "{name} has {} rules; no rule {index}",
            manifest.tokens.len()
        )));
    }
    change(&mut manifest.tokens);
    snapshot::write_manifest(&dir, &manifest)
        .map_err(|error| ApiError::internal(error.to_string()))?;
    let described = describe(name, &dir)?;
    if described["valid"] == json!(false) {
        let problems = described["problems"].clone();
        std::fs::write(&path, before).map_err(|error| {
            ApiError::internal(format!("restoring {}: {error}", path.display()))
        })?;
        return Ok(json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({
                "error": format!("the change makes {name} invalid; it was not kept"),
                "problems": problems,
            }),
        ));
    }
    tracing::info!(snapshot = name, rule = index, "ui edited a token rule");
    Ok(ok(described))
}
