//! Dashboard digests: GitHub data turned into the channel shapes the hub validates
//! (`pull_requests`, `commits`; `issues` is a plain list). Pure functions of their inputs and
//! "now", so they are tested without GitHub.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::{CiState, Commit, PullRequestDetail, ReviewState};

/// One open pull request in the `pull_requests` channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PrEntry {
    pub(crate) number: u64,
    pub(crate) title: String,
    pub(crate) author: String,
    pub(crate) url: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) age_days: i64,
    pub(crate) draft: bool,
    pub(crate) additions: u64,
    pub(crate) deletions: u64,
    pub(crate) changed_files: u64,
    pub(crate) size: &'static str,
    pub(crate) review_state: ReviewState,
    pub(crate) ci_state: CiState,
    pub(crate) stale: bool,
    pub(crate) labels: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct PrSummary {
    pub(crate) open: usize,
    pub(crate) stale: usize,
    /// Non-draft pull requests no reviewer has decided on (none requested, or requested).
    pub(crate) awaiting_review: usize,
    pub(crate) failing_ci: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PrAnalysis {
    pub(crate) pull_requests: Vec<PrEntry>,
    pub(crate) summary: PrSummary,
}

/// XS < 10 changed lines ≤ S < 50 ≤ M < 250 ≤ L < 1,000 ≤ XL.
pub(crate) fn size_label(changed_lines: u64) -> &'static str {
    match changed_lines {
        0..10 => "XS",
        10..50 => "S",
        50..250 => "M",
        250..1_000 => "L",
        _ => "XL",
    }
}

