//! The manual against the repository: every relative link in README.md and
//! docs/*.md leads to a file that exists (and, with `#anchor`, to a heading
//! of it), and every key a component's config accepts — the fields of the
//! `#[serde(deny_unknown_fields)]` structs in src/ — is named, in backticks,
//! in docs/configuration*.md, with the default the code really gives it where the
//! table names one literal, and every key a table there names is one the code
//! takes (loaded alone, it is no "unknown field"). No dependencies: a small Rust lexer finds the
//! structs, so the check follows the code wherever its files move. Further down:
//! the TOML examples and pipelines/ against `rum-pipeline validate`, prod.toml's
//! variables against the manual, `rust-version` against Cargo.lock, the Node.js version against client-js's; at the end, what
//! the manual says a running pipeline shows (its metrics) against the real binary.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md, sorted.
fn manual() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

// ---- Markdown ----------------------------------------------------------------

/// The lines of a Markdown text outside fenced code blocks, with their numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(open), Some(m)) if open == m => fence = None,
            (None, None) => out.push((i + 1, line)),
            _ => {}
        }
    }
    out
}

/// The line split into (is_code, text) pieces by inline code spans.
fn code_spans(line: &str) -> Vec<(bool, &str)> {
    let mut pieces = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        let ticks = rest[start..].bytes().take_while(|b| *b == b'`').count();
        let fence = &rest[start..start + ticks];
        let after = &rest[start + ticks..];
        match after.find(fence) {
            Some(end) => {
                pieces.push((false, &rest[..start]));
                pieces.push((true, &after[..end]));
                rest = &after[end + ticks..];
            }
            None => break,
        }
    }
    pieces.push((false, rest));
    pieces
}

/// GitHub's anchor for a heading: the text lower-cased, punctuation dropped,
/// spaces turned into hyphens; repeated headings get `-1`, `-2`, ...
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let Some(title) = line
            .strip_prefix('#')
            .map(|l| l.trim_start_matches('#'))
            .and_then(|l| l.strip_prefix(' '))
        else {
            continue;
        };
        // The rendered text: code spans keep their content, links their text.
        let rendered: String = code_spans(title)
            .into_iter()
            .map(|(code, piece)| {
                if code {
                    piece.to_owned()
                } else {
                    strip_link_targets(piece)
                }
            })
            .collect();
        let slug: String = rendered
            .trim()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .flat_map(char::to_lowercase)
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 { slug } else { format!("{slug}-{n}") });
        *n += 1;
    }
    out
}

/// `[text](target)` → `text`.
fn strip_link_targets(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        let Some(end) = rest[at..].find(')') else {
            break;
        };
        out.push_str(&rest[..at]);
        rest = &rest[at + end + 1..];
    }
    out.push_str(rest);
    out.replace(['[', '*'], "")
}

/// The link targets of a Markdown text (inline links, images and reference
/// definitions; not what is inside code), with their line numbers.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (number, line) in prose_lines(text) {
        let trimmed = line.trim_start();
        // A reference definition: `[label]: target`.
        if let Some((label, target)) = trimmed
            .strip_prefix('[')
            .and_then(|rest| rest.split_once("]: "))
        {
            if !label.contains(['[', ']', '(']) {
                out.push((
                    number,
                    target.split_whitespace().next().unwrap_or("").into(),
                ));
            }
        }
        for (code, piece) in code_spans(line) {
            if code {
                continue;
            }
            let mut rest = piece;
            while let Some(at) = rest.find("](") {
                rest = &rest[at + 2..];
                let target = rest.trim_start_matches('<');
                let end = target
                    .find(|c: char| c == ')' || c == '>' || c.is_whitespace())
                    .unwrap_or(target.len());
                out.push((number, target[..end].to_owned()));
            }
        }
    }
    out
}

/// Problems with one link target found in `file`, if any.
fn check_link(file: &Path, target: &str) -> Option<String> {
    let scheme = target
        .split(['/', '#'])
        .next()
        .is_some_and(|first| first.contains(':'));
    if scheme || target.starts_with("//") {
        return None; // http:, https:, mailto: ... are not checked here
    }
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    let resolved = if path.is_empty() {
        file.to_path_buf()
    } else if let Some(from_root) = path.strip_prefix('/') {
        root().join(from_root)
    } else {
        file.parent().expect("a file's directory").join(path)
    };
    if !resolved.exists() {
        return Some(format!("`{target}`: {} does not exist", resolved.display()));
    }
    let anchor = anchor.filter(|a| !a.is_empty())?;
    if resolved.extension() != Some("md".as_ref()) {
        return None; // line anchors into source files are GitHub's business
    }
    let text = fs::read_to_string(&resolved).expect("linked Markdown file");
    let known = anchors(&text);
    (!known.contains(anchor)).then(|| {
        format!(
            "`{target}`: {} has no heading with the anchor `#{anchor}`",
            relative(&resolved)
        )
    })
}

#[test]
fn every_relative_link_in_the_manual_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in manual() {
        let text = fs::read_to_string(&file).expect("Markdown file");
        for (line, target) in links(&text) {
            checked += 1;
            if let Some(problem) = check_link(&file, &target) {
                broken.push(format!("{}:{line}: {problem}", relative(&file)));
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} links found: is the parser broken?"
    );
    assert!(
        broken.is_empty(),
        "{} broken link(s) in README.md / docs/:\n  {}",
        broken.len(),
        broken.join("\n  ")
    );
}

// ---- Config keys in the code -------------------------------------------------

/// A config key and where it is declared.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    name: String,
    item: String,
    file: String,
}

