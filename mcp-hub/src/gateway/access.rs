//! Who may use what: the `[[access]]` rules of the gateway configuration, applied to a
//! caller's principal and scope and to the names of the tool, prompt or resource it uses.
//!
//! Every item has a canonical name, `server__name`, that does not depend on the prefix mode:
//! `a__echo` for the tool `echo` of server `a` (whether clients see it as `echo` or `a__echo`),
//! `a__greet` for a prompt, and `a__<uri>` (`a__echo://info`) for a resource, a resource
//! template or a subscription, `a` being the server that serves the URI. A rule's pattern is
//! matched against the canonical name and, for tools and prompts, also against the name the
//! client sees; a pattern that matches either decides. Resource URIs are matched by their
//! canonical name only: a URI is the client's text and may look like another server's name.

use mcp_core::auth::Scope;

use super::{
    config::{AccessRule, glob_match},
    registry::SEPARATOR,
};

/// The access rules, ready to answer "may this caller use this tool, prompt or resource?".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AccessPolicy {
    rules: Vec<AccessRule>,
}

/// What kind of item a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tool,
    Prompt,
    Resource,
}

/// What a request uses, with the names the rules are matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target<'a> {
    kind: Kind,
    /// The upstream that serves it.
    server: &'a str,
    /// The name the client sees (tool or prompt), or the URI (resource).
    exposed: &'a str,
    /// The name on the upstream; the URI again for a resource.
    upstream: &'a str,
}

impl<'a> Target<'a> {
    /// A tool that clients see as `exposed` and `server` calls `upstream`.
    pub(crate) fn tool(server: &'a str, exposed: &'a str, upstream: &'a str) -> Self {
        Self {
            kind: Kind::Tool,
            server,
            exposed,
            upstream,
        }
    }

    /// A prompt that clients see as `exposed` and `server` calls `upstream`.
    pub(crate) fn prompt(server: &'a str, exposed: &'a str, upstream: &'a str) -> Self {
        Self {
            kind: Kind::Prompt,
            server,
            exposed,
            upstream,
        }
    }

    /// A resource URI (or URI template) that `server` serves.
    pub(crate) fn resource(server: &'a str, uri: &'a str) -> Self {
        Self {
            kind: Kind::Resource,
            server,
            exposed: uri,
            upstream: uri,
        }
    }

    /// `server__name`, the same in every prefix mode.
    pub(crate) fn canonical(&self) -> String {
        format!("{}{SEPARATOR}{}", self.server, self.upstream)
    }
}

/// The answer for one request.
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
    /// off), holding `scope`, may use `target`.
    ///
    /// An admin may use everything. Otherwise the rules whose principal patterns match are
    /// the caller's rules: a deny pattern of any of them that matches one of the target's
    /// names (see the module comment) denies the request; if it has rules, the request is
    /// allowed only when an allow pattern of one of them matches one of its names; without
    /// rules, the write scope is needed. Tools, prompts and resources follow the same rules.
    pub(crate) fn decide(&self, principal: &str, scope: Scope, target: Target<'_>) -> Decision {
        if scope >= Scope::Admin {
            return Decision::Allowed;
        }
        let canonical = target.canonical();
        let names: &[&str] = match target.kind {
            Kind::Resource => &[&canonical],
            Kind::Tool | Kind::Prompt => &[target.exposed, &canonical],
        };
        let matches = |pattern: &String| names.iter().any(|name| glob_match(pattern, name));
        let mut has_rules = false;
        let mut allowed = false;
        for rule in self.rules_of(principal) {
            has_rules = true;
            if let Some(pattern) = rule.deny.iter().find(|p| matches(p)) {
                return Decision::Denied {
                    reason: format!(
                        "{}: an [[access]] rule denies `{pattern}`",
                        may_not(principal, target, &canonical)
                    ),
                };
            }
            allowed = allowed || rule.allow.iter().any(matches);
        }
        if allowed || (!has_rules && scope >= Scope::Write) {
            return Decision::Allowed;
        }
        let (noun, using) = match target.kind {
            Kind::Tool => ("tool", "calling tools"),
            Kind::Prompt => ("prompt", "getting prompts"),
            Kind::Resource => ("resource", "reading resources"),
        };
        let refused = may_not(principal, target, &canonical);
        let reason = if has_rules {
            format!("{refused}: no [[access]] rule for it allows this {noun}")
        } else {
            format!(
                "{refused}: {using} needs the write scope, or an [[access]] rule that allows this {noun}"
            )
        };
        Decision::Denied { reason }
    }

    /// Whether a listing (`tools/list`, `prompts/list`, `resources/list`,
    /// `resources/templates/list`) shows `target` to this caller: exactly what it may use.
    pub(crate) fn may_see(&self, principal: &str, scope: Scope, target: Target<'_>) -> bool {
        self.decide(principal, scope, target).is_allowed()
    }

    fn rules_of<'a>(&'a self, principal: &'a str) -> impl Iterator<Item = &'a AccessRule> + 'a {
        self.rules
            .iter()
            .filter(move |rule| rule.principals.iter().any(|p| glob_match(p, principal)))
    }
}

