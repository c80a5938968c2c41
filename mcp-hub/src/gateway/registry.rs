//! The aggregated catalog: every upstream's tools, prompts and resources under the names the
//! gateway's clients see. Building it is a pure function of the upstreams' listings, so the
//! same listings always give the same names, whatever order they arrived in.

use std::collections::BTreeMap;

use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};
use serde::Serialize;

use super::config::{PrefixMode, ToolFilter};

/// Between a server's id and its tool's name: `tasks__create_task`.
pub const SEPARATOR: &str = "__";

/// What one upstream lists.
#[derive(Debug, Clone, Default)]
pub(crate) struct Listing {
    pub(crate) tools: Vec<Tool>,
    pub(crate) prompts: Vec<Prompt>,
    pub(crate) resources: Vec<Resource>,
    pub(crate) templates: Vec<ResourceTemplate>,
}

/// One upstream's contribution to the catalog.
pub(crate) struct Contribution<'a> {
    pub(crate) server: &'a str,
    pub(crate) listing: &'a Listing,
    pub(crate) filter: &'a ToolFilter,
}

/// Where a name the clients see leads.
#[derive(Debug, Clone)]
pub(crate) struct Route<T> {
    pub(crate) server: String,
    /// The name on the upstream.
    pub(crate) name: String,
    /// The definition as the clients see it (renamed).
    pub(crate) item: T,
}

/// Something an upstream lists that the clients do not see, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hidden {
    pub server: String,
    pub kind: &'static str,
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Catalog {
    pub(crate) tools: BTreeMap<String, Route<Tool>>,
    pub(crate) prompts: BTreeMap<String, Route<Prompt>>,
    pub(crate) resources: BTreeMap<String, Route<Resource>>,
    pub(crate) templates: Vec<Route<ResourceTemplate>>,
    pub(crate) hidden: Vec<Hidden>,
}

