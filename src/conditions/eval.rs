//! Evaluation: a compiled condition against one event, each field looked up
//! at most once per event (also across the conditions of a set), without
//! allocating.

use serde_json::Value;

use super::{Condition, ConditionSet, FieldPath, Literal, Node, Test};
use crate::event::{Event, FieldRead};

impl Condition {
    /// Does the event satisfy the condition? Allocates nothing.
    pub fn matches(&self, event: &Event) -> bool {
        self.node.eval(&mut Lookups::new(event))
    }

    pub(super) fn new(mut node: Node) -> Condition {
        assign_slots(&mut node, &mut Vec::new());
        Condition { node }
    }
}

impl ConditionSet {
    pub fn new(conditions: impl IntoIterator<Item = Condition>) -> ConditionSet {
        let mut conditions: Box<[Condition]> = conditions.into_iter().collect();
        let mut table = Vec::new();
        for condition in conditions.iter_mut() {
            assign_slots(&mut condition.node, &mut table);
        }
        ConditionSet { conditions }
    }

    pub fn len(&self) -> usize {
        self.conditions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Calls `matched(i)` for every condition `i` the event satisfies, in
    /// order. Allocates nothing.
    pub fn for_each_match(&self, event: &Event, mut matched: impl FnMut(usize)) {
        let mut lookups = Lookups::new(event);
        for (i, condition) in self.conditions.iter().enumerate() {
            if condition.node.eval(&mut lookups) {
                matched(i);
            }
        }
    }
}

/// Field lookups of one evaluation, each done at most once (slots past
/// `CACHED_FIELDS` are looked up every time). Lives on the stack.
struct Lookups<'e> {
    event: &'e Event,
    done: u32,
    values: [Option<FieldRead<'e>>; CACHED_FIELDS],
}

const CACHED_FIELDS: usize = 16;

impl<'e> Lookups<'e> {
    pub(super) fn new(event: &'e Event) -> Self {
        Lookups {
            event,
            done: 0,
            values: [None; CACHED_FIELDS],
        }
    }

    fn get(&mut self, slot: usize, field: &FieldPath) -> Option<FieldRead<'e>> {
        if slot >= CACHED_FIELDS {
            return field.get(self.event);
        }
        let bit = 1 << slot;
        if self.done & bit == 0 {
            self.values[slot] = field.get(self.event);
            self.done |= bit;
        }
        self.values[slot]
    }
}

/// Numbers every distinct field path of a tree, continuing `table`.
fn assign_slots(node: &mut Node, table: &mut Vec<String>) {
    match node {
        Node::Test { field, slot, .. } => {
            *slot = match table.iter().position(|p| *p == field.path) {
                Some(i) => i,
                None => {
                    table.push(field.path.clone());
                    table.len() - 1
                }
            };
        }
        Node::All(nodes) | Node::Any(nodes) => {
            nodes.iter_mut().for_each(|n| assign_slots(n, table))
        }
        Node::Not(inner) => assign_slots(inner, table),
    }
}

impl Node {
    fn eval(&self, lookups: &mut Lookups<'_>) -> bool {
        match self {
            Node::Test { field, slot, test } => test.eval(lookups.get(*slot, field)),
            Node::All(nodes) => nodes.iter().all(|n| n.eval(lookups)),
            Node::Any(nodes) => nodes.iter().any(|n| n.eval(lookups)),
            Node::Not(node) => !node.eval(lookups),
        }
    }
}

impl Test {
    /// `value` is `None` when the field is missing (absent or null).
    fn eval(&self, value: Option<FieldRead<'_>>) -> bool {
        match self {
            Test::Equals(literal) => value.is_some_and(|v| literal.equals(v)),
            Test::NotEquals(literal) => !value.is_some_and(|v| literal.equals(v)),
            Test::In(literals) => value.is_some_and(|v| literals.iter().any(|l| l.equals(v))),
            Test::Prefix(prefix) => value
                .and_then(FieldRead::as_str)
                .is_some_and(|s| s.starts_with(prefix.as_str())),
            Test::Matches(regex) => value
                .and_then(FieldRead::as_str)
                .is_some_and(|s| regex.is_match(s)),
            Test::Exists(wanted) => value.is_some() == *wanted,
        }
    }

    pub(super) fn operator(&self) -> &'static str {
        match self {
            Test::Equals(_) => "equals",
            Test::NotEquals(_) => "not_equals",
            Test::In(_) => "in",
            Test::Prefix(_) => "prefix",
            Test::Matches(_) => "matches",
            Test::Exists(_) => "exists",
        }
    }
}

impl Literal {
    fn equals(&self, value: FieldRead<'_>) -> bool {
        match (self, value) {
            (Literal::String(a), value) => value.as_str() == Some(a.as_str()),
            (Literal::Boolean(a), FieldRead::Value(Value::Bool(b))) => a == b,
            // A number held as one (a packed slot's) or as a `Value`.
            (Literal::Integer(a), value) => match value.as_number() {
                Some(n) => match n.as_i64() {
                    Some(i) => i == *a,
                    // A u64 above i64::MAX cannot equal an i64; a float can.
                    None => n.is_f64() && n.as_f64() == Some(*a as f64),
                },
                None => false,
            },
            (Literal::Float(a), value) => value.as_f64() == Some(*a),
            _ => false,
        }
    }
}
