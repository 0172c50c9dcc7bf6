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

use regex::Regex;

mod eval;
mod parse;
#[cfg(test)]
mod tests;

pub use parse::FieldPath;
pub(crate) use parse::{did_you_mean, unknown_key, ConditionParts};

/// Keys that test a field; exactly one goes with `field`.
pub const OPERATORS: &[&str] = &["equals", "not_equals", "in", "prefix", "matches", "exists"];
/// Keys that combine conditions; one per table, without `field`.
pub const COMBINATORS: &[&str] = &["all", "any", "not"];

/// A compiled condition: what `route`, `filter` and `labels.when` evaluate.
#[derive(Debug, Clone)]
pub struct Condition {
    node: Node,
}

/// Several conditions evaluated together on each event (the routes of a
/// `route`, the rules of `labels`): a field that several of them test is
/// looked up once per event, so five routes on `url.domain` cost one lookup
/// and five comparisons.
#[derive(Debug, Clone)]
pub struct ConditionSet {
    conditions: Box<[Condition]>,
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

#[derive(Debug, Clone)]
enum Test {
    Equals(Literal),
    NotEquals(Literal),
    In(Box<[Literal]>),
    Prefix(String),
    Matches(Regex),
    Exists(bool),
}

/// A value a condition compares a field with: a TOML string, integer, float or boolean.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
}