/// "`key:ci` may not call `echo` (`a__echo`)": the canonical name is shown when it differs
/// from the one the client sent, so the operator sees what a rule can be written for.
fn may_not(principal: &str, target: Target<'_>, canonical: &str) -> String {
    let verb = match target.kind {
        Kind::Tool => "call",
        Kind::Prompt => "get the prompt",
        Kind::Resource => "read",
    };
    let name = target.exposed;
    if name == canonical {
        format!("`{principal}` may not {verb} `{name}`")
    } else {
        format!("`{principal}` may not {verb} `{name}` (`{canonical}`)")
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

    /// A tool as `prefix = "always"` shows it: the exposed name is the canonical one.
    fn tool(name: &str) -> Target<'_> {
        let (server, upstream) = name.split_once(SEPARATOR).unwrap();
        Target::tool(server, name, upstream)
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
            .filter(|name| {
                let decision = policy.decide(principal, scope, tool(name));
                assert_eq!(
                    decision.is_allowed(),
                    policy.may_see(principal, scope, tool(name))
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
            reason(policy.decide("key:viewer", Scope::Read, tool("tasks__get_task"))),
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
        let denied = reason(policy.decide("key:reader", Scope::Read, tool("tasks__create_task")));
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
        let denied = reason(policy.decide("key:ci-bot", Scope::Write, tool("tasks__delete_task")));
        assert_eq!(
            denied,
            "`key:ci-bot` may not call `tasks__delete_task`: an [[access]] rule denies `tasks__delete_*`"
        );
        // A deny in one rule beats an allow in another rule of the same principal.
        let split = AccessPolicy::new(vec![
            rule(&["key:a"], &["*"], &[]),
            rule(&["key:*"], &[], &["x__drop"]),
        ]);
        assert!(!split.may_see("key:a", Scope::Write, tool("x__drop")));
        assert!(split.may_see("key:a", Scope::Write, tool("x__keep")));
        // The deny-only rule of `key:*` also gives `key:b` rules, which allow nothing.
        assert!(!split.may_see("key:b", Scope::Write, tool("x__keep")));
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
        assert!(question.may_see("key:bot-1", Scope::Read, tool("x__t")));
        assert!(!question.may_see("key:bot-12", Scope::Read, tool("x__t")));
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
        assert!(!policy.may_see("anonymous-2", Scope::Read, tool("tasks__get_task")));
        assert_eq!(callable(&policy, "anonymous-2", Scope::Write), TOOLS);
    }

    #[test]
    fn rules_match_the_canonical_name_as_well_as_the_exposed_one() {
        // `echo` of server `a`, as `conditional` mode shows it while no other server has one,
        // and as it shows it once another does.
        let alone = Target::tool("a", "echo", "echo");
        let clashing = Target::tool("a", "a__echo", "echo");
        let by_canonical = AccessPolicy::new(vec![rule(&["key:bot"], &["a__echo"], &[])]);
        assert!(by_canonical.may_see("key:bot", Scope::Read, alone));
        assert!(by_canonical.may_see("key:bot", Scope::Read, clashing));
        // A rule written for the bare name still works while the tool is shown bare.
        let by_exposed = AccessPolicy::new(vec![rule(&["key:bot"], &["echo"], &[])]);
        assert!(by_exposed.may_see("key:bot", Scope::Read, alone));
        assert!(!by_exposed.may_see("key:bot", Scope::Read, clashing));
        // A deny of the canonical name holds whatever the tool is called, and says which name
        // it matched.
        let denied = AccessPolicy::new(vec![rule(&["key:*"], &["*"], &["a__echo"])]);
        assert_eq!(
            reason(denied.decide("key:bot", Scope::Write, alone)),
            "`key:bot` may not call `echo` (`a__echo`): an [[access]] rule denies `a__echo`"
        );
        assert!(!denied.may_see("key:bot", Scope::Write, clashing));
        // Another server's `echo` is not `a__echo`.
        assert!(denied.may_see("key:bot", Scope::Write, Target::tool("b", "echo", "echo")));
        // An upstream name holding `__` is part of the canonical name, not a server id.
        let nested = Target::tool("a", "a__b__x", "b__x");
        assert_eq!(nested.canonical(), "a__b__x");
        let only_b = AccessPolicy::new(vec![rule(&["key:bot"], &["b__*"], &[])]);
        assert!(!only_b.may_see("key:bot", Scope::Write, nested));
    }

    #[test]
    fn prompts_follow_the_same_rules_as_tools() {
        let policy = policy();
        let get_task = Target::prompt("tasks", "get_task", "get_task");
        let summary = Target::prompt("github", "summary", "summary");
        // `*__get_*` matches the canonical `tasks__get_task`, even though the prompt is shown
        // bare.
        assert!(policy.may_see("key:reader", Scope::Read, get_task));
        assert_eq!(
            reason(policy.decide("key:reader", Scope::Read, summary)),
            "`key:reader` may not get the prompt `summary` (`github__summary`): no [[access]] rule for it allows this prompt"
        );
        assert!(policy.may_see(
            "key:ci-bot",
            Scope::Write,
            Target::prompt("tasks", "tasks__p", "p")
        ));
        assert!(!policy.may_see("key:ci-bot", Scope::Write, summary));
        assert!(policy.may_see("key:writer", Scope::Write, summary));
        assert_eq!(
            reason(policy.decide("key:viewer", Scope::Read, summary)),
            "`key:viewer` may not get the prompt `summary` (`github__summary`): getting prompts needs the write scope, or an [[access]] rule that allows this prompt"
        );
        assert!(policy.may_see("key:viewer", Scope::Admin, summary));
    }

    #[test]
    fn resources_are_matched_by_server_and_uri() {
        let policy = AccessPolicy::new(vec![
            rule(&["key:ci"], &["tasks__*"], &["tasks__secret://*"]),
            rule(&["key:reader"], &["*__get_*", "tasks__task://*"], &[]),
        ]);
        let task = Target::resource("tasks", "task://7");
        let template = Target::resource("tasks", "task://{id}");
        let secret = Target::resource("tasks", "secret://key");
        let issue = Target::resource("github", "issue://1");
        assert_eq!(task.canonical(), "tasks__task://7");
        assert!(policy.may_see("key:ci", Scope::Write, task));
        // A template is matched by its URI template, so `task://*` admits `task://{id}`.
        assert!(policy.may_see("key:ci", Scope::Write, template));
        assert!(policy.may_see("key:reader", Scope::Read, template));
        assert_eq!(
            reason(policy.decide("key:ci", Scope::Write, secret)),
            "`key:ci` may not read `secret://key` (`tasks__secret://key`): an [[access]] rule denies `tasks__secret://*`"
        );
        assert_eq!(
            reason(policy.decide("key:ci", Scope::Write, issue)),
            "`key:ci` may not read `issue://1` (`github__issue://1`): no [[access]] rule for it allows this resource"
        );
        // Rules for tools do not open resources: `*__get_*` is no `github__issue://1`.
        assert!(!policy.may_see("key:reader", Scope::Read, issue));
        // The bare URI is not matched: a URI that looks like a tool name gains nothing.
        let lookalike = Target::resource("github", "tasks__task://1");
        assert!(!policy.may_see("key:ci", Scope::Write, lookalike));
        assert!(!policy.may_see("key:viewer", Scope::Read, task));
        assert!(policy.may_see("key:writer", Scope::Write, secret));
    }
}
