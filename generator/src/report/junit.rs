//! JUnit XML: suite `slo` with a test case per goal (failed when the goal does not hold), and
//! suite `endpoints` with a test case per endpoint (failed when it had errors, responses that
//! differ from the recorded ones, or requests not sent because their source failed).

use std::fmt::Write as _;

use super::Report;

/// Escapes text for XML attributes and content.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

pub(super) fn render(report: &Report) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let goals = &report.slo.goals;
    let goal_failures = goals.iter().filter(|g| !g.pass).count();
    let endpoint_failures = report
        .endpoints
        .iter()
        .filter(|e| e.errors + e.diffs + e.failed_sources > 0)
        .count();
    let _ = writeln!(
        out,
        "<testsuites name=\"tapedeck replay {}\" tests=\"{}\" failures=\"{}\" time=\"{:.3}\">",
        escape(&report.snapshot.id),
        goals.len() + report.endpoints.len(),
        goal_failures + endpoint_failures,
        report.duration_s
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"slo\" tests=\"{}\" failures=\"{goal_failures}\">",
        goals.len()
    );
    for g in goals {
        let _ = write!(
            out,
            "    <testcase classname=\"slo\" name=\"{}\">",
            escape(&g.goal)
        );
        if !g.pass {
            let _ = write!(
                out,
                "<failure message=\"{}: measured {:.3}\"/>",
                escape(&g.goal),
                g.actual
            );
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n");
    let _ = writeln!(
        out,
        "  <testsuite name=\"endpoints\" tests=\"{}\" failures=\"{endpoint_failures}\">",
        report.endpoints.len()
    );
    for e in &report.endpoints {
        let _ = write!(
            out,
            "    <testcase classname=\"endpoints\" name=\"{}\" time=\"{:.6}\">",
            escape(&e.endpoint),
            e.latency.mean / 1000.0
        );
        if e.errors + e.diffs + e.failed_sources > 0 {
            let _ = write!(
                out,
                "<failure message=\"{} errors, {} responses with differences, {} not sent (failed source)\"/>",
                e.errors, e.diffs, e.failed_sources
            );
        }
        let _ = write!(
            out,
            "<system-out>{} requests, p50 {:.3} ms, p99 {:.3} ms (recorded p99 {:.3} ms)</system-out>",
            e.requests, e.latency.p50, e.latency.p99, e.recorded_latency.p99
        );
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
