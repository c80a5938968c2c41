//! [`RestGitHub`]: the [`GitHub`] seam over GitHub's REST API. octocrab is the HTTP layer (base
//! URL with any path, e.g. GitHub Enterprise's `/api/v3`; the token; timeouts; TLS); answers are
//! parsed into our own types, because octocrab's models insist on complete GitHub objects.
//! Lists follow `Link: rel="next"` at 100 per page up to the limit asked for; every GET goes
//! through the ETag cache, the rate-limit rules and bounded retries of [`RestGitHub::get`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use serde::de::DeserializeOwned;

use super::{
    CommitQuery, GitHub, Issue, IssueDetail, IssueQuery, Listed, PullQuery, PullRequest,
    PullRequestDetail, RepoRef, SearchResults,
    cache::{Cached, EtagCache},
    wire,
};
use crate::{Commit, Error, Result};

/// Items per page: GitHub's maximum.
const PER_PAGE: usize = 100;

/// At most this many comments come with an issue.
const MAX_COMMENTS: usize = 50;

/// How to reach GitHub.
#[derive(Clone)]
#[non_exhaustive]
pub struct GitHubConfig {
    /// A personal access token or any other bearer token. Never logged.
    pub token: Option<String>,
    /// `https://api.github.com` by default; GitHub Enterprise's is `https://HOST/api/v3`.
    pub api_base_url: String,
    /// Sent as `User-Agent` (GitHub requires one), beside octocrab's own.
    pub user_agent: String,
    /// The most pages one listing reads (so at most `100 × max_pages` items). Default 50.
    pub max_pages: usize,
    /// Connect, read and write timeout of each request. Default 30 s.
    pub timeout: Duration,
    /// Attempts of one request when GitHub cannot be reached or answers 5xx. Default 3.
    pub max_attempts: u32,
    /// The first retry waits about this long, each later one twice as long. Default 500 ms.
    pub base_backoff: Duration,
    /// The longest `Retry-After` of a secondary rate limit that is waited out. Default 10 s.
    pub max_retry_after: Duration,
    /// Answers kept for `If-None-Match`, by URL. Default 512; 0 turns the cache off.
    pub etag_cache_entries: usize,
}

impl Default for GitHubConfig {
    fn default() -> Self {
        Self {
            token: None,
            api_base_url: "https://api.github.com".into(),
            user_agent: concat!("switchboard-mcp-github/", env!("CARGO_PKG_VERSION")).into(),
            max_pages: 50,
            timeout: Duration::from_secs(30),
            max_attempts: 3,
            base_backoff: Duration::from_millis(500),
            max_retry_after: Duration::from_secs(10),
            etag_cache_entries: 512,
        }
    }
}

impl std::fmt::Debug for GitHubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("api_base_url", &self.api_base_url)
            .field("user_agent", &self.user_agent)
            .field("max_pages", &self.max_pages)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("base_backoff", &self.base_backoff)
            .field("max_retry_after", &self.max_retry_after)
            .field("etag_cache_entries", &self.etag_cache_entries)
            .finish()
    }
}

/// The REST implementation of [`GitHub`].
pub struct RestGitHub {
    client: octocrab::Octocrab,
    /// Scheme and authority of the API, which pagination links must keep.
    origin: (String, String),
    /// The API's path prefix without a trailing slash (`""` or `/api/v3`).
    base_path: String,
    authenticated: bool,
    cache: EtagCache,
    max_pages: usize,
    max_attempts: u32,
    base_backoff: Duration,
    max_retry_after: Duration,
}

impl std::fmt::Debug for RestGitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestGitHub")
            .field("origin", &self.origin)
            .field("base_path", &self.base_path)
            .field("authenticated", &self.authenticated)
            .finish_non_exhaustive()
    }
}

/// One page of an answer.
struct Page {
    body: String,
    /// The path and query of the next page.
    next: Option<String>,
}

