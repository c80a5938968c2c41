//! The [`GitHub`] seam: the GitHub calls the tools need, returning our own small types (what an
//! agent or a dashboard needs, not GitHub's full objects). [`RestGitHub`] implements it over the
//! REST API.

mod cache;
mod rest;
mod wire;

pub use rest::{GitHubConfig, RestGitHub};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// `owner/name` of a repository, checked to be a plausible GitHub name (so it is safe in a URL
/// path).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoRef {
    owner: String,
    name: String,
}

impl RepoRef {
    pub fn new(owner: &str, name: &str) -> Result<Self> {
        let check = |field: &'static str, value: &str| {
            let valid = !value.is_empty()
                && value.len() <= 100
                && value != "."
                && value != ".."
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if valid {
                Ok(value.to_owned())
            } else {
                Err(Error::Invalid {
                    field,
                    message: format!(
                        "{:?} is not a GitHub {field} name (letters, digits, '-', '_', '.'; at most 100)",
                        value.chars().take(100).collect::<String>()
                    ),
                })
            }
        };
        Ok(Self {
            owner: check("owner", owner.trim())?,
            name: check("repo", name.trim())?,
        })
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for RepoRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// Which issues or pull requests to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StateFilter {
    #[default]
    Open,
    Closed,
    All,
}

impl StateFilter {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
            Self::All => "all",
        }
    }
}

/// What [`GitHub::list_issues`] returns.
#[derive(Debug, Clone, Default)]
pub struct IssueQuery {
    pub state: StateFilter,
    /// Issues carrying every one of these labels.
    pub labels: Vec<String>,
    /// Only issues updated at or after this time.
    pub since: Option<DateTime<Utc>>,
    pub limit: usize,
}

/// What [`GitHub::list_pull_requests`] returns.
#[derive(Debug, Clone, Default)]
pub struct PullQuery {
    pub state: StateFilter,
    pub limit: usize,
}

/// What [`GitHub::list_commits`] returns (of the default branch).
#[derive(Debug, Clone, Default)]
pub struct CommitQuery {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// A GitHub login or an email address.
    pub author: Option<String>,
    pub limit: usize,
}

/// An issue, trimmed to what a listing needs. The shape of the dashboard's `issues` channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    pub state: String,
    pub labels: Vec<String>,
    pub assignees: Vec<String>,
    pub author: String,
    /// How many comments it has.
    pub comments: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub url: String,
}

/// An issue with its description and comments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IssueDetail {
    #[serde(flatten)]
    pub issue: Issue,
    /// The description, shortened when long.
    pub body: String,
    /// The first comments, oldest first, each shortened when long.
    pub thread: Vec<Comment>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Comment {
    pub author: String,
    pub created_at: DateTime<Utc>,
    pub body: String,
}

/// A pull request in a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PullRequest {
    pub number: u64,
    pub title: String,
    pub state: String,
    pub draft: bool,
    pub author: String,
    pub labels: Vec<String>,
    /// Logins and team slugs asked to review.
    pub requested_reviewers: Vec<String>,
    /// Source and target branches.
    pub head: String,
    pub base: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub merged_at: Option<DateTime<Utc>>,
    pub url: String,
}

/// A pull request with its size, files, reviews and checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PullRequestDetail {
    #[serde(flatten)]
    pub pull_request: PullRequest,
    pub body: String,
    pub additions: u64,
    pub deletions: u64,
    pub changed_files: u64,
    pub commits: u64,
    /// `None` while GitHub is still computing it.
    pub mergeable: Option<bool>,
    /// The first 100 files.
    pub files: Vec<FileChange>,
    pub review_state: ReviewState,
    /// The latest review of each reviewer.
    pub reviews: Vec<Review>,
    pub ci_state: CiState,
    /// Check runs and commit statuses of the head commit.
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileChange {
    pub filename: String,
    /// added, modified, removed, renamed, …
    pub status: String,
    pub additions: u64,
    pub deletions: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Review {
    pub author: String,
    /// APPROVED, CHANGES_REQUESTED, COMMENTED or DISMISSED.
    pub state: String,
    pub submitted_at: Option<DateTime<Utc>>,
}

/// Where a pull request stands with its reviewers: `review_required` when reviewers were
/// requested and none has decided, `commented` when there are only comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    Approved,
    ChangesRequested,
    ReviewRequired,
    Commented,
    None,
}

impl ReviewState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::ChangesRequested => "changes_requested",
            Self::ReviewRequired => "review_required",
            Self::Commented => "commented",
            Self::None => "none",
        }
    }
}

/// The combined state of a commit's check runs and statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CiState {
    Success,
    Failure,
    Pending,
    None,
}

impl CiState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Pending => "pending",
            Self::None => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Check {
    pub name: String,
    /// success, failure, pending, neutral, skipped, cancelled, …
    pub state: String,
}

/// A commit, trimmed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Commit {
    pub sha: String,
    /// The first line of the message.
    pub message: String,
    /// The GitHub login when GitHub knows the author, else the git author name.
    pub author: String,
    pub date: DateTime<Utc>,
    pub url: String,
}

/// Issues and pull requests found by a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SearchResults {
    /// All matches, beyond those returned.
    pub total_count: u64,
    pub items: Vec<SearchHit>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SearchHit {
    #[serde(flatten)]
    pub issue: Issue,
    /// owner/name
    pub repository: String,
    pub is_pull_request: bool,
}

/// A list read from GitHub, and whether GitHub had more than was read (the listing stopped at
/// its limit or at the most pages a call may read). Reads as a slice of the items.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub more: bool,
}

impl<T> std::ops::Deref for Listed<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.items
    }
}

/// The GitHub calls the tools make. Errors are [`Error`]s whose messages an agent can act on
/// (not found, rate limited until when, bad token).
#[async_trait::async_trait]
pub trait GitHub: Send + Sync {
    /// Issues, most recently created first; pull requests are left out.
    async fn list_issues(&self, repo: &RepoRef, query: &IssueQuery) -> Result<Listed<Issue>>;
    async fn get_issue(&self, repo: &RepoRef, number: u64) -> Result<IssueDetail>;
    async fn list_pull_requests(
        &self,
        repo: &RepoRef,
        query: &PullQuery,
    ) -> Result<Listed<PullRequest>>;
    async fn get_pull_request(&self, repo: &RepoRef, number: u64) -> Result<PullRequestDetail>;
    /// Commits of the default branch, newest first.
    async fn list_commits(&self, repo: &RepoRef, query: &CommitQuery) -> Result<Listed<Commit>>;
    /// GitHub's issue search syntax (`repo:acme/api is:open label:bug`).
    async fn search_issues(&self, query: &str, limit: usize) -> Result<SearchResults>;
}
