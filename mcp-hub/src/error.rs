//! The hub's one error enum. Messages say what was wrong and what is valid; storage details are
//! logged, never sent to a client.

/// A boxed source error, so driver types stay out of the crate's API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Input from a client that cannot be used; nothing was changed.
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The payload does not have the shape its channel requires.
    #[error("invalid data for channel {channel}: {message}")]
    Schema { channel: String, message: String },
    /// Too many pushes are waiting already; the client should retry shortly.
    #[error("the hub is busy with other pushes; retry shortly")]
    Busy,
    /// Too many logins are being checked at once; the client should retry shortly.
    #[error("the hub is busy checking other logins; retry shortly")]
    LoginsBusy,
    #[error("no {what} found")]
    NotFound { what: String },
    /// Credentials that are wrong, expired or revoked.
    #[error("{message}")]
    Unauthorized { message: String },
    /// The request clashes with the current state (a name taken, a run already going).
    #[error("{message}")]
    Conflict { message: String },
    /// The hub holds as many snapshots as it may; a push to a new channel or repository waits
    /// until an operator raises the limit.
    #[error(
        "the hub holds {limit} snapshots, its limit; push to an existing channel and repository, or raise --max-snapshots"
    )]
    TooManySnapshots { limit: u64 },
    /// The database cannot be reached now.
    #[error("storage unavailable: {0}")]
    Unavailable(#[source] BoxError),
    #[error("storage error: {0}")]
    Storage(#[source] BoxError),
    #[error("migration failed: {0}")]
    Migration(#[source] BoxError),
    #[error(transparent)]
    Bus(#[from] mcp_core::BusError),
    #[error("transport error: {0}")]
    Transport(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
