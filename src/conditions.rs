//! One condition syntax for every place that decides on an event (`route`,
//! `filter`, the `when` rules of `labels`). A condition is a TOML table, checked
//! and compiled when the pipeline is loaded — unknown operators, unknown field
//! paths, bad regexes and literals of the wrong type for a schema field are
//! config errors — and evaluated per event without allocating.
//!
//! ```toml
//! { field = "url.domain", equals = "shop.example.com" }
//! { field = "service.name", in = ["shop", "checkout"] }
//! { field = "url.path", prefix = "/admin" }
//! { field = "user_agent.category", not_equals = "crawler" }
//! { field = "url.domain", matches = '(^|\.)example\.com$' }
//! { field = "session.id", exists = true }
//! { all = [ {...}, {...} ] }   { any = [ {...}, {...} ] }   { not = {...} }
//! ```
//!
//! Semantics, exactly:
//! - A field that is absent or JSON `null` is *missing*.
//! - `equals`: the field is present and equal to the literal *and of the same
//!   kind*: a string equals only a string (exact, case-sensitive), a boolean
//!   only a boolean, a number only a number (compared numerically, so `3`
//!   equals `3.0`). A number field compared with a string is false, and so is
//!   an object or array compared with anything.
//! - `not_equals` is exactly `not { equals }`: true when the field is missing,
//!   of another kind, or different. To require the field, combine it with
//!   `exists = true` in an `all`.
//! - `in`: `equals` one of the listed literals (at least one).
//! - `prefix`: the field is a string starting with the prefix (case-sensitive).
//! - `matches`: the field is a string in which the regex (Rust `regex` syntax)
//!   finds a match anywhere; anchor with `^…$` to match the whole value, use
//!   `(?i)` to ignore case. Non-string fields never match.
//! - `exists = true`: the field is present and not `null` (any type, objects
//!   included); `exists = false` is the opposite.
//! - `all` is true when every listed condition is (at least one listed), `any`
//!   when one is; both stop at the first decisive answer. `not` inverts one.

use std::fmt;

use regex::Regex;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::event::Event;
use crate::schema::{self, FieldType};

/// Keys that test a field; exactly one goes with `field`.
pub const OPERATORS: &[&str] = &["equals", "not_equals", "in", "prefix", "matches", "exists"];
/// Keys that combine conditions; one per table, without `field`.
pub const COMBINATORS: &[&str] = &["all", "any", "not"];

/// A compiled condition: what `route`, `filter` and `labels.when` evaluate.
#[derive(Debug, Clone)]
pub struct Condition {
    node: Node,
}

impl Condition {
    /// Does the event satisfy the condition? Allocates nothing.
    pub fn matches(&self, event: &Event) -> bool {
        self.node.eval(&mut Lookups::new(event))
    }

    fn new(mut node: Node) -> Condition {
        assign_slots(&mut node, &mut Vec::new());
        Condition { node }
    }
}

/// Several conditions evaluated together on each event (the routes of a
/// `route`, the rules of `labels`): a field that several of them test is
/// looked up once per event, so five routes on `url.domain` cost one lookup
/// and five comparisons.
#[derive(Debug, Clone)]
pub struct ConditionSet {
    conditions: Box<[Condition]>,
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
    values: [Option<&'e Value>; CACHED_FIELDS],
}

const CACHED_FIELDS: usize = 16;

impl<'e> Lookups<'e> {
    fn new(event: &'e Event) -> Self {
        Lookups {
            event,
            done: 0,
            values: [None; CACHED_FIELDS],
        }
    }

