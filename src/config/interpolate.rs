//! `${VAR}`, `${VAR:-default}` and `${VAR:?message}` in pipeline files, replaced
//! from the environment before the TOML is parsed (as Vector does), so the
//! Canarytrace-style variables can drive a shipped pipeline. `$$` is a literal `$`.
//! Comments are left alone, so a commented-out `${X}` needs no variable.

/// Replaces every reference; returns all problems at once, each naming the
/// variable and the line.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<(usize, String)>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    // A multi-line string open at the end of the line before.
    let mut carried = InString::No;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let line_no = index + 1;
        let bytes = line.as_bytes();
        let mut state = carried;
        // `line[..copied]` is in `out`; `copied` only ever moves past an
        // ASCII byte matched here, so it is a character boundary.
        let mut copied = 0;
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            let (next, step) = match (state, bytes[at]) {
                // A comment: the rest of the line as it is.
                (InString::No, b'#') => break,
                (InString::No, b'"') if rest.starts_with(br#"""""#) => (InString::MultiBasic, 3),
                (InString::No, b'"') => (InString::Basic, 1),
                (InString::No, b'\'') if rest.starts_with(b"'''") => (InString::MultiLiteral, 3),
                (InString::No, b'\'') => (InString::Literal, 1),
                // An escape: the next character cannot end the string.
                (InString::Basic | InString::MultiBasic, b'\\') => (state, 2),
                (InString::Basic, b'"') | (InString::Literal, b'\'') => (InString::No, 1),
                // Closed by three quotes, which one or two of the string's
                // own may come before (`"""x""""` is `x"`): the run of them
                // ends it.
                (InString::MultiBasic, b'"') if rest.starts_with(br#"""""#) => {
                    (InString::No, quotes(rest, b'"'))
                }
                (InString::MultiLiteral, b'\'') if rest.starts_with(b"'''") => {
                    (InString::No, quotes(rest, b'\''))
                }
                (_, b'$') => {
                    out.push_str(&line[copied..at]);
                    // `$` is ASCII: `at + 1` is a character boundary.
                    let after = &line[at + 1..];
                    if after.starts_with('$') {
                        out.push('$');
                        at += 2;
                    } else if let Some(body) = after.strip_prefix('{') {
                        let Some(end) = body.find('}') else {
                            errors.push((line_no, "unterminated `${` (missing `}`)".to_owned()));
                            out.push('$');
                            at += 1;
                            copied = at;
                            continue;
                        };
                        let reference = &body[..end];
                        let expanded = expand(reference, lookup).and_then(|(value, from_env)| {
                            if from_env {
                                fit_in_place(&value, state, reference)
                            } else {
                                // A default is the file's own text, escaped as written.
                                Ok(value)
                            }
                        });
                        match expanded {
                            Ok(value) => out.push_str(&value),
                            Err(message) => errors.push((line_no, message)),
                        }
                        at += 2 + end + 1;
                    } else {
                        out.push('$');
                        at += 1;
                    }
                    copied = at;
                    continue;
                }
                _ => (state, 1),
            };
            state = next;
            at += step;
        }
        out.push_str(&line[copied.min(line.len())..]);
        // Only a multi-line string goes on past its line.
        carried = match state {
            InString::MultiBasic | InString::MultiLiteral => state,
            _ => InString::No,
        };
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// How many `quote`s `rest` starts with.
fn quotes(rest: &[u8], quote: u8) -> usize {
    rest.iter().take_while(|&&b| b == quote).count()
}

/// Where a reference sits: outside any string, or in one of TOML's four
/// kinds of string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InString {
    No,
    Basic,
    Literal,
    MultiBasic,
    MultiLiteral,
}

