//! Call counts, errors and latency percentiles per upstream and per tool, for `/api/metrics`.

use std::{collections::BTreeMap, sync::Mutex, time::Duration};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds up to ten minutes; longer calls count as ten minutes.
const MAX_MICROS: u64 = 600_000_000;

#[derive(Default)]
pub(crate) struct CallStats {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    servers: BTreeMap<String, Series>,
    tools: BTreeMap<String, (String, Series)>,
}

struct Series {
    calls: u64,
    errors: u64,
    latency: Option<Histogram<u64>>,
}

impl Default for Series {
    fn default() -> Self {
        Self {
            calls: 0,
            errors: 0,
            latency: Histogram::new_with_bounds(1, MAX_MICROS, 3).ok(),
        }
    }
}

impl Series {
    fn record(&mut self, elapsed: Duration, failed: bool) {
        self.calls += 1;
        if failed {
            self.errors += 1;
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(MAX_MICROS);
        if let Some(latency) = &mut self.latency {
            latency.saturating_record(micros.clamp(1, MAX_MICROS));
        }
    }

    fn report(&self) -> SeriesReport {
        let quantile = |q: f64| {
            self.latency
                .as_ref()
                .filter(|h| !h.is_empty())
                .map(|h| h.value_at_quantile(q) as f64 / 1000.0)
        };
        SeriesReport {
            calls: self.calls,
            errors: self.errors,
            p50_ms: quantile(0.50),
            p95_ms: quantile(0.95),
            p99_ms: quantile(0.99),
        }
    }
}

/// One series as `/api/metrics` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SeriesReport {
    pub calls: u64,
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerMetrics {
    pub server: String,
    #[serde(flatten)]
    pub series: SeriesReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct ToolMetrics {
    pub tool: String,
    pub server: String,
    #[serde(flatten)]
    pub series: SeriesReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricsReport {
    pub servers: Vec<ServerMetrics>,
    pub tools: Vec<ToolMetrics>,
}

impl CallStats {
    /// Records one call of `tool` (the name clients see) on `server`.
    pub(crate) fn record(&self, server: &str, tool: &str, elapsed: Duration, failed: bool) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .servers
            .entry(server.to_owned())
            .or_default()
            .record(elapsed, failed);
        inner
            .tools
            .entry(tool.to_owned())
            .or_insert_with(|| (server.to_owned(), Series::default()))
            .1
            .record(elapsed, failed);
    }

    pub(crate) fn report(&self) -> MetricsReport {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        MetricsReport {
            servers: inner
                .servers
                .iter()
                .map(|(server, series)| ServerMetrics {
                    server: server.clone(),
                    series: series.report(),
                })
                .collect(),
            tools: inner
                .tools
                .iter()
                .map(|(tool, (server, series))| ToolMetrics {
                    tool: tool.clone(),
                    server: server.clone(),
                    series: series.report(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_error_counts_per_server_and_tool() {
        let stats = CallStats::default();
        for ms in 1..=100 {
            stats.record("a", "echo", Duration::from_millis(ms), ms % 10 == 0);
        }
        stats.record("b", "b__echo", Duration::from_millis(5), false);
        let report = stats.report();
        let a = &report.servers[0];
        assert_eq!(
            (a.server.as_str(), a.series.calls, a.series.errors),
            ("a", 100, 10)
        );
        let p50 = a.series.p50_ms.unwrap_or_default();
        let p99 = a.series.p99_ms.unwrap_or_default();
        assert!((49.0..=51.0).contains(&p50), "p50 {p50}");
        assert!((98.0..=100.5).contains(&p99), "p99 {p99}");
        assert_eq!(report.tools.len(), 2);
        // Sorted by name: `b__echo` comes before `echo`.
        assert_eq!(report.tools[0].server, "b");
        assert_eq!(report.tools[0].series.calls, 1);
    }
}
