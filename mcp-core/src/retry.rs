//! What every client that retries over the network shares (the dashboard sink, the GitHub
//! client): jittered exponential backoff, and error messages that keep their causes.

use std::time::Duration;

/// The wait before attempt `attempt + 1` (`attempt` counts from 1): `base` doubled per attempt,
/// at most `cap`, with jitter over its upper half so that many clients retrying together
/// spread out.
pub fn backoff(base: Duration, attempt: u32, cap: Duration) -> Duration {
    let exponential = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(cap);
    let half = exponential / 2;
    let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(fastrand::u64(0..=jitter_nanos))
}

/// `error` followed by each of its sources that says something new: hyper keeps the useful
/// part ("connection refused") several sources down.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(1);
        for _ in 0..100 {
            let first = backoff(base, 1, cap);
            assert!(first >= Duration::from_millis(50) && first <= base);
            let third = backoff(base, 3, cap);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(backoff(base, 30, cap) <= cap);
        }
    }

    #[test]
    fn causes_are_kept_once() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let error = Outer(std::io::Error::other("connection refused"));
        assert_eq!(
            error_chain(&error),
            "client error (Connect): connection refused"
        );
    }
}
