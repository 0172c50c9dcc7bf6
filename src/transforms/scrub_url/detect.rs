//! Value detectors: e-mail addresses, JWTs, card-like digit runs, and the
//! id-like path segments the path template replaces. Each is one linear
//! scan over bytes, no regex.

/// Replaces e-mail addresses, JWTs and long digit runs in decoded text.
/// Returns `None` when there is none. Linear in the text length.
pub fn redact_values(text: &str, min_digit_run: usize, replacement: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    find_emails(text, &mut spans);
    find_jwts(bytes, &mut spans);
    find_digit_runs(bytes, min_digit_run, &mut spans);
    if spans.is_empty() {
        return None;
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (start, end) in spans {
        if end <= copied {
            continue;
        }
        if start >= copied {
            out.push_str(&text[copied..start]);
            out.push_str(replacement);
        }
        copied = end;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// Letters and digits in any script: `jörg.müller@bücher.de` is an address
/// whole, not `jörg.mü` and a redaction.
fn is_local_part(c: char) -> bool {
    c.is_alphanumeric() || "._%+-".contains(c)
}
fn is_domain_part(c: char) -> bool {
    c.is_alphanumeric() || c == '.' || c == '-'
}
fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// `local@domain.tld`: a local part, and a dotted domain ending in a label of
/// two or more letters (internationalized ones too: `bücher.de`, `пример.рф`).
fn find_emails(text: &str, spans: &mut Vec<(usize, usize)>) {
    for (at, _) in text.match_indices('@') {
        let start = text[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_local_part(*c))
            .last()
            .map_or(at, |(i, _)| i);
        let after = &text[at + 1..];
        let domain_len = after
            .find(|c: char| !is_domain_part(c))
            .unwrap_or(after.len());
        let domain = after[..domain_len].trim_end_matches(['.', '-']);
        // The top-level label ends where its letters do, and is the last
        // label that has two: in `x.io4111…` or `x.io.4111…` (text glued to
        // the address) the address is `x.io`, not nothing.
        let tld_end = domain.rmatch_indices('.').find_map(|(dot, _)| {
            let label = domain[dot + 1..].split('.').next().unwrap_or_default();
            let letters = label
                .find(|c: char| !c.is_alphabetic())
                .unwrap_or(label.len());
            label[..letters]
                .chars()
                .nth(1)
                .is_some()
                .then_some(dot + 1 + letters)
        });
        let Some(tld_end) = tld_end else {
            continue;
        };
        let end = at + 1 + tld_end;
        if start < at && domain.starts_with(char::is_alphanumeric) {
            spans.push((start, end));
        }
    }
}

/// `eyJ<header>.<payload>.<signature>` (base64url of `{"`), and the
/// five-part JWE form. Each candidate start is scanned once.
fn find_jwts(bytes: &[u8], spans: &mut Vec<(usize, usize)>) {
    let mut i = 0;
    while i + 3 <= bytes.len() {
        if &bytes[i..i + 3] != b"eyJ" || (i > 0 && is_b64url(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let run = |from: usize| from + bytes[from..].iter().take_while(|b| is_b64url(**b)).count();
        let header_end = run(i);
        let mut parts = 1;
        let mut end = header_end;
        while end < bytes.len() && bytes[end] == b'.' && parts < 5 {
            let next = run(end + 1);
            // The payload may not be empty; a `none` JWT has an empty signature.
            if next == end + 1 && parts == 1 {
                break;
            }
            end = next;
            parts += 1;
        }
        if parts >= 3 && header_end - i >= 10 {
            spans.push((i, end));
            i = end;
        } else {
            i = header_end.max(i + 1);
        }
    }
}

/// At least `min` digits, possibly grouped by single spaces, `-` or `+`
/// (`4111 1111 1111 1111`), not glued to letters (so ids like `a456-...`
/// inside a UUID do not count).
fn find_digit_runs(bytes: &[u8], min: usize, spans: &mut Vec<(usize, usize)>) {
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && bytes[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        let start = i;
        let mut digits = 0;
        let mut j = i;
        loop {
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
                digits += 1;
            }
            let grouped = j + 1 < bytes.len()
                && matches!(bytes[j], b' ' | b'-' | b'+')
                && bytes[j + 1].is_ascii_digit();
            if grouped {
                j += 1;
            } else {
                break;
            }
        }
        let end = j;
        let glued = end < bytes.len() && bytes[end].is_ascii_alphabetic();
        if digits >= min && !glued {
            spans.push((start, end));
        }
        i = end.max(i + 1);
    }
}

/// Numbers, UUIDs, hex hashes of 16+, e-mail addresses, long random tokens.
pub fn is_id_like(segment: &str) -> bool {
    let b = segment.as_bytes();
    if b.is_empty() {
        return false;
    }
    if b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    let is_uuid = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if is_uuid || (b.len() >= 16 && b.iter().all(u8::is_ascii_hexdigit)) {
        return true;
    }
    if b.contains(&b'@') {
        let mut spans = Vec::new();
        find_emails(segment, &mut spans);
        if !spans.is_empty() {
            return true;
        }
    }
    // Random tokens: one unbroken piece of 16+ letters and digits mixing
    // both, or of 32+ in any mix. Slugs (`blue-running-shoes-42`) are short words.
    b.iter().all(|c| is_b64url(*c))
        && segment.split(['-', '_']).any(|piece| {
            let p = piece.as_bytes();
            (p.len() >= 16
                && p.iter().any(u8::is_ascii_digit)
                && p.iter().any(u8::is_ascii_alphabetic))
                || p.len() >= 32
        })
}
