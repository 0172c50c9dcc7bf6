//! Parsing and checking: a condition table read from TOML, its field path
//! checked against the schema, its operator against the field's type, with
//! errors that name the key and suggest what was meant.

use std::fmt;

use regex::Regex;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::{Condition, Literal, Node, Test, COMBINATORS, OPERATORS};
use crate::event::{Event, FieldRead};
use crate::schema::{self, FieldType};

impl Literal {
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
    pub(super) path: String,
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

    /// The value at the path; `None` when absent or `null`. A request's
    /// string is read in place ([`FieldRead`]): no condition makes a value.
    pub fn get<'e>(&self, event: &'e Event) -> Option<FieldRead<'e>> {
        /// Stands for "some field under this object is set": only `exists`
        /// applies to object paths, so the value itself is never compared.
        static PRESENT: Value = Value::Bool(true);
        match &self.resolved {
            Some(path) => event.read_field(path).filter(|v| !v.is_null()),
            None if self.kind == PathKind::Object => event
                .has_fields_under(&self.path)
                .then_some(FieldRead::Value(&PRESENT)),
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
pub(crate) fn did_you_mean<'a>(
    wrong: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
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

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    strsim::levenshtein(a, b)
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