impl Catalog {
    /// The exposed tool names of one server, sorted.
    pub(crate) fn tools_of(&self, server: &str) -> Vec<String> {
        self.tools
            .iter()
            .filter(|(_, route)| route.server == server)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The upstream that serves a resource URI: an exact listing first, then the server whose
    /// template's fixed prefix matches longest.
    pub(crate) fn resource_server(&self, uri: &str) -> Option<&str> {
        if let Some(route) = self.resources.get(uri) {
            return Some(&route.server);
        }
        self.templates
            .iter()
            .filter_map(|route| {
                let template = route.item.uri_template.as_str();
                let prefix = template.split('{').next().unwrap_or(template);
                uri.starts_with(prefix).then_some((prefix.len(), route))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, route)| route.server.as_str())
    }
}

/// Builds the catalog. Servers are taken in id order; within one name, the server with the
/// smaller id wins when names still clash after prefixing (and within one server, the first
/// of two items it lists under one name).
pub(crate) fn build(contributions: &[Contribution<'_>], mode: PrefixMode) -> Catalog {
    let mut contributions: Vec<&Contribution<'_>> = contributions.iter().collect();
    contributions.sort_by(|a, b| a.server.cmp(b.server));
    let mut catalog = Catalog::default();

    let tool_names = bare_name_counts(contributions.iter().flat_map(|c| {
        c.listing
            .tools
            .iter()
            .filter(|t| c.filter.admits(&t.name))
            .map(|t| (c.server, t.name.as_ref()))
    }));
    let prompt_names = bare_name_counts(contributions.iter().flat_map(|c| {
        c.listing
            .prompts
            .iter()
            .map(|p| (c.server, p.name.as_str()))
    }));

    for contribution in &contributions {
        let server = contribution.server;
        for tool in &contribution.listing.tools {
            if !contribution.filter.admits(&tool.name) {
                catalog.hidden.push(Hidden {
                    server: server.to_owned(),
                    kind: "tool",
                    name: tool.name.to_string(),
                    reason: "left out by the server's allow/deny lists".to_owned(),
                });
                continue;
            }
            let exposed = exposed_name(mode, server, &tool.name, &tool_names);
            if let Some(taken) = catalog.tools.get(&exposed) {
                catalog
                    .hidden
                    .push(clash(server, "tool", &tool.name, &exposed, &taken.server));
                continue;
            }
            let mut item = tool.clone();
            item.name = exposed.clone().into();
            catalog.tools.insert(
                exposed,
                Route {
                    server: server.to_owned(),
                    name: tool.name.to_string(),
                    item,
                },
            );
        }
        for prompt in &contribution.listing.prompts {
            let exposed = exposed_name(mode, server, &prompt.name, &prompt_names);
            if let Some(taken) = catalog.prompts.get(&exposed) {
                catalog.hidden.push(clash(
                    server,
                    "prompt",
                    &prompt.name,
                    &exposed,
                    &taken.server,
                ));
                continue;
            }
            let mut item = prompt.clone();
            item.name = exposed.clone();
            catalog.prompts.insert(
                exposed,
                Route {
                    server: server.to_owned(),
                    name: prompt.name.clone(),
                    item,
                },
            );
        }
        // URIs are addresses, not names: they are never rewritten, and the first server to
        // list one keeps it.
        for resource in &contribution.listing.resources {
            let uri = resource.uri.clone();
            if let Some(taken) = catalog.resources.get(&uri) {
                catalog
                    .hidden
                    .push(clash(server, "resource", &uri, &uri, &taken.server));
                continue;
            }
            catalog.resources.insert(
                uri.clone(),
                Route {
                    server: server.to_owned(),
                    name: uri,
                    item: resource.clone(),
                },
            );
        }
        for template in &contribution.listing.templates {
            catalog.templates.push(Route {
                server: server.to_owned(),
                name: template.uri_template.clone(),
                item: template.clone(),
            });
        }
    }
    catalog
}

/// How many servers list each bare name.
fn bare_name_counts<'a>(
    names: impl Iterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<&'a str, usize> {
    let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (server, name) in names {
        let servers = seen.entry(name).or_default();
        if !servers.contains(&server) {
            servers.push(server);
        }
    }
    seen.into_iter().map(|(name, s)| (name, s.len())).collect()
}

/// The name clients see for the tool or prompt `name` of `server`.
///
/// A name that itself holds the separator is always prefixed, whatever the mode: shown bare,
/// `b__x` of server `a` would pass for the tool `x` of server `b` (to clients, and to access
/// rules written for `b__*`), and could take that name from it. Prefixed, it is `a__b__x`, in
/// `a`'s own part of the name space. Bare names then never hold the separator and prefixed
/// ones always do, so the two cannot clash; prefixed names can clash only through odd ids
/// (`a` with `_x` and `a_` with `x` are both `a___x`), and then the smaller id wins, as for
/// every clash.
fn exposed_name(
    mode: PrefixMode,
    server: &str,
    name: &str,
    counts: &BTreeMap<&str, usize>,
) -> String {
    let prefixed = name.contains(SEPARATOR)
        || match mode {
            PrefixMode::Always => true,
            PrefixMode::Never => false,
            PrefixMode::Conditional => counts.get(name).copied().unwrap_or(0) > 1,
        };
    if prefixed {
        format!("{server}{SEPARATOR}{name}")
    } else {
        name.to_owned()
    }
}

fn clash(server: &str, kind: &'static str, name: &str, exposed: &str, owner: &str) -> Hidden {
    Hidden {
        server: server.to_owned(),
        kind,
        name: name.to_owned(),
        reason: format!("the name {exposed} is taken by server {owner}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::*;

    fn tool(name: &str) -> Tool {
        Tool::new(name.to_owned(), "a tool", Arc::new(serde_json::Map::new()))
    }

    fn listing(tools: &[&str]) -> Listing {
        Listing {
            tools: tools.iter().map(|n| tool(n)).collect(),
            ..Listing::default()
        }
    }

    fn names(catalog: &Catalog) -> Vec<(String, String, String)> {
        catalog
            .tools
            .iter()
            .map(|(exposed, r)| (exposed.clone(), r.server.clone(), r.name.clone()))
            .collect()
    }

    fn triple(exposed: &str, server: &str, name: &str) -> (String, String, String) {
        (exposed.to_owned(), server.to_owned(), name.to_owned())
    }

    #[test]
    fn conditional_prefixes_only_names_that_clash() {
        let all = ToolFilter::default();
        let (a, b) = (listing(&["echo", "add"]), listing(&["echo", "sub"]));
        let catalog = build(
            &[
                Contribution {
                    server: "b",
                    listing: &b,
                    filter: &all,
                },
                Contribution {
                    server: "a",
                    listing: &a,
                    filter: &all,
                },
            ],
            PrefixMode::Conditional,
        );
        assert_eq!(
            names(&catalog),
            vec![
                triple("a__echo", "a", "echo"),
                triple("add", "a", "add"),
                triple("b__echo", "b", "echo"),
                triple("sub", "b", "sub"),
            ]
        );
        assert_eq!(catalog.tools["a__echo"].item.name, "a__echo");
        assert!(catalog.hidden.is_empty());
    }

    #[test]
    fn always_prefixes_everything_and_never_keeps_the_first_server_by_id() {
        let all = ToolFilter::default();
        let (a, b) = (listing(&["echo"]), listing(&["echo", "sub"]));
        let contributions = [
            Contribution {
                server: "b",
                listing: &b,
                filter: &all,
            },
            Contribution {
                server: "a",
                listing: &a,
                filter: &all,
            },
        ];
        let always = build(&contributions, PrefixMode::Always);
        assert_eq!(
            always.tools.keys().collect::<Vec<_>>(),
            vec!["a__echo", "b__echo", "b__sub"]
        );
        let never = build(&contributions, PrefixMode::Never);
        assert_eq!(
            names(&never),
            vec![triple("echo", "a", "echo"), triple("sub", "b", "sub")]
        );
        assert_eq!(never.hidden.len(), 1);
        assert_eq!(never.hidden[0].server, "b");
        assert!(
            never.hidden[0].reason.contains("taken by server a"),
            "{:?}",
            never.hidden
        );
    }

    /// The contributions in both orders, to check that arrival order changes nothing.
    fn both_orders<'a>(
        first: (&'a str, &'a Listing),
        second: (&'a str, &'a Listing),
        filter: &'a ToolFilter,
    ) -> [[Contribution<'a>; 2]; 2] {
        let make = |(server, listing): (&'a str, &'a Listing)| Contribution {
            server,
            listing,
            filter,
        };
        [[make(first), make(second)], [make(second), make(first)]]
    }

    #[test]
    fn a_bare_name_holding_the_separator_is_always_prefixed() {
        // Server `a` has a tool literally called `b__x`; server `b` has `x`. Shown bare, `a`'s
        // tool would pass for `b`'s `x`, and take its name once that is prefixed.
        let all = ToolFilter::default();
        let mut a = listing(&["b__x", "y"]);
        a.prompts = vec![Prompt::new("b__p", None::<String>, None)];
        let b = listing(&["x"]);
        for contributions in both_orders(("a", &a), ("b", &b), &all) {
            let always = build(&contributions, PrefixMode::Always);
            assert_eq!(
                names(&always),
                vec![
                    triple("a__b__x", "a", "b__x"),
                    triple("a__y", "a", "y"),
                    triple("b__x", "b", "x"),
                ]
            );
            for mode in [PrefixMode::Never, PrefixMode::Conditional] {
                let catalog = build(&contributions, mode);
                assert_eq!(
                    names(&catalog),
                    vec![
                        triple("a__b__x", "a", "b__x"),
                        triple("x", "b", "x"),
                        triple("y", "a", "y"),
                    ],
                    "{mode:?}"
                );
                assert!(catalog.hidden.is_empty(), "{:?}", catalog.hidden);
                // Prompts are named by the same rule.
                assert_eq!(
                    catalog.prompts.keys().collect::<Vec<_>>(),
                    vec!["a__b__p"],
                    "{mode:?}"
                );
                assert_eq!(catalog.prompts["a__b__p"].name, "b__p");
            }
        }
        // When a third server also has `x`, `b`'s is `b__x`, and stays `b`'s.
        let c = listing(&["x"]);
        let contributions =
            [("a", &a), ("b", &b), ("c", &c)].map(|(server, listing)| Contribution {
                server,
                listing,
                filter: &all,
            });
        let catalog = build(&contributions, PrefixMode::Conditional);
        assert_eq!(
            names(&catalog),
            vec![
                triple("a__b__x", "a", "b__x"),
                triple("b__x", "b", "x"),
                triple("c__x", "c", "x"),
                triple("y", "a", "y"),
            ]
        );
        assert!(catalog.hidden.is_empty(), "{:?}", catalog.hidden);
    }

    #[test]
    fn a_prefixed_name_that_still_clashes_goes_to_the_smaller_id_in_any_order() {
        // `a` + `_x` and `a_` + `x` are both `a___x` once prefixed.
        let all = ToolFilter::default();
        let (a, a_) = (listing(&["_x"]), listing(&["x"]));
        for contributions in both_orders(("a_", &a_), ("a", &a), &all) {
            let catalog = build(&contributions, PrefixMode::Always);
            assert_eq!(names(&catalog), vec![triple("a___x", "a", "_x")]);
            assert_eq!(
                catalog.hidden,
                vec![Hidden {
                    server: "a_".to_owned(),
                    kind: "tool",
                    name: "x".to_owned(),
                    reason: "the name a___x is taken by server a".to_owned(),
                }]
            );
        }
    }

    #[test]
    fn allow_and_deny_lists_apply_to_the_upstream_names() {
        let filter = ToolFilter {
            allow: vec!["get_*".to_owned(), "list_*".to_owned()],
            deny: vec!["list_secrets".to_owned()],
        };
        let all = ToolFilter::default();
        let (a, b) = (
            listing(&["get_task", "list_tasks", "list_secrets", "delete_task"]),
            listing(&["delete_task"]),
        );
        let catalog = build(
            &[
                Contribution {
                    server: "a",
                    listing: &a,
                    filter: &filter,
                },
                Contribution {
                    server: "b",
                    listing: &b,
                    filter: &all,
                },
            ],
            PrefixMode::Conditional,
        );
        // `delete_task` of `a` is filtered out, so `b`'s keeps its bare name.
        assert_eq!(
            catalog.tools.keys().collect::<Vec<_>>(),
            vec!["delete_task", "get_task", "list_tasks"]
        );
        assert_eq!(catalog.tools["delete_task"].server, "b");
        let hidden: Vec<_> = catalog.hidden.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(hidden, vec!["list_secrets", "delete_task"]);
        assert_eq!(catalog.tools_of("a"), vec!["get_task", "list_tasks"]);
    }
}
