//! Checks on the component graph before anything starts: duplicate ids,
//! unknown inputs and outputs, components without inputs, cycles. Sources
//! that feed nothing and outputs nobody reads are warnings, not errors.

use std::collections::{HashMap, HashSet};

use super::{ConfigError, PipelineConfig};
use crate::topology::buffer::DEFAULT_OUTPUT;

pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Source,
    Transform,
    Sink,
}

impl Kind {
    fn table(self) -> &'static str {
        match self {
            Kind::Source => "sources",
            Kind::Transform => "transforms",
            Kind::Sink => "sinks",
        }
    }
}

struct Node {
    kind: Kind,
    line: Option<usize>,
    /// Output ports this component offers (`_default` for the unnamed one).
    outputs: Vec<String>,
    inputs: Vec<String>,
}

/// Splits `id.output` into the component id and its port.
pub fn split_input(input: &str) -> (&str, &str) {
    match input.split_once('.') {
        Some((id, port)) => (id, port),
        None => (input, DEFAULT_OUTPUT),
    }
}

/// Adds errors for a broken graph; returns warnings.
pub fn check(config: &PipelineConfig, errors: &mut Vec<ConfigError>) -> Vec<String> {
    let mut nodes: HashMap<&str, Node> = HashMap::new();
    let mut error =
        |kind: Kind, id: &str, line: Option<usize>, key: Option<&str>, message: String| {
            errors.push(ConfigError {
                file: config.file.clone(),
                line,
                component: Some(format!("{}.{id}", kind.table())),
                key: key.map(str::to_owned),
                message,
            })
        };

    let declared = config
        .sources
        .iter()
        .map(|s| {
            (
                Kind::Source,
                s.id.as_str(),
                s.line,
                vec![DEFAULT_OUTPUT.to_owned()],
                Vec::new(),
            )
        })
        .chain(config.transforms.iter().map(|t| {
            (
                Kind::Transform,
                t.id.as_str(),
                t.line,
                t.config.outputs(),
                t.inputs.clone(),
            )
        }))
        .chain(config.sinks.iter().map(|s| {
            (
                Kind::Sink,
                s.id.as_str(),
                s.line,
                Vec::new(),
                s.inputs.clone(),
            )
        }));
    for (kind, id, line, outputs, inputs) in declared {
        if let Some(existing) = nodes.get(id) {
            error(
                kind,
                id,
                line,
                None,
                format!(
                    "duplicate component id: `{id}` is also declared in [{}]",
                    existing.kind.table()
                ),
            );
            continue;
        }
        if kind != Kind::Source && inputs.is_empty() {
            error(
                kind,
                id,
                line,
                Some("inputs"),
                "needs at least one input".into(),
            );
        }
        nodes.insert(
            id,
            Node {
                kind,
                line,
                outputs,
                inputs,
            },
        );
    }

    let mut consumed: HashSet<(String, String)> = HashSet::new();
    for (id, node) in &nodes {
        let mut read: HashSet<(&str, &str)> = HashSet::new();
        for input in &node.inputs {
            let (upstream, port) = split_input(input);
            // The same output twice (`a`, `a._default`) would hand the
            // component every batch twice, and a source would then reserve
            // room twice in one buffer: a batch over half of it never fits.
            if !read.insert((upstream, port)) {
                error(
                    node.kind,
                    id,
                    node.line,
                    Some("inputs"),
                    format!("input `{input}` reads an output already listed"),
                );
                continue;
            }
            match nodes.get(upstream) {
                None if config.broken_ids.iter().any(|b| b == upstream) => {}
                None => error(
                    node.kind,
                    id,
                    node.line,
                    Some("inputs"),
                    format!("input `{input}` names no component"),
                ),
                Some(up) if up.kind == Kind::Sink => error(
                    node.kind,
                    id,
                    node.line,
                    Some("inputs"),
                    format!("input `{input}` is a sink; sinks have no output"),
                ),
                Some(up) if !up.outputs.iter().any(|o| o == port) => {
                    let offered: Vec<String> = up
                        .outputs
                        .iter()
                        .map(|o| {
                            if o == DEFAULT_OUTPUT {
                                upstream.to_owned()
                            } else {
                                format!("{upstream}.{o}")
                            }
                        })
                        .collect();
                    error(
                        node.kind,
                        id,
                        node.line,
                        Some("inputs"),
                        if port == DEFAULT_OUTPUT {
                            // A `route` has only named outputs.
                            format!(
                                "input `{input}`: `{upstream}` has no default output; name one of its outputs: {}",
                                offered.join(", ")
                            )
                        } else {
                            format!(
                                "input `{input}`: `{upstream}` has no such output (it offers: {})",
                                offered.join(", ")
                            )
                        },
                    )
                }
                Some(_) => {
                    consumed.insert((upstream.to_owned(), port.to_owned()));
                }
            }
        }
    }

    // Cycles can only run through transforms.
    let mut state: HashMap<&str, u8> = HashMap::new(); // 1 = on the stack, 2 = done
    let mut ids: Vec<&str> = nodes.keys().copied().collect();
    ids.sort_unstable();
    for start in ids {
        if let Some(cycle) = find_cycle(start, &nodes, &mut state, &mut Vec::new()) {
            let node = &nodes[cycle[0].as_str()];
            error(
                node.kind,
                &cycle[0],
                node.line,
                Some("inputs"),
                format!("cycle: {}", cycle.join(" -> ")),
            );
            break;
        }
    }

    let mut warnings = Vec::new();
    let mut ids: Vec<&&str> = nodes.keys().collect();
    ids.sort();
    for id in ids {
        let node = &nodes[*id];
        for output in &node.outputs {
            if !consumed.contains(&(id.to_string(), output.clone())) {
                let what = if output == DEFAULT_OUTPUT {
                    format!("[{}.{id}] feeds no component", node.kind.table())
                } else {
                    format!(
                        "[{}.{id}] output `{id}.{output}` feeds no component",
                        node.kind.table()
                    )
                };
                warnings.push(format!(
                    "{}: {what}; its events are counted and dropped",
                    config.file
                ));
            }
        }
    }
    warnings
}

