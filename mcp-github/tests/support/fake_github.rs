//! A fake GitHub REST API on 127.0.0.1 for tests: slim fixtures under `/api/v3` (like GitHub
//! Enterprise), Link pagination, ETags and 304s, and repositories that misbehave on purpose.
//! Shared by mcp-github's own tests and the end-to-end tests in the root `tests/`.
//!
//! Repositories of `acme` (any other owner or name is a 404):
//! - `big`: 1,000 issues; `huge`: 5,100 issues (more than one push carries); every other
//!   repository: issues 1..=8 of which 2, 5 and 7 are pull
//!   requests, the pull requests themselves, and commits from 2026-11-28 to 2026-11-30.
//! - `limited`: 403 with `x-ratelimit-remaining: 0`, resetting at 2030-01-01T00:00:00Z.
//! - `secondary`: the first request gets a secondary rate limit with `Retry-After: 1`.
//! - `slowdown`: always a secondary rate limit with `Retry-After: 120`.
//! - `flaky`: the first two requests get 502 and 503.
//! - `down`: always 500.
//!
//! A request with `Authorization: Bearer bad-token` gets 401.

#![allow(dead_code, clippy::unwrap_used)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};

/// The reset time `limited` announces: 2030-01-01T00:00:00Z.
pub(crate) const RATE_LIMIT_RESET: i64 = 1_893_456_000;

/// One request the fake received.
#[derive(Debug, Clone)]
pub(crate) struct Logged {
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) if_none_match: Option<String>,
    pub(crate) authorization: Option<String>,
    pub(crate) user_agent: Vec<String>,
    pub(crate) status: u16,
    pub(crate) at: Instant,
}

#[derive(Default)]
struct Fake {
    log: Mutex<Vec<Logged>>,
    /// Requests per repository, for the ones that misbehave only at first.
    hits: Mutex<HashMap<String, usize>>,
}

/// A running fake; stops with the test's runtime.
pub(crate) struct FakeGitHub {
    /// The API base URL, `http://127.0.0.1:PORT/api/v3`.
    pub(crate) url: String,
    fake: Arc<Fake>,
}

impl FakeGitHub {
    pub(crate) async fn start() -> Self {
        let fake = Arc::new(Fake::default());
        let api = Router::new()
            .route("/api/v3/repos/{owner}/{repo}/issues", get(list_issues))
            .route(
                "/api/v3/repos/{owner}/{repo}/issues/{number}",
                get(get_issue),
            )
            .route(
                "/api/v3/repos/{owner}/{repo}/issues/{number}/comments",
                get(comments),
            )
            .route("/api/v3/repos/{owner}/{repo}/pulls", get(list_pulls))
            .route("/api/v3/repos/{owner}/{repo}/pulls/{number}", get(get_pull))
            .route(
                "/api/v3/repos/{owner}/{repo}/pulls/{number}/files",
                get(files),
            )
            .route(
                "/api/v3/repos/{owner}/{repo}/pulls/{number}/reviews",
                get(reviews),
            )
            .route(
                "/api/v3/repos/{owner}/{repo}/commits/{sha}/check-runs",
                get(check_runs),
            )
            .route(
                "/api/v3/repos/{owner}/{repo}/commits/{sha}/status",
                get(status),
            )
            .route("/api/v3/repos/{owner}/{repo}/commits", get(commits))
            .route("/api/v3/search/issues", get(search));
        let app = api
            .fallback(|| async { not_found() })
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{address}/api/v3"),
            fake,
        }
    }

    pub(crate) fn requests(&self) -> Vec<Logged> {
        self.fake.log.lock().unwrap().clone()
    }

    /// Requests whose path ends with `suffix`.
    pub(crate) fn requests_to(&self, suffix: &str) -> Vec<Logged> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with(suffix))
            .collect()
    }
}

/// Everything a handler needs to know about the request.
struct Call {
    fake: Arc<Fake>,
    uri: Uri,
    headers: HeaderMap,
}

