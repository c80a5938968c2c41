//! `mcp-github`: the GitHub tools for MCP clients. Parses flags, builds the GitHub client and
//! the dashboard sink, installs logging on stderr and serves (stdio or Streamable HTTP).

mod cli;

use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use mcp_core::{HttpSink, HttpSinkConfig, Sink};
use mcp_github::{Ended, GitHubConfig, GitHubServer, RestGitHub};

#[derive(Debug, Parser)]
#[command(
    name = "mcp-github",
    version,
    about = "GitHub issues, pull requests and commits for AI agents, pushed to a live dashboard"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve one MCP client on stdin/stdout (the entry of a Claude, Cursor or Claude Code config).
    Stdio {
        #[command(flatten)]
        options: Options,
    },
    /// Serve MCP over Streamable HTTP at /mcp (loopback only), with /healthz.
    Serve {
        #[command(flatten)]
        options: Options,
        /// Address to listen on; only loopback addresses (this server has no authentication).
        #[arg(long, env = "MCP_GITHUB_LISTEN", default_value = "127.0.0.1:8091")]
        listen: SocketAddr,
    },
}

/// Where GitHub and the dashboard are. (Debug is written by hand: these hold secrets.)
#[derive(Args)]
struct Options {
    /// GitHub token (prefer the environment variable, to keep it out of process listings).
    #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true)]
    github_token: Option<String>,
    /// GitHub's API, e.g. https://github.example.com/api/v3 for GitHub Enterprise.
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
    github_api_url: String,
    /// The dashboard backend (mcp-hub), e.g. http://127.0.0.1:8090; without it the push tools
    /// answer with an error.
    #[arg(long = "backend-url", env = "BACKEND_API_URL")]
    backend_url: Option<String>,
    /// Bearer token for the dashboard backend.
    #[arg(
        long = "backend-token",
        env = "BACKEND_API_TOKEN",
        hide_env_values = true
    )]
    backend_token: Option<String>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field(
                "github_token",
                &self.github_token.as_ref().map(|_| "<redacted>"),
            )
            .field("github_api_url", &self.github_api_url)
            .field("backend_url", &self.backend_url)
            .field(
                "backend_token",
                &self.backend_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Options {
    fn server(self) -> anyhow::Result<GitHubServer> {
        let token = self.github_token.filter(|t| !t.trim().is_empty());
        if token.is_none() {
            tracing::warn!("no GITHUB_TOKEN: unauthenticated, 60 GitHub requests an hour");
        }
        let mut config = GitHubConfig::default();
        config.token = token;
        config.api_base_url = self.github_api_url.clone();
        let github = RestGitHub::new(config)
            .with_context(|| format!("setting up the GitHub client for {}", self.github_api_url))?;
        let sink: Option<Arc<dyn Sink>> = match self.backend_url.filter(|u| !u.trim().is_empty()) {
            Some(url) => {
                let mut config = HttpSinkConfig::new(url.trim());
                config.token = self.backend_token.filter(|t| !t.trim().is_empty());
                tracing::info!(backend = %cli::redact(&config.base_url), token = config.token.is_some(), "dashboard backend");
                Some(Arc::new(
                    HttpSink::new(config).context("setting up the dashboard backend")?,
                ))
            }
            None => {
                tracing::info!("no BACKEND_API_URL: the push tools will say how to set it");
                None
            }
        };
        Ok(GitHubServer::new(Arc::new(github), sink))
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli::init_logging("MCP_GITHUB_LOG");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Stdio { options } => runtime.block_on(stdio(options)),
        Command::Serve { options, listen } => runtime.block_on(serve(options, listen)),
    }
}

async fn stdio(options: Options) -> anyhow::Result<()> {
    let shutdown = cli::shutdown_signal();
    let server = options.server()?;
    match mcp_github::serve_stdio(server, shutdown).await? {
        Ended::InputClosed => tracing::info!("client closed stdin; exiting"),
        Ended::ShutDown => tracing::info!("signal received; exiting"),
        _ => {}
    }
    Ok(())
}

async fn serve(options: Options, listen: SocketAddr) -> anyhow::Result<()> {
    if !listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {listen}: mcp-github has no authentication of its own; \
             listen on 127.0.0.1"
        );
    }
    let shutdown = cli::shutdown_signal();
    let server = options.server()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    tracing::info!(address = %bound, "listening; MCP at http://{bound}/mcp");
    mcp_github::serve_http(server, listener, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}