fn find_cycle<'a>(
    id: &'a str,
    nodes: &'a HashMap<&'a str, Node>,
    state: &mut HashMap<&'a str, u8>,
    stack: &mut Vec<&'a str>,
) -> Option<Vec<String>> {
    match state.get(id) {
        Some(2) => return None,
        Some(1) => {
            let from = stack.iter().position(|s| *s == id).unwrap_or(0);
            let mut cycle: Vec<String> = stack[from..].iter().map(|s| s.to_string()).collect();
            cycle.push(id.to_owned());
            return Some(cycle);
        }
        _ => {}
    }
    state.insert(id, 1);
    stack.push(id);
    if let Some(node) = nodes.get(id) {
        for input in &node.inputs {
            let (upstream, _) = split_input(input);
            if let Some((key, _)) = nodes.get_key_value(upstream) {
                if let Some(cycle) = find_cycle(key, nodes, state, stack) {
                    return Some(cycle);
                }
            }
        }
    }
    stack.pop();
    state.insert(id, 2);
    None
}

#[cfg(test)]
mod tests {
    use crate::config::{load_str, ConfigError, Loaded};

    const SOURCE: &str = r#"
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
"#;

    const ROUTE: &str = r#"
[transforms.by_site]
type = "route"
inputs = ["beacons"]
route.shop = { field = "url.domain", equals = "shop.example.com" }
route.blog = { field = "url.domain", equals = "blog.example.com" }
"#;

    fn load(rest: &str) -> Result<Loaded, Vec<ConfigError>> {
        load_str("graph.toml", &format!("{SOURCE}{rest}"), &|_| None)
    }