impl Call {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    fn finish(&self, response: Response) -> Response {
        self.fake.log.lock().unwrap().push(Logged {
            path: self.uri.path().to_owned(),
            query: self.uri.query().unwrap_or_default().to_owned(),
            if_none_match: self.header("if-none-match"),
            authorization: self.header("authorization"),
            user_agent: self
                .headers
                .get_all("user-agent")
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_owned))
                .collect(),
            status: response.status().as_u16(),
            at: Instant::now(),
        });
        response
    }

    /// The answer for a misbehaving repository or a bad token, if any.
    fn gate(&self, owner: &str, repo: &str) -> Option<Response> {
        if self.header("authorization").as_deref() == Some("Bearer bad-token") {
            return Some(message(StatusCode::UNAUTHORIZED, "Bad credentials"));
        }
        let known = [
            "api",
            "big",
            "huge",
            "limited",
            "secondary",
            "slowdown",
            "flaky",
            "down",
        ];
        if owner != "acme" || !known.contains(&repo) {
            return Some(not_found());
        }
        let hit = {
            let mut hits = self.fake.hits.lock().unwrap();
            let hit = hits.entry(repo.to_owned()).or_default();
            *hit += 1;
            *hit
        };
        match (repo, hit) {
            ("limited", _) => {
                let mut response =
                    message(StatusCode::FORBIDDEN, "API rate limit exceeded for user.");
                let headers = response.headers_mut();
                headers.insert("x-ratelimit-limit", "5000".parse().unwrap());
                headers.insert("x-ratelimit-remaining", "0".parse().unwrap());
                headers.insert(
                    "x-ratelimit-reset",
                    RATE_LIMIT_RESET.to_string().parse().unwrap(),
                );
                Some(response)
            }
            ("secondary", 1) | ("slowdown", _) => {
                let mut response = message(
                    StatusCode::FORBIDDEN,
                    "You have exceeded a secondary rate limit.",
                );
                let wait = if repo == "secondary" { "1" } else { "120" };
                response
                    .headers_mut()
                    .insert("retry-after", wait.parse().unwrap());
                Some(response)
            }
            ("flaky", 1) => Some(message(StatusCode::BAD_GATEWAY, "Server Error")),
            ("flaky", 2) => Some(message(StatusCode::SERVICE_UNAVAILABLE, "Unicorn")),
            ("down", _) => Some(message(StatusCode::INTERNAL_SERVER_ERROR, "Server Error")),
            _ => None,
        }
    }

    /// A JSON answer with an ETag; 304 when the client already has it.
    fn json(&self, body: Value, link: Option<String>) -> Response {
        let text = body.to_string();
        let etag = format!("\"{:x}\"", fnv(text.as_bytes()));
        if self.header("if-none-match").as_deref() == Some(etag.as_str()) {
            return StatusCode::NOT_MODIFIED.into_response();
        }
        let mut response = ([("content-type", "application/json")], text).into_response();
        response.headers_mut().insert("etag", etag.parse().unwrap());
        if let Some(link) = link {
            response.headers_mut().insert("link", link.parse().unwrap());
        }
        response
    }

    /// One page of `items` as `per_page` and `page` ask, linking to the next one.
    fn page(&self, items: &[Value], params: &HashMap<String, String>) -> Response {
        let per_page: usize = params
            .get("per_page")
            .and_then(|v| v.parse().ok())
            .unwrap_or(30);
        let page: usize = params
            .get("page")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
            .max(1);
        let start = (page - 1) * per_page;
        let chunk: Vec<Value> = items.iter().skip(start).take(per_page).cloned().collect();
        let link = (start + per_page < items.len()).then(|| {
            let host = self.header("host").unwrap_or_default();
            let query: Vec<String> = self
                .uri
                .query()
                .unwrap_or_default()
                .split('&')
                .filter(|p| !p.starts_with("page=") && !p.is_empty())
                .map(str::to_owned)
                .chain([format!("page={}", page + 1)])
                .collect();
            format!(
                "<http://{host}{}?{}>; rel=\"next\", <http://{host}{}?page=999>; rel=\"last\"",
                self.uri.path(),
                query.join("&"),
                self.uri.path()
            )
        });
        self.json(Value::Array(chunk), link)
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn message(status: StatusCode, text: &str) -> Response {
    (
        status,
        Json(json!({"message": text, "documentation_url": "https://docs.github.com/rest"})),
    )
        .into_response()
}

fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, "Not Found")
}

/// Issue `number` as GitHub lists it (slim). Even-numbered ones are closed in `big`.
pub(crate) fn issue(repo: &str, number: u64, pull_request: bool) -> Value {
    let mut issue = json!({
        "number": number,
        "title": format!("Issue {number} of {repo}"),
        "state": "open",
        "labels": [{"name": "bug"}],
        "assignees": [{"login": "alice"}],
        "user": {"login": "bob"},
        "comments": 2,
        "created_at": "2026-11-01T10:00:00Z",
        "updated_at": "2026-11-20T10:00:00Z",
        "closed_at": null,
        "html_url": format!("https://github.com/acme/{repo}/issues/{number}"),
        "repository_url": format!("https://api.github.com/repos/acme/{repo}"),
        "body": "Steps to reproduce…",
    });
    if pull_request {
        issue["pull_request"] =
            json!({"url": format!("https://api.github.com/repos/acme/{repo}/pulls/{number}")});
    }
    issue
}