impl RestGitHub {
    pub fn new(config: GitHubConfig) -> Result<Self> {
        let base: Uri = config
            .api_base_url
            .trim_end_matches('/')
            .parse()
            .map_err(|e| Error::Config(format!("api base url {:?}: {e}", config.api_base_url)))?;
        let (Some(scheme), Some(authority)) = (base.scheme_str(), base.authority()) else {
            return Err(Error::Config(format!(
                "api base url {:?} must be absolute, like https://api.github.com",
                config.api_base_url
            )));
        };
        if !matches!(scheme, "http" | "https") {
            return Err(Error::Config(format!(
                "api base url {:?} must be http:// or https://",
                config.api_base_url
            )));
        }
        let origin = (scheme.to_owned(), authority.as_str().to_owned());
        let base_path = base.path().trim_end_matches('/').to_owned();
        let user_agent = HeaderValue::from_str(&config.user_agent)
            .map_err(|_| Error::Config("the user agent is not a valid header value".into()))?;
        let mut builder = octocrab::Octocrab::builder()
            .base_uri(base.clone())
            .map_err(|e| Error::Config(format!("api base url: {e}")))?
            .add_header(header::ACCEPT, "application/vnd.github+json".into())
            .add_header(
                http::HeaderName::from_static("x-github-api-version"),
                "2022-11-28".into(),
            )
            .add_header(
                header::USER_AGENT,
                user_agent.to_str().unwrap_or_default().to_owned(),
            )
            .set_connect_timeout(Some(config.timeout))
            .set_read_timeout(Some(config.timeout))
            .set_write_timeout(Some(config.timeout));
        if let Some(token) = &config.token {
            if HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
                return Err(Error::Config(
                    "the github token contains characters not allowed in a header".into(),
                ));
            }
            builder = builder.personal_token(token.clone());
        }
        let client = builder.build().map_err(|e| {
            Error::Config(format!(
                "building the github client: {}",
                mcp_core::retry::error_chain(&e)
            ))
        })?;
        Ok(Self {
            client,
            origin,
            base_path,
            authenticated: config.token.is_some(),
            cache: EtagCache::new(config.etag_cache_entries),
            max_pages: config.max_pages.max(1),
            max_attempts: config.max_attempts.max(1),
            base_backoff: config.base_backoff,
            max_retry_after: config.max_retry_after,
        })
    }

    /// `path` (which starts with `/`) under the API's path prefix.
    fn path(&self, path: &str) -> String {
        format!("{}{path}", self.base_path)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        mcp_core::retry::backoff(self.base_backoff, attempt, Duration::from_secs(10))
    }

    /// GETs `path` (path and query, API prefix included). A cached answer is revalidated with
    /// `If-None-Match` and returned on 304. Network failures and 5xx are retried with backoff, a
    /// secondary rate limit's short `Retry-After` is waited out; everything else becomes an
    /// [`Error`] naming `what` was asked for.
    #[tracing::instrument(level = "debug", skip(self))]
    async fn get(&self, path: &str, what: &str) -> Result<Page> {
        let cached = self.cache.get(path);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut headers = HeaderMap::new();
            if let Some(etag) = cached
                .as_ref()
                .and_then(|c| HeaderValue::from_str(&c.etag).ok())
            {
                headers.insert(header::IF_NONE_MATCH, etag);
            }
            let failure = match self.client._get_with_headers(path, Some(headers)).await {
                Err(error) => format!(
                    "cannot reach github: {}",
                    mcp_core::retry::error_chain(&error)
                ),
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    if status == StatusCode::NOT_MODIFIED {
                        if let Some(cached) = cached {
                            tracing::debug!(path, "not modified; answered from the cache");
                            return Ok(Page {
                                body: cached.body,
                                next: cached.next,
                            });
                        }
                        return Err(Error::Decode {
                            path: path.to_owned(),
                            message: "304 not modified to a request without If-None-Match".into(),
                        });
                    }
                    match self.client.body_to_string(response).await {
                        Err(error) => format!(
                            "reading github's answer: {}",
                            mcp_core::retry::error_chain(&error)
                        ),
                        Ok(body) if status.is_success() => {
                            let next = self.next_link(&headers, path)?;
                            if let Some(etag) =
                                headers.get(header::ETAG).and_then(|v| v.to_str().ok())
                            {
                                self.cache.put(
                                    path,
                                    Cached {
                                        etag: etag.to_owned(),
                                        body: body.clone(),
                                        next: next.clone(),
                                    },
                                );
                            }
                            return Ok(Page { body, next });
                        }
                        Ok(body) => match self.refusal(status, &headers, &body, what, attempt) {
                            Refusal::Final(error) => return Err(error),
                            Refusal::RetryAfter(wait) => {
                                tracing::info!(
                                    path,
                                    wait_ms = wait.as_millis(),
                                    "secondary rate limit; waiting"
                                );
                                tokio::time::sleep(wait).await;
                                continue;
                            }
                            Refusal::Retry(failure) => failure,
                        },
                    }
                }
            };
            if attempt >= self.max_attempts {
                return Err(Error::Unavailable {
                    attempts: attempt,
                    last_error: failure,
                });
            }
            tracing::warn!(path, attempt, error = %failure, "github request failed; retrying");
            tokio::time::sleep(self.backoff(attempt)).await;
        }
    }

    /// What a non-success answer means.
    fn refusal(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &str,
        what: &str,
        attempt: u32,
    ) -> Refusal {
        let message = github_message(body);
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        match status.as_u16() {
            401 => Refusal::Final(Error::BadToken),
            404 => Refusal::Final(Error::NotFound {
                what: what.to_owned(),
            }),
            403 | 429 => {
                if header("x-ratelimit-remaining").map(str::trim) == Some("0") {
                    let reset = header("x-ratelimit-reset")
                        .and_then(|v| v.trim().parse::<i64>().ok())
                        .and_then(|secs| DateTime::from_timestamp(secs, 0))
                        .unwrap_or_else(|| Utc::now() + chrono::Duration::minutes(1));
                    return Refusal::Final(Error::RateLimited {
                        reset,
                        authenticated: self.authenticated,
                    });
                }
                if let Some(wait) = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok())
                {
                    let wait = Duration::from_secs(wait);
                    if wait <= self.max_retry_after && attempt < self.max_attempts {
                        return Refusal::RetryAfter(wait);
                    }
                    return Refusal::Final(Error::SecondaryRateLimit {
                        retry_after_secs: wait.as_secs(),
                    });
                }
                if message.to_lowercase().contains("secondary rate limit") {
                    // GitHub's advice without a Retry-After: wait at least a minute.
                    return Refusal::Final(Error::SecondaryRateLimit {
                        retry_after_secs: 60,
                    });
                }
                if status == StatusCode::TOO_MANY_REQUESTS {
                    return Refusal::Retry(format!("status 429: {message}"));
                }
                Refusal::Final(Error::Forbidden { message })
            }
            500..=599 => Refusal::Retry(format!("status {}: {message}", status.as_u16())),
            other => Refusal::Final(Error::Api {
                status: other,
                message,
            }),
        }
    }

    /// The path and query of `rel="next"`, which must stay on the API's origin.
    fn next_link(&self, headers: &HeaderMap, path: &str) -> Result<Option<String>> {
        let Some(link) = headers.get(header::LINK).and_then(|v| v.to_str().ok()) else {
            return Ok(None);
        };
        let Some(target) = next_target(link) else {
            return Ok(None);
        };
        let uri: Uri = target.parse().map_err(|_| Error::Decode {
            path: path.to_owned(),
            message: format!("bad next link {target:?}"),
        })?;
        if let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority())
            && (scheme != self.origin.0 || !authority.as_str().eq_ignore_ascii_case(&self.origin.1))
        {
            return Err(Error::Decode {
                path: path.to_owned(),
                message: format!(
                    "next link {target:?} leaves {}://{}",
                    self.origin.0, self.origin.1
                ),
            });
        }
        Ok(uri.path_and_query().map(|pq| pq.as_str().to_owned()))
    }

    fn parse<T: DeserializeOwned>(path: &str, body: &str) -> Result<T> {
        serde_json::from_str(body).map_err(|e| Error::Decode {
            path: path.split('?').next().unwrap_or(path).to_owned(),
            message: e.to_string(),
        })
    }

    /// Every item of a paginated list, up to `limit` of those `keep` accepts (and at most
    /// `max_pages` pages), and whether GitHub had more.
    async fn list<T: DeserializeOwned>(
        &self,
        first: String,
        what: &str,
        limit: usize,
        mut keep: impl FnMut(&T) -> bool,
    ) -> Result<Listed<T>> {
        let mut more = false;
        let mut items = Vec::new();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(path) = next.take() {
            if items.len() >= limit || pages >= self.max_pages {
                break;
            }
            pages += 1;
            let page = self.get(&path, what).await?;
            let batch: Vec<T> = Self::parse(&path, &page.body)?;
            let full = batch.len() >= PER_PAGE;
            for item in batch {
                if items.len() >= limit {
                    // Unread items (some may be of a kind `keep` refuses): maybe more.
                    more = true;
                    break;
                }
                if keep(&item) {
                    items.push(item);
                }
            }
            // Some servers keep linking past the end; a short page is the last one.
            next = page.next.filter(|_| full);
            if items.len() >= limit || pages >= self.max_pages {
                more |= next.is_some();
                break;
            }
        }
        Ok(Listed { items, more })
    }

    /// The first page of `path`, or nothing when GitHub has none of it (404).
    async fn optional<T: DeserializeOwned + Default>(&self, path: String, what: &str) -> Result<T> {
        match self.get(&path, what).await {
            Ok(page) => Self::parse(&path, &page.body),
            Err(Error::NotFound { .. }) => Ok(T::default()),
            Err(error) => Err(error),
        }
    }
}

