//! `${VAR}`, `${VAR:-default}` and `${VAR:?message}` in pipeline files, replaced
//! from the environment before the TOML is parsed (as Vector does), so the
//! Canarytrace-style variables can drive a shipped pipeline. `$$` is a literal `$`.
//! Comment lines are left alone, so a commented-out `${X}` needs no variable.

/// Replaces every reference; returns all problems at once, each naming the
/// variable and the line.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<(usize, String)>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let line_no = index + 1;
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(body) = after.strip_prefix('{') {
                let Some(end) = body.find('}') else {
                    errors.push((line_no, "unterminated `${` (missing `}`)".to_owned()));
                    out.push('$');
                    rest = after;
                    continue;
                };
                let before = &line[..line.len() - rest.len() + pos];
                let expanded = expand(&body[..end], lookup).and_then(|(value, from_env)| {
                    if from_env {
                        fit_in_place(&value, string_at_end_of(before), &body[..end])
                    } else {
                        // A default is the file's own text, escaped as written.
                        Ok(value)
                    }
                });
                match expanded {
                    Ok(value) => out.push_str(&value),
                    Err(message) => errors.push((line_no, message)),
                }
                rest = &body[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Where a reference sits: outside any string, in a `"basic"` string, or in
/// a `'literal'` one (the part of its line before it tells).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InString {
    No,
    Basic,
    Literal,
}

fn string_at_end_of(before: &str) -> InString {
    let mut state = InString::No;
    let mut escaped = false;
    for c in before.chars() {
        state = match (state, c) {
            (InString::No, '"') => InString::Basic,
            (InString::No, '\'') => InString::Literal,
            (InString::Basic, '"') if !escaped => InString::No,
            (InString::Literal, '\'') => InString::No,
            (state, _) => state,
        };
        escaped = state == InString::Basic && c == '\\' && !escaped;
    }
    state
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
        InString::Basic => Ok(value.replace('\\', "\\\\").replace('"', "\\\"")),
        InString::Literal if value.contains('\'') => Err(format!(
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
            interpolate("a = \"s\" # ${APOSTROPHE}\nn = ${QUOTED}\n", &env).unwrap(),
            "a = \"s\" # it's\nn = a \"b\" \\t c\n"
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

    #[test]
    fn malformed_references_are_errors() {
        assert!(interpolate("a = \"${PORT\"", &env).is_err());
        assert!(interpolate("a = \"${1X}\"", &env).is_err());
        assert!(interpolate("a = \"${X:+y}\"", &env).is_err());
    }
}
