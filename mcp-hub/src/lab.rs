//! The reliability lab: suites of steps run against any MCP server (a URL, a command, or an
//! upstream of `hub.toml`), measured with latency histograms, an error taxonomy and
//! expectations, and reported as JSON, a summary table and a self-contained HTML page.
//!
//! [`Suite`] is the parsed `suite.toml`; [`run_suite`] runs it and returns a [`RunReport`].
//! Fixed-rate steps measure each request from when it was due, not from when it was sent, so
//! a server that stalls cannot hide the requests it delayed (coordinated omission).

mod chaos;
mod client;
mod html;
mod report;
pub(crate) mod rest;
mod run;
mod service;
pub mod store;
mod suite;

pub use client::{ErrorKind, ServerInfo};
pub use report::{
    Bucket, Change, ChaosReport, ErrorSample, Latency, LoadReport, RunReport, Second,
    SessionReport, StepComparison, StepReport, Verdict, Window, compare, comparison_table,
};
pub use run::{Progress, ProgressSnapshot, run_suite};
pub use service::{ALERT_CHANNEL, LAB_TOPIC, Lab};
pub use suite::{
    Action, Chaos, ChaosFault, Expect, JsonPath, Load, Step, Suite, SuiteError, Target,
};