/// A variable's value as the file gets it: it can only ever be one value,
/// never more TOML. A line break is refused anywhere (as Vector does: it
/// could add keys or tables); in a basic string `"` and `\` are escaped so
/// they stay the characters they are; in a literal string, where nothing
/// can be escaped, a `'` is refused.
fn fit_in_place(value: &str, place: InString, reference: &str) -> Result<String, String> {
    let name = reference.split(':').next().unwrap_or(reference);
    if value.contains(['\n', '\r']) {
        return Err(format!(
            "environment variable {name} holds a line break, which could change the file's structure: refused"
        ));
    }
    match place {
        InString::Basic | InString::MultiBasic => {
            Ok(value.replace('\\', "\\\\").replace('"', "\\\""))
        }
        InString::Literal | InString::MultiLiteral if value.contains('\'') => Err(format!(
            "environment variable {name} holds a `'`, which would end the '...' string it is in: use a \"...\" string there"
        )),
        _ => Ok(value.to_owned()),
    }
}

/// The value of a reference, and whether it came from the environment (not
/// from the file's default).
fn expand(
    reference: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, bool), String> {
    let (name, op, arg) = match reference.find(':') {
        Some(i) if reference[i + 1..].starts_with('-') => (&reference[..i], ":-", &reference[i + 2..]),
        Some(i) if reference[i + 1..].starts_with('?') => (&reference[..i], ":?", &reference[i + 2..]),
        Some(_) => {
            return Err(format!(
                "`${{{reference}}}`: unknown operator (use ${{VAR}}, ${{VAR:-default}} or ${{VAR:?message}})"
            ))
        }
        None => (reference, "", ""),
    };
    let valid_name = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid_name {
        return Err(format!(
            "`${{{reference}}}`: `{name}` is not a valid variable name"
        ));
    }
    let value = lookup(name).filter(|v| !v.is_empty());
    match (value, op) {
        (Some(v), _) => Ok((v, true)),
        (None, ":-") => Ok((arg.to_owned(), false)),
        (None, ":?") => Err(format!("environment variable {name} is required: {arg}")),
        (None, _) => Err(format!(
            "environment variable {name} is not set (give a default with ${{{name}:-value}})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_stays_one_value_wherever_it_is() {
        let env = |name: &str| match name {
            "INJECT" => Some("prod\"\n[sinks.extra]\ntype = \"stdout\"\n#".to_owned()),
            "QUOTED" => Some(r#"a "b" \t c"#.to_owned()),
            "APOSTROPHE" => Some("it's".to_owned()),
            _ => None,
        };
        // A line break could add keys or tables: refused, named.
        let errors = interpolate("labels = \"${INJECT}\"\n", &env).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].1.contains("INJECT holds a line break"),
            "{errors:?}"
        );
        // In a basic string, `"` and `\` stay themselves.
        let text = interpolate("a = \"x ${QUOTED} y\"\n", &env).unwrap();
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["a"].as_str(), Some(r#"x a "b" \t c y"#));
        // Outside a string, and after a closed one, the value is pasted as is.
        assert_eq!(
            interpolate("a = \"s\" ${APOSTROPHE}\nn = ${QUOTED}\n", &env).unwrap(),
            "a = \"s\" it's\nn = a \"b\" \\t c\n"
        );
        // In a literal string nothing can be escaped: a `'` is refused.
        let errors = interpolate("a = 'x ${APOSTROPHE}'\n", &env).unwrap_err();
        assert!(errors[0].1.contains("APOSTROPHE holds a `'`"), "{errors:?}");
        assert_eq!(
            interpolate("a = 'x ${QUOTED}'\n", &env).unwrap(),
            "a = 'x a \"b\" \\t c'\n"
        );
        // A default is the file's own text: not escaped again.
        assert_eq!(
            interpolate("a = \"${UNSET:-c\\\\d}\"\n", &env).unwrap(),
            "a = \"c\\\\d\"\n"
        );
        // An escaped quote does not end the string the reference is in.
        let text = interpolate("a = \"q\\\" ${QUOTED}\"\n", &env).unwrap();
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["a"].as_str(), Some(r#"q" a "b" \t c"#));
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("3001".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_values_and_defaults() {
        let text =
            "a = \"${PORT}\"\nb = \"${MISSING:-x y}\"\nc = \"${EMPTY:-d}\"\nd = \"$$HOME $x\"\n";
        assert_eq!(
            interpolate(text, &env).unwrap(),
            "a = \"3001\"\nb = \"x y\"\nc = \"d\"\nd = \"$HOME $x\"\n"
        );
    }

    #[test]
    fn missing_variables_are_named_with_their_line() {
        let text = "ok = 1\na = \"${NOPE}\"\nb = \"${ALSO:?set it to the cluster URL}\"\n# c = \"${COMMENTED}\"\n";
        let errors = interpolate(text, &env).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].0, 2);
        assert!(errors[0].1.contains("NOPE is not set"));
        assert_eq!(errors[1].0, 3);
        assert!(errors[1]
            .1
            .contains("ALSO is required: set it to the cluster URL"));
    }

    /// A comment after a value was filled in: `port = 3000  # or ${PORT}`
    /// needed PORT set, and a value with a `'` in such a comment was refused.
    #[test]
    fn comments_after_values_are_left_alone() {
        let text = r#"a = "x" # or ${NOPE}
b = 'x # ${PORT}' # ${ALSO}
c = "q\" # ${PORT}" # $${X}
d = "bü ${PORT}ü" # ü ${NOPE}
"#;
        assert_eq!(
            interpolate(text, &env).unwrap(),
            r#"a = "x" # or ${NOPE}
b = 'x # 3001' # ${ALSO}
c = "q\" # 3001" # $${X}
d = "bü 3001ü" # ü ${NOPE}
"#
        );
    }

    /// Multi-line strings: a `#` in one is text, and a reference after it
    /// is filled in, on any of its lines; a `"` in a value stays text.
    #[test]
    fn multi_line_strings_are_strings_on_every_line() {
        let env = |name: &str| match name {
            "PORT" => Some("3001".into()),
            "QUOTES" => Some(r#"a"""b"#.into()),
            _ => None,
        };
        let text = r#"a = """
# ${PORT}
x ${QUOTES}""" # ${NOPE}
b = '''
# ${PORT}
'''
"#;
        let out = interpolate(text, &env).unwrap();
        let parsed: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(parsed["a"].as_str(), Some("# 3001\nx a\"\"\"b"));
        assert_eq!(parsed["b"].as_str(), Some("# 3001\n"));
    }

    /// A multi-line string may end in one or two quotes of its own before
    /// its closing three (`"""x""""` is `x"`): the quotes after the first
    /// three were read as a new string, so a comment after it was filled
    /// in, and a reference after it on the line was not escaped.
    #[test]
    fn a_multi_line_string_ending_in_quotes_ends_there() {
        let env = |name: &str| match name {
            "PORT" => Some("3001".into()),
            "QUOTED" => Some(r#"a", "b"#.into()),
            _ => None,
        };
        let text = r#"a = """x"""" # ${NOPE}
b = '''y''''' # ${NOPE}
c = ["""z""""", "${QUOTED}"]
d = """
w""""  # ${NOPE}
e = "${PORT}"
"#;
        let out = interpolate(text, &env).unwrap();
        let parsed: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(parsed["a"].as_str(), Some("x\""));
        assert_eq!(parsed["b"].as_str(), Some("y''"));
        let c = parsed["c"].as_array().unwrap();
        assert_eq!(c.len(), 2, "{out}");
        assert_eq!(c[0].as_str(), Some("z\"\""));
        assert_eq!(c[1].as_str(), Some(r#"a", "b"#));
        assert_eq!(parsed["d"].as_str(), Some("w\""));
        assert_eq!(parsed["e"].as_str(), Some("3001"));
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(interpolate("a = \"${PORT\"", &env).is_err());
        assert!(interpolate("a = \"${1X}\"", &env).is_err());
        assert!(interpolate("a = \"${X:+y}\"", &env).is_err());
    }
}
