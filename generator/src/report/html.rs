//! The self-contained HTML page: the report's JSON embedded in the page, and an inline script
//! that draws the charts as SVG (latency percentiles over time, throughput, errors) and fills
//! the per-endpoint table. No external resource: it opens with no network.

use super::Report;

const TEMPLATE: &str = include_str!("page.html");

/// Makes JSON safe inside a `<script>` element.
fn script_safe(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

pub(super) fn render(report: &Report) -> String {
    let json = serde_json::to_string(report).unwrap_or_else(|_| "{}".to_owned());
    TEMPLATE
        .replace("{{TITLE}}", &super::junit::escape(&report.snapshot.id))
        .replace("{{REPORT_JSON}}", &script_safe(&json))
}
