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
        for input in &node.inputs {
            let (upstream, port) = split_input(input);
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
                        format!(
                            "input `{input}`: `{upstream}` has no such output (it offers: {})",
                            offered.join(", ")
                        ),
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
