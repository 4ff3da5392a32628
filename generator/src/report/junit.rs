//! JUnit XML: suite `slo` with a test case per goal (failed when the goal does not hold), suite
//! `endpoints` with a test case per endpoint (failed when it had errors, responses that differ,
//! or requests not sent because their source failed); with a baseline, suite `gate` with a test
//! case per goal and row (overall, then each endpoint: failed on fail, skipped when
//! inconclusive); with noise rules, suite `noise` with a test case per rule (its evidence, whether
//! it applied and what it silenced, in `system-out`).

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
    out.push_str("  </testsuite>\n");
    if let Some(gate) = &report.gate {
        let rows: Vec<(&str, &crate::verdict::Row)> = gate
            .goals
            .iter()
            .flat_map(|g| {
                std::iter::once(&g.overall)
                    .chain(&g.endpoints)
                    .map(move |r| (g.goal.text.as_str(), r))
            })
            .collect();
        let failures = rows
            .iter()
            .filter(|(_, r)| r.verdict == crate::verdict::Verdict::Fail)
            .count();
        let skipped = rows
            .iter()
            .filter(|(_, r)| r.verdict == crate::verdict::Verdict::Inconclusive)
            .count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"gate\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\">",
            rows.len()
        );
        for (goal, row) in rows {
            let _ = write!(
                out,
                "    <testcase classname=\"gate\" name=\"{} {}\">",
                escape(goal),
                escape(&row.endpoint)
            );
            match row.verdict {
                crate::verdict::Verdict::Fail => {
                    let _ = write!(out, "<failure message=\"{}\"/>", escape(&row.text));
                }
                crate::verdict::Verdict::Inconclusive => {
                    let _ = write!(out, "<skipped message=\"{}\"/>", escape(&row.text));
                }
                crate::verdict::Verdict::Pass => {}
            }
            let _ = write!(out, "<system-out>{}</system-out>", escape(&row.text));
            out.push_str("</testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    let rules = &report.noise.rules;
    if !rules.is_empty() {
        let _ = writeln!(
            out,
            "  <testsuite name=\"noise\" tests=\"{}\" failures=\"0\">",
            rules.len()
        );
        for r in rules {
            let _ = write!(
                out,
                "    <testcase classname=\"noise\" name=\"{} {}\">",
                escape(&r.endpoint),
                escape(&r.field)
            );
            let _ = write!(
                out,
                "<system-out>{} rule, {}; {}; silenced {} differences</system-out>",
                escape(&r.source),
                if r.applied { "applied" } else { "not applied" },
                escape(&r.why),
                r.suppressed
            );
            out.push_str("</testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
