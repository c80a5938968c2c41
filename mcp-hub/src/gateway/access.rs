//! Who may call which tool: the `[[access]]` rules of the gateway configuration, applied to a
//! caller's principal and scope and to the namespaced tool name the caller sees.

use mcp_core::auth::Scope;

use super::config::{AccessRule, glob_match};

/// The access rules, ready to answer "may this caller call this tool?".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AccessPolicy {
    rules: Vec<AccessRule>,
}

/// The answer for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    Allowed,
    /// `reason` is short, lowercase, and safe to show the caller.
    Denied {
        reason: String,
    },
}

impl Decision {
    pub(crate) fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed)
    }
}

impl AccessPolicy {
    pub(crate) fn new(rules: Vec<AccessRule>) -> Self {
        AccessPolicy { rules }
    }

    /// Decides whether `principal` (`key:<name>`, `jwt:<sub>`, or `anonymous` when auth is
    /// off), holding `scope`, may call `tool`, the namespaced name it sees
    /// (`tasks__create_task`).
    ///
    /// An admin may call everything. Otherwise the rules whose principal patterns match are
    /// the caller's rules: a deny pattern of any of them that matches the tool denies the call;
    /// if it has rules, the call is allowed only when an allow pattern of one of them matches;
    /// without rules, the write scope is needed.
    pub(crate) fn decide(&self, principal: &str, scope: Scope, tool: &str) -> Decision {
        if scope >= Scope::Admin {
            return Decision::Allowed;
        }
        let mut has_rules = false;
        let mut allowed = false;
        for rule in self.rules_of(principal) {
            has_rules = true;
            if let Some(pattern) = rule.deny.iter().find(|p| glob_match(p, tool)) {
                return Decision::Denied {
                    reason: format!(
                        "`{principal}` may not call `{tool}`: an [[access]] rule denies `{pattern}`"
                    ),
                };
            }
            allowed = allowed || rule.allow.iter().any(|p| glob_match(p, tool));
        }
        if allowed || (!has_rules && scope >= Scope::Write) {
            return Decision::Allowed;
        }
        let reason = if has_rules {
            format!(
                "`{principal}` may not call `{tool}`: no [[access]] rule for it allows this tool"
            )
        } else {
            format!(
                "`{principal}` may not call `{tool}`: calling tools needs the write scope, or an [[access]] rule that allows this tool"
            )
        };
        Decision::Denied { reason }
    }

    /// Whether `tools/list` shows `tool` to this caller: exactly the tools it may call.
    pub(crate) fn may_see(&self, principal: &str, scope: Scope, tool: &str) -> bool {
        self.decide(principal, scope, tool).is_allowed()
    }

