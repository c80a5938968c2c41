//! Serving the GitHub tools to one MCP client over stdin/stdout.

use std::future::Future;

use rmcp::{
    ServiceExt,
    service::{QuitReason, ServerInitializeError},
};

use crate::{Error, GitHubServer, Result};

/// Why the stdio session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ended {
    /// The client closed stdin.
    InputClosed,
    /// `shutdown` completed.
    ShutDown,
}

/// Serves `server` on stdin/stdout until the client closes stdin or `shutdown` completes.
/// Only MCP messages go to stdout; log with a subscriber that writes to stderr.
pub async fn serve_stdio(
    server: GitHubServer,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Ended> {
    let mut shutdown = Box::pin(shutdown);
    let started = tokio::select! {
        started = server.serve(rmcp::transport::stdio_pipes()) => started,
        // A client that never initializes must not make the server deaf to shutdown.
        () = &mut shutdown => return Ok(Ended::ShutDown),
    };
    let running = match started {
        Ok(running) => running,
        Err(ServerInitializeError::ConnectionClosed(_)) => return Ok(Ended::InputClosed),
        Err(e) => return Err(Error::Transport(e.to_string())),
    };
    let cancel = running.cancellation_token();
    let stopper = tokio::spawn(async move {
        shutdown.await;
        cancel.cancel();
    });
    let reason = running.waiting().await;
    stopper.abort();
    match reason {
        Ok(QuitReason::Closed) => Ok(Ended::InputClosed),
        Ok(QuitReason::Cancelled) => Ok(Ended::ShutDown),
        Ok(QuitReason::JoinError(e)) => Err(Error::Transport(e.to_string())),
        Ok(other) => Err(Error::Transport(format!("session ended: {other:?}"))),
        Err(e) => Err(Error::Transport(e.to_string())),
    }
}