    fn get(&mut self, slot: usize, field: &FieldPath) -> Option<&'e Value> {
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

#[derive(Debug, Clone)]
enum Node {
    Test {
        field: FieldPath,
        /// Index of the field in the evaluation's lookup cache.
        slot: usize,
        test: Test,
    },
    All(Box<[Node]>),
    Any(Box<[Node]>),
    Not(Box<Node>),
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

#[derive(Debug, Clone)]
enum Test {
    Equals(Literal),
    NotEquals(Literal),
    In(Box<[Literal]>),
    Prefix(String),
    Matches(Regex),
    Exists(bool),
}

impl Test {
    /// `value` is `None` when the field is missing (absent or null).
    fn eval(&self, value: Option<&Value>) -> bool {
        match self {
            Test::Equals(literal) => value.is_some_and(|v| literal.equals(v)),
            Test::NotEquals(literal) => !value.is_some_and(|v| literal.equals(v)),
            Test::In(literals) => value.is_some_and(|v| literals.iter().any(|l| l.equals(v))),
            Test::Prefix(prefix) => value
                .and_then(Value::as_str)
                .is_some_and(|s| s.starts_with(prefix.as_str())),
            Test::Matches(regex) => value
                .and_then(Value::as_str)
                .is_some_and(|s| regex.is_match(s)),
            Test::Exists(wanted) => value.is_some() == *wanted,
        }
    }

    fn operator(&self) -> &'static str {
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

/// A value a condition compares a field with: a TOML string, integer, float or boolean.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
}

impl Literal {
    fn equals(&self, value: &Value) -> bool {
        match (self, value) {
            (Literal::String(a), Value::String(b)) => a == b,
            (Literal::Boolean(a), Value::Bool(b)) => a == b,
            (Literal::Integer(a), Value::Number(n)) => match n.as_i64() {
                Some(i) => i == *a,
                // A u64 above i64::MAX cannot equal an i64; a float can.
                None => n.is_f64() && n.as_f64() == Some(*a as f64),
            },
            (Literal::Float(a), Value::Number(n)) => n.as_f64() == Some(*a),
            _ => false,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Literal::String(_) => "a string",
            Literal::Integer(_) | Literal::Float(_) => "a number",
            Literal::Boolean(_) => "a boolean",
        }
    }