    fn rules_of<'a>(&'a self, principal: &'a str) -> impl Iterator<Item = &'a AccessRule> + 'a {
        self.rules
            .iter()
            .filter(move |rule| rule.principals.iter().any(|p| glob_match(p, principal)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rule(principals: &[&str], allow: &[&str], deny: &[&str]) -> AccessRule {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        AccessRule {
            principals: owned(principals),
            allow: owned(allow),
            deny: owned(deny),
        }
    }

    fn reason(decision: Decision) -> String {
        match decision {
            Decision::Allowed => panic!("expected a denial"),
            Decision::Denied { reason } => reason,
        }
    }

    const TOOLS: [&str; 4] = [
        "tasks__get_task",
        "tasks__create_task",
        "tasks__delete_task",
        "github__get_issue",
    ];

    /// Which of `TOOLS` the caller may call.
    fn callable(policy: &AccessPolicy, principal: &str, scope: Scope) -> Vec<&'static str> {
        TOOLS
            .into_iter()
            .filter(|tool| {
                let decision = policy.decide(principal, scope, tool);
                assert_eq!(
                    decision.is_allowed(),
                    policy.may_see(principal, scope, tool)
                );
                decision.is_allowed()
            })
            .collect()
    }

    fn policy() -> AccessPolicy {
        AccessPolicy::new(vec![
            // A read key that may also call the getters.
            rule(&["key:reader"], &["*__get_*"], &[]),
            // A write key restricted to its list.
            rule(&["key:ci-bot"], &["tasks__*"], &["tasks__delete_*"]),
            // Everyone signed in with a JWT, minus deletions.
            rule(&["jwt:*"], &["*"], &["*__delete_*"]),
            // A second rule for alice adds to her allow list.
            rule(&["jwt:alice"], &["github__*"], &[]),
            rule(&["anonymous"], &["*__get_task"], &[]),
            // A rule that only denies, and so also locks the key out of everything else.
            rule(&["key:locked"], &[], &["*"]),
        ])
    }

    #[test]
    fn admin_may_call_everything() {
        let policy = policy();
        for principal in [
            "key:admin",
            "key:reader",
            "key:locked",
            "jwt:bob",
            "anonymous",
        ] {
            assert_eq!(
                callable(&policy, principal, Scope::Admin),
                TOOLS,
                "{principal}"
            );
        }
    }

    #[test]
    fn without_rules_write_may_call_everything_and_read_nothing() {
        let policy = policy();
        assert_eq!(callable(&policy, "key:writer", Scope::Write), TOOLS);
        assert!(callable(&policy, "key:viewer", Scope::Read).is_empty());
        assert_eq!(
            reason(policy.decide("key:viewer", Scope::Read, "tasks__get_task")),
            "`key:viewer` may not call `tasks__get_task`: calling tools needs the write scope, or an [[access]] rule that allows this tool"
        );
        let empty = AccessPolicy::default();
        assert_eq!(callable(&empty, "anonymous", Scope::Write), TOOLS);
        assert!(callable(&empty, "anonymous", Scope::Read).is_empty());
    }

    #[test]
    fn rules_widen_a_read_key() {
        let policy = policy();
        assert_eq!(
            callable(&policy, "key:reader", Scope::Read),
            ["tasks__get_task", "github__get_issue"]
        );
        let denied = reason(policy.decide("key:reader", Scope::Read, "tasks__create_task"));
        assert_eq!(
            denied,
            "`key:reader` may not call `tasks__create_task`: no [[access]] rule for it allows this tool"
        );
    }

    #[test]
    fn rules_restrict_a_write_key() {
        let policy = policy();
        assert_eq!(
            callable(&policy, "key:ci-bot", Scope::Write),
            ["tasks__get_task", "tasks__create_task"]
        );
        assert_eq!(
            callable(&policy, "key:reader", Scope::Write),
            ["tasks__get_task", "github__get_issue"]
        );
    }

    #[test]
    fn deny_wins() {
        let policy = policy();
        let denied = reason(policy.decide("key:ci-bot", Scope::Write, "tasks__delete_task"));
        assert_eq!(
            denied,
            "`key:ci-bot` may not call `tasks__delete_task`: an [[access]] rule denies `tasks__delete_*`"
        );
        // A deny in one rule beats an allow in another rule of the same principal.
        let split = AccessPolicy::new(vec![
            rule(&["key:a"], &["*"], &[]),
            rule(&["key:*"], &[], &["x__drop"]),
        ]);
        assert!(!split.may_see("key:a", Scope::Write, "x__drop"));
        assert!(split.may_see("key:a", Scope::Write, "x__keep"));
        // The deny-only rule of `key:*` also gives `key:b` rules, which allow nothing.
        assert!(!split.may_see("key:b", Scope::Write, "x__keep"));
        assert!(callable(&policy, "key:locked", Scope::Write).is_empty());
    }

    #[test]
    fn glob_principals_and_several_rules() {
        let policy = policy();
        // `jwt:*` matches bob: everything but deletions.
        assert_eq!(
            callable(&policy, "jwt:bob", Scope::Read),
            ["tasks__get_task", "tasks__create_task", "github__get_issue"]
        );
        // Alice has both `jwt:*` and her own rule; the `jwt:*` deny still applies to her.
        assert_eq!(
            callable(&policy, "jwt:alice", Scope::Write),
            ["tasks__get_task", "tasks__create_task", "github__get_issue"]
        );
        let question = AccessPolicy::new(vec![rule(&["key:bot-?"], &["*"], &[])]);
        assert!(question.may_see("key:bot-1", Scope::Read, "t"));
        assert!(!question.may_see("key:bot-12", Scope::Read, "t"));
    }

    #[test]
    fn anonymous() {
        let policy = policy();
        assert_eq!(
            callable(&policy, "anonymous", Scope::Read),
            ["tasks__get_task"]
        );
        assert_eq!(
            callable(&policy, "anonymous", Scope::Write),
            ["tasks__get_task"]
        );
        // Principal patterns match whole names: `anonymous` is not `jwt:*`, nor a prefix match.
        assert!(!policy.may_see("anonymous-2", Scope::Read, "tasks__get_task"));
        assert_eq!(callable(&policy, "anonymous-2", Scope::Write), TOOLS);
    }
}
