//! Replays: open the report directories given with `--report`, show each verdict with its
//! statistics, and mark a field of a differing response as noise. A mark writes an anchored
//! noise rule (one endpoint, one exact field) into the `--noise` file, through the generator's
//! noise module (`noise::read` checks the file as `tapedeck replay --noise` does, `noise::write`
//! writes it), and the verdict is decided again by the generator (`report::Rediff::recompute`)
//! on the run's differences kept in the report directory (`diffs.json`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use tapedeck_generator::noise::{self, NoiseFile, NoiseRule};
use tapedeck_generator::report::{JSON_FILE, Rediff};

use crate::{ApiError, Ui, json_response, ok};

/// A report directory by its index in `--report`.
fn dir_of(ui: &Ui, index: usize) -> Result<&Path, ApiError> {
    ui.reports
        .get(index)
        .map(PathBuf::as_path)
        .ok_or_else(|| ApiError::not_found(format!("no report {index} (see /api/reports)")))
}

/// `report.json` of a directory, as written (the page reads the report's JSON).
fn read_report(dir: &Path) -> Result<Value, String> {
    let path = dir.join(JSON_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|error| format!("reading {}: {error}", path.display()))?;
    serde_json::from_str(&text).map_err(|error| format!("reading {}: {error}", path.display()))
}

/// The `--noise` file as `tapedeck replay --noise` would read it against this run's endpoints:
/// `None` when it does not exist yet (the first mark creates it).
fn read_noise(path: &Path, rediff: &Rediff) -> Result<Option<NoiseFile>, String> {
    if !path.exists() {
        return Ok(None);
    }
    noise::read(path, &rediff.fields)
        .map(Some)
        .map_err(|error| error.to_string())
}

pub(crate) async fn list(State(ui): State<Arc<Ui>>) -> Result<Response, ApiError> {
    let reports: Vec<Value> = ui
        .reports
        .iter()
        .enumerate()
        .map(|(index, dir)| match read_report(dir) {
            Ok(report) => json!({
                "index": index,
                "dir": dir.display().to_string(),
                "verdict": report["verdict"],
                "snapshot": report["snapshot"]["id"],
                "started": report["started"],
                "requests": report["overall"]["requests"],
                "baseline": report.get("gate").is_some_and(|g| !g.is_null()),
                "recomputable": dir.join(tapedeck_generator::report::DIFFS_FILE).is_file(),
            }),
            Err(error) => json!({
                "index": index,
                "dir": dir.display().to_string(),
                "error": error,
            }),
        })
        .collect();
    Ok(ok(json!({
        "noise": ui.noise.as_ref().map(|p| p.display().to_string()),
        "reports": reports,
    })))
}

/// One report: `report.json` as written, and, with `--noise`, the run's differences decided
/// again under that file's rules.
fn show_report(ui: &Ui, index: usize) -> Result<Value, ApiError> {
    let dir = dir_of(ui, index)?;
    let report = read_report(dir).map_err(ApiError::not_found)?;
    let mut answer = json!({
        "index": index,
        "dir": dir.display().to_string(),
        "report": report,
        "noise": ui.noise.as_ref().map(|p| p.display().to_string()),
        "recomputed": null,
    });
    let rediff = match Rediff::read(dir) {
        Ok(rediff) => rediff,
        Err(error) => {
            answer["recompute_error"] = json!(format!(
                "{error} (written by `tapedeck replay --report` since report version 2 with diffs.json; a merged report has none)"
            ));
            return Ok(answer);
        }
    };
    answer["fields"] = json!(rediff.fields);
    let Some(path) = &ui.noise else {
        return Ok(answer);
    };
    match read_noise(path, &rediff) {
        Ok(file) => {
            let file = file.unwrap_or_default();
            answer["noise_rules"] = json!(file.rules);
            answer["recomputed"] = json!(rediff.recompute(&file));
        }
        Err(error) => answer["noise_error"] = json!(error),
    }
    Ok(answer)
}

pub(crate) async fn show(
    State(ui): State<Arc<Ui>>,
    UrlPath(index): UrlPath<usize>,
) -> Result<Response, ApiError> {
    Ok(ok(show_report(&ui, index)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkRequest {
    endpoint: String,
    field: String,
}

/// Adds (`add`) or removes the rule `request` names in the `--noise` file, written only when the
/// result reads back as `tapedeck replay --noise` reads it; answers the report decided again.
async fn change(
    ui: &Ui,
    index: usize,
    request: MarkRequest,
    add: bool,
) -> Result<Response, ApiError> {
    let path = ui.noise.as_deref().ok_or_else(|| {
        ApiError::forbidden(
            "read-only: start `tapedeck ui --report DIR --noise FILE` to mark fields as noise",
        )
    })?;
    let dir = dir_of(ui, index)?;
    let rediff = Rediff::read(dir).map_err(|error| {
        ApiError::bad_request(format!(
            "{error}: this report cannot be decided again (no diffs.json)"
        ))
    })?;
    let _writing = ui.noise_lock.lock().await;
    let mut file = read_noise(path, &rediff)
        .map_err(|error| ApiError::bad_request(format!("the noise file: {error}")))?
        .unwrap_or_default();
    let present = file
        .rules
        .iter()
        .position(|r| r.endpoint == request.endpoint && r.field == request.field);
    let changed = match (add, present) {
        (true, None) => {
            // Written by hand (no evidence): it always applies.
            file.rules.push(NoiseRule {
                endpoint: request.endpoint.clone(),
                field: request.field.clone(),
                evidence: None,
                suppressed: 0,
            });
            true
        }
        (false, Some(at)) => {
            file.rules.remove(at);
            true
        }
        _ => false,
    };
    if changed {
        // Checked as --noise reads it before it replaces the file: a rule that is not anchored
        // or makes the endpoint's rules over-broad is refused with the same message.
        let staged = staged_path(path);
        noise::write(&file, &staged).map_err(|error| ApiError::internal(error.to_string()))?;
        if let Err(error) = noise::read(&staged, &rediff.fields) {
            let _ = std::fs::remove_file(&staged);
            let message = error
                .to_string()
                .replace(&staged.display().to_string(), &path.display().to_string());
            return Ok(json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({ "error": message }),
            ));
        }
        std::fs::rename(&staged, path)
            .map_err(|error| ApiError::internal(format!("writing {}: {error}", path.display())))?;
        tracing::info!(
            noise = %path.display(),
            endpoint = %request.endpoint,
            field = %request.field,
            added = add,
            "noise rule changed"
        );
    }
    let mut answer = show_report(ui, index)?;
    answer["changed"] = json!(changed);
    Ok(ok(answer))
}

/// A file beside `path` to write before renaming over it.
fn staged_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "noise.json".to_owned());
    path.with_file_name(format!(".{name}.staged"))
}

pub(crate) async fn mark(
    State(ui): State<Arc<Ui>>,
    UrlPath(index): UrlPath<usize>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: MarkRequest = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request(format!("request body: {error}")))?;
    change(&ui, index, request, true).await
}

pub(crate) async fn unmark(
    State(ui): State<Arc<Ui>>,
    UrlPath(index): UrlPath<usize>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: MarkRequest = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request(format!("request body: {error}")))?;
    change(&ui, index, request, false).await
}