    /// Does a field of this schema type ever hold a value this literal can equal?
    fn fits(&self, ty: FieldType) -> bool {
        use FieldType::*;
        match self {
            Literal::String(_) => matches!(ty, Keyword | Text | Date | Ip),
            Literal::Integer(_) | Literal::Float(_) => matches!(ty, Long | Double),
            Literal::Boolean(_) => ty == Boolean,
        }
    }
}

impl<'de> Deserialize<'de> for Literal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LiteralVisitor;
        impl Visitor<'_> for LiteralVisitor {
            type Value = Literal;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Literal, E> {
                Ok(Literal::String(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Literal, E> {
                Ok(Literal::String(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Literal, E> {
                Ok(Literal::Integer(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Literal, E> {
                i64::try_from(v)
                    .map(Literal::Integer)
                    .map_err(|_| E::custom("integer too large"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Literal, E> {
                Ok(Literal::Float(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Literal, E> {
                Ok(Literal::Boolean(v))
            }
        }
        deserializer.deserialize_any(LiteralVisitor)
    }
}

/// What the schema says lives at a path; decides which operators make sense.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PathKind {
    /// A schema field with a mapping type.
    Typed(FieldType),
    /// The parent of schema fields (`client.geo`, `labels`): only `exists` applies.
    Object,
    /// Under `labels.*` or a flattened field (`rum.extra.*`): any JSON value.
    Dynamic,
}

/// A dotted field path checked against the schema at config time.
#[derive(Clone)]
pub struct FieldPath {
    path: String,
    kind: PathKind,
    /// The event slot (and keys below it) the path reads, resolved once.
    resolved: Option<crate::event::FieldPath>,
}

impl fmt::Debug for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

impl FieldPath {
    /// Checks a path against the schema (see `PathKind`).
    pub fn parse(path: &str) -> Result<FieldPath, String> {
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(format!(
                "field `{path}`: a field path is names joined by single dots, like `url.domain`"
            ));
        }
        let kind = path_kind(path).ok_or_else(|| {
            let hint = did_you_mean(path, schema::all_fields().map(|f| f.path))
                .map(|known| format!(" (did you mean `{known}`?)"))
                .unwrap_or_default();
            format!(
                "`{path}` is not a known field path{hint}; conditions read the schema's fields, `labels.*` \
                 and the inside of flattened fields such as `rum.extra.*`"
            )
        })?;
        Ok(FieldPath {
            path: path.to_owned(),
            kind,
            resolved: crate::event::FieldPath::resolve(path),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// The value at the path; `None` when absent or `null`.
    pub fn get<'e>(&self, event: &'e Event) -> Option<&'e Value> {
        /// Stands for "some field under this object is set": only `exists`
        /// applies to object paths, so the value itself is never compared.
        static PRESENT: Value = Value::Bool(true);
        match &self.resolved {
            Some(path) => event.get_field(path).filter(|v| !v.is_null()),
            None if self.kind == PathKind::Object => {
                event.has_fields_under(&self.path).then_some(&PRESENT)
            }
            None => None,
        }
    }
}

fn path_kind(path: &str) -> Option<PathKind> {
    let labels_prefix = schema::LABELS;
    if path == labels_prefix {
        return Some(PathKind::Object);
    }
    if path
        .strip_prefix(labels_prefix)
        .is_some_and(|rest| rest.starts_with('.'))
    {
        return Some(PathKind::Dynamic);
    }
    let mut parent = false;
    for field in schema::all_fields() {
        if field.path == path {
            return Some(PathKind::Typed(field.ty));
        }
        let Some(rest) = path
            .strip_prefix(field.path)
            .and_then(|r| r.strip_prefix('.'))
        else {
            parent |= field
                .path
                .strip_prefix(path)
                .is_some_and(|r| r.starts_with('.'));
            continue;
        };
        match field.ty {
            FieldType::Flattened => return Some(PathKind::Dynamic),
            FieldType::GeoPoint if rest == "lat" || rest == "lon" => {
                return Some(PathKind::Typed(FieldType::Double))
            }
            _ => {}
        }
    }
    parent.then_some(PathKind::Object)
}

/// The closest candidate within a small edit distance, for "did you mean".
fn did_you_mean<'a>(wrong: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = if wrong.len() <= 3 {
        1
    } else {
        (wrong.len() / 3).clamp(2, 3)
    };
    candidates
        .map(|c| (edit_distance(wrong, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ConditionVisitor;
        impl<'de> Visitor<'de> for ConditionVisitor {
            type Value = Condition;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a condition table, like { field = "url.domain", equals = "shop.example.com" }"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Condition, A::Error> {
                let mut parts = ConditionParts::default();
                while let Some(key) = map.next_key::<String>()? {
                    if !parts.take(&key, &mut map)? {
                        return Err(unknown_key(&key, &[]));
                    }
                }
                parts.finish().map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_map(ConditionVisitor)
    }
}

/// The error for a key that is neither an operator nor a combinator. Starts
/// with serde's "unknown field `x`" so config errors name the key itself.
pub(crate) fn unknown_key<E: de::Error>(key: &str, also: &[&str]) -> E {
    let known = ["field"]
        .iter()
        .chain(OPERATORS)
        .chain(COMBINATORS)
        .chain(also);
    let hint = did_you_mean(key, known.copied())
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    let also = also.iter().map(|k| format!(", `{k}`")).collect::<String>();
    E::custom(format!(
        "unknown field `{key}`{hint}: a condition is `field` with one operator ({}), or one of {}{also}",
        OPERATORS.join(", "),
        COMBINATORS.join(", ")
    ))
}

/// The keys of one condition table as they are read; `finish` checks they
/// form exactly one condition. Shared with tables that carry a condition next
/// to other keys (`labels`' `when` rules).
#[derive(Default)]
pub(crate) struct ConditionParts {
    field: Option<FieldPath>,
    tests: Vec<Test>,
    combinators: Vec<(&'static str, Node)>,
}

impl ConditionParts {
    /// Reads the value of `key` if it belongs to a condition; `false` if not.
    pub(crate) fn take<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        match key {
            "field" => self.field = Some(map.next_value_seed(FieldSeed)?),
            "equals" => self.tests.push(Test::Equals(map.next_value()?)),
            "not_equals" => self.tests.push(Test::NotEquals(map.next_value()?)),
            "in" => {
                let literals: Vec<Literal> = map.next_value()?;
                if literals.is_empty() {
                    return Err(de::Error::custom("`in` needs at least one value"));
                }
                self.tests.push(Test::In(literals.into()));
            }
            "prefix" => {
                let prefix: String = map.next_value()?;
                if prefix.is_empty() {
                    return Err(de::Error::custom(
                        "`prefix` is empty and would match every string; use `exists = true`",
                    ));
                }
                self.tests.push(Test::Prefix(prefix));
            }
            "matches" => self
                .tests
                .push(Test::Matches(map.next_value_seed(RegexSeed)?)),
            "exists" => self.tests.push(Test::Exists(map.next_value()?)),
            "all" | "any" => {
                let list: Vec<Condition> = map.next_value()?;
                if list.is_empty() {
                    return Err(de::Error::custom(format!(
                        "`{key}` needs at least one condition"
                    )));
                }
                let nodes: Box<[Node]> = list.into_iter().map(|c| c.node).collect();
                let (name, node) = if key == "all" {
                    ("all", Node::All(nodes))
                } else {
                    ("any", Node::Any(nodes))
                };
                self.combinators.push((name, node));
            }
            "not" => {
                let inner: Condition = map.next_value()?;
                self.combinators
                    .push(("not", Node::Not(Box::new(inner.node))));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Did the table hold any condition key at all?
    pub(crate) fn is_empty(&self) -> bool {
        self.field.is_none() && self.tests.is_empty() && self.combinators.is_empty()
    }

    pub(crate) fn finish(mut self) -> Result<Condition, String> {
        let operators = || OPERATORS.join(", ");
        if let Some((first, _)) = self.combinators.first() {
            if let Some((second, _)) = self.combinators.get(1) {
                return Err(format!(
                    "one combinator per table: found `{first}` and `{second}`; nest them (e.g. `all = [{{ any = [...] }}, {{ not = {{...}} }}]`)"
                ));
            }
            if self.field.is_some() || !self.tests.is_empty() {
                return Err(format!(
                    "a condition is either `field` with an operator or `{first}`, not both; put the field test inside `{first}`"
                ));
            }
            let (_, node) = self.combinators.remove(0);
            return Ok(Condition::new(node));
        }
        let Some(field) = self.field else {
            return match self.tests.first() {
                Some(test) => Err(format!("`{}` needs a `field` to test", test.operator())),
                None => Err(format!(
                    "empty condition: give `field` with one operator ({}), or one of {}",
                    operators(),
                    COMBINATORS.join(", ")
                )),
            };
        };
        if self.tests.len() > 1 {
            return Err(format!(
                "one operator per condition: found `{}` and `{}` on `{}`; combine conditions with `all = [...]`",
                self.tests[0].operator(),
                self.tests[1].operator(),
                field.path
            ));
        }
        let Some(test) = self.tests.pop() else {
            return Err(format!(
                "`field = \"{}\"` needs an operator: one of {}",
                field.path,
                operators()
            ));
        };
        check_types(&field, &test)?;
        Ok(Condition::new(Node::Test {
            field,
            slot: 0,
            test,
        }))
    }
}

/// Refuses tests that could never be true on a schema field, such as a number
/// field compared with a string: at runtime they would silently be false.
fn check_types(field: &FieldPath, test: &Test) -> Result<(), String> {
    let path = &field.path;
    let op = test.operator();
    match (field.kind, test) {
        (PathKind::Dynamic, _) | (_, Test::Exists(_)) => Ok(()),
        (PathKind::Object, _) => Err(format!(
            "`{path}` is an object; only `exists` applies to it"
        )),
        (PathKind::Typed(ty), Test::Equals(l) | Test::NotEquals(l)) => {
            check_literal(path, ty, op, l)
        }
        (PathKind::Typed(ty), Test::In(ls)) => {
            ls.iter().try_for_each(|l| check_literal(path, ty, op, l))
        }
        (PathKind::Typed(ty), Test::Prefix(_) | Test::Matches(_)) => {
            if matches!(
                ty,
                FieldType::Keyword | FieldType::Text | FieldType::Date | FieldType::Ip
            ) {
                Ok(())
            } else {
                Err(format!(
                    "`{op}` tests strings, but `{path}` holds {}",
                    type_words(ty)
                ))
            }
        }
    }
}

fn check_literal(path: &str, ty: FieldType, op: &str, literal: &Literal) -> Result<(), String> {
    if literal.fits(ty) {
        return Ok(());
    }
    let suggestion = match (literal, ty) {
        (Literal::String(s), FieldType::Long | FieldType::Double) if s.parse::<f64>().is_ok() => {
            format!(": write `{op} = {s}` without quotes")
        }
        _ => String::new(),
    };
    Err(format!(
        "`{path}` holds {}, so `{op}` with {} never matches it{suggestion}",
        type_words(ty),
        literal.kind()
    ))
}

fn type_words(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Keyword | FieldType::Text | FieldType::Date | FieldType::Ip => "strings",
        FieldType::Long | FieldType::Double => "numbers",
        FieldType::Boolean => "booleans",
        FieldType::GeoPoint | FieldType::Flattened => "objects",
    }
}

/// Reads and checks `field` inside its own key, so errors point at it.
struct FieldSeed;

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = FieldPath;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<FieldPath, D::Error> {
        let path = String::deserialize(deserializer)?;
        FieldPath::parse(&path).map_err(de::Error::custom)
    }
}

/// Compiles `matches` inside its own key, so a bad regex points at it.
struct RegexSeed;

impl<'de> DeserializeSeed<'de> for RegexSeed {
    type Value = Regex;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Regex, D::Error> {
        let pattern = String::deserialize(deserializer)?;
        Regex::new(&pattern)
            .map_err(|e| de::Error::custom(format!("invalid regex `{pattern}`: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn condition(toml_text: &str) -> Condition {
        match toml::from_str::<Condition>(toml_text) {
            Ok(c) => c,
            Err(e) => panic!("{toml_text}: {e}"),
        }
    }

    fn error(toml_text: &str) -> String {
        match toml::from_str::<Condition>(toml_text) {
            Ok(c) => panic!("{toml_text} was accepted as {c:?}"),
            Err(e) => e.message().to_owned(),
        }
    }

    fn page() -> Event {
        Event::from(json!({
            "url": {"domain": "shop.example.com", "path": "/admin/users", "port": 8443},
            "service": {"name": "shop"},
            "user_agent": {"category": "pc"},
            "rum": {
                "type": "web_vital",
                "vital": {"name": "LCP", "value": 1234.5},
                "connection": {"save_data": false},
                "extra": {"n": 5, "s": "5", "flag": true, "list": ["a"], "nothing": null},
            },
            "labels": {"env": "production"},
            "client": {"geo": {"location": {"lat": 50.1, "lon": 14.4}}},
        }))
    }

    fn check(toml_text: &str, expected: bool) {
        assert_eq!(
            condition(toml_text).matches(&page()),
            expected,
            "{toml_text}"
        );
    }

    #[test]
    fn equals_compares_strings_exactly() {
        check(
            r#"field = "url.domain"
equals = "shop.example.com""#,
            true,
        );
        check(
            r#"field = "url.domain"
equals = "SHOP.example.com""#,
            false,
        );
        check(
            r#"field = "url.domain"
equals = "shop.example.co""#,
            false,
        );
        check(
            r#"field = "url.full"
equals = "x""#,
            false,
        );
    }

    #[test]
    fn equals_compares_numbers_numerically_and_booleans() {
        check("field = \"url.port\"\nequals = 8443", true);
        check("field = \"url.port\"\nequals = 8443.0", true);
        check("field = \"url.port\"\nequals = 8444", false);
        check("field = \"rum.vital.value\"\nequals = 1234.5", true);
        check("field = \"rum.vital.value\"\nequals = 1234", false);
        check("field = \"rum.connection.save_data\"\nequals = false", true);
        check("field = \"rum.connection.save_data\"\nequals = true", false);
        check("field = \"rum.extra.flag\"\nequals = true", true);
    }

    #[test]
    fn kinds_never_mix_at_runtime() {
        // Dynamic fields pass the config check, so mismatches reach evaluation.
        check("field = \"rum.extra.n\"\nequals = \"5\"", false);
        check("field = \"rum.extra.s\"\nequals = 5", false);
        check("field = \"rum.extra.flag\"\nequals = \"true\"", false);
        check("field = \"rum.extra.list\"\nequals = \"a\"", false);
        check("field = \"rum.extra\"\nexists = true", true);
        check("field = \"rum.extra.n\"\nprefix = \"5\"", false);
        check("field = \"rum.extra.n\"\nmatches = \"5\"", false);
        check("field = \"rum.extra.n\"\nin = [\"5\", true]", false);
        check("field = \"rum.extra.n\"\nin = [\"5\", 5]", true);
        check("field = \"rum.extra.n\"\nnot_equals = \"5\"", true);
    }

    #[test]
    fn not_equals_is_not_equals_including_missing_fields() {
        check(
            r#"field = "user_agent.category"
not_equals = "crawler""#,
            true,
        );
        check(
            r#"field = "user_agent.category"
not_equals = "pc""#,
            false,
        );
        check(
            r#"field = "user_agent.name"
not_equals = "Chrome""#,
            true,
        );
        check(
            r#"field = "rum.extra.nothing"
not_equals = "x""#,
            true,
        );
    }

    #[test]
    fn in_matches_any_listed_value() {
        check(
            r#"field = "service.name"
in = ["blog", "shop"]"#,
            true,
        );
        check(
            r#"field = "service.name"
in = ["blog"]"#,
            false,
        );
        check(
            r#"field = "service.version"
in = ["1"]"#,
            false,
        );
    }

    #[test]
    fn prefix_and_matches_read_strings() {
        check(
            r#"field = "url.path"
prefix = "/admin""#,
            true,
        );
        check(
            r#"field = "url.path"
prefix = "/Admin""#,
            false,
        );
        check(
            r#"field = "url.path"
prefix = "/admin/users/1""#,
            false,
        );
        check(
            r#"field = "url.domain"
matches = '(^|\.)example\.com$'"#,
            true,
        );
        check(
            r#"field = "url.domain"
matches = '^example\.com$'"#,
            false,
        );
        check(
            r#"field = "url.domain"
matches = '(?i)SHOP'"#,
            true,
        );
        check(
            r#"field = "url.query"
matches = '.*'"#,
            false,
        );
    }

    #[test]
    fn exists_treats_null_as_missing() {
        check("field = \"session.id\"\nexists = true", false);
        check("field = \"session.id\"\nexists = false", true);
        check("field = \"rum.extra.nothing\"\nexists = true", false);
        check("field = \"client.geo\"\nexists = true", true);
        check("field = \"labels\"\nexists = true", true);
        check("field = \"client.geo.location.lat\"\nequals = 50.1", true);
    }

    #[test]
    fn combinators_nest() {
        let text = r#"
all = [
  { field = "url.domain", equals = "shop.example.com" },
  { any = [
      { field = "rum.type", equals = "error" },
      { not = { field = "url.path", prefix = "/checkout" } },
  ] },
]"#;
        check(text, true);
        check(
            r#"not = { field = "url.domain", equals = "shop.example.com" }"#,
            false,
        );
        check(
            r#"not = { not = { field = "url.domain", equals = "shop.example.com" } }"#,
            true,
        );
        check(
            r#"any = [{ field = "session.id", exists = true }, { field = "labels.env", equals = "production" }]"#,
            true,
        );
        check(
            r#"all = [{ field = "session.id", exists = true }, { field = "labels.env", equals = "production" }]"#,
            false,
        );
    }

    #[test]
    fn an_empty_event_never_panics() {
        let empty = Event::new();
        for text in [
            "field = \"url.domain\"\nequals = \"x\"",
            "field = \"url.domain\"\nnot_equals = \"x\"",
            "field = \"url.domain\"\nmatches = \"x\"",
            "field = \"labels.a.b\"\nin = [1]",
            "field = \"@timestamp\"\nprefix = \"2026\"",
        ] {
            let expected = text.contains("not_equals");
            assert_eq!(condition(text).matches(&empty), expected, "{text}");
        }
        // A scalar where the schema has an object is simply not there.
        let odd = Event::from(json!({"url": "https://x/", "client": {"geo": 3}}));
        assert!(!condition("field = \"url.domain\"\nequals = \"x\"").matches(&odd));
        assert!(!condition("field = \"client.geo.location.lat\"\nexists = true").matches(&odd));
    }

    #[test]
    fn unknown_operator_is_named_with_a_suggestion() {
        let message = error("field = \"url.domain\"\nequal = \"x\"");
        assert!(
            message.starts_with("unknown field `equal` (did you mean `equals`?)"),
            "{message}"
        );
        assert!(message.contains("not_equals"), "{message}");
        let message = error("field = \"url.domain\"\nstarts_with = \"x\"");
        assert!(
            message.starts_with("unknown field `starts_with`:"),
            "{message}"
        );
    }

    #[test]
    fn unknown_field_paths_are_refused() {
        let message = error("field = \"url.domian\"\nequals = \"x\"");
        assert!(
            message.contains("`url.domian` is not a known field path (did you mean `url.domain`?)"),
            "{message}"
        );
        assert!(error("field = \"nonsense\"\nexists = true")
            .contains("`nonsense` is not a known field path"));
        assert!(error("field = \"url.domain.x\"\nexists = true").contains("not a known field path"));
        assert!(error("field = \"url..domain\"\nexists = true").contains("single dots"));
        assert!(error("field = \"\"\nexists = true").contains("single dots"));
        assert!(error("field = \"client.geo.location.alt\"\nexists = true")
            .contains("not a known field path"));
    }

    #[test]
    fn bad_regex_is_refused() {
        let message = error("field = \"url.path\"\nmatches = \"(unclosed\"");
        assert!(message.contains("invalid regex `(unclosed`"), "{message}");
    }

    #[test]
    fn malformed_tables_are_refused() {
        assert!(error("").contains("empty condition"));
        assert!(error("field = \"url.path\"").contains("needs an operator"));
        assert!(error("equals = \"x\"").contains("`equals` needs a `field`"));
        assert!(
            error("field = \"url.path\"\nequals = \"/\"\nprefix = \"/\"")
                .contains("one operator per condition")
        );
        assert!(error("all = []").contains("at least one condition"));
        assert!(error("field = \"url.path\"\nin = []").contains("at least one value"));
        assert!(error("field = \"url.path\"\nprefix = \"\"").contains("exists = true"));
        assert!(error("all = [{ field = \"url.path\", exists = true }]\nnot = { field = \"url.path\", exists = true }")
            .contains("one combinator per table"));
        assert!(error(
            "field = \"url.path\"\nexists = true\nnot = { field = \"url.path\", exists = true }"
        )
        .contains("not both"));
        assert!(error("field = \"url.path\"\nequals = [1]").contains("a string, number or boolean"));
        assert!(error("field = \"url.path\"\nexists = \"yes\"").contains("invalid type"));
        // Errors deep inside combinators surface too.
        assert!(
            error("any = [{ not = { field = \"url.pth\", exists = true } }]")
                .contains("did you mean `url.path`")
        );
    }

    #[test]
    fn literals_of_the_wrong_kind_for_a_schema_field_are_refused() {
        let message = error("field = \"url.port\"\nequals = \"8443\"");
        assert!(message.contains("`url.port` holds numbers"), "{message}");
        assert!(
            message.contains("write `equals = 8443` without quotes"),
            "{message}"
        );
        assert!(error("field = \"url.domain\"\nin = [\"a\", 1]").contains("holds strings"));
        assert!(
            error("field = \"rum.connection.save_data\"\nequals = \"false\"")
                .contains("holds booleans")
        );
        assert!(
            error("field = \"rum.http.status\"\nprefix = \"5\"").contains("`prefix` tests strings")
        );
        assert!(error("field = \"client.geo\"\nequals = \"x\"").contains("only `exists`"));
        assert!(error("field = \"client.geo.location\"\nmatches = \"x\"").contains("holds objects"));
    }

    #[test]
    fn a_set_shares_lookups_without_changing_answers() {
        let texts = [
            r#"field = "url.domain"
equals = "shop.example.com""#,
            r#"not = { field = "url.domain", equals = "shop.example.com" }"#,
            r#"all = [{ field = "url.path", prefix = "/admin" }, { field = "url.domain", matches = "shop" }]"#,
            r#"any = [{ field = "session.id", exists = true }, { field = "url.path", equals = "/" }]"#,
            r#"field = "session.id"
not_equals = "x""#,
        ];
        let conditions: Vec<Condition> = texts.iter().map(|t| condition(t)).collect();
        let set = ConditionSet::new(conditions.clone());
        assert_eq!(set.len(), 5);
        for event in [
            page(),
            Event::new(),
            Event::from(json!({"url": {"domain": "x", "path": "/"}})),
        ] {
            let mut from_set = Vec::new();
            set.for_each_match(&event, |i| from_set.push(i));
            let alone: Vec<usize> = (0..conditions.len())
                .filter(|&i| conditions[i].matches(&event))
                .collect();
            assert_eq!(from_set, alone, "{event:?}");
        }
        let mut hits = Vec::new();
        set.for_each_match(&page(), |i| hits.push(i));
        assert_eq!(hits, [0, 2, 4]);
    }

    #[test]
    fn more_fields_than_the_cache_holds_still_evaluate() {
        // 20 distinct label fields: slots past the cache are looked up directly.
        let conditions: Vec<Condition> = (0..20)
            .map(|i| condition(&format!("field = \"labels.l{i}\"\nequals = \"{i}\"")))
            .collect();
        let set = ConditionSet::new(conditions);
        let labels: serde_json::Map<String, Value> = [3, 17, 19]
            .iter()
            .map(|i| (format!("l{i}"), json!(i.to_string())))
            .collect();
        let event = Event::from(json!({ "labels": labels }));
        let mut hits = Vec::new();
        set.for_each_match(&event, |i| hits.push(i));
        assert_eq!(hits, [3, 17, 19]);
    }

    #[test]
    fn reads_the_beacon_context_shared_between_events() {
        let beacon =
            Event::from(json!({"url": {"domain": "shop.example.com"}, "session": {"id": "s1"}}));
        let mut event = Event::with_context(beacon.context().clone());
        event.insert("rum.type", "error");
        let set = ConditionSet::new([
            condition("field = \"url.domain\"\nequals = \"shop.example.com\""),
            condition("all = [{ field = \"rum.type\", equals = \"error\" }, { field = \"session.id\", exists = true }]"),
            condition("field = \"url.path\"\nexists = true"),
        ]);
        let mut hits = Vec::new();
        set.for_each_match(&event, |i| hits.push(i));
        assert_eq!(hits, [0, 1]);
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("equal", "equals"), 1);
        assert_eq!(edit_distance("url.domian", "url.domain"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