/// Open pull requests with age, size, review and CI state; stale when not updated for
/// `stale_days`.
pub(crate) fn analyse_pull_requests(
    details: &[PullRequestDetail],
    now: DateTime<Utc>,
    stale_days: u32,
) -> PrAnalysis {
    let mut summary = PrSummary::default();
    let pull_requests = details
        .iter()
        .map(|detail| {
            let pr = &detail.pull_request;
            let stale = (now - pr.updated_at).num_days() >= i64::from(stale_days);
            summary.open += 1;
            summary.stale += usize::from(stale);
            summary.awaiting_review += usize::from(
                !pr.draft
                    && matches!(
                        detail.review_state,
                        ReviewState::ReviewRequired | ReviewState::None
                    ),
            );
            summary.failing_ci += usize::from(detail.ci_state == CiState::Failure);
            PrEntry {
                number: pr.number,
                title: pr.title.clone(),
                author: pr.author.clone(),
                url: pr.url.clone(),
                created_at: pr.created_at,
                updated_at: pr.updated_at,
                age_days: (now - pr.created_at).num_days().max(0),
                draft: pr.draft,
                additions: detail.additions,
                deletions: detail.deletions,
                changed_files: detail.changed_files,
                size: size_label(detail.additions + detail.deletions),
                review_state: detail.review_state,
                ci_state: detail.ci_state,
                stale,
                labels: pr.labels.clone(),
            }
        })
        .collect();
    PrAnalysis {
        pull_requests,
        summary,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct AuthorCount {
    pub(crate) author: String,
    pub(crate) commits: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Day {
    /// YYYY-MM-DD (UTC).
    pub(crate) date: String,
    pub(crate) total: usize,
    pub(crate) authors: Vec<AuthorCount>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct CommitSummary {
    pub(crate) since: DateTime<Utc>,
    pub(crate) until: DateTime<Utc>,
    pub(crate) total: usize,
    /// Every day from `since` to `until`, empty ones included (a timeline needs them).
    pub(crate) days: Vec<Day>,
    pub(crate) authors: Vec<AuthorCount>,
}

/// Most commits first, then by name.
fn ranked(counts: BTreeMap<&str, usize>) -> Vec<AuthorCount> {
    let mut authors: Vec<AuthorCount> = counts
        .into_iter()
        .map(|(author, commits)| AuthorCount {
            author: author.to_owned(),
            commits,
        })
        .collect();
    authors.sort_by(|a, b| b.commits.cmp(&a.commits).then(a.author.cmp(&b.author)));
    authors
}

/// Commits per author per day between `since` and `until` (UTC days; `since <= until`, and at
/// most a few hundred days apart, which the caller checks).
pub(crate) fn summarise_commits(
    commits: &[Commit],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> CommitSummary {
    let mut per_day: BTreeMap<NaiveDate, BTreeMap<&str, usize>> = BTreeMap::new();
    let mut per_author: BTreeMap<&str, usize> = BTreeMap::new();
    let mut day = since.date_naive();
    while day <= until.date_naive() {
        per_day.insert(day, BTreeMap::new());
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    let mut total = 0;
    for commit in commits
        .iter()
        .filter(|c| c.date >= since && c.date <= until)
    {
        total += 1;
        *per_author.entry(&commit.author).or_default() += 1;
        *per_day
            .entry(commit.date.date_naive())
            .or_default()
            .entry(&commit.author)
            .or_default() += 1;
    }
    let days = per_day
        .into_iter()
        .map(|(date, authors)| Day {
            date: date.format("%Y-%m-%d").to_string(),
            total: authors.values().sum(),
            authors: ranked(authors),
        })
        .collect();
    CommitSummary {
        since,
        until,
        total,
        days,
        authors: ranked(per_author),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PullRequest;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap_or_default()
    }

    fn commit(author: &str, date: &str) -> Commit {
        Commit {
            sha: "0".repeat(40),
            message: "m".into(),
            author: author.into(),
            date: at(date),
            url: String::new(),
        }
    }

    #[test]
    fn sizes_follow_changed_lines() {
        assert_eq!(size_label(0), "XS");
        assert_eq!(size_label(9), "XS");
        assert_eq!(size_label(10), "S");
        assert_eq!(size_label(249), "M");
        assert_eq!(size_label(999), "L");
        assert_eq!(size_label(1_000), "XL");
    }

    #[test]
    fn commits_are_counted_per_author_per_day() {
        let commits = [
            commit("alice", "2026-11-30T10:00:00Z"),
            commit("alice", "2026-11-30T23:59:00Z"),
            commit("bob", "2026-11-30T12:00:00Z"),
            commit("bob", "2026-12-02T01:00:00Z"),
            commit("carol", "2026-11-01T00:00:00Z"), // before `since`: left out
        ];
        let summary = summarise_commits(
            &commits,
            at("2026-11-29T05:00:00Z"),
            at("2026-12-02T05:00:00Z"),
        );
        assert_eq!(summary.total, 4);
        let dates: Vec<&str> = summary.days.iter().map(|d| d.date.as_str()).collect();
        assert_eq!(
            dates,
            ["2026-11-29", "2026-11-30", "2026-12-01", "2026-12-02"]
        );
        assert_eq!(summary.days[1].total, 3);
        assert_eq!(summary.days[1].authors[0].author, "alice");
        assert_eq!(summary.days[2].total, 0);
        assert_eq!(
            summary.authors,
            [
                AuthorCount {
                    author: "alice".into(),
                    commits: 2
                },
                AuthorCount {
                    author: "bob".into(),
                    commits: 2
                }
            ]
        );
    }

    #[test]
    fn pull_requests_are_aged_sized_and_flagged() {
        let detail = |number, updated: &str, review, ci, draft| PullRequestDetail {
            pull_request: PullRequest {
                number,
                title: format!("pr {number}"),
                state: "open".into(),
                draft,
                author: "alice".into(),
                labels: vec![],
                requested_reviewers: vec![],
                head: "feature".into(),
                base: "main".into(),
                created_at: at("2026-11-01T00:00:00Z"),
                updated_at: at(updated),
                merged_at: None,
                url: String::new(),
            },
            body: String::new(),
            additions: 40,
            deletions: 20,
            changed_files: 3,
            commits: 1,
            mergeable: None,
            files: vec![],
            review_state: review,
            reviews: vec![],
            ci_state: ci,
            checks: vec![],
        };
        let now = at("2026-12-02T00:00:00Z");
        let analysis = analyse_pull_requests(
            &[
                detail(
                    1,
                    "2026-12-01T00:00:00Z",
                    ReviewState::None,
                    CiState::Failure,
                    false,
                ),
                detail(
                    2,
                    "2026-11-10T00:00:00Z",
                    ReviewState::Approved,
                    CiState::Success,
                    false,
                ),
                detail(
                    3,
                    "2026-11-30T00:00:00Z",
                    ReviewState::None,
                    CiState::Pending,
                    true,
                ),
            ],
            now,
            14,
        );
        assert_eq!(
            analysis.summary,
            PrSummary {
                open: 3,
                stale: 1,
                awaiting_review: 1,
                failing_ci: 1
            }
        );
        assert_eq!(analysis.pull_requests[0].age_days, 31);
        assert_eq!(analysis.pull_requests[0].size, "M");
        assert!(analysis.pull_requests[1].stale);
    }
}
