//! `/metrics`: Prometheus text for the HTTP service: requests by route and status, their
//! latency, open event streams, and the outbox.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::Response,
};

use crate::TaskService;

/// Upper bounds (seconds) of the request latency histogram's buckets.
const BUCKETS: [f64; 9] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0];

/// Counters shared by the middleware, the event stream and the `/metrics` handler.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    open_streams: AtomicI64,
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Counts an open event stream while it lives.
#[derive(Debug)]
pub(crate) struct StreamGuard(Arc<Metrics>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub(crate) fn stream_opened(self: &Arc<Self>) -> StreamGuard {
        self.open_streams.fetch_add(1, Ordering::Relaxed);
        StreamGuard(self.clone())
    }

    fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *requests
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
        drop(requests);
        let mut latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let histogram = latency.entry(route.to_owned()).or_default();
        for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    fn render(&self, service: &TaskService) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP switchboard_http_requests_total HTTP requests by method, route and status."
        );
        let _ = writeln!(out, "# TYPE switchboard_http_requests_total counter");
        for ((method, route, status), count) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "switchboard_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP switchboard_http_request_duration_seconds Time to the response head, by route."
        );
        let _ = writeln!(
            out,
            "# TYPE switchboard_http_request_duration_seconds histogram"
        );
        for (route, histogram) in self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            for (count, bound) in histogram.buckets.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "switchboard_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "switchboard_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                out,
                "switchboard_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                histogram.sum
            );
            let _ = writeln!(
                out,
                "switchboard_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                histogram.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP switchboard_event_streams Open Server-Sent Event streams."
        );
        let _ = writeln!(out, "# TYPE switchboard_event_streams gauge");
        let _ = writeln!(
            out,
            "switchboard_event_streams {}",
            self.open_streams.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP switchboard_events_published_total Events this process moved from the outbox to the bus."
        );
        let _ = writeln!(out, "# TYPE switchboard_events_published_total counter");
        let _ = writeln!(
            out,
            "switchboard_events_published_total {}",
            service.events_published()
        );
        let _ = writeln!(
            out,
            "# HELP switchboard_bus_failing 1 while the bus refuses events (they wait in the outbox)."
        );
        let _ = writeln!(out, "# TYPE switchboard_bus_failing gauge");
        let _ = writeln!(
            out,
            "switchboard_bus_failing {}",
            u8::from(service.bus_failing())
        );
        out
    }
}

/// Records every request's route, status and latency. Routes are the matched patterns
/// (`/api/tasks/{id}`), never raw paths, so the label set stays small.
pub(crate) async fn track(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // A fixed set of labels: a client inventing methods must not grow the series without end.
    let method = match *request.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::PATCH => "PATCH",
        axum::http::Method::DELETE => "DELETE",
        axum::http::Method::HEAD => "HEAD",
        axum::http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    metrics.record(
        method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

pub(crate) async fn render(
    State((metrics, service)): State<(Arc<Metrics>, Arc<TaskService>)>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        metrics.render(&service),
    )
}