enum Refusal {
    Final(Error),
    /// Wait this long, then try again (does not count as a failed attempt's backoff).
    RetryAfter(Duration),
    /// A transient failure, described.
    Retry(String),
}

/// The target of `rel="next"` in a `Link` header.
fn next_target(link: &str) -> Option<&str> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p == "rel=\"next\"" || p == "rel=next"
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then_some(target)
    })
}

/// GitHub's `message` (and the first validation error), or the start of the body.
fn github_message(body: &str) -> String {
    let message = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(value) => {
            let mut message = value["message"].as_str().unwrap_or_default().to_owned();
            if let Some(detail) = value["errors"][0]["message"].as_str() {
                message = format!("{message}: {detail}");
            }
            message
        }
        Err(_) => body.trim().to_owned(),
    };
    let message: String = message.chars().take(300).collect();
    if message.is_empty() {
        "no message".into()
    } else {
        message
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn timestamp(at: DateTime<Utc>) -> String {
    encode(&at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

#[async_trait::async_trait]
impl GitHub for RestGitHub {
    async fn list_issues(&self, repo: &RepoRef, query: &IssueQuery) -> Result<Listed<Issue>> {
        let mut path = self.path(&format!(
            "/repos/{repo}/issues?state={}&sort=created&direction=desc&per_page={PER_PAGE}",
            query.state.as_str()
        ));
        if !query.labels.is_empty() {
            path.push_str("&labels=");
            path.push_str(&encode(&query.labels.join(",")));
        }
        if let Some(since) = query.since {
            path.push_str("&since=");
            path.push_str(&timestamp(since));
        }
        let what = format!("repository {repo}");
        let issues: Listed<wire::WireIssue> = self
            .list(path, &what, query.limit, |issue: &wire::WireIssue| {
                !issue.is_pull_request()
            })
            .await?;
        Ok(Listed {
            items: issues.iter().map(wire::WireIssue::to_issue).collect(),
            more: issues.more,
        })
    }

    async fn get_issue(&self, repo: &RepoRef, number: u64) -> Result<IssueDetail> {
        let what = format!("issue {repo}#{number}");
        let path = self.path(&format!("/repos/{repo}/issues/{number}"));
        let comments_path = self.path(&format!(
            "/repos/{repo}/issues/{number}/comments?per_page={PER_PAGE}"
        ));
        let (page, comments) =
            tokio::try_join!(self.get(&path, &what), self.get(&comments_path, &what))?;
        let issue: wire::WireIssue = Self::parse(&path, &page.body)?;
        let comments: Vec<wire::WireComment> = Self::parse(&comments_path, &comments.body)?;
        Ok(IssueDetail {
            issue: issue.to_issue(),
            body: wire::shorten(issue.body.as_deref()),
            thread: comments
                .iter()
                .take(MAX_COMMENTS)
                .map(wire::WireComment::to_comment)
                .collect(),
        })
    }

    async fn list_pull_requests(
        &self,
        repo: &RepoRef,
        query: &PullQuery,
    ) -> Result<Listed<PullRequest>> {
        let path = self.path(&format!(
            "/repos/{repo}/pulls?state={}&sort=created&direction=desc&per_page={PER_PAGE}",
            query.state.as_str()
        ));
        let what = format!("repository {repo}");
        let pulls: Listed<wire::WirePull> = self.list(path, &what, query.limit, |_| true).await?;
        Ok(Listed {
            items: pulls.iter().map(wire::WirePull::to_pull_request).collect(),
            more: pulls.more,
        })
    }

    async fn get_pull_request(&self, repo: &RepoRef, number: u64) -> Result<PullRequestDetail> {
        let what = format!("pull request {repo}#{number}");
        let path = self.path(&format!("/repos/{repo}/pulls/{number}"));
        let files_path = self.path(&format!(
            "/repos/{repo}/pulls/{number}/files?per_page={PER_PAGE}"
        ));
        let reviews_path = self.path(&format!(
            "/repos/{repo}/pulls/{number}/reviews?per_page={PER_PAGE}"
        ));
        let (page, files, reviews) = tokio::try_join!(
            self.get(&path, &what),
            self.get(&files_path, &what),
            self.get(&reviews_path, &what),
        )?;
        let pull: wire::WirePull = Self::parse(&path, &page.body)?;
        let files: Vec<wire::WireFile> = Self::parse(&files_path, &files.body)?;
        let reviews: Vec<wire::WireReview> = Self::parse(&reviews_path, &reviews.body)?;
        let (runs, status) = if pull.head.sha.is_empty() {
            Default::default()
        } else {
            let sha = encode(&pull.head.sha);
            let commit = format!("commit {} of {repo}", pull.head.sha);
            tokio::try_join!(
                self.optional::<wire::CheckRuns>(
                    self.path(&format!(
                        "/repos/{repo}/commits/{sha}/check-runs?per_page={PER_PAGE}"
                    )),
                    &commit,
                ),
                self.optional::<wire::CombinedStatus>(
                    self.path(&format!(
                        "/repos/{repo}/commits/{sha}/status?per_page={PER_PAGE}"
                    )),
                    &commit,
                ),
            )?
        };
        let pull_request = pull.to_pull_request();
        let reviews = wire::latest_reviews(&reviews);
        let review_state = wire::review_state(&reviews, &pull_request.requested_reviewers);
        let (checks, ci_state) = wire::checks(&runs, &status);
        Ok(PullRequestDetail {
            body: wire::shorten(pull.body.as_deref()),
            additions: pull.additions,
            deletions: pull.deletions,
            changed_files: pull.changed_files,
            commits: pull.commits,
            mergeable: pull.mergeable,
            files: files.iter().map(wire::WireFile::to_file).collect(),
            review_state,
            reviews,
            ci_state,
            checks,
            pull_request,
        })
    }

    async fn list_commits(&self, repo: &RepoRef, query: &CommitQuery) -> Result<Listed<Commit>> {
        let mut path = self.path(&format!("/repos/{repo}/commits?per_page={PER_PAGE}"));
        if let Some(since) = query.since {
            path.push_str("&since=");
            path.push_str(&timestamp(since));
        }
        if let Some(until) = query.until {
            path.push_str("&until=");
            path.push_str(&timestamp(until));
        }
        if let Some(author) = &query.author {
            path.push_str("&author=");
            path.push_str(&encode(author));
        }
        let what = format!("repository {repo}");
        let commits: Listed<wire::WireCommit> =
            match self.list(path, &what, query.limit, |_| true).await {
                Ok(commits) => commits,
                // An empty repository has no commits to list: GitHub says 409 "Git Repository is empty".
                Err(Error::Api { status: 409, .. }) => Listed {
                    items: Vec::new(),
                    more: false,
                },
                Err(error) => return Err(error),
            };
        Ok(Listed {
            items: commits
                .iter()
                .filter_map(wire::WireCommit::to_commit)
                .collect(),
            more: commits.more,
        })
    }

    async fn search_issues(&self, query: &str, limit: usize) -> Result<SearchResults> {
        let query = query.trim();
        if query.is_empty() || query.chars().count() > 256 {
            return Err(Error::Invalid {
                field: "query",
                message: "give 1 to 256 characters of GitHub search syntax".into(),
            });
        }
        let mut next = Some(self.path(&format!(
            "/search/issues?q={}&per_page={PER_PAGE}",
            encode(query)
        )));
        let mut results = SearchResults {
            total_count: 0,
            items: Vec::new(),
        };
        let mut pages = 0;
        while let Some(path) = next.take() {
            if results.items.len() >= limit || pages >= self.max_pages {
                break;
            }
            pages += 1;
            let page = self.get(&path, "search").await?;
            let found: wire::WireSearch = Self::parse(&path, &page.body)?;
            results.total_count = found.total_count;
            let full = found.items.len() >= PER_PAGE;
            for item in found.items.iter().take(limit - results.items.len()) {
                results.items.push(item.to_search_hit());
            }
            next = page.next.filter(|_| full);
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_next_link() {
        let link = r#"<https://api.github.com/repositories/1/issues?page=3>; rel="next", <https://api.github.com/repositories/1/issues?page=9>; rel="last""#;
        assert_eq!(
            next_target(link),
            Some("https://api.github.com/repositories/1/issues?page=3")
        );
        assert_eq!(next_target(r#"<https://x/?page=1>; rel="prev""#), None);
        assert_eq!(next_target("garbage"), None);
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("good first issue,bug"), "good%20first%20issue%2Cbug");
        assert_eq!(encode("a-b_c.d~"), "a-b_c.d~");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn github_messages_are_read() {
        assert_eq!(
            github_message(r#"{"message":"Validation Failed","errors":[{"message":"bad q"}]}"#),
            "Validation Failed: bad q"
        );
        assert_eq!(github_message(""), "no message");
    }

    #[test]
    fn the_token_is_not_printed() {
        let config = GitHubConfig {
            token: Some("ghp_s3cret".into()),
            ..GitHubConfig::default()
        };
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn base_urls_are_checked() {
        for bad in ["api.github.com", "ftp://x/", ""] {
            let config = GitHubConfig {
                api_base_url: bad.into(),
                ..GitHubConfig::default()
            };
            assert!(
                matches!(RestGitHub::new(config), Err(Error::Config(_))),
                "{bad}"
            );
        }
    }
}
