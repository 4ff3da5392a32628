//! Rendering an [`Inventory`]: a terminal table, GitHub markdown, or JSON.

use std::fmt::Write as _;

use tapedeck_har::time;

use super::*;

impl Inventory {
    /// Pretty JSON in the documented field order, with a final newline.
    pub fn to_json(&self) -> String {
        let mut out = serde_json::to_string_pretty(self)
            .expect("an inventory serializes: its maps have string keys and its floats are finite");
        out.push('\n');
        out
    }

    /// One line on what was seen: the count and the window.
    fn headline(&self) -> String {
        let window = match (self.first_seen, self.last_seen) {
            (Some(first), Some(last)) => {
                format!(" from {} to {}", time::format(first), time::format(last))
            }
            _ => String::new(),
        };
        format!("{}{window}", plural(self.totals.exchanges, "exchange"))
    }

    /// The counts by direction, in one line.
    fn breakdown(&self) -> String {
        let t = &self.totals;
        let mut line = format!(
            "inbound: {}, {}; outbound: {}, {}, {}",
            plural(t.inbound, "exchange"),
            plural(t.inbound_endpoints, "endpoint"),
            plural(t.outbound, "exchange"),
            plural(t.dependencies, "host"),
            plural(t.outbound_endpoints, "endpoint"),
        );
        if t.unspecified > 0 {
            let _ = write!(
                line,
                "; unspecified direction: {}, {}",
                plural(t.unspecified, "exchange"),
                plural(t.unspecified_endpoints, "endpoint"),
            );
        }
        line
    }

    /// An aligned plain-text report for a terminal: a headline, then one table of inbound
    /// endpoints and one of outbound endpoints (by host), and one of exchanges without a
    /// direction when there are any. Mixes show the value alone when it covers every exchange
    /// of the row, else `value (count)`.
    pub fn to_table(&self) -> String {
        let mut out = format!(
            "service {}: {}\n{}\n",
            self.service,
            self.headline(),
            self.breakdown()
        );
        table_section(&mut out, "INBOUND", &self.inbound);
        out.push('\n');
        if self.outbound.is_empty() {
            out.push_str("OUTBOUND: none\n");
        } else {
            out.push_str("OUTBOUND\n");
            let mut table = Table::new(Some("HOST"));
            for dependency in &self.outbound {
                for endpoint in &dependency.endpoints {
                    table.push(Some(display_host(&dependency.host).to_owned()), endpoint);
                }
            }
            out.push_str(&table.render());
        }
        if !self.unspecified.is_empty() {
            table_section(&mut out, "UNSPECIFIED DIRECTION", &self.unspecified);
        }
        out
    }

    /// A GitHub markdown report: a headline, a table of inbound endpoints, then per outbound
    /// host a summary line and a table of its endpoints, and a table of exchanges without a
    /// direction when there are any.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "# Inventory of `{}`\n\n{}.\n\n{}.\n",
            self.service,
            capitalize(&self.headline()),
            capitalize(&self.breakdown())
        );
        out.push_str("\n## Inbound\n\n");
        markdown_section(&mut out, &self.inbound);
        out.push_str("\n## Outbound\n");
        if self.outbound.is_empty() {
            out.push_str("\nNone.\n");
        }
        for dependency in &self.outbound {
            let stats = &dependency.stats;
            let _ = write!(
                out,
                "\n### {}\n\n{}, {}; status {}; p50 {} ms, p95 {} ms, p99 {} ms; first seen {}, last seen {}.\n\n",
                markdown_code(display_host(&dependency.host)),
                plural(stats.count, "call"),
                plural(dependency.endpoints.len() as u64, "endpoint"),
                stats.status.render(stats.count),
                format_ms(stats.latency_ms.p50),
                format_ms(stats.latency_ms.p95),
                format_ms(stats.latency_ms.p99),
                time::format(stats.first_seen),
                time::format(stats.last_seen),
            );
            markdown_endpoints(&mut out, &dependency.endpoints, false);
        }
        if !self.unspecified.is_empty() {
            out.push_str("\n## Unspecified direction\n\n");
            markdown_section(&mut out, &self.unspecified);
        }
        out
    }
}

/// A titled table of endpoints with their hosts: the host in the title when every endpoint was
/// called on the same one, else a hosts column.
fn table_section(out: &mut String, title: &str, list: &[Endpoint]) {
    out.push('\n');
    if list.is_empty() {
        let _ = writeln!(out, "{title}: none");
        return;
    }
    let common = common_host(list);
    match common {
        Some(host) => {
            let _ = writeln!(out, "{title} (host {})", display_host(host));
        }
        None => {
            let _ = writeln!(out, "{title}");
        }
    }
    let mut table = Table::new(common.is_none().then_some("HOSTS"));
    for endpoint in list {
        let hosts = common
            .is_none()
            .then(|| endpoint.hosts.render(endpoint.stats.count));
        table.push(hosts, endpoint);
    }
    out.push_str(&table.render());
}

/// The host every endpoint of the list was called on, when there is exactly one.
fn common_host(list: &[Endpoint]) -> Option<&str> {
    let mut hosts = list
        .iter()
        .flat_map(|e| e.hosts.0.iter().map(|(h, _)| h.as_str()));
    let first = hosts.next()?;
    hosts.all(|h| h == first).then_some(first)
}

fn display_host(host: &str) -> &str {
    if host.is_empty() { "(no host)" } else { host }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Milliseconds for people: one decimal, two below 1 ms.
fn format_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.1}")
    }
}

