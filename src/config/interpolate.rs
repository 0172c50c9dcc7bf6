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
                match expand(&body[..end], lookup) {
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

fn expand(reference: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
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
        (Some(v), _) => Ok(v),
        (None, ":-") => Ok(arg.to_owned()),
        (None, ":?") => Err(format!("environment variable {name} is required: {arg}")),
        (None, _) => Err(format!(
            "environment variable {name} is not set (give a default with ${{{name}:-value}})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
