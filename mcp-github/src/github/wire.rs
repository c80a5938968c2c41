//! GitHub's JSON as far as we read it. Every field we do not strictly need has a default, so
//! slim answers (test fixtures, GitHub Enterprise versions that omit a field) still parse; the
//! conversions into our own types live here too.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{
    Check, CiState, Comment, Commit, FileChange, Issue, PullRequest, Review, ReviewState, SearchHit,
};

/// The longest description or comment body passed on, in characters.
const MAX_BODY_CHARS: usize = 2_000;

#[derive(Debug, Deserialize)]
pub(super) struct User {
    #[serde(default)]
    login: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Label {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Team {
    #[serde(default)]
    slug: String,
}

fn login(user: Option<&User>) -> String {
    match user {
        Some(user) if !user.login.is_empty() => user.login.clone(),
        // GitHub shows deleted accounts as "ghost".
        _ => "ghost".into(),
    }
}

/// A shortened body: long descriptions would swamp an agent's context.
pub(super) fn shorten(text: Option<&str>) -> String {
    let text = text.unwrap_or_default().trim();
    if text.chars().count() <= MAX_BODY_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(MAX_BODY_CHARS).collect();
    short.push_str("… (shortened)");
    short
}

#[derive(Debug, Deserialize)]
pub(super) struct WireIssue {
    pub(super) number: u64,
    pub(super) title: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    labels: Vec<Label>,
    #[serde(default)]
    assignees: Vec<User>,
    #[serde(default)]
    user: Option<User>,
    #[serde(default)]
    comments: u64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    #[serde(default)]
    closed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    html_url: String,
    #[serde(default)]
    pub(super) body: Option<String>,
    /// Present on pull requests, which `/issues` lists too.
    #[serde(default)]
    pub(super) pull_request: Option<serde_json::Value>,
    /// `https://api.github.com/repos/owner/name` (search results).
    #[serde(default)]
    repository_url: Option<String>,
}

impl WireIssue {
    pub(super) fn is_pull_request(&self) -> bool {
        self.pull_request.is_some()
    }

    pub(super) fn to_issue(&self) -> Issue {
        Issue {
            number: self.number,
            title: self.title.clone(),
            state: self.state.clone(),
            labels: self.labels.iter().map(|l| l.name.clone()).collect(),
            assignees: self.assignees.iter().map(|u| u.login.clone()).collect(),
            author: login(self.user.as_ref()),
            comments: self.comments,
            created_at: self.created_at,
            updated_at: self.updated_at,
            closed_at: self.closed_at,
            url: self.html_url.clone(),
        }
    }

    pub(super) fn to_search_hit(&self) -> SearchHit {
        let repository = self
            .repository_url
            .as_deref()
            .and_then(|url| {
                let mut parts = url.rsplitn(3, '/');
                let name = parts.next()?;
                let owner = parts.next()?;
                Some(format!("{owner}/{name}"))
            })
            .unwrap_or_default();
        SearchHit {
            issue: self.to_issue(),
            repository,
            is_pull_request: self.is_pull_request(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct WireComment {
    #[serde(default)]
    user: Option<User>,
    created_at: DateTime<Utc>,
    #[serde(default)]
    body: Option<String>,
}

impl WireComment {
    pub(super) fn to_comment(&self) -> Comment {
        Comment {
            author: login(self.user.as_ref()),
            created_at: self.created_at,
            body: shorten(self.body.as_deref()),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Branch {
    #[serde(default, rename = "ref")]
    name: String,
    #[serde(default)]
    pub(super) sha: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct WirePull {
    number: u64,
    title: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    user: Option<User>,
    #[serde(default)]
    labels: Vec<Label>,
    #[serde(default)]
    requested_reviewers: Vec<User>,
    #[serde(default)]
    requested_teams: Vec<Team>,
    #[serde(default)]
    pub(super) head: Branch,
    #[serde(default)]
    base: Branch,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    #[serde(default)]
    merged_at: Option<DateTime<Utc>>,
    #[serde(default)]
    html_url: String,
    // Only in the single pull request's answer.
    #[serde(default)]
    pub(super) body: Option<String>,
    #[serde(default)]
    pub(super) additions: u64,
    #[serde(default)]
    pub(super) deletions: u64,
    #[serde(default)]
    pub(super) changed_files: u64,
    #[serde(default)]
    pub(super) commits: u64,
    #[serde(default)]
    pub(super) mergeable: Option<bool>,
}

impl WirePull {
    pub(super) fn to_pull_request(&self) -> PullRequest {
        let mut requested: Vec<String> = self
            .requested_reviewers
            .iter()
            .map(|u| u.login.clone())
            .collect();
        requested.extend(self.requested_teams.iter().map(|t| t.slug.clone()));
        PullRequest {
            number: self.number,
            title: self.title.clone(),
            state: self.state.clone(),
            draft: self.draft,
            author: login(self.user.as_ref()),
            labels: self.labels.iter().map(|l| l.name.clone()).collect(),
            requested_reviewers: requested,
            head: self.head.name.clone(),
            base: self.base.name.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            merged_at: self.merged_at,
            url: self.html_url.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct WireFile {
    #[serde(default)]
    filename: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    additions: u64,
    #[serde(default)]
    deletions: u64,
}

impl WireFile {
    pub(super) fn to_file(&self) -> FileChange {
        FileChange {
            filename: self.filename.clone(),
            status: self.status.clone(),
            additions: self.additions,
            deletions: self.deletions,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct WireReview {
    #[serde(default)]
    user: Option<User>,
    #[serde(default)]
    state: String,
    #[serde(default)]
    submitted_at: Option<DateTime<Utc>>,
}

/// The latest review of each reviewer (pending reviews left out), in the order given.
pub(super) fn latest_reviews(reviews: &[WireReview]) -> Vec<Review> {
    let mut latest: Vec<Review> = Vec::new();
    for review in reviews {
        if review.state.eq_ignore_ascii_case("PENDING") {
            continue;
        }
        let author = login(review.user.as_ref());
        let decisive = !review.state.eq_ignore_ascii_case("COMMENTED");
        match latest.iter_mut().find(|r| r.author == author) {
            // A comment after an approval does not withdraw the approval.
            Some(previous) if decisive || previous.state.eq_ignore_ascii_case("COMMENTED") => {
                previous.state = review.state.clone();
                previous.submitted_at = review.submitted_at;
            }
            Some(_) => {}
            None => latest.push(Review {
                author,
                state: review.state.clone(),
                submitted_at: review.submitted_at,
            }),
        }
    }
    latest
}

pub(super) fn review_state(latest: &[Review], requested_reviewers: &[String]) -> ReviewState {
    let any = |state: &str| latest.iter().any(|r| r.state.eq_ignore_ascii_case(state));
    if any("CHANGES_REQUESTED") {
        ReviewState::ChangesRequested
    } else if any("APPROVED") {
        ReviewState::Approved
    } else if !requested_reviewers.is_empty() {
        ReviewState::ReviewRequired
    } else if any("COMMENTED") {
        ReviewState::Commented
    } else {
        ReviewState::None
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct CheckRuns {
    #[serde(default)]
    check_runs: Vec<CheckRun>,
}

#[derive(Debug, Deserialize)]
struct CheckRun {
    #[serde(default)]
    name: String,
    /// queued, in_progress, completed
    #[serde(default)]
    status: String,
    /// success, failure, neutral, cancelled, skipped, timed_out, action_required, …
    #[serde(default)]
    conclusion: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct CombinedStatus {
    #[serde(default)]
    statuses: Vec<Status>,
}

#[derive(Debug, Deserialize)]
struct Status {
    #[serde(default)]
    context: String,
    /// error, failure, pending, success
    #[serde(default)]
    state: String,
}

const FAILED: &[&str] = &[
    "failure",
    "error",
    "timed_out",
    "cancelled",
    "action_required",
    "startup_failure",
];

/// The checks of a commit, each with one state word, and their combined state.
pub(super) fn checks(runs: &CheckRuns, status: &CombinedStatus) -> (Vec<Check>, CiState) {
    let mut checks: Vec<Check> = runs
        .check_runs
        .iter()
        .map(|run| Check {
            name: run.name.clone(),
            state: match (&run.conclusion, run.status.as_str()) {
                (Some(conclusion), "completed" | "") => conclusion.clone(),
                _ => "pending".into(),
            },
        })
        .collect();
    checks.extend(status.statuses.iter().map(|s| Check {
        name: s.context.clone(),
        state: s.state.clone(),
    }));
    let state = if checks.is_empty() {
        CiState::None
    } else if checks.iter().any(|c| FAILED.contains(&c.state.as_str())) {
        CiState::Failure
    } else if checks.iter().any(|c| c.state == "pending") {
        CiState::Pending
    } else {
        CiState::Success
    };
    (checks, state)
}

#[derive(Debug, Deserialize)]
pub(super) struct WireCommit {
    sha: String,
    #[serde(default)]
    html_url: String,
    commit: GitCommit,
    #[serde(default)]
    author: Option<User>,
}

#[derive(Debug, Deserialize)]
struct GitCommit {
    #[serde(default)]
    message: String,
    #[serde(default)]
    author: Option<GitPerson>,
    #[serde(default)]
    committer: Option<GitPerson>,
}

#[derive(Debug, Deserialize)]
struct GitPerson {
    #[serde(default)]
    name: String,
    #[serde(default)]
    date: Option<DateTime<Utc>>,
}

impl WireCommit {
    /// `None` for a commit without any date, which GitHub never sends.
    pub(super) fn to_commit(&self) -> Option<Commit> {
        let git_author = self.commit.author.as_ref();
        let date = git_author
            .and_then(|a| a.date)
            .or_else(|| self.commit.committer.as_ref().and_then(|c| c.date))?;
        let author = match &self.author {
            Some(user) if !user.login.is_empty() => user.login.clone(),
            _ => git_author
                .map(|a| a.name.clone())
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| "unknown".into()),
        };
        Some(Commit {
            sha: self.sha.clone(),
            message: self.commit.message.lines().next().unwrap_or("").to_owned(),
            author,
            date,
            url: self.html_url.clone(),
        })
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct WireSearch {
    #[serde(default)]
    pub(super) total_count: u64,
    #[serde(default)]
    pub(super) items: Vec<WireIssue>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(user: &str, state: &str) -> WireReview {
        WireReview {
            user: Some(User { login: user.into() }),
            state: state.into(),
            submitted_at: None,
        }
    }

    #[test]
    fn the_latest_decisive_review_of_each_reviewer_counts() {
        let reviews = [
            review("alice", "CHANGES_REQUESTED"),
            review("alice", "APPROVED"),
            review("alice", "COMMENTED"),
            review("bob", "COMMENTED"),
        ];
        let latest = latest_reviews(&reviews);
        assert_eq!(latest.len(), 2);
        assert_eq!(latest[0].state, "APPROVED");
        assert_eq!(review_state(&latest, &[]), ReviewState::Approved);
        let blocked = latest_reviews(&[review("carol", "CHANGES_REQUESTED")]);
        assert_eq!(review_state(&blocked, &[]), ReviewState::ChangesRequested);
        assert_eq!(
            review_state(&[], &["dave".into()]),
            ReviewState::ReviewRequired
        );
        assert_eq!(
            review_state(&latest_reviews(&[review("bob", "COMMENTED")]), &[]),
            ReviewState::Commented
        );
        assert_eq!(review_state(&[], &[]), ReviewState::None);
    }

    #[test]
    fn checks_combine_runs_and_statuses() {
        let runs: CheckRuns = serde_json::from_value(serde_json::json!({"check_runs": [
            {"name": "build", "status": "completed", "conclusion": "success"},
            {"name": "lint", "status": "in_progress", "conclusion": null}
        ]}))
        .unwrap_or_default();
        let none = CombinedStatus::default();
        assert_eq!(checks(&runs, &none).1, CiState::Pending);
        let failing: CombinedStatus = serde_json::from_value(serde_json::json!({
            "state": "failure", "statuses": [{"context": "ci/legacy", "state": "failure"}]
        }))
        .unwrap_or_default();
        assert_eq!(checks(&runs, &failing).1, CiState::Failure);
        assert_eq!(
            checks(&CheckRuns::default(), &none),
            (vec![], CiState::None)
        );
    }
}