/// The pull requests among issues 1..=8 of the small repositories.
pub(crate) const PULL_NUMBERS: [u64; 3] = [2, 5, 7];

fn issues_of(repo: &str) -> Vec<Value> {
    if repo == "big" {
        return (1..=1_000).rev().map(|n| issue(repo, n, false)).collect();
    }
    if repo == "huge" {
        return (1..=5_100).rev().map(|n| issue(repo, n, false)).collect();
    }
    (1..=8)
        .rev()
        .map(|n| issue(repo, n, PULL_NUMBERS.contains(&n)))
        .collect()
}

fn pull(repo: &str, number: u64) -> Value {
    let (draft, additions, deletions, reviewers) = match number {
        2 => (false, 5, 2, json!([])),
        5 => (false, 900, 300, json!([])),
        _ => (true, 40, 0, json!([{"login": "carol"}])),
    };
    json!({
        "number": number,
        "title": format!("Pull request {number}"),
        "state": "open",
        "draft": draft,
        "user": {"login": "bob"},
        "labels": [{"name": "feature"}],
        "requested_reviewers": reviewers,
        "head": {"ref": format!("feature-{number}"), "sha": format!("sha{number}")},
        "base": {"ref": "main", "sha": "base"},
        "created_at": "2026-11-01T10:00:00Z",
        "updated_at": if number == 2 { "2026-11-02T10:00:00Z" } else { "2099-01-01T00:00:00Z" },
        "merged_at": null,
        "html_url": format!("https://github.com/acme/{repo}/pull/{number}"),
        "body": "Adds things.",
        "additions": additions,
        "deletions": deletions,
        "changed_files": 2,
        "commits": 1,
        "mergeable": true,
    })
}

type RepoPath = Path<(String, String)>;
type NumberPath = Path<(String, String, u64)>;
type Params = Query<HashMap<String, String>>;

async fn list_issues(
    State(fake): State<Arc<Fake>>,
    Path((owner, repo)): RepoPath,
    Query(params): Params,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let call = Call { fake, uri, headers };
    if let Some(response) = call.gate(&owner, &repo) {
        return call.finish(response);
    }
    let state = params.get("state").map_or("open", String::as_str);
    let issues: Vec<Value> = issues_of(&repo)
        .into_iter()
        .filter(|i| state == "all" || i["state"] == state)
        .collect();
    let response = call.page(&issues, &params);
    call.finish(response)
}

async fn get_issue(
    State(fake): State<Arc<Fake>>,
    Path((owner, repo, number)): NumberPath,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let call = Call { fake, uri, headers };
    if let Some(response) = call.gate(&owner, &repo) {
        return call.finish(response);
    }
    let response = match issues_of(&repo).into_iter().find(|i| i["number"] == number) {
        Some(issue) => call.json(issue, None),
        None => not_found(),
    };
    call.finish(response)
}

async fn comments(
    State(fake): State<Arc<Fake>>,
    Path((owner, repo, _number)): NumberPath,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let call = Call { fake, uri, headers };
    if let Some(response) = call.gate(&owner, &repo) {
        return call.finish(response);
    }
    let response = call.json(
        json!([
            {"user": {"login": "alice"}, "created_at": "2026-11-02T10:00:00Z", "body": "I see it too."},
            {"user": null, "created_at": "2026-11-03T10:00:00Z", "body": "Fixed?"}
        ]),
        None,
    );
    call.finish(response)
}

async fn list_pulls(
    State(fake): State<Arc<Fake>>,
    Path((owner, repo)): RepoPath,
    Query(params): Params,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let call = Call { fake, uri, headers };
    if let Some(response) = call.gate(&owner, &repo) {
        return call.finish(response);
    }
    let pulls: Vec<Value> = PULL_NUMBERS.iter().rev().map(|n| pull(&repo, *n)).collect();
    let response = call.page(&pulls, &params);
    call.finish(response)
}

async fn get_pull(
    State(fake): State<Arc<Fake>>,
    Path((owner, repo, number)): NumberPath,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let call = Call { fake, uri, headers };
    if let Some(response) = call.gate(&owner, &repo) {
        return call.finish(response);
    }
    let response = if PULL_NUMBERS.contains(&number) {
        call.json(pull(&repo, number), None)
    } else {
        not_found()
    };
    call.finish(response)
}

async fn files(
    State(fake): State<Arc<Fake>>,
    Path((owner, repo, _number)): NumberPath,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let call = Call { fake, uri, headers };
    if let Some(response) = call.gate(&owner, &repo) {
        return call.finish(response);
    }
    let response = call.json(
        json!([
            {"filename": "src/lib.rs", "status": "modified", "additions": 3, "deletions": 1},
            {"filename": "README.md", "status": "added", "additions": 2, "deletions": 0}
        ]),
        None,
    );
    call.finish(response)
}