/// `src` with comments and the insides of string and char literals replaced by
/// spaces (newlines kept), byte for byte, so positions match the original.
fn mask(src: &str) -> Vec<u8> {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = src[i..].find('\n').map_or(b.len(), |n| i + n);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < b.len() && depth > 0 {
                    if b[j..].starts_with(b"/*") {
                        depth += 1;
                        j += 2;
                    } else if b[j..].starts_with(b"*/") {
                        depth -= 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                blank(&mut out, i, j);
                i = j;
            }
            b'r' if (i == 0 || !ident(b[i - 1]))
                && matches!(b.get(i + 1), Some(b'"' | b'#'))
                && b[i + 1..]
                    .iter()
                    .find(|c| **c != b'#')
                    .is_some_and(|c| *c == b'"') =>
            {
                let hashes = b[i + 1..].iter().take_while(|c| **c == b'#').count();
                let open = i + 1 + hashes + 1;
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let end = b[open..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map_or(b.len(), |n| open + n);
                blank(&mut out, open, end);
                i = end + close.len();
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                blank(&mut out, i + 1, j);
                i = j + 1;
            }
            b'\'' => {
                // A char literal ('x', '\n', '\u{..}', 'é') or a lifetime ('a).
                let end = if b.get(i + 1) == Some(&b'\\') {
                    // Skip the escaped character itself ('\'' is a quote).
                    b[i + 3..]
                        .iter()
                        .position(|c| *c == b'\'')
                        .map(|n| i + 3 + n)
                } else {
                    src[i + 1..]
                        .chars()
                        .next()
                        .map(|c| i + 1 + c.len_utf8())
                        .filter(|end| b.get(*end) == Some(&b'\''))
                };
                match end {
                    Some(end) => {
                        blank(&mut out, i + 1, end);
                        i = end + 1;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Index of the bracket closing the one at `open` (same kind), in masked text.
fn matching(m: &[u8], open: usize) -> usize {
    let (o, c) = match m[open] {
        b'(' => (b'(', b')'),
        b'[' => (b'[', b']'),
        b'{' => (b'{', b'}'),
        other => panic!("not an opening bracket: {}", other as char),
    };
    let mut depth = 0;
    for (i, &ch) in m.iter().enumerate().skip(open) {
        if ch == o {
            depth += 1;
        } else if ch == c {
            depth -= 1;
            if depth == 0 {
                return i;
            }
        }
    }
    m.len()
}

/// Splits `m[from..to]` at commas outside brackets (`<>` included, `->` not).
fn split_top(m: &[u8], from: usize, to: usize) -> Vec<(usize, usize)> {
    let (mut depth, mut start, mut parts) = (0i32, from, Vec::new());
    for i in from..to {
        match m[i] {
            b'(' | b'[' | b'{' | b'<' => depth += 1,
            b'>' if i > 0 && m[i - 1] == b'-' => {}
            b')' | b']' | b'}' | b'>' => depth -= 1,
            b',' if depth == 0 => {
                parts.push((start, i));
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push((start, to));
    parts
}

/// The `key = "value"` or `key(deserialize = "value")` argument of a serde
/// attribute item, e.g. `rename = "x"`.
fn serde_string(item: &str, key: &str) -> Option<String> {
    let rest = item.strip_prefix(key)?.trim_start();
    let rest = if let Some(inner) = rest.strip_prefix('(') {
        let at = inner.find("deserialize")?;
        inner[at + "deserialize".len()..].trim_start()
    } else {
        rest
    };
    let value = rest.strip_prefix('=')?.trim_start().strip_prefix('"')?;
    Some(value[..value.find('"')?].to_owned())
}

/// The items of every `#[serde(...)]` attribute in `attrs` (original text).
fn serde_items(attrs: &[String]) -> Vec<String> {
    let mut items = Vec::new();
    for attr in attrs {
        let inner = attr.trim_start_matches('#').trim();
        let inner = inner.trim_start_matches('[').trim_end_matches(']').trim();
        let Some(args) = inner
            .strip_prefix("serde")
            .map(str::trim_start)
            .and_then(|a| a.strip_prefix('('))
            .and_then(|a| a.strip_suffix(')'))
        else {
            continue;
        };
        let masked = mask(args);
        for (from, to) in split_top(&masked, 0, masked.len()) {
            items.push(args[from..to].trim().to_owned());
        }
    }
    items
}

fn rename_all(name: &str, rule: &str) -> String {
    let words: Vec<&str> = name.split('_').filter(|w| !w.is_empty()).collect();
    let capitalized = |w: &&str| {
        let mut c = w.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect::<String>())
            .unwrap_or_default()
    };
    match rule {
        "lowercase" => name.to_lowercase(),
        "UPPERCASE" => name.to_uppercase(),
        "PascalCase" => words.iter().map(capitalized).collect(),
        "camelCase" => words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if i == 0 {
                    w.to_string()
                } else {
                    capitalized(w)
                }
            })
            .collect(),
        "SCREAMING_SNAKE_CASE" => name.to_uppercase(),
        "kebab-case" => name.replace('_', "-"),
        "SCREAMING-KEBAB-CASE" => name.replace('_', "-").to_uppercase(),
        _ => name.to_owned(), // snake_case, or a rule this scanner does not know
    }
}

/// One identifier starting at `i` in masked text, and where it ends.
fn ident_at(m: &[u8], i: usize) -> Option<(String, usize)> {
    let len = m[i..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    (len > 0).then(|| {
        (
            String::from_utf8_lossy(&m[i..i + len]).into_owned(),
            i + len,
        )
    })
}

fn skip_space(m: &[u8], mut i: usize, to: usize) -> usize {
    while i < to && m[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Leading `#[...]` attributes (original text) of `m[from..to]`, and where the
/// rest starts.
fn attributes(src: &str, m: &[u8], from: usize, to: usize) -> (Vec<String>, usize) {
    let mut attrs = Vec::new();
    let mut i = skip_space(m, from, to);
    while i + 1 < to && m[i] == b'#' && m[i + 1] == b'[' {
        let close = matching(m, i + 1);
        attrs.push(src[i..=close].to_owned());
        i = skip_space(m, close + 1, to);
    }
    (attrs, i)
}

/// The deserialized names of the named fields in `m[from..to]` (a struct body).
fn fields(src: &str, m: &[u8], from: usize, to: usize, rule: Option<&str>) -> Vec<String> {
    let mut names = Vec::new();
    for (start, end) in split_top(m, from, to) {
        let (attrs, mut i) = attributes(src, m, start, end);
        if i >= end {
            continue;
        }
        if m[i..].starts_with(b"pub") {
            i = skip_space(m, i + 3, end);
            if m[i] == b'(' {
                i = skip_space(m, matching(m, i) + 1, end);
            }
        }
        let Some((mut name, after)) = ident_at(m, i) else {
            continue;
        };
        if name == "r" && m.get(after) == Some(&b'#') {
            name = ident_at(m, after + 1).map(|(n, _)| n).unwrap_or(name);
        }
        let items = serde_items(&attrs);
        let skipped = items
            .iter()
            .any(|it| matches!(it.as_str(), "flatten" | "skip" | "skip_deserializing"));
        if skipped {
            continue;
        }
        let renamed = items
            .iter()
            .find_map(|it| serde_string(it, "rename").filter(|_| !it.starts_with("rename_all")));
        names.push(renamed.unwrap_or_else(|| match rule {
            Some(rule) => rename_all(&name, rule),
            None => name,
        }));
    }
    names
}

/// Every field of every `deny_unknown_fields` struct (and of the struct
/// variants of such enums) in one Rust source text: (item name, key).
fn config_keys_in(src: &str) -> Vec<(String, String)> {
    let m = mask(src);
    let mut out = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    let mut i = 0;
    while i < m.len() {
        let c = m[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'#' && m.get(i + 1) == Some(&b'[') {
            let close = matching(&m, i + 1);
            pending.push(src[i..=close].to_owned());
            i = close + 1;
        } else if let Some((word, after)) = ident_at(&m, i).filter(|_| {
            i == 0 || {
                let p = m[i - 1];
                !(p.is_ascii_alphanumeric() || p == b'_')
            }
        }) {
            match word.as_str() {
                "pub" => {
                    i = skip_space(&m, after, m.len());
                    if m.get(i) == Some(&b'(') {
                        i = matching(&m, i) + 1;
                    }
                }
                "struct" | "enum" => {
                    let items = serde_items(&pending);
                    pending.clear();
                    let name_at = skip_space(&m, after, m.len());
                    let Some((name, mut j)) = ident_at(&m, name_at) else {
                        i = after;
                        continue;
                    };
                    while j < m.len() && !matches!(m[j], b'{' | b';' | b'(') {
                        j += 1;
                    }
                    if j >= m.len()
                        || m[j] != b'{'
                        || !items.iter().any(|it| it == "deny_unknown_fields")
                    {
                        i = j;
                        continue;
                    }
                    let close = matching(&m, j);
                    let rule = items.iter().find_map(|it| serde_string(it, "rename_all"));
                    if word == "struct" {
                        for key in fields(src, &m, j + 1, close, rule.as_deref()) {
                            out.push((name.clone(), key));
                        }
                    } else {
                        for (start, end) in split_top(&m, j + 1, close) {
                            let (_, k) = attributes(src, &m, start, end);
                            let Some((variant, after)) =
                                (k < end).then(|| ident_at(&m, k)).flatten()
                            else {
                                continue;
                            };
                            let open = skip_space(&m, after, end);
                            if open < end && m[open] == b'{' {
                                let inner = matching(&m, open);
                                for key in fields(src, &m, open + 1, inner, None) {
                                    out.push((format!("{name}::{variant}"), key));
                                }
                            }
                        }
                    }
                    i = close + 1;
                }
                _ => {
                    pending.clear();
                    i = after;
                }
            }
        } else {
            pending.clear();
            i += 1;
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn config_keys() -> Vec<Key> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    files.sort();
    let mut keys = Vec::new();
    for file in files {
        let src = fs::read_to_string(&file).expect("source file");
        for (item, name) in config_keys_in(&src) {
            keys.push(Key {
                name,
                item,
                file: relative(&file),
            });
        }
    }
    keys
}

/// Key names the configuration pages name in inline code: `max_events`, and
/// each part of a dotted path such as `batch.max_events` or `tls.crt_file`.
fn documented_keys() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in manual() {
        let is_config = file
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("configuration") && n.ends_with(".md"));
        if !is_config {
            continue;
        }
        let text = fs::read_to_string(&file).expect("configuration page");
        for (_, line) in prose_lines(&text) {
            for (code, span) in code_spans(line) {
                if !code {
                    continue;
                }
                let span = span.trim();
                let path_end = span
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '-'))
                    .unwrap_or(span.len());
                names.extend(span[..path_end].split('.').map(str::to_owned));
            }
        }
    }
    names
}

#[test]
fn every_config_key_in_the_code_is_in_the_configuration_reference() {
    let keys = config_keys();
    let items: BTreeSet<&str> = keys.iter().map(|k| k.item.as_str()).collect();
    assert!(
        items.len() >= 10 && keys.iter().any(|k| k.name == "shutdown_timeout_secs"),
        "the scan of src/ found only {items:?}: is the scanner broken?"
    );
    let documented = documented_keys();
    let missing: BTreeSet<String> = keys
        .iter()
        .filter(|k| !documented.contains(&k.name))
        .map(|k| format!("`{}` ({} in {})", k.name, k.item, k.file))
        .collect();
    assert!(
        missing.is_empty(),
        "{} config key(s) accepted by the code but not named (in backticks) in docs/configuration*.md:\n  {}",
        missing.len(),
        missing.into_iter().collect::<Vec<_>>().join("\n  ")
    );
}

// ---- The checkers themselves -------------------------------------------------

#[test]
fn the_key_scanner_reads_what_serde_reads() {
    let src = r####"
        /// A doc comment with { braces } and #[serde(deny_unknown_fields)] in it.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub struct Outer {
            /// "quoted" and 'x' in a comment
            #[serde(default = "default_x")]
            pub plain_key: Option<Vec<(u8, String)>>,
            #[serde(rename = "renamed")]
            pub(crate) original: u8,
            #[serde(flatten)]
            pub common: Common,
            #[serde(skip)]
            cache: (),
            r#type: String,
            map: BTreeMap<String, Vec<u8>>,
        }

        #[serde(rename_all = "snake_case")]
        enum NotChecked { A { inner: u8 } }

        const S: &str = r#"struct Fake { #[serde(deny_unknown_fields)] x: u8 }"#;
        fn f<'a>(c: char) -> bool { c == '{' || c == '\'' }

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        enum Tagged { Unit, Tuple(u8), Named { #[serde(rename(deserialize = "n"))] name: u8 } }

        #[serde(deny_unknown_fields)]
        struct Empty {}
    "####;
    let keys = config_keys_in(src);
    let expected: Vec<(String, String)> = [
        ("Outer", "plain-key"),
        ("Outer", "renamed"),
        ("Outer", "type"),
        ("Outer", "map"),
        ("Tagged::Named", "n"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(keys, expected);
}

#[test]
fn the_link_checker_finds_links_and_anchors_as_github_does() {
    let text = "# Sink `elasticsearch`\n\n## Options — all of them\n\n## Options — all of them\n\
                ```\n# not a heading [no](link.md)\n```\n\
                See [a](docs/x.md#sink-elasticsearch), `[code](not-a-link.md)`, ![i](img.png).\n\
                [ref]: other.md#options--all-of-them-1\n";
    let found: Vec<String> = links(text).into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        found,
        [
            "docs/x.md#sink-elasticsearch",
            "img.png",
            "other.md#options--all-of-them-1"
        ]
    );
    let anchors = anchors(text);
    for a in [
        "sink-elasticsearch",
        "options--all-of-them",
        "options--all-of-them-1",
    ] {
        assert!(anchors.contains(a), "{a} not in {anchors:?}");
    }
    assert!(!anchors.contains("not-a-heading-nolinkmd"));
    assert!(check_link(&root().join("README.md"), "docs/nope.md").is_some());
    assert!(check_link(&root().join("README.md"), "#no-such-heading").is_some());
    assert!(check_link(&root().join("README.md"), "https://example.com/x").is_none());
}

// ---- The toolchain a newcomer installs ----------------------------------------

/// The `rust-version` of a manifest, as (major, minor).
fn rust_version(manifest: &str) -> Option<(u32, u32)> {
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("rust-version"))?;
    let value = line.split('"').nth(1)?;
    let mut parts = value.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
}

/// README tells a newcomer which Rust to install: `rust-version` in Cargo.toml. A
/// dependency in Cargo.lock that needs a newer Rust makes that a lie, and the first
/// `cargo run` on the Rust README names fails with an error about a crate the
/// newcomer never chose (`time 0.3.55 ... requires rustc 1.88`).
#[test]
fn rust_version_is_what_the_locked_dependencies_need_and_readme_says() {
    let ours = rust_version(&fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml"))
        .expect("Cargo.toml sets rust-version");
    let readme = fs::read_to_string(root().join("README.md")).expect("README.md");
    assert!(
        readme.contains(&format!("Rust {}.{} or newer", ours.0, ours.1)),
        "README.md does not say `Rust {}.{} or newer` (Cargo.toml's rust-version)",
        ours.0,
        ours.1
    );

    // The unpacked sources of the registry crates this build used.
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let registries: Vec<PathBuf> = fs::read_dir(cargo_home.join("registry/src"))
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    let lock = fs::read_to_string(root().join("Cargo.lock")).expect("Cargo.lock");
    let (mut read, mut newer) = (0, Vec::new());
    for package in lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            package.lines().find_map(|l| {
                l.strip_prefix(key)?
                    .strip_prefix(" = \"")?
                    .strip_suffix('"')
            })
        };
        let (Some(name), Some(version)) = (field("name"), field("version")) else {
            continue;
        };
        if !field("source").is_some_and(|s| s.starts_with("registry+")) {
            continue;
        }
        let Some(manifest) = registries
            .iter()
            .map(|r| r.join(format!("{name}-{version}/Cargo.toml")))
            .find(|m| m.exists())
        else {
            continue;
        };
        read += 1;
        let text = fs::read_to_string(&manifest).expect("dependency manifest");
        if let Some(needed) = rust_version(&text).filter(|v| *v > ours) {
            newer.push(format!("{name} {version} needs {}.{}", needed.0, needed.1));
        }
    }
    assert!(
        read > 50,
        "only {read} dependency manifests found under {}: has the build run?",
        cargo_home.join("registry/src").display()
    );
    assert!(
        newer.is_empty(),
        "Cargo.toml says rust-version = \"{}.{}\", but Cargo.lock holds crates that need a newer Rust \
         (raise rust-version and README's `Rust X.Y or newer`):\n  {}",
        ours.0,
        ours.1,
        newer.join("\n  ")
    );
}

/// The Node.js the client's package asks for (`engines.node` in client-js/package.json) is
/// the one README tells a newcomer to bring and the one scripts/setup-packages.sh checks
/// for: Debian 12's apt-get gives an older one, so README is the only place that says so.
#[test]
fn node_version_is_what_the_client_asks_and_readme_says() {
    let package: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(root().join("client-js/package.json")).expect("package.json"),
    )
    .expect("client-js/package.json");
    let wanted = package["engines"]["node"]
        .as_str()
        .and_then(|v| v.strip_prefix(">="))
        .expect("client-js/package.json: engines.node is `>=X.Y`");
    let (major, minor) = wanted.split_once('.').expect("X.Y");
    let readme = fs::read_to_string(root().join("README.md")).expect("README.md");
    assert!(
        readme.contains(&format!("Node.js {wanted} or newer")),
        "README.md does not say `Node.js {wanted} or newer` (client-js/package.json's engines)"
    );
    let setup =
        fs::read_to_string(root().join("scripts/setup-packages.sh")).expect("setup-packages.sh");
    assert!(
        setup.contains(&format!("a > {major} || (a === {major} && b >= {minor})")),
        "scripts/setup-packages.sh does not check for node {wanted}"
    );
}

// ---- Examples in the manual, and the shipped pipelines ----------------------------

/// The ```toml blocks of a Markdown text, with the line each starts on.
fn toml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match open.as_mut() {
            None if trimmed.starts_with("```toml") => open = Some((i + 2, String::new())),
            Some(_) if trimmed.starts_with("```") => blocks.extend(open.take()),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// What a `${VAR}` in an example stands for when the test validates it.
const EXAMPLE_ENV: &[(&str, &str)] = &[
    ("ELASTIC_CLUSTER", "http://127.0.0.1:9200"),
    ("ES_PASSWORD", "changeme"),
    ("FARO_API_KEY", "secret"),
    ("ENVIRONMENT", "production"),
    ("LABELS", "env=production,team=web"),
];

/// `rum-pipeline validate` on `text`: whether it passed, and its stderr.
fn validate(text: &str, name: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("rum-docs-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("temp dir");
    // Paths the examples name on a production machine, pointed at what exists here.
    let text = text
        .replace(
            "/var/lib/GeoIP/GeoLite2-City.mmdb",
            &root()
                .join("testdata/geoip/GeoIP2-City-Test.mmdb")
                .display()
                .to_string(),
        )
        .replace(
            "/var/lib/GeoIP/GeoLite2-ASN.mmdb",
            &root()
                .join("testdata/geoip/GeoLite2-ASN-Test.mmdb")
                .display()
                .to_string(),
        )
        .replace("/var/lib/rum-pipeline/", &format!("{}/", dir.display()));
    let file = dir.join(name);
    fs::write(&file, text).expect("example file");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rum-pipeline"))
        .args(["validate", "--config"])
        .arg(&file)
        .env_clear()
        .envs(EXAMPLE_ENV.iter().copied())
        .output()
        .expect("run rum-pipeline validate");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The components an example's `inputs` name but leave out (it shows one part of a
/// pipeline), as TOML: a `rum_beacon` source for `id`, a `route` for `id.output`.
fn stubs_for(stderr: &str) -> String {
    let mut sources = BTreeSet::new();
    let mut routes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in stderr.lines() {
        let Some(input) = line
            .split("input `")
            .nth(1)
            .and_then(|rest| rest.strip_suffix("` names no component"))
        else {
            continue;
        };
        match input.split_once('.') {
            Some((id, output)) => {
                routes.entry(id.into()).or_default().insert(output.into());
            }
            None => {
                sources.insert(input.to_owned());
            }
        }
    }
    let mut toml = String::new();
    if !routes.is_empty() {
        sources.insert("stub_source".into());
    }
    for (n, id) in sources.iter().enumerate() {
        toml += &format!(
            "\n[sources.{id}]\ntype = \"rum_beacon\"\naddress = \"127.0.0.1:{}\"\n",
            39100 + n
        );
    }
    for (id, outputs) in &routes {
        toml += &format!("\n[transforms.{id}]\ntype = \"route\"\ninputs = [\"stub_source\"]\n");
        for output in outputs {
            toml += &format!("route.{output} = {{ field = \"rum.type\", equals = \"error\" }}\n");
        }
    }
    toml
}

/// Every ```toml example in README.md and docs/ is accepted by `rum-pipeline validate`:
/// a whole pipeline as it is, a part of one with stubs for the components its `inputs`
/// name and it leaves out, a list of conditions each as a `filter`'s `condition`. A block
/// of bare keys (one component's keys, shown without their table) cannot stand alone and
/// is not checked. The pipelines under pipelines/ validate as they are.
#[test]
fn every_toml_example_in_the_manual_and_every_shipped_pipeline_validates() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in manual() {
        let text = fs::read_to_string(&file).expect("Markdown file");
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("doc");
        for (line, block) in toml_blocks(&text) {
            let at = format!("{}:{line}", relative(&file));
            let name = format!("{stem}-{line}.toml");
            let meaningful: Vec<&str> = block
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect();
            if !meaningful.is_empty() && meaningful.iter().all(|l| l.starts_with('{')) {
                for condition in meaningful {
                    checked += 1;
                    let pipeline = format!(
                        "[sources.b]\ntype = \"rum_beacon\"\naddress = \"127.0.0.1:39099\"\n\
                         [transforms.f]\ntype = \"filter\"\ninputs = [\"b\"]\ncondition = {condition}\n\
                         [sinks.o]\ntype = \"blackhole\"\ninputs = [\"f\"]\n"
                    );
                    let (ok, stderr) = validate(&pipeline, &name);
                    if !ok {
                        failures.push(format!("{at}: condition {condition}:\n{stderr}"));
                    }
                }
                continue;
            }
            if !meaningful.first().is_some_and(|l| l.starts_with('[')) {
                continue; // bare keys of one component
            }
            checked += 1;
            // Global keys alone (`[api]`, `[http]`): a pipeline needs components around them.
            let block = if ["[sources.", "[transforms.", "[sinks."]
                .iter()
                .any(|table| block.contains(table))
            {
                block
            } else {
                format!(
                    "{block}\n[sources.stub_source]\ntype = \"rum_beacon\"\naddress = \"127.0.0.1:39098\"\n\
                     [sinks.stub_sink]\ntype = \"blackhole\"\ninputs = [\"stub_source\"]\n"
                )
            };
            let (mut ok, mut stderr) = validate(&block, &name);
            if !ok {
                let stubs = stubs_for(&stderr);
                if !stubs.is_empty() {
                    (ok, stderr) = validate(&format!("{block}{stubs}"), &name);
                }
            }
            if !ok {
                failures.push(format!("{at}:\n{stderr}"));
            }
        }
    }
    let mut pipelines = Vec::new();
    for dir in ["pipelines", "pipelines/examples"] {
        for entry in fs::read_dir(root().join(dir)).expect("pipelines/") {
            let path = entry.expect("pipelines/ entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                pipelines.push(path);
            }
        }
    }
    pipelines.sort();
    for path in &pipelines {
        checked += 1;
        let text = fs::read_to_string(path).expect("pipeline");
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        let (ok, stderr) = validate(&text, name);
        if !ok {
            failures.push(format!("{}:\n{stderr}", relative(path)));
        }
    }
    let _ =
        fs::remove_dir_all(std::env::temp_dir().join(format!("rum-docs-{}", std::process::id())));
    assert!(
        checked > 25 && pipelines.len() >= 3,
        "only {checked} examples found: is the extraction broken?"
    );
    assert!(
        failures.is_empty(),
        "{} example(s) that `rum-pipeline validate` refuses:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The `${VAR:-default}` of the shipped production pipeline are the container's settings
/// (the Canarytrace variables and ours): every one is named in the manual, and every row
/// of a table that starts with the variable gives the default prod.toml really uses.
#[test]
fn every_variable_of_prod_toml_is_documented_with_its_default() {
    let prod = fs::read_to_string(root().join("pipelines/prod.toml")).expect("prod.toml");
    let mut variables: BTreeMap<String, Option<String>> = BTreeMap::new();
    for line in prod.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(at) = rest.find("${") {
            let Some(end) = rest[at..].find('}') else {
                break;
            };
            let inner = &rest[at + 2..at + end];
            rest = &rest[at + end + 1..];
            let name: String = inner
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let default = inner[name.len()..].strip_prefix(":-").map(str::to_owned);
            variables.insert(name, default);
        }
    }
    assert!(
        variables.len() >= 10,
        "only {variables:?} found in prod.toml"
    );
    let manual: Vec<(String, String)> = manual()
        .iter()
        .map(|f| (relative(f), fs::read_to_string(f).expect("Markdown file")))
        .collect();
    let bounded = |text: &str, word: &str| {
        text.match_indices(word).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            let after = text[at + word.len()..].chars().next();
            let outside = |c: Option<char>| !c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            outside(before) && outside(after)
        })
    };
    let mut problems = Vec::new();
    for (name, default) in &variables {
        let quoted = format!("`{name}`");
        if !manual.iter().any(|(_, text)| text.contains(&quoted)) {
            problems.push(format!("{quoted} is not named in README.md or docs/"));
            continue;
        }
        let Some(default) = default.as_deref().filter(|d| !d.is_empty()) else {
            continue;
        };
        for (file, text) in &manual {
            for (number, row) in text.lines().enumerate() {
                let is_row = row
                    .strip_prefix("| ")
                    .is_some_and(|r| r.starts_with(&quoted));
                if is_row && !bounded(row, default) {
                    problems.push(format!(
                        "{file}:{}: the row of {quoted} does not give prod.toml's default `{default}`",
                        number + 1
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "pipelines/prod.toml's variables and the manual disagree:\n  {}",
        problems.join("\n  ")
    );
}

// ---- Defaults in the configuration reference -----------------------------------

/// `{:#?}` of a config struct as `path → value`: `max_events: 500` at the top,
/// `batch.max_events` inside a nested struct; a list, `Some(..)` or tuple value spread
/// over several lines is joined onto one (`["*"]`).
fn debug_fields(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut structs: Vec<Option<String>> = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let indent = line.len() - line.trim_start().len();
        let t = line.trim().trim_end_matches(',');
        if t.starts_with('}') {
            structs.pop();
            continue;
        }
        let field = t.split_once(": ").filter(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        let Some((name, value)) = field else {
            if t.ends_with('{') {
                structs.push(None);
            }
            continue;
        };
        let path: Vec<&str> = structs
            .iter()
            .flatten()
            .map(String::as_str)
            .chain([name])
            .collect();
        let path = path.join(".");
        // `Some(` around a struct: its fields are the option's keys
        // (`rate_limit.max_clients`); the `)` after its `}` is skipped.
        let some_struct = value == "Some(" && lines.peek().is_some_and(|l| l.ends_with('{'));
        if some_struct {
            lines.next();
        }
        if value.ends_with('{') || some_struct {
            structs.push(Some(name.to_owned()));
        } else if value.ends_with('[') || value.ends_with('(') {
            let mut items = Vec::new();
            for inner in lines.by_ref() {
                let inner_indent = inner.len() - inner.trim_start().len();
                if inner_indent == indent {
                    break;
                }
                items.push(inner.trim().trim_end_matches(',').to_owned());
            }
            let joined = items.join(",");
            out.insert(
                path,
                if value.ends_with('[') {
                    format!("[{joined}]")
                } else {
                    format!("{value}{joined})")
                },
            );
        } else {
            out.insert(path, value.to_owned());
        }
    }
    out
}

/// Whether the code's default (`{:?}` text) is what the manual's literal says.
fn same_default(code: &str, doc: &toml::Value) -> bool {
    let number = |s: &str| s.parse::<f64>().ok();
    // A collection behind a newtype (`LabelSet([])`) is as empty as `{}`, `[]` or `""`.
    let empty_newtype = code.ends_with("([])") || code.ends_with("({})");
    let empty_doc = match doc {
        toml::Value::String(s) => s.is_empty(),
        toml::Value::Array(a) => a.is_empty(),
        toml::Value::Table(t) => t.is_empty(),
        _ => false,
    };
    if empty_newtype || empty_doc {
        return empty_newtype && empty_doc || code == "[]" || code == "{}" || code == "\"\"";
    }
    match doc {
        toml::Value::Integer(i) => number(code) == Some(*i as f64),
        toml::Value::Float(f) => number(code) == Some(*f),
        toml::Value::Boolean(b) => code == b.to_string(),
        toml::Value::String(s) => {
            if let Some(bytes) = number(code) {
                rum_pipeline::config::byte_size::parse(s).is_ok_and(|n| n as f64 == bytes)
            } else if let Some(quoted) = code.strip_prefix('"').and_then(|c| c.strip_suffix('"')) {
                quoted == s
            } else {
                // An enum's variant: `PerEvent` for "per_event".
                code.to_lowercase() == s.replace('_', "").to_lowercase()
            }
        }
        toml::Value::Array(items) => {
            let items: Vec<String> = items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => format!("{s:?}"),
                    other => other.to_string(),
                })
                .collect();
            code == format!("[{}]", items.join(","))
        }
        toml::Value::Table(t) => t.is_empty() && code == "{}",
        toml::Value::Datetime(_) => false,
    }
}

/// A row of a `| key | default | meaning |` table of the configuration pages.
struct KeyRow {
    /// `docs/configuration-sinks.md:42`.
    at: String,
    /// The component type a `## Source/Transform/Sink `type`` heading names,
    /// `http` for the keys every HTTP source shares, `downstream` for those every
    /// transform and sink shares, `global` for the global keys.
    section: String,
    /// The key cell as written.
    key: String,
    /// The default cell as written.
    default: String,
}

/// The rows of the key tables (first header cell `key`; not the tables of
/// fields a transform writes) in the sections `KeyRow::section` names.
fn key_rows() -> Vec<KeyRow> {
    let mut rows = Vec::new();
    for file in manual() {
        let name = relative(&file);
        if !name.starts_with("docs/configuration") {
            continue;
        }
        let text = fs::read_to_string(&file).expect("configuration page");
        let mut section = String::new();
        let mut key_table = false;
        let mut previous = "";
        for (number, line) in prose_lines(&text) {
            let before = std::mem::replace(&mut previous, line);
            if let Some(title) = line.strip_prefix("## ") {
                section = if title.starts_with("Keys of every HTTP source") {
                    "http".into()
                } else if title.starts_with("Global keys") {
                    "global".into()
                } else if title.starts_with("Keys of every transform and sink") {
                    "downstream".into()
                } else if ["Source `", "Transform `", "Sink `"]
                    .iter()
                    .any(|p| title.starts_with(p))
                {
                    title.split('`').nth(1).unwrap_or_default().to_owned()
                } else {
                    String::new()
                };
                continue;
            }
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() < 4 || !cells[0].is_empty() {
                continue;
            }
            if cells[1].starts_with("---") {
                // The line before the separator is the header.
                key_table = before.split('|').nth(1).map(str::trim) == Some("key");
                continue;
            }
            if section.is_empty() || !key_table {
                continue;
            }
            rows.push(KeyRow {
                at: format!("{name}:{number}"),
                section: section.clone(),
                key: cells[1].to_owned(),
                default: cells[2].to_owned(),
            });
        }
    }
    rows
}

/// The rows of [`key_rows`] whose key and default are one literal each
/// (`none`, `— (required)`, `see below`, two values are left out).
fn documented_defaults() -> Vec<(String, String, String, toml::Value)> {
    let literal = |cell: &str| {
        let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
        (!inner.contains('`')).then(|| inner.to_owned())
    };
    key_rows()
        .into_iter()
        .filter_map(|row| {
            let (key, default) = (literal(&row.key)?, literal(&row.default)?);
            let mut parsed = format!("v = {default}").parse::<toml::Table>().ok()?;
            Some((row.at, row.section, key, parsed.remove("v")?))
        })
        .collect()
}

/// The defaults the code gives every component type, and the global keys, as
/// `section → path → value`: a minimal pipeline of each type, loaded and printed.
fn code_defaults() -> BTreeMap<String, BTreeMap<String, String>> {
    use rum_pipeline::config::load_str;
    let source = "[sources.s]\ntype = \"rum_beacon\"\naddress = \"127.0.0.1:39097\"\n";
    let sink = "[sinks.o]\ntype = \"blackhole\"\ninputs = [\"t\"]\n";
    let geoip = root().join("testdata/geoip/GeoIP2-City-Test.mmdb");
    let transforms = [
        ("user_agent", String::new()),
        (
            "geoip",
            format!("database = {:?}\n", geoip.display().to_string()),
        ),
        ("scrub_url", String::new()),
        ("sample", "rate = 0.5\n".to_owned()),
        ("labels", String::new()),
    ];
    let mut out = BTreeMap::new();
    let loaded = |text: &str| {
        load_str("defaults.toml", text, &|_| None)
            .unwrap_or_else(|e| panic!("{text}: {e:?}"))
            .config
    };
    for kind in rum_pipeline::sources::SourceConfig::TYPES {
        let config = loaded(&format!(
            "[sources.s]\ntype = \"{kind}\"\nrate_limit = {{ requests_per_second = 1 }}\n\
             [sinks.o]\ntype = \"blackhole\"\ninputs = [\"s\"]\n"
        ));
        out.insert(
            kind.to_string(),
            debug_fields(&format!("{:#?}", config.sources[0].config)),
        );
        out.insert(
            "http".into(),
            debug_fields(&format!("{:#?}", config.sources[0].http)),
        );
        out.insert(
            "global".into(),
            debug_fields(&format!("{:#?}", config.global)),
        );
    }
    for (kind, keys) in transforms {
        let config = loaded(&format!(
            "{source}[transforms.t]\ntype = \"{kind}\"\ninputs = [\"s\"]\n{keys}{sink}"
        ));
        out.insert(
            kind.to_owned(),
            debug_fields(&format!("{:#?}", config.transforms[0].config)),
        );
    }
    for (kind, keys) in [
        ("stdout", ""),
        ("elasticsearch", "endpoints = \"http://127.0.0.1:9200\"\n"),
        // A budget and an SLO, for their keys' defaults (`budgets.statistic`).
        (
            "prometheus",
            "budgets = { LCP = { threshold = 2500 } }\n\
             slos.x = { vital = \"LCP\", threshold = 2500, target = 0.5 }\n",
        ),
    ] {
        let config = loaded(&format!(
            "{source}[sinks.k]\ntype = \"{kind}\"\ninputs = [\"s\"]\n{keys}"
        ));
        out.insert(
            kind.to_owned(),
            debug_fields(&format!("{:#?}", config.sinks[0].config)),
        );
    }
    out
}

/// Every default the configuration pages give as one literal is the code's default.
#[test]
fn every_default_in_the_configuration_reference_is_the_codes() {
    let code = code_defaults();
    let rows = documented_defaults();
    let mut compared = 0;
    let mut wrong = Vec::new();
    for (at, section, key, doc) in &rows {
        // The budget and SLO tables of the prometheus sink name their keys bare.
        let Some(value) = code.get(section).and_then(|fields| {
            ["", "budgets.", "slos."]
                .iter()
                .find_map(|prefix| fields.get(&format!("{prefix}{key}")))
        }) else {
            continue;
        };
        // `true` is the manual's name for `"truncate"` (both are accepted).
        if (section.as_str(), key.as_str(), value.as_str()) == ("geoip", "anonymize_ip", "Truncate")
            && *doc == toml::Value::Boolean(true)
        {
            compared += 1;
            continue;
        }
        compared += 1;
        if !same_default(value, doc) {
            wrong.push(format!(
                "{at}: [{section}] `{key}`: the manual says `{doc}`, the code `{value}`"
            ));
        }
    }
    eprintln!("{compared} of {} documented defaults compared", rows.len());
    assert!(
        compared > 60,
        "only {compared} of {} documented defaults matched a key of the code: is a parser broken?\n{code:#?}",
        rows.len()
    );
    assert!(
        wrong.is_empty(),
        "{} default(s) in docs/configuration*.md differ from the code:\n  {}",
        wrong.len(),
        wrong.join("\n  ")
    );
}

// ---- Keys in the configuration reference ---------------------------------------

/// Whether the code takes `key` (a dotted path) in `section`: a pipeline with
/// only that key set (to a value of the wrong type, which is a different
/// error) is loaded, and serde must not call it an unknown field.
fn accepts(section: &str, key: &str) -> Result<(), String> {
    use rum_pipeline::config::load_str;
    let source = |kind: &str, extra: &str| {
        format!(
            "[sources.s]\ntype = \"{kind}\"\n{extra}\n[sinks.o]\ntype = \"blackhole\"\ninputs = [\"s\"]\n"
        )
    };
    let setting = format!("{key} = -1");
    let text = if section == "global" {
        format!("{setting}\n{}", source("rum_beacon", ""))
    } else if section == "http" {
        source("rum_beacon", &setting)
    } else if rum_pipeline::sources::SourceConfig::TYPES.contains(&section) {
        source(section, &setting)
    } else if section == "downstream" {
        format!(
            "{}[sinks.t]\ntype = \"stdout\"\ninputs = [\"s\"]\n{setting}\n",
            source("rum_beacon", "")
        )
    } else {
        let downstream = |kind: &str| {
            format!(
                "{}[{kind}.t]\ntype = \"{section}\"\ninputs = [\"s\"]\n{setting}\n",
                source("rum_beacon", "")
            )
        };
        if rum_pipeline::sinks::SinkConfig::TYPES.contains(&section) {
            downstream("sinks")
        } else {
            downstream("transforms")
        }
    };
    match load_str("keys.toml", &text, &|_| None) {
        Ok(_) => Ok(()),
        Err(errors) => match errors.iter().find(|e| e.message.contains("unknown field")) {
            Some(unknown) => Err(unknown.to_string()),
            None => Ok(()),
        },
    }
}

/// Every key a table of the configuration pages names is one the code takes:
/// a key copied from the manual never meets "unknown field".
#[test]
fn every_key_in_the_configuration_reference_is_accepted_by_the_code() {
    let mut checked = 0;
    let mut refused = Vec::new();
    for row in key_rows() {
        // `buffer.max_events`, `buffer.max_bytes` in one cell; `route.<name>`
        // stands for any name.
        let keys: Vec<&str> = code_spans(&row.key)
            .into_iter()
            .filter(|(code, _)| *code)
            .map(|(_, key)| key)
            .filter(|key| !key.contains('<'))
            .collect();
        for key in keys {
            checked += 1;
            // The budget and SLO tables of the prometheus sink name their keys bare.
            let nested = if row.section == "prometheus" {
                &["", "budgets.LCP.", "slos.x."][..]
            } else {
                &[""][..]
            };
            let verdicts: Vec<Result<(), String>> = nested
                .iter()
                .map(|prefix| accepts(&row.section, &format!("{prefix}{key}")))
                .collect();
            if let [Err(problem), ..] = verdicts.as_slice() {
                if verdicts.iter().all(Result::is_err) {
                    refused.push(format!("{}: [{}] `{key}`: {problem}", row.at, row.section));
                }
            }
        }
    }
    assert!(
        checked > 120,
        "only {checked} documented keys found: is the row parser broken?"
    );
    assert!(
        refused.is_empty(),
        "{} key(s) in docs/configuration*.md that the code refuses:\n  {}",
        refused.len(),
        refused.join("\n  ")
    );
}

// ---- What the manual says the running binary shows -------------------------------

mod common;

/// The inline code spans of a Markdown text outside fenced blocks.
fn inline_code(text: &str) -> Vec<String> {
    prose_lines(text)
        .into_iter()
        .flat_map(|(_, line)| code_spans(line))
        .filter(|(code, _)| *code)
        .map(|(_, span)| span.to_owned())
        .collect()
}

/// A span that names a metric: `name` or `name{labels}`, where the name ends
/// as a counter or histogram does, carries labels, or starts as the listener's
/// and the buffers' gauges do. Config keys (`access_log`) and label names
/// (`component_id`) are none of these.
fn metric_reference(span: &str) -> Option<(String, Option<String>)> {
    let (name, labels) = match span.split_once('{') {
        Some((name, rest)) => (name, Some(rest.strip_suffix('}')?.to_owned())),
        None => (span, None),
    };
    let is_name = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.contains('_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let looks_like_metric = name.ends_with("_total")
        || name.ends_with("_seconds")
        || labels.is_some()
        || ["buffer_", "http_"].iter().any(|p| name.starts_with(p));
    (is_name && looks_like_metric).then(|| (name.to_owned(), labels))
}

/// The label names and values a reference gives: `{error_type,stage}`,
/// `{intentional="true"}`, `{state="idle"|"idle_at_cap"}`,
/// `{component_id="x",error_type="y"}` (values only when quoted).
fn referenced_labels(labels: &str) -> Vec<(String, Vec<String>)> {
    labels
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty() && !part.starts_with('…'))
        .map(|part| match part.split_once('=') {
            Some((name, values)) => (
                name.trim().to_owned(),
                values
                    .split('|')
                    .map(|v| v.trim().trim_matches('"').to_owned())
                    .collect(),
            ),
            None => (part.to_owned(), Vec::new()),
        })
        .collect()
}

/// A self-signed certificate for 127.0.0.1, as PEM files in `dir`.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (crt_file, key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
    fs::write(&crt_file, cert.pem()).unwrap();
    fs::write(&key_file, key.serialize_pem()).unwrap();
    (crt_file, key_file)
}

/// A pipeline with every source (behind TLS), every transform that keeps
/// metrics of its own and every sink: what a /metrics page can show.
fn every_component(crt: &Path, key: &Path) -> String {
    let tls = format!(
        "address = \"127.0.0.1:0\"\ntls = {{ crt_file = {:?}, key_file = {:?} }}\n",
        crt.display().to_string(),
        key.display().to_string()
    );
    let geoip = root().join("testdata/geoip/GeoIP2-City-Test.mmdb");
    format!(
        "stats_interval_secs = 0\n\
         [sources.beacons]\ntype = \"rum_beacon\"\n{tls}\
         [sources.reports]\ntype = \"csp\"\n{tls}\
         [sources.vitals]\ntype = \"web_vitals\"\n{tls}\
         [sources.faro]\ntype = \"faro\"\n{tls}\
         [sources.apm]\ntype = \"elastic_apm_rum\"\n{tls}\
         [transforms.ua]\ntype = \"user_agent\"\n\
         inputs = [\"beacons\", \"reports\", \"vitals\", \"faro\", \"apm\"]\n\
         [transforms.geo]\ntype = \"geoip\"\ninputs = [\"ua\"]\ndatabase = {:?}\n\
         [transforms.scrub]\ntype = \"scrub_url\"\ninputs = [\"geo\"]\n\
         [transforms.sampled]\ntype = \"sample\"\ninputs = [\"scrub\"]\nrate = 1.0\n\
         [sinks.console]\ntype = \"stdout\"\ninputs = [\"sampled\"]\n\
         [sinks.nowhere]\ntype = \"blackhole\"\ninputs = [\"sampled\"]\n\
         [sinks.rum_metrics]\ntype = \"prometheus\"\ninputs = [\"sampled\"]\n\
         [sinks.es]\ntype = \"elasticsearch\"\ninputs = [\"sampled\"]\n\
         endpoints = \"http://127.0.0.1:9\"\nhealthcheck = false\n",
        geoip.display().to_string()
    )
}

/// The metric families a Prometheus text page declares.
fn families(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Every metric docs/monitoring.md names is on the /metrics page of a running
/// pipeline, with the labels (and label values) it shows; every metric family a
/// pipeline of every component type shows, on /metrics and /metrics/rum, is
/// named somewhere in the manual, so a dashboard built from the manual finds
/// what it looks for and nothing the binary exports goes unexplained.
#[tokio::test]
async fn the_metrics_the_manual_names_are_the_ones_the_binary_serves() {
    let certs = tempfile::tempdir().unwrap();
    let (crt, key) = self_signed(certs.path());
    let pipeline = common::Pipeline::start(&every_component(&crt, &key));
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    // One request, so that http_requests_total has a series.
    let answer = client
        .post(pipeline.url("/rum"))
        .header("content-type", "text/plain")
        .body(r#"{"v":1,"events":[{"type":"custom"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    let get = |path: &'static str| {
        let request = client.get(pipeline.url(path)).send();
        async move { request.await.unwrap().text().await.unwrap() }
    };
    let page = get("/metrics").await;
    let rum_page = get("/metrics/rum").await;
    let on_page = families(&page);

    let monitoring = fs::read_to_string(root().join("docs/monitoring.md")).unwrap();
    let mut problems = Vec::new();
    let mut named = 0;
    for span in inline_code(&monitoring) {
        let Some((name, labels)) = metric_reference(&span) else {
            continue;
        };
        if name.starts_with("rum_") && !name.starts_with("rum_beacon_") {
            continue; // /metrics/rum, checked below
        }
        named += 1;
        if !on_page.contains(&name) {
            problems.push(format!("`{span}`: no family {name} on /metrics"));
            continue;
        }
        let series: Vec<&str> = page
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .collect();
        for (label, values) in referenced_labels(labels.as_deref().unwrap_or("")) {
            if !series.iter().any(|s| s.contains(&format!("{label}=\""))) {
                problems.push(format!("`{span}`: no series of {name} has a label {label}"));
            }
            for value in values {
                if !series
                    .iter()
                    .any(|s| s.contains(&format!("{label}=\"{value}\"")))
                {
                    problems.push(format!(
                        "`{span}`: no series of {name} has {label}=\"{value}\""
                    ));
                }
            }
        }
    }
    assert!(
        named > 20,
        "only {named} metrics found in monitoring.md: is the parser broken?"
    );

    let mut in_manual = BTreeSet::new();
    for file in manual() {
        for span in inline_code(&fs::read_to_string(&file).unwrap()) {
            if let Some((name, _)) = metric_reference(&span) {
                in_manual.insert(name);
            }
            // A family named through its histogram suffixes (`_inp_seconds`).
            in_manual.insert(span);
        }
    }
    let slo = fs::read_to_string(root().join("docs/slo.md")).unwrap();
    for family in families(&page).iter().chain(families(&rum_page).iter()) {
        let histogram_part = family
            .strip_prefix("rum_web_vital")
            .is_some_and(|rest| slo.contains(&format!("`{rest}`")));
        if !in_manual.contains(family) && !histogram_part {
            problems.push(format!(
                "{family} is served but named nowhere in the manual"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}\n/metrics:\n{page}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// The document fields an inline code span of the manual names: `url.full`,
/// `rum.device.*`, `service.name/version/environment` (one prefix, several
/// last parts), `event.kind = "event"` (the field before its value).
fn named_fields(span: &str) -> Vec<String> {
    let field = span.split([' ', '=']).next().unwrap_or_default();
    let Some((parent, last)) = field.rsplit_once('.') else {
        // `@timestamp`; a bare word (`v`, `events`) is a beacon key.
        return [field]
            .iter()
            .filter(|f| f.starts_with('@'))
            .map(|f| f.to_string())
            .collect();
    };
    last.split('/')
        .map(|part| format!("{parent}.{part}"))
        .collect()
}

/// The leaf paths of a document; an object the manual names whole (a
/// `flattened` field such as `rum.ua_hints`) counts as one leaf.
fn leaf_paths(value: &serde_json::Value, at: &str, out: &mut Vec<String>) {
    match value.as_object() {
        Some(object) if !object.is_empty() => {
            for (key, child) in object {
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                leaf_paths(child, &path, out);
            }
        }
        _ => out.push(at.to_owned()),
    }
}

/// The example beacon of docs/beacon-format.md, posted to the real binary: every
/// field of the documents the stdout sink writes for it is one the page names
/// (itself, as `prefix.*`, or a parent object it names whole), so what a user
/// reads there is what lands in the index.
#[tokio::test]
async fn every_field_of_the_example_beacons_documents_is_named_on_its_page() {
    let page = fs::read_to_string(root().join("docs/beacon-format.md")).unwrap();
    let example = &page[page.find("```json\n").expect("the example") + 8..];
    let example = &example[..example.find("```").unwrap()];
    let named: BTreeSet<String> = inline_code(&page)
        .iter()
        .flat_map(|span| named_fields(span))
        .collect();
    let pipeline = common::Pipeline::start(
        "stats_interval_secs = 0\n\
         [sources.beacons]\ntype = \"rum_beacon\"\naddress = \"127.0.0.1:0\"\n\
         [sinks.out]\ntype = \"stdout\"\ninputs = [\"beacons\"]\n",
    );
    let answer = common::client()
        .post(pipeline.url("/rum"))
        .header("content-type", "application/json")
        .body(example.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204, "{}", answer.text().await.unwrap());
    let documents = pipeline.next_documents(3, std::time::Duration::from_secs(10));
    let mut unnamed = BTreeSet::new();
    for document in &documents {
        let mut paths = Vec::new();
        leaf_paths(document, "", &mut paths);
        for path in paths {
            let mut ancestors = path.match_indices('.').map(|(i, _)| &path[..i]);
            let covered = named.contains(&path)
                || ancestors.any(|a| {
                    named.contains(&format!("{a}.*")) || (a.contains('.') && named.contains(a))
                });
            if !covered {
                unnamed.insert(path);
            }
        }
    }
    assert!(
        unnamed.is_empty(),
        "fields of the example beacon's documents that docs/beacon-format.md does not name: \
         {unnamed:?}\n{documents:#?}"
    );
}

/// The `error_type` values the manual gives: the backticked words of a table
/// column headed by `error_type` (or `component_errors_total{error_type}`), and
/// every `error_type="..."` (`"a"|"b"` alternatives included) in its text.
fn documented_error_types(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let cells = |line: &str| -> Vec<String> {
        let mut cells = Vec::new();
        let mut cell = String::new();
        let mut in_code = false;
        for c in line.trim().trim_matches('|').chars() {
            match c {
                '`' => in_code = !in_code,
                '|' if !in_code => {
                    cells.push(std::mem::take(&mut cell));
                    continue;
                }
                _ => {}
            }
            cell.push(c);
        }
        cells.push(cell);
        cells
    };
    let mut column = None;
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with('|') {
            column = None;
        } else if lines.get(i + 1).is_some_and(|next| next.starts_with("|--")) {
            column = cells(line).iter().position(|c| c.contains("error_type"));
        } else if let Some(column) = column.filter(|_| !line.starts_with("|--")) {
            if let Some(cell) = cells(line).get(column) {
                for (code, span) in code_spans(cell) {
                    if code && span.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                        found.push((i + 1, span.to_owned()));
                    }
                }
            }
        }
        let mut rest = *line;
        while let Some(at) = rest.find("error_type=") {
            rest = &rest[at + "error_type=".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || "_\"|\\".contains(c)))
                .unwrap_or(rest.len());
            // `"a"|"b"`, in a table cell `"a"\|"b"`.
            for value in rest[..end].split('|') {
                let value = value.trim_matches(['"', '\\']);
                if !value.is_empty() {
                    found.push((i + 1, value.to_owned()));
                }
            }
        }
    }
    found
}

/// Every `error_type` the manual lists (the tables of bad input and their
/// answers, the sinks' failures) is a string the code writes outside its tests,
/// so an alert or a dashboard panel written from the manual counts something.
#[test]
fn every_error_type_in_the_manual_is_one_the_code_counts() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let code: String = files
        .iter()
        .filter(|f| !f.to_string_lossy().contains("test"))
        .map(|f| fs::read_to_string(f).unwrap())
        .collect();
    let mut checked = 0;
    let mut unknown = Vec::new();
    for file in manual() {
        let text = fs::read_to_string(&file).unwrap();
        for (line, error_type) in documented_error_types(&text) {
            checked += 1;
            if !code.contains(&format!("\"{error_type}\"")) {
                unknown.push(format!("{}:{line}: `{error_type}`", relative(&file)));
            }
        }
    }
    assert!(
        checked > 60,
        "only {checked} error types found: is the parser broken?"
    );
    assert!(
        unknown.is_empty(),
        "error types the manual lists that the code never counts:\n  {}",
        unknown.join("\n  ")
    );
}
