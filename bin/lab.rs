//! `mcp-hub lab …`: runs a suite from the command line (a progress line while it runs, the
//! summary table and the JSON result at the end, a non-zero exit when an expectation fails)
//! and compares two results.

use std::{
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use clap::{Args, Subcommand};
use mcp_hub::lab::{
    Change, Progress, RunReport, Suite, Target, compare, comparison_table, run_suite,
};

#[derive(Debug, Subcommand)]
pub(crate) enum LabCommand {
    /// Run a suite.toml against its target (or --target) and write its result.
    Run(RunArgs),
    /// Compare two results (JSON files of `lab run`): a verdict per step; exits 1 when a
    /// step regressed.
    Compare(CompareArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CompareArgs {
    /// The baseline result.
    baseline: PathBuf,
    /// The result to judge against it.
    new: PathBuf,
    /// How far a figure may move before it counts, in percent (latency and throughput) or
    /// percentage points (error rate).
    #[arg(long, default_value_t = 10.0)]
    tolerance: f64,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The suite file.
    suite: PathBuf,
    /// Run against this instead of the suite's target: an http:// URL, or a command line
    /// (split on whitespace) to start as a stdio server.
    #[arg(long)]
    target: Option<String>,
    /// Where the JSON result is written.
    #[arg(long, default_value = "lab-runs")]
    out: PathBuf,
}

/// Exit codes: 0 all expectations held, 1 one failed (or the target could not be reached),
/// 2 the suite or the command line is wrong (as clap's own usage errors).
pub(crate) fn run(command: LabCommand, runtime: &tokio::runtime::Runtime) -> anyhow::Result<i32> {
    match command {
        LabCommand::Run(args) => runtime.block_on(run_command(args)),
        LabCommand::Compare(args) => compare_command(&args),
    }
}

fn compare_command(args: &CompareArgs) -> anyhow::Result<i32> {
    if !(args.tolerance.is_finite() && args.tolerance >= 0.0 && args.tolerance < 100.0) {
        eprintln!("error: --tolerance must be a percentage from 0 to under 100");
        return Ok(2);
    }
    let read = |path: &Path| -> Result<RunReport, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not a lab result: {e}", path.display()))
    };
    let (baseline, new) = match (read(&args.baseline), read(&args.new)) {
        (Ok(baseline), Ok(new)) => (baseline, new),
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("error: {error}");
            return Ok(2);
        }
    };
    if baseline.suite != new.suite {
        eprintln!(
            "note: comparing different suites ({:?} and {:?}); steps are matched by name",
            baseline.suite, new.suite
        );
    }
    let comparisons = compare(&baseline, &new, args.tolerance / 100.0);
    say(&comparison_table(&comparisons));
    let regressed = comparisons
        .iter()
        .filter(|c| c.verdict == Change::Regressed)
        .count();
    if regressed > 0 {
        say(&format!("{regressed} step(s) regressed\n"));
        return Ok(1);
    }
    say("no regression\n");
    Ok(0)
}

async fn run_command(args: RunArgs) -> anyhow::Result<i32> {
    let mut suite = match Suite::from_path(&args.suite) {
        Ok(suite) => suite,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(2);
        }
    };
    if let Some(target) = &args.target {
        suite.target = match Target::from_arg(target) {
            Ok(target) => target,
            Err(error) => {
                eprintln!("error: --target: {error}");
                return Ok(2);
            }
        };
    }
    let progress = Arc::new(Progress::default());
    let drawing = std::io::stderr()
        .is_terminal()
        .then(|| tokio::spawn(draw_progress(progress.clone(), suite.steps.len())));
    let report = run_suite(&suite, progress).await;
    if let Some(drawing) = drawing {
        drawing.abort();
        eprint!("\r\x1b[2K");
    }
    say(&report.summary());
    let (json, html) = write_report(&args.out, &report)?;
    say(&format!(
        "result: {}\nreport: {}\n",
        json.display(),
        html.display()
    ));
    Ok(if report.passed { 0 } else { 1 })
}

/// Writes `<out>/<suite>-<start time>.json` and `.html` beside it; their paths.
fn write_report(out: &Path, report: &RunReport) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let slug: String = report
        .suite
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let stem = format!("{slug}-{}", report.started_at.format("%Y%m%dT%H%M%S%.3fZ"));
    let json = out.join(format!("{stem}.json"));
    std::fs::write(&json, serde_json::to_vec_pretty(report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let html = out.join(format!("{stem}.html"));
    std::fs::write(&html, report.html()).with_context(|| format!("writing {}", html.display()))?;
    Ok((json, html))
}

/// One line on the terminal, redrawn five times a second.
async fn draw_progress(progress: Arc<Progress>, steps: usize) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        let now = progress.snapshot();
        if now.step.is_empty() {
            eprint!("\r\x1b[2Kopening the session…");
        } else if now.total == 0 {
            // A step bounded by its duration alone.
            eprint!(
                "\r\x1b[2K[{}/{steps}] {:<24} {} requests, errors {}",
                now.step_index, now.step, now.done, now.errors
            );
        } else {
            let width = 30usize;
            let filled = (now.done.min(now.total) * width as u64)
                .checked_div(now.total)
                .map_or(0, |f| usize::try_from(f).unwrap_or(width));
            eprint!(
                "\r\x1b[2K[{}/{steps}] {:<24} [{}{}] {}/{} errors {}",
                now.step_index,
                now.step,
                "#".repeat(filled),
                " ".repeat(width - filled),
                now.done,
                now.total,
                now.errors
            );
        }
        let _ = std::io::stderr().flush();
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error worth a panic.
pub(crate) fn say(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}
