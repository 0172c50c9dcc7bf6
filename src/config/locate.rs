//! Where in the pipeline file a problem is: the line of a component's
//! section or of one of its keys, found in the text since the TOML parser
//! keeps no spans for deserialized values.

pub(super) fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Finds the line that declares `kind.id` (and, when given, the line of `key`
/// inside it). TOML allows many spellings; this covers `[kind.id]` sections,
/// `[kind.id.sub]` sub-tables and `key = ...` lines; a key inside an inline
/// table (`rate_limit = { burst = 0 }`) is found on the line of the table.
/// Falls back to the section header.
pub(super) fn locate(text: &str, kind: &str, id: &str, key: Option<&str>) -> Option<usize> {
    let section = format!("{kind}.{id}");
    let mut header_line = None;
    // The line of the longest leading part of the key written as a key of
    // its own (`rate_limit` for `rate_limit.burst`), when the whole is not.
    let mut table_line: Option<(usize, usize)> = None;
    let mut current: Option<String> = None;
    let key_parts: Vec<&str> = key
        .map(|k| {
            // `routes[2]`, `trusted_proxies[0]`: the line is the list's.
            k.split('.')
                .map(|p| p.split('[').next().unwrap_or(p))
                .filter(|p| p.parse::<usize>().is_err())
                .collect()
        })
        .unwrap_or_default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            let name: String = line
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '"')
                .collect();
            if name == section && header_line.is_none() {
                header_line = Some(i + 1);
            }
            current = Some(name);
            continue;
        }
        let Some(current) = &current else { continue };
        if key_parts.is_empty() {
            continue;
        }
        let Some((lhs, _)) = line.split_once('=') else {
            continue;
        };
        let lhs: String = lhs
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '"')
            .collect();
        // The key may be written relative to the component or to a sub-table.
        for split in 0..key_parts.len() {
            let table = if split == 0 {
                section.clone()
            } else {
                format!("{section}.{}", key_parts[..split].join("."))
            };
            if *current != table {
                continue;
            }
            if lhs == key_parts[split..].join(".") {
                return Some(i + 1);
            }
            for end in split + 1..key_parts.len() {
                let longer = table_line.is_none_or(|(parts, _)| end > parts);
                if longer && lhs == key_parts[split..end].join(".") {
                    table_line = Some((end, i + 1));
                }
            }
        }
    }
    table_line.map(|(_, line)| line).or(header_line)
}

pub(super) fn locate_top_level(text: &str, key: &str) -> Option<usize> {
    let found = text.lines().position(|l| {
        let l = l.trim();
        l.split_once('=').is_some_and(|(lhs, _)| lhs.trim() == key)
            || l == format!("[{key}]")
            || l.starts_with(&format!("[{key}."))
    });
    if let Some(i) = found {
        return Some(i + 1);
    }
    // `table.key` written as `[table]` then `key = ...`.
    let (table, rest) = key.split_once('.')?;
    let header = format!("[{table}]");
    let start = text.lines().position(|l| l.trim() == header)?;
    let in_table = text
        .lines()
        .enumerate()
        .skip(start + 1)
        .take_while(|(_, l)| !l.trim_start().starts_with('['))
        .find(|(_, l)| l.split_once('=').is_some_and(|(lhs, _)| lhs.trim() == rest));
    Some(in_table.map_or(start, |(i, _)| i) + 1)
}
