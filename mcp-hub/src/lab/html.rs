//! The self-contained HTML report of a run: per step, latency percentiles over time, the
//! latency histogram and the error rate, drawn as inline SVG (no script, no network). A step
//! with chaos says what was done and how long recovery took, and its latency chart marks the
//! fault (and, after a kill, the outage until recovery) as a band.

use std::fmt::Write as _;

use super::report::{ChaosReport, RunReport, Second, StepReport};

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 200.0;
const PAD: f64 = 40.0;

impl RunReport {
    /// The report as one HTML document.
    pub fn html(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let title = format!("Lab run: {}", self.suite);
        let _ = write!(
            out,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>{STYLE}</style></head><body>\n",
            escape(&title)
        );
        let _ = write!(
            out,
            "<h1>{}</h1>\n<p class=\"meta\">against <code>{}</code>, started {}, {:.1} s — <strong class=\"{}\">{}</strong></p>\n",
            escape(&title),
            escape(&self.target),
            self.started_at.to_rfc3339(),
            self.duration_ms / 1000.0,
            if self.passed { "pass" } else { "fail" },
            if self.passed { "PASSED" } else { "FAILED" }
        );
        match (&self.session.error, &self.session.server) {
            (Some(error), _) => {
                let _ = writeln!(
                    out,
                    "<p class=\"fail\">The session could not be opened: {}</p>",
                    escape(error)
                );
            }
            (None, Some(server)) => {
                let _ = writeln!(
                    out,
                    "<p class=\"meta\">server {} {} (protocol {}), initialize {:.2} ms</p>",
                    escape(&server.name),
                    escape(&server.version),
                    escape(&server.protocol_version),
                    self.session.initialize_ms
                );
            }
            (None, None) => {}
        }
        summary_table(&mut out, self);
        for (index, step) in self.steps.iter().enumerate() {
            step_section(&mut out, index, step);
        }
        out.push_str("</body></html>\n");
        out
    }
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}\
td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}\
.pass{color:#17803d}.fail{color:#c0262d}.meta{color:#555}svg{background:#fafafa;border:1px solid #ddd;margin:4px 0}\
svg text{font:11px system-ui,sans-serif;fill:#555}section{margin-top:2em}h2{margin-bottom:.3em}\
.chaos{background:#fff4e5;border-left:3px solid #e8890c;padding:4px 8px}";

fn summary_table(out: &mut String, report: &RunReport) {
    out.push_str("<table class=\"summary\"><tr><th>step</th><th>requests</th><th>errors</th><th>req/s</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>max ms</th><th>chaos</th><th>result</th></tr>\n");
    for step in &report.steps {
        let errors: u64 = step.errors.values().sum();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{errors}</td><td>{:.0}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            escape(&step.name),
            step.requests,
            step.throughput,
            step.latency.p50,
            step.latency.p95,
            step.latency.p99,
            step.latency.max,
            escape(
                &step
                    .chaos
                    .as_ref()
                    .map_or_else(|| "—".to_owned(), chaos_cell)
            ),
            if step.passed { "pass" } else { "fail" },
            if step.passed { "pass" } else { "FAIL" }
        );
    }
    out.push_str("</table>\n");
}

fn step_section(out: &mut String, index: usize, step: &StepReport) {
    let _ = writeln!(
        out,
        "<section id=\"step-{index}\"><h2>{}</h2><p class=\"meta\">{} · {} · {} requests, {} ok</p>",
        escape(&step.name),
        escape(&step.kind),
        load_text(step),
        step.requests,
        step.ok
    );
    if !step.expectations.is_empty() {
        out.push_str("<ul>");
        for verdict in &step.expectations {
            let _ = write!(
                out,
                "<li class=\"{}\">{} — {}</li>",
                if verdict.passed { "pass" } else { "fail" },
                escape(&verdict.expectation),
                escape(&verdict.detail)
            );
        }
        out.push_str("</ul>\n");
    }
    let errors: Vec<_> = step.errors.iter().filter(|(_, n)| **n > 0).collect();
    if !errors.is_empty() {
        out.push_str("<p>errors: ");
        let parts: Vec<String> = errors
            .iter()
            .map(|(kind, n)| format!("{n} {}", kind.as_str()))
            .collect();
        out.push_str(&escape(&parts.join(", ")));
        out.push_str("</p><ul>");
        for sample in &step.error_samples {
            let _ = write!(
                out,
                "<li><code>{}</code>: {}</li>",
                sample.kind.as_str(),
                escape(&sample.message)
            );
        }
        out.push_str("</ul>\n");
    }
    if let Some(chaos) = &step.chaos {
        let _ = writeln!(
            out,
            "<p class=\"chaos{}\"><strong>chaos</strong>: {}</p>",
            if chaos.error.is_some() { " fail" } else { "" },
            escape(&chaos.summary())
        );
    }
    percentiles_chart(out, step);
    histogram_chart(out, step);
    error_chart(out, step);
    out.push_str("</section>\n");
}

/// The chaos column of the summary: the action and its recovery.
fn chaos_cell(chaos: &ChaosReport) -> String {
    match (&chaos.error, chaos.recovery_ms) {
        (Some(_), _) => format!("{}: failed", chaos.action),
        (None, Some(ms)) => format!("{}: recovered in {ms:.0} ms", chaos.action),
        (None, None) => format!("{}: no recovery", chaos.action),
    }
}

/// The fault's span in ms since the step started, for the band on the latency chart: an
/// injected fault from start to end, a kill from the kill to recovery (or the end).
fn chaos_band(chaos: &ChaosReport, step_end_ms: f64) -> Option<(f64, f64)> {
    let start = chaos.started_ms?;
    let end = match chaos.action.as_str() {
        "kill" => chaos
            .recovery_ms
            .map_or(step_end_ms, |r| chaos.ended_ms.unwrap_or(start) + r),
        _ => chaos.ended_ms.unwrap_or(step_end_ms),
    };
    Some((start, end.max(start)))
}

fn load_text(step: &StepReport) -> String {
    let load = &step.load;
    match (load.rate, load.duration_ms, load.calls) {
        (Some(rate), Some(duration), _) => format!(
            "{rate}/s for {:.1} s, up to {} in flight",
            duration / 1000.0,
            load.concurrency
        ),
        (None, Some(duration), _) => format!(
            "for {:.1} s, {} at a time",
            duration / 1000.0,
            load.concurrency
        ),
        (_, _, calls) => format!(
            "{} calls, {} at a time",
            calls.unwrap_or_default(),
            load.concurrency
        ),
    }
}

/// A line of the latency chart: its name, colour and value per second.
type Series = (&'static str, &'static str, fn(&Second) -> f64);

/// p50, p99 and max per second, on one latency axis.
fn percentiles_chart(out: &mut String, step: &StepReport) {
    let rows = &step.timeline;
    let top = rows
        .iter()
        .map(|r| r.max_ms)
        .fold(0.0_f64, f64::max)
        .max(0.001);
    let _ = write!(
        out,
        "<svg class=\"chart percentiles\" role=\"img\" aria-label=\"latency over time\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\">"
    );
    axes(out, "latency over time (ms; p50, p99, max per second)", top);
    #[allow(clippy::cast_precision_loss)] // Seconds of a run.
    let seconds = rows.len().max(1) as f64;
    #[allow(clippy::cast_precision_loss)]
    let x = |at: usize| PAD + (WIDTH - 2.0 * PAD) * (at as f64 + 0.5) / seconds;
    if let Some((from, to)) = step
        .chaos
        .as_ref()
        .and_then(|c| chaos_band(c, seconds * 1000.0))
    {
        let at = |ms: f64| PAD + (WIDTH - 2.0 * PAD) * (ms / 1000.0 / seconds).clamp(0.0, 1.0);
        let _ = write!(
            out,
            "<rect class=\"chaos-band\" x=\"{:.1}\" y=\"{PAD}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#e8890c\" fill-opacity=\"0.18\"><title>chaos: {:.0} to {:.0} ms</title></rect>",
            at(from),
            (at(to) - at(from)).max(1.0),
            HEIGHT - 2.0 * PAD,
            from,
            to
        );
    }
    let y = |ms: f64| HEIGHT - PAD + -(HEIGHT - 2.0 * PAD) * (ms / top);
    let series: [Series; 3] = [
        ("max", "#bbb", |r| r.max_ms),
        ("p99", "#c0262d", |r| r.p99_ms),
        ("p50", "#2563eb", |r| r.p50_ms),
    ];
    for (name, color, value) in series {
        let points: Vec<String> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.requests > 0)
            .map(|(at, r)| format!("{:.1},{:.1}", x(at), y(value(r))))
            .collect();
        let _ = write!(
            out,
            "<polyline class=\"series {name}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
    }
    out.push_str("</svg>\n");
}

/// Requests per latency bucket (logarithmic buckets).
fn histogram_chart(out: &mut String, step: &StepReport) {
    let buckets = &step.histogram;
    #[allow(clippy::cast_precision_loss)]
    let top = buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64;
    let _ = write!(
        out,
        "<svg class=\"chart histogram\" role=\"img\" aria-label=\"latency histogram\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\">"
    );
    axes(out, "latency histogram (requests per bucket, ms)", top);
    #[allow(clippy::cast_precision_loss)]
    let width = (WIDTH - 2.0 * PAD) / buckets.len().max(1) as f64;
    for (i, bucket) in buckets.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let height = (HEIGHT - 2.0 * PAD) * bucket.count as f64 / top;
        #[allow(clippy::cast_precision_loss)]
        let left = PAD + width * i as f64;
        let _ = write!(
            out,
            "<rect class=\"bar\" x=\"{left:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\" fill=\"#2563eb\"><title>≤ {} ms: {}</title></rect>",
            HEIGHT - PAD - height,
            (width - 1.0).max(1.0),
            bucket.le_ms,
            bucket.count
        );
        if i % 2 == 0 {
            let _ = write!(
                out,
                "<text x=\"{left:.1}\" y=\"{:.1}\">{}</text>",
                HEIGHT - PAD + 14.0,
                bucket.le_ms
            );
        }
    }
    out.push_str("</svg>\n");
}

/// The share of failed requests per second.
fn error_chart(out: &mut String, step: &StepReport) {
    let rows = &step.timeline;
    let _ = write!(
        out,
        "<svg class=\"chart errors\" role=\"img\" aria-label=\"error rate over time\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\">"
    );
    axes(
        out,
        "error rate over time (% of requests per second)",
        100.0,
    );
    #[allow(clippy::cast_precision_loss)]
    let width = (WIDTH - 2.0 * PAD) / rows.len().max(1) as f64;
    for (i, row) in rows.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let share = if row.requests == 0 {
            0.0
        } else {
            row.errors as f64 / row.requests as f64
        };
        let height = (HEIGHT - 2.0 * PAD) * share;
        #[allow(clippy::cast_precision_loss)]
        let left = PAD + width * i as f64;
        let _ = write!(
            out,
            "<rect class=\"bar\" x=\"{left:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\" fill=\"#c0262d\"><title>second {}: {} of {} failed</title></rect>",
            HEIGHT - PAD - height,
            (width - 1.0).max(1.0),
            row.at_s,
            row.errors,
            row.requests
        );
    }
    out.push_str("</svg>\n");
}

fn axes(out: &mut String, title: &str, top: f64) {
    let _ = write!(
        out,
        "<text x=\"{PAD}\" y=\"16\">{}</text><line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{}\" stroke=\"#999\"/><line x1=\"{PAD}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/><text x=\"2\" y=\"{}\">{}</text><text x=\"2\" y=\"{}\">0</text>",
        escape(title),
        HEIGHT - PAD,
        HEIGHT - PAD,
        WIDTH - PAD,
        HEIGHT - PAD,
        PAD + 4.0,
        short(top),
        HEIGHT - PAD
    );
}

fn short(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
