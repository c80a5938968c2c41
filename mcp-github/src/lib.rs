//! Switchboard's GitHub tools: the [`GitHub`] seam, [`RestGitHub`] on octocrab (Link
//! pagination, rate limits, ETag cache), the MCP read tools and the tools that push curated
//! digests to a dashboard through an [`mcp_core::Sink`].

mod digest;
mod error;
mod github;
mod http;
mod server;
mod tools;

pub use error::{Error, Result};
pub use github::{
    Check, CiState, Comment, Commit, CommitQuery, FileChange, GitHub, GitHubConfig, Issue,
    IssueDetail, IssueQuery, Listed, PullQuery, PullRequest, PullRequestDetail, RepoRef,
    RestGitHub, Review, ReviewState, SearchHit, SearchResults, StateFilter,
};
pub use http::{http_router, serve_http};
pub use mcp_core::stdio::Ended;
pub use server::GitHubServer;
pub use server::serve_stdio;
