//! Serving an MCP server to one client over stdin/stdout, as a Claude, Cursor or Claude Code
//! config entry starts it: every Switchboard tool server ends its sessions the same way.

use std::future::Future;

use rmcp::{
    RoleServer, Service, ServiceExt,
    service::{QuitReason, ServerInitializeError},
};

/// The session could not be served (the transport failed, or the client broke the protocol).
#[derive(Debug, thiserror::Error)]
#[error("stdio session failed: {0}")]
pub struct StdioError(String);

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
pub async fn serve_stdio<S: Service<RoleServer>>(
    server: S,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Ended, StdioError> {
    // stdio_pipes reads stdin without a blocking thread, so cancelling really stops the
    // process even while the client keeps stdin open.
    let mut shutdown = Box::pin(shutdown);
    let started = tokio::select! {
        started = server.serve(rmcp::transport::stdio_pipes()) => started,
        // A client that never initializes must not make the server deaf to shutdown.
        () = &mut shutdown => return Ok(Ended::ShutDown),
    };
    let running = match started {
        Ok(running) => running,
        // The client went away before initializing: as clean an end as any.
        Err(ServerInitializeError::ConnectionClosed(_)) => return Ok(Ended::InputClosed),
        Err(e) => return Err(StdioError(e.to_string())),
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
        Ok(QuitReason::JoinError(e)) => Err(StdioError(e.to_string())),
        Ok(other) => Err(StdioError(format!("session ended: {other:?}"))),
        Err(e) => Err(StdioError(e.to_string())),
    }
}