async fn reviews(
    State(fake): State<Arc<Fake>>,
    Path((owner, repo, number)): NumberPath,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let call = Call { fake, uri, headers };
    if let Some(response) = call.gate(&owner, &repo) {
        return call.finish(response);
    }
    let reviews = match number {
        2 => {
            json!([{"user": {"login": "carol"}, "state": "APPROVED", "submitted_at": "2026-11-02T10:00:00Z"}])
        }
        5 => json!([
            {"user": {"login": "carol"}, "state": "APPROVED", "submitted_at": "2026-11-02T10:00:00Z"},
            {"user": {"login": "dave"}, "state": "CHANGES_REQUESTED", "submitted_at": "2026-11-03T10:00:00Z"}
        ]),
        _ => json!([]),
    };
    let response = call.json(reviews, None);
    call.finish(response)
}

async fn check_runs(
    State(fake): State<Arc<Fake>>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let call = Call { fake, uri, headers };
    if let Some(response) = call.gate(&owner, &repo) {
        return call.finish(response);
    }
    let runs = match sha.as_str() {
        "sha2" => json!([{"name": "build", "status": "completed", "conclusion": "success"}]),
        "sha5" => json!([{"name": "build", "status": "completed", "conclusion": "failure"}]),
        _ => json!([{"name": "build", "status": "in_progress", "conclusion": null}]),
    };
    let response = call.json(json!({"total_count": 1, "check_runs": runs}), None);
    call.finish(response)
}

async fn status(
    State(fake): State<Arc<Fake>>,
    Path((owner, repo, _sha)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let call = Call { fake, uri, headers };
    if let Some(response) = call.gate(&owner, &repo) {
        return call.finish(response);
    }
    let response = call.json(
        json!({"state": "pending", "total_count": 0, "statuses": []}),
        None,
    );
    call.finish(response)
}

/// Commits (newest first): alice 3, bob 2, and one by a git author unknown to GitHub.
pub(crate) fn commit_fixtures() -> Vec<Value> {
    let commit = |sha: &str, login: Option<&str>, name: &str, date: &str| {
        json!({
            "sha": sha,
            "html_url": format!("https://github.com/acme/api/commit/{sha}"),
            "commit": {
                "message": format!("Change {sha}\n\nDetails."),
                "author": {"name": name, "email": "x@example.com", "date": date},
                "committer": {"name": name, "date": date}
            },
            "author": login.map(|login| json!({"login": login})),
        })
    };
    vec![
        commit("c6", Some("alice"), "Alice", "2026-11-30T18:00:00Z"),
        commit("c5", None, "Carol", "2026-11-30T09:00:00Z"),
        commit("c4", Some("bob"), "Bob", "2026-11-29T12:00:00Z"),
        commit("c3", Some("alice"), "Alice", "2026-11-29T08:00:00Z"),
        commit("c2", Some("alice"), "Alice", "2026-11-28T10:00:00Z"),
        commit("c1", Some("bob"), "Bob", "2026-11-28T09:00:00Z"),
    ]
}

async fn commits(
    State(fake): State<Arc<Fake>>,
    Path((owner, repo)): RepoPath,
    Query(params): Params,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let call = Call { fake, uri, headers };
    if let Some(response) = call.gate(&owner, &repo) {
        return call.finish(response);
    }
    // ISO 8601 in UTC compares as text.
    let date = |c: &Value| {
        c["commit"]["author"]["date"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    let commits: Vec<Value> = commit_fixtures()
        .into_iter()
        .filter(|c| params.get("since").is_none_or(|s| date(c) >= *s))
        .filter(|c| params.get("until").is_none_or(|u| date(c) <= *u))
        .filter(|c| {
            params
                .get("author")
                .is_none_or(|a| c["author"]["login"].as_str() == Some(a.as_str()))
        })
        .collect();
    let response = call.page(&commits, &params);
    call.finish(response)
}

async fn search(
    State(fake): State<Arc<Fake>>,
    Query(params): Params,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let call = Call { fake, uri, headers };
    let query = params.get("q").cloned().unwrap_or_default();
    if query.contains("is:nonsense") {
        let response = (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": "Validation Failed", "errors": [{"message": "is:nonsense is not a qualifier"}]})),
        )
            .into_response();
        return call.finish(response);
    }
    let items = issues_of("api");
    let response = call.json(
        json!({"total_count": items.len(), "incomplete_results": false, "items": items}),
        None,
    );
    call.finish(response)
}