    fn errors(rest: &str) -> Vec<String> {
        match load(rest) {
            Ok(_) => panic!("accepted:\n{rest}"),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    fn sink(id: &str, inputs: &str) -> String {
        format!("\n[sinks.{id}]\ntype = \"blackhole\"\ninputs = {inputs}\n")
    }

    #[test]
    fn named_outputs_are_subscribable() {
        let text = format!(
            "{ROUTE}{}{}",
            sink("shop", r#"["by_site.shop"]"#),
            sink("rest", r#"["by_site.blog", "by_site._unmatched"]"#)
        );
        let loaded = load(&text).expect("valid");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    #[test]
    fn an_unread_route_is_a_warning_naming_the_output() {
        let loaded =
            load(&format!("{ROUTE}{}", sink("shop", r#"["by_site.shop"]"#))).expect("valid");
        assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
        assert!(loaded.warnings[0]
            .contains("[transforms.by_site] output `by_site.blog` feeds no component"));
        assert!(loaded.warnings[1]
            .contains("[transforms.by_site] output `by_site._unmatched` feeds no component"));
    }

    #[test]
    fn a_route_has_no_default_output() {
        let shown = errors(&format!("{ROUTE}{}", sink("all", r#"["by_site"]"#)));
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(
            shown[0].contains("[sinks.all] key `inputs`: input `by_site`: `by_site` has no default output; name one of its outputs: by_site.blog, by_site.shop, by_site._unmatched"),
            "{shown:?}"
        );
    }

    #[test]
    fn an_unknown_route_name_lists_the_offered_outputs() {
        let shown = errors(&format!("{ROUTE}{}", sink("shop", r#"["by_site.shpo"]"#)));
        assert!(shown[0].contains("input `by_site.shpo`"), "{shown:?}");
        assert!(
            shown[0].contains("it offers: by_site.blog, by_site.shop, by_site._unmatched"),
            "{shown:?}"
        );
        // A port on a component with only the default output.
        let shown = errors(&sink("out", r#"["beacons.shop"]"#));
        assert!(
            shown[0].contains(
                "input `beacons.shop`: `beacons` has no such output (it offers: beacons)"
            ),
            "{shown:?}"
        );
    }

    #[test]
    fn cycles_are_refused() {
        let text = format!(
            r#"
[transforms.a]
type = "labels"
inputs = ["beacons", "b"]
labels = {{ x = "1" }}
[transforms.b]
type = "labels"
inputs = ["a"]
{}"#,
            sink("out", r#"["b"]"#)
        );
        let shown = errors(&text);
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(shown[0].contains("cycle: a -> b -> a"), "{shown:?}");

        let text = format!(
            r#"{ROUTE}
[transforms.back]
type = "filter"
inputs = ["by_site.shop"]
condition = {{ field = "url.path", exists = true }}
{}"#,
            sink("out", r#"["by_site.blog", "by_site._unmatched"]"#)
        )
        .replace(r#"inputs = ["beacons"]"#, r#"inputs = ["beacons", "back"]"#);
        let shown = errors(&text);
        assert!(
            shown
                .iter()
                .any(|s| s.contains("cycle: back -> by_site -> back")),
            "{shown:?}"
        );

        let shown = errors("[transforms.me]\ntype = \"labels\"\ninputs = [\"me\"]\n");
        assert!(
            shown.iter().any(|s| s.contains("cycle: me -> me")),
            "{shown:?}"
        );
    }

    #[test]
    fn broken_inputs_are_named() {
        let shown = errors(&format!(
            "{}{}",
            sink("a", r#"["nobody"]"#),
            sink("b", r#"["a"]"#)
        ));
        assert!(
            shown
                .iter()
                .any(|s| s.contains("[sinks.a] key `inputs`: input `nobody` names no component")),
            "{shown:?}"
        );
        assert!(
            shown.iter().any(|s| s.contains("input `a` is a sink")),
            "{shown:?}"
        );
        let shown = errors(&sink("none", "[]"));
        assert!(shown[0].contains("needs at least one input"), "{shown:?}");
        let shown = errors(&format!(
            "{ROUTE}{}",
            sink("by_site", r#"["by_site.shop"]"#)
        ));
        assert!(
            shown
                .iter()
                .any(|s| s.contains("duplicate component id: `by_site`")),
            "{shown:?}"
        );
    }

    #[test]
    fn an_output_read_twice_by_one_component_is_refused() {
        for inputs in [
            r#"["beacons", "beacons"]"#,
            r#"["beacons", "beacons._default"]"#,
        ] {
            let shown = errors(&sink("twice", inputs));
            assert!(
                shown
                    .iter()
                    .any(|s| s.contains("reads an output already listed")),
                "{shown:?}"
            );
        }
    }

    #[test]
    fn route_conditions_are_checked_at_load_time() {
        let shown = errors(&ROUTE.replace("equals = \"shop.example.com\"", "matches = \"(shop\""));
        assert!(
            shown.iter().any(
                |s| s.contains("[transforms.by_site] key `route.shop.matches`")
                    && s.contains("invalid regex")
            ),
            "{shown:?}"
        );
        let shown = errors(&ROUTE.replace(
            "equals = \"shop.example.com\"",
            "equal = \"shop.example.com\"",
        ));
        assert!(
            shown.iter().any(
                |s| s.contains("key `route.shop.equal`") && s.contains("unknown field `equal`")
            ),
            "{shown:?}"
        );
        let shown = errors(&ROUTE.replace(
            "url.domain\", equals = \"shop",
            "url.host\", equals = \"shop",
        ));
        assert!(
            shown.iter().any(|s| s.contains("key `route.shop.field`")
                && s.contains("`url.host` is not a known field path")),
            "{shown:?}"
        );
    }
}