/// `1 exchange`, `2 exchanges`.
fn plural(count: u64, word: &str) -> String {
    if count == 1 {
        format!("1 {word}")
    } else {
        format!("{count} {word}s")
    }
}

/// The cells every endpoint row has, after the optional host cell.
const ENDPOINT_HEADERS: [&str; 13] = [
    "METHOD",
    "PATH",
    "COUNT",
    "STATUS",
    "P50 MS",
    "P95 MS",
    "P99 MS",
    "PROTOCOLS",
    "REQUEST TYPES",
    "RESPONSE TYPES",
    "REQUEST SIZES",
    "FIRST SEEN",
    "LAST SEEN",
];

/// Which of [`ENDPOINT_HEADERS`] are right-aligned numbers.
const NUMERIC: [bool; 13] = [
    false, false, true, false, true, true, true, false, false, false, false, false, false,
];

fn endpoint_cells(endpoint: &Endpoint) -> [String; 13] {
    let stats = &endpoint.stats;
    let of = stats.count;
    [
        endpoint.method.clone(),
        endpoint.template.clone(),
        of.to_string(),
        stats.status.render(of),
        format_ms(stats.latency_ms.p50),
        format_ms(stats.latency_ms.p95),
        format_ms(stats.latency_ms.p99),
        stats.protocols.render(of),
        stats.request_content_types.render(of),
        stats.response_content_types.render(of),
        stats.request_sizes.render(of),
        time::format(stats.first_seen),
        time::format(stats.last_seen),
    ]
}

/// A plain-text table with columns padded to their widest cell.
#[derive(Debug)]
struct Table {
    headers: Vec<&'static str>,
    numeric: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An endpoint table, with a leading host column when `host` names it.
    fn new(host: Option<&'static str>) -> Self {
        Self {
            headers: host.into_iter().chain(ENDPOINT_HEADERS).collect(),
            numeric: host.map(|_| false).into_iter().chain(NUMERIC).collect(),
            rows: Vec::new(),
        }
    }

    fn push(&mut self, host: Option<String>, endpoint: &Endpoint) {
        let row = host
            .into_iter()
            .chain(endpoint_cells(endpoint))
            .map(|cell| {
                cell.chars()
                    .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                    .collect()
            })
            .collect();
        self.rows.push(row);
    }

    fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let headers = self
            .headers
            .iter()
            .map(|h| (*h).to_owned())
            .collect::<Vec<_>>();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let width = widths.get(i).copied().unwrap_or_default();
                let pad = " ".repeat(width.saturating_sub(cell.chars().count()));
                if i > 0 {
                    line.push_str("  ");
                }
                if self.numeric.get(i).copied().unwrap_or_default() {
                    line.push_str(&pad);
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&pad);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A markdown table cell: `|` escaped, line breaks and other control characters replaced.
fn markdown_cell(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect::<String>()
        .replace('|', "\\|")
}

/// Text as inline code when it has no backtick, else as an escaped cell.
fn markdown_code(text: &str) -> String {
    if text.contains('`') || text.is_empty() {
        markdown_cell(text)
    } else {
        format!("`{}`", markdown_cell(text))
    }
}

/// A markdown table of endpoints with their hosts: a line naming the host when every endpoint
/// was called on the same one, else a hosts column.
fn markdown_section(out: &mut String, list: &[Endpoint]) {
    let common = common_host(list);
    if let Some(host) = common {
        let _ = writeln!(out, "Called on {}.\n", markdown_code(display_host(host)));
    }
    markdown_endpoints(out, list, common.is_none() && !list.is_empty());
}

/// A markdown table of endpoints (with a hosts column when `hosts`), or `None.`.
fn markdown_endpoints(out: &mut String, list: &[Endpoint], hosts: bool) {
    if list.is_empty() {
        out.push_str("None.\n");
        return;
    }
    let titles = [
        "Method",
        "Path",
        "Count",
        "Status",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "Protocols",
        "Request types",
        "Response types",
        "Request sizes",
        "Response sizes",
        "First seen",
        "Last seen",
    ];
    let mut header: Vec<&str> = Vec::new();
    let mut align: Vec<&str> = Vec::new();
    if hosts {
        header.push("Hosts");
        align.push("---");
    }
    for title in titles {
        header.push(title);
        align.push(
            if matches!(title, "Count" | "p50 ms" | "p95 ms" | "p99 ms") {
                "---:"
            } else {
                "---"
            },
        );
    }
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "| {} |", align.join(" | "));
    for endpoint in list {
        let stats = &endpoint.stats;
        let of = stats.count;
        let mut cells: Vec<String> = Vec::new();
        if hosts {
            cells.push(markdown_cell(&endpoint.hosts.render(of)));
        }
        cells.extend([
            markdown_cell(&endpoint.method),
            markdown_code(&endpoint.template),
            of.to_string(),
            markdown_cell(&stats.status.render(of)),
            format_ms(stats.latency_ms.p50),
            format_ms(stats.latency_ms.p95),
            format_ms(stats.latency_ms.p99),
            markdown_cell(&stats.protocols.render(of)),
            markdown_cell(&stats.request_content_types.render(of)),
            markdown_cell(&stats.response_content_types.render(of)),
            markdown_cell(&stats.request_sizes.render(of)),
            markdown_cell(&stats.response_sizes.render(of)),
            time::format(stats.first_seen),
            time::format(stats.last_seen),
        ]);
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
}
