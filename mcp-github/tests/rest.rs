//! `RestGitHub` against a fake GitHub on 127.0.0.1: pagination, pull requests left out of
//! issues, rate limits (primary and secondary), the ETag/304 path, 404, 401 and 5xx retries.

#![allow(clippy::unwrap_used)] // A failed unwrap is a failed test here.

#[path = "support/fake_github.rs"]
mod fake_github;

use std::time::{Duration, Instant};

use fake_github::{FakeGitHub, RATE_LIMIT_RESET};
use mcp_github::{
    CiState, CommitQuery, Error, GitHub, GitHubConfig, IssueQuery, PullQuery, RepoRef, RestGitHub,
    ReviewState, StateFilter,
};

fn github(fake: &FakeGitHub, token: &str) -> RestGitHub {
    let mut config = GitHubConfig::default();
    config.token = Some(token.into());
    config.api_base_url = fake.url.clone();
    config.base_backoff = Duration::from_millis(10);
    RestGitHub::new(config).unwrap()
}

fn repo(name: &str) -> RepoRef {
    RepoRef::new("acme", name).unwrap()
}

fn all_open() -> IssueQuery {
    IssueQuery {
        limit: usize::MAX,
        ..IssueQuery::default()
    }
}

#[tokio::test]
async fn follows_link_pagination_at_100_per_page() {
    let fake = FakeGitHub::start().await;
    let client = github(&fake, "test-token");
    let issues = client.list_issues(&repo("big"), &all_open()).await.unwrap();
    assert_eq!(issues.len(), 1_000);
    assert!(!issues.more, "every issue was read");
    assert_eq!(issues[0].number, 1_000);
    assert_eq!(issues[999].number, 1);
    let requests = fake.requests_to("/repos/acme/big/issues");
    assert_eq!(requests.len(), 10, "1,000 issues at 100 per page");
    for (page, request) in requests.iter().enumerate() {
        assert_eq!(request.path, "/api/v3/repos/acme/big/issues");
        assert!(request.query.contains("per_page=100"), "{}", request.query);
        if page > 0 {
            assert!(
                request.query.contains(&format!("page={}", page + 1)),
                "{}",
                request.query
            );
        }
        assert_eq!(request.authorization.as_deref(), Some("Bearer test-token"));
        assert!(
            request
                .user_agent
                .iter()
                .any(|ua| ua.starts_with("switchboard-mcp-github/")),
            "{:?}",
            request.user_agent
        );
    }

    // A limit stops early.
    let first = client
        .list_issues(
            &repo("big"),
            &IssueQuery {
                limit: 250,
                state: StateFilter::Open,
                ..IssueQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(first.len(), 250);
    assert!(first.more, "GitHub has more than the limit");
    assert_eq!(fake.requests_to("/repos/acme/big/issues").len(), 10 + 3);
}

#[tokio::test]
async fn a_listing_cut_by_the_page_cap_says_there_is_more() {
    let fake = FakeGitHub::start().await;
    let mut config = GitHubConfig::default();
    config.api_base_url = fake.url.clone();
    config.max_pages = 3;
    let client = RestGitHub::new(config).unwrap();
    let issues = client.list_issues(&repo("big"), &all_open()).await.unwrap();
    assert_eq!(issues.len(), 300, "three pages, short of any limit");
    assert!(issues.more, "stopped with a next page left");
    let small = client.list_issues(&repo("api"), &all_open()).await.unwrap();
    assert!(!small.more, "one short page is all there is");
}

#[tokio::test]
async fn pull_requests_are_not_issues() {
    let fake = FakeGitHub::start().await;
    let client = github(&fake, "test-token");
    let issues = client.list_issues(&repo("api"), &all_open()).await.unwrap();
    let numbers: Vec<u64> = issues.iter().map(|i| i.number).collect();
    assert_eq!(numbers, [8, 6, 4, 3, 1]);
    let issue = &issues[0];
    assert_eq!(issue.title, "Issue 8 of api");
    assert_eq!(issue.labels, ["bug"]);
    assert_eq!(issue.assignees, ["alice"]);
    assert_eq!(issue.author, "bob");
    assert_eq!(issue.comments, 2);
    assert_eq!(issue.url, "https://github.com/acme/api/issues/8");
}

#[tokio::test]
async fn an_exhausted_rate_limit_names_the_reset_time() {
    let fake = FakeGitHub::start().await;
    let client = github(&fake, "test-token");
    let error = client
        .list_issues(&repo("limited"), &all_open())
        .await
        .unwrap_err();
    match &error {
        Error::RateLimited { reset, .. } => assert_eq!(reset.timestamp(), RATE_LIMIT_RESET),
        other => panic!("expected a rate limit error, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("rate limit"), "{message}");
    assert!(message.contains("2030-01-01T00:00:00Z"), "{message}");
    assert_eq!(fake.requests().len(), 1, "a used-up limit is not retried");
}

#[tokio::test]
async fn a_short_secondary_rate_limit_is_waited_out() {
    let fake = FakeGitHub::start().await;
    let client = github(&fake, "test-token");
    let issues = client
        .list_issues(&repo("secondary"), &all_open())
        .await
        .unwrap();
    assert_eq!(issues.len(), 5);
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].status, 403);
    assert_eq!(requests[1].status, 200);
    let waited = requests[1].at - requests[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}, before Retry-After: 1"
    );
}

#[tokio::test]
async fn a_long_secondary_rate_limit_is_an_error() {
    let fake = FakeGitHub::start().await;
    let client = github(&fake, "test-token");
    let started = Instant::now();
    let error = client
        .list_issues(&repo("slowdown"), &all_open())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(
            error,
            Error::SecondaryRateLimit {
                retry_after_secs: 120
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("120 s"), "{error}");
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn a_repeated_read_is_revalidated_with_its_etag() {
    let fake = FakeGitHub::start().await;
    let client = github(&fake, "test-token");
    let first = client.list_issues(&repo("api"), &all_open()).await.unwrap();
    let second = client.list_issues(&repo("api"), &all_open()).await.unwrap();
    assert_eq!(first, second);
    let requests = fake.requests_to("/repos/acme/api/issues");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].if_none_match, None);
    assert_eq!(requests[0].status, 200);
    assert!(requests[1].if_none_match.is_some(), "sent If-None-Match");
    assert_eq!(requests[1].status, 304);
}

#[tokio::test]
async fn a_missing_repository_is_a_clear_error() {
    let fake = FakeGitHub::start().await;
    let client = github(&fake, "test-token");
    let error = client
        .list_issues(&repo("nope"), &all_open())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "repository acme/nope not found (or the token cannot see it)"
    );
    let error = client.get_issue(&repo("api"), 99).await.unwrap_err();
    assert!(
        error.to_string().starts_with("issue acme/api#99 not found"),
        "{error}"
    );
}

#[tokio::test]
async fn a_bad_token_is_named() {
    let fake = FakeGitHub::start().await;
    let client = github(&fake, "bad-token");
    let error = client
        .list_issues(&repo("api"), &all_open())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::BadToken), "{error:?}");
    assert!(error.to_string().contains("401"), "{error}");
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let fake = FakeGitHub::start().await;
    let client = github(&fake, "test-token");
    let issues = client
        .list_issues(&repo("flaky"), &all_open())
        .await
        .unwrap();
    assert_eq!(issues.len(), 5);
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [502, 503, 200]);

    let started = Instant::now();
    let error = client
        .list_issues(&repo("down"), &all_open())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(error, Error::Unavailable { attempts: 3, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("status 500"), "{error}");
    assert_eq!(fake.requests_to("/repos/acme/down/issues").len(), 3);
}

#[tokio::test]
async fn an_unreachable_github_fails_after_bounded_attempts() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut config = GitHubConfig::default();
    config.api_base_url = url;
    config.base_backoff = Duration::from_millis(10);
    let client = RestGitHub::new(config).unwrap();
    let error = client
        .list_issues(&repo("api"), &all_open())
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Unavailable { attempts: 3, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_pull_request_comes_with_size_reviews_and_checks() {
    let fake = FakeGitHub::start().await;
    let client = github(&fake, "test-token");
    let pulls = client
        .list_pull_requests(
            &repo("api"),
            &PullQuery {
                state: StateFilter::Open,
                limit: 10,
            },
        )
        .await
        .unwrap();
    let numbers: Vec<u64> = pulls.iter().map(|p| p.number).collect();
    assert_eq!(numbers, [7, 5, 2]);
    assert_eq!(pulls[0].requested_reviewers, ["carol"]);
    assert!(pulls[0].draft);

    let blocked = client.get_pull_request(&repo("api"), 5).await.unwrap();
    assert_eq!(blocked.additions, 900);
    assert_eq!(blocked.deletions, 300);
    assert_eq!(blocked.files.len(), 2);
    assert_eq!(blocked.review_state, ReviewState::ChangesRequested);
    assert_eq!(blocked.reviews.len(), 2);
    assert_eq!(blocked.ci_state, CiState::Failure);
    assert_eq!(blocked.pull_request.head, "feature-5");

    let approved = client.get_pull_request(&repo("api"), 2).await.unwrap();
    assert_eq!(approved.review_state, ReviewState::Approved);
    assert_eq!(approved.ci_state, CiState::Success);
    let waiting = client.get_pull_request(&repo("api"), 7).await.unwrap();
    assert_eq!(waiting.review_state, ReviewState::ReviewRequired);
    assert_eq!(waiting.ci_state, CiState::Pending);
}

#[tokio::test]
async fn issues_commits_and_search() {
    let fake = FakeGitHub::start().await;
    let client = github(&fake, "test-token");
    let detail = client.get_issue(&repo("api"), 3).await.unwrap();
    assert_eq!(detail.issue.number, 3);
    assert_eq!(detail.body, "Steps to reproduce…");
    assert_eq!(detail.thread.len(), 2);
    assert_eq!(detail.thread[1].author, "ghost");

    let commits = client
        .list_commits(
            &repo("api"),
            &CommitQuery {
                since: "2026-11-29T00:00:00Z".parse().ok(),
                limit: 100,
                ..CommitQuery::default()
            },
        )
        .await
        .unwrap();
    let shas: Vec<&str> = commits.iter().map(|c| c.sha.as_str()).collect();
    assert_eq!(shas, ["c6", "c5", "c4", "c3"]);
    assert_eq!(commits[0].message, "Change c6");
    assert_eq!(commits[1].author, "Carol", "no GitHub login: the git name");
    let query = &fake.requests_to("/repos/acme/api/commits")[0].query;
    assert!(query.contains("since=2026-11-29T00%3A00%3A00Z"), "{query}");

    let found = client
        .search_issues("repo:acme/api is:open", 3)
        .await
        .unwrap();
    assert_eq!(found.total_count, 8);
    assert_eq!(found.items.len(), 3);
    assert_eq!(found.items[0].repository, "acme/api");
    assert!(!found.items[0].is_pull_request);
    assert!(found.items[1].is_pull_request, "#7 is a pull request");

    let error = client.search_issues("is:nonsense", 3).await.unwrap_err();
    assert!(
        error.to_string().contains("is:nonsense is not a qualifier"),
        "{error}"
    );
}
