//! The scanner against `serde_json` on the same bytes: the same values
//! (numbers to the bit), and an error exactly where `serde_json` has one.

use super::*;

/// `serde_json`'s reading, in a form that tells `-0.0` from `0` and
/// `1.0` from `1`.
fn reference(text: &str) -> Option<String> {
    serde_json::from_str::<Value>(text)
        .ok()
        .map(|v| serde_json::to_string(&v).unwrap())
}

fn scanned(text: &str) -> Option<String> {
    let limits = Limits::new(usize::MAX, 100_000);
    let mut scanner = Scanner::new(text, &limits);
    let value = scanner.value(1).and_then(|v| scanner.end().map(|()| v));
    let skipped = {
        let mut again = Scanner::new(text, &limits);
        again.skip(1).and_then(|()| again.end()).is_ok()
    };
    assert_eq!(
        value.is_ok(),
        skipped,
        "value and skip disagree on {text:?}"
    );
    let value = value.ok().map(|v| serde_json::to_string(&v).unwrap());
    // The same as a light tree, as the SDK decoders read.
    let mut again = Scanner::new(text, &limits);
    let tree = crate::sources::json_tree::read_tree(&mut again, 1)
        .and_then(|v| again.end().map(|()| v))
        .ok()
        .map(|v| serde_json::to_string(&Value::from(v)).unwrap());
    assert_eq!(tree, value, "as a tree on {text:?}");
    value
}

fn same(text: &str) {
    assert_eq!(scanned(text), reference(text), "on {text:?}");
}

#[test]
fn hand_written_bodies_read_as_serde_json_reads_them() {
    for text in [
        "0",
        "-0",
        "-0.0",
        "0.0",
        "1",
        "-1",
        "01",
        "-01",
        "1.",
        ".5",
        "1.5e3",
        "1E-3",
        "1e+2",
        "1e",
        "1e400",
        "-1e400",
        "12345678901234567890",
        "123456789012345678901234",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "0.1",
        "0.3",
        "123456789012345.6",
        "1234567890123456.7",
        "2.2250738585072014e-308",
        "4.9e-324",
        "1.7976931348623157e308",
        "0.000000000000000000001",
        "3.141592653589793238462643383279",
        "96",
        "1234.5999999046326",
        "0.07389322916666666",
        "9007199254740993.5",
        "-9999999999999999.999",
        "9999999999999999999.0",
        "0.0000000000000000001",
        "1234.5",
        "0.042",
        "1-2",
        "1+2",
        "--1",
        "-",
        "[1,-2]",
        "true",
        "tru",
        "nul",
        "null ",
        " \t\n\r{}",
        "{}",
        "[]",
        "[1,]",
        "[,1]",
        "{\"a\":1,}",
        "{,\"a\":1}",
        "{\"a\" 1}",
        "{\"a\":1 \"b\":2}",
        "{\"a\":1,\"a\":2}",
        "{1:2}",
        "[1 2]",
        "\"\\u00e9\\n\\\"\\\\\\/\"",
        "\"\\ud83d\\ude00\"",
        "\"\\ud83d\"",
        "\"\\ude00\"",
        "\"\\x\"",
        "\"\\u12\"",
        "\"tab\there\"",
        "\"nul\u{0}\"",
        "\"h\u{e9}llo \u{1F600}\"",
        "\"unterminated",
        "\"ends in a backslash\\",
        "{\"a\":[1,{\"b\":null}],\"c\":\"d\"}",
        "[1] x",
        "\u{feff}{}",
        "",
        "   ",
    ] {
        same(text);
    }
}

/// A random JSON text, valid unless `mutate` breaks it.
struct Gen {
    rng: fastrand::Rng,
}

impl Gen {
    fn ws(&mut self, out: &mut String) {
        for _ in 0..self.rng.usize(..3).saturating_sub(1) {
            out.push([' ', '\n', '\t', '\r'][self.rng.usize(..4)]);
        }
    }

    fn number(&mut self, out: &mut String) {
        if self.rng.bool() {
            out.push('-');
        }
        let int_digits = self.rng.usize(1..22);
        if self.rng.u8(..8) == 0 {
            out.push('0');
        } else {
            out.push(char::from(b'1' + self.rng.u8(..9)));
            for _ in 1..int_digits {
                out.push(char::from(b'0' + self.rng.u8(..10)));
            }
        }
        if self.rng.bool() {
            out.push('.');
            for _ in 0..self.rng.usize(1..20) {
                out.push(char::from(b'0' + self.rng.u8(..10)));
            }
        }
        if self.rng.u8(..6) == 0 {
            out.push(if self.rng.bool() { 'e' } else { 'E' });
            match self.rng.u8(..3) {
                0 => out.push('-'),
                1 => out.push('+'),
                _ => {}
            }
            for _ in 0..self.rng.usize(1..4) {
                out.push(char::from(b'0' + self.rng.u8(..10)));
            }
        }
    }

    fn string(&mut self, out: &mut String) {
        out.push('"');
        for _ in 0..self.rng.usize(..40) {
            match self.rng.u8(..40) {
                0 => out.push_str(["\\n", "\\t", "\\r", "\\b", "\\f"][self.rng.usize(..5)]),
                1 => out.push_str("\\\""),
                2 => out.push_str("\\\\"),
                3 => out.push_str("\\u00e9"),
                4 => out.push_str("\\ud83d\\ude00"),
                5 => out.push('\u{e9}'),
                6 => out.push('\u{1F600}'),
                7 => out.push_str("\\/"),
                _ => out.push(char::from(b'a' + self.rng.u8(..26))),
            }
        }
        out.push('"');
    }

    fn value(&mut self, out: &mut String, depth: usize) {
        self.ws(out);
        let pick = if depth > 6 {
            self.rng.u8(..5)
        } else {
            self.rng.u8(..8)
        };
        match pick {
            0 => self.number(out),
            1 => self.string(out),
            2 => out.push_str(["true", "false", "null"][self.rng.usize(..3)]),
            3 | 4 => self.number(out),
            5 => {
                out.push('[');
                for i in 0..self.rng.usize(..5) {
                    if i > 0 {
                        out.push(',');
                    }
                    self.value(out, depth + 1);
                }
                self.ws(out);
                out.push(']');
            }
            _ => {
                out.push('{');
                for i in 0..self.rng.usize(..5) {
                    if i > 0 {
                        out.push(',');
                    }
                    self.ws(out);
                    // Few distinct keys: repeats happen.
                    out.push_str(
                        ["\"a\"", "\"b\"", "\"type\"", "\"\\u0061\""][self.rng.usize(..4)],
                    );
                    self.ws(out);
                    out.push(':');
                    self.value(out, depth + 1);
                }
                self.ws(out);
                out.push('}');
            }
        }
        self.ws(out);
    }

    /// Breaks `text` in one place, at a char boundary.
    fn mutate(&mut self, text: &str) -> String {
        let bounds: Vec<usize> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        let at = bounds[self.rng.usize(..bounds.len())];
        let (head, tail) = text.split_at(at);
        let noise = [
            "", "\"", "\\", ",", ":", "{", "}", "[", "]", "-", "0", ".", "e", " ", "\u{1}", "n",
        ];
        let insert = noise[self.rng.usize(..noise.len())];
        match self.rng.u8(..3) {
            0 => head.to_owned(),
            1 => format!("{head}{insert}{tail}"),
            _ => {
                let skip = tail.chars().next().map_or(0, char::len_utf8);
                format!("{head}{insert}{}", &tail[skip..])
            }
        }
    }
}

#[test]
fn generated_bodies_and_broken_ones_read_as_serde_json_reads_them() {
    let mut gen = Gen {
        rng: fastrand::Rng::with_seed(11),
    };
    let (mut valid, mut broken) = (0, 0);
    for _ in 0..20_000 {
        let mut text = String::new();
        gen.value(&mut text, 1);
        same(&text);
        let bad = gen.mutate(&text);
        if reference(&bad).is_none() {
            broken += 1;
        } else {
            valid += 1;
        }
        same(&bad);
    }
    // The mutations do break bodies, and not all of them.
    assert!(
        broken > 5_000 && valid > 500,
        "{broken} broken, {valid} still valid"
    );
}

#[test]
fn limits_and_nesting_are_enforced_while_reading() {
    // Three levels of objects, two allowed.
    let limits = Limits::new(4, 2);
    let mut scanner = Scanner::new(r#"{"a":{"b":{"c":1}}}"#, &limits);
    let error = scanner.value(1).unwrap_err();
    assert_eq!(scanner.decode_error(error, 2).error_type, "too_deep");
    let limits = Limits::new(4, 10);
    let mut scanner = Scanner::new(r#"["abcd","abcde"]"#, &limits);
    let error = scanner.skip(1).unwrap_err();
    assert_eq!(
        scanner.decode_error(error, 10).error_type,
        "string_too_long"
    );
    // Past 127 levels the reader stops, whatever the configured limit, as
    // serde_json's recursion limit does.
    let limits = Limits::new(64, 100_000);
    let deep = "[".repeat(128) + &"]".repeat(128);
    assert!(reference(&deep).is_none());
    let mut scanner = Scanner::new(&deep, &limits);
    let error = scanner.value(1).unwrap_err();
    assert_eq!(scanner.decode_error(error, 100_000).error_type, "too_deep");
    let ok = "[".repeat(127) + &"]".repeat(127);
    assert!(reference(&ok).is_some());
    assert!(Scanner::new(&ok, &limits).value(1).is_ok());
}

#[test]
fn a_syntax_error_names_its_line_and_column() {
    let limits = Limits::new(64, 10);
    let mut scanner = Scanner::new("{\"a\":1,\n \"b\" 2}", &limits);
    let error = scanner.value(1).unwrap_err();
    let error = scanner.decode_error(error, 10);
    assert_eq!(error.error_type, "invalid_json");
    assert_eq!(
        error.message,
        "invalid JSON: expected `:` at line 2 column 6"
    );
}

#[test]
fn an_error_serde_json_finds_in_a_token_is_placed_once_in_the_body() {
    // Strings with `\u` escapes and numbers off the fast path are read by
    // `serde_json` alone: its place within the token is not the body's.
    let limits = Limits::new(64, 10);
    for (text, message) in [
        (
            "{\"a\":\n [\"\\ud800\"]}",
            "invalid JSON: unexpected end of hex escape (in a string) at line 2 column 3",
        ),
        (
            "{\"a\":\n  [1e400]}",
            "invalid JSON: number out of range (in a number) at line 2 column 4",
        ),
    ] {
        let mut scanner = Scanner::new(text, &limits);
        let error = scanner.value(1).unwrap_err();
        assert_eq!(scanner.decode_error(error, 10).message, message, "{text:?}");
    }
}

#[test]
fn the_eight_byte_scan_stops_at_the_first_byte_a_string_cannot_hold() {
    let mut rng = fastrand::Rng::with_seed(5);
    let pool = [
        b'a', b'"', b'\\', 0x00, 0x1f, 0x20, 0x7f, 0x80, 0xc3, 0xff, b'!', b'#', b']',
    ];
    for _ in 0..200_000 {
        let bytes: [u8; 8] = std::array::from_fn(|_| pool[rng.usize(..pool.len())]);
        let first = bytes
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
        let mask = special_bytes(u64::from_le_bytes(bytes));
        let found = (mask != 0).then(|| (mask.trailing_zeros() / 8) as usize);
        assert_eq!(found, first, "{bytes:?}");
    }
}

#[test]
fn long_integer_parts_read_and_skip_as_serde_json_reads_them() {
    // `skip` steps over integer parts of up to 300 digits without reading
    // them; longer ones may overflow an f64, which `serde_json` refuses.
    for n in [19, 20, 299, 300, 301, 308, 309, 310, 400] {
        for digit in ['1', '9'] {
            let int = digit.to_string().repeat(n);
            for text in [
                int.clone(),
                format!("-{int}"),
                format!("{int}.5"),
                format!("[{int},{{\"a\":-{int}.25}}]"),
            ] {
                same(&text);
            }
        }
    }
}

#[test]
fn a_key_whose_nul_makes_it_another_key_loses_neither_value() {
    // `"a\u0000b"` read as `"a\u{fffd}b"` beside a sent `"a\u{fffd}b"`:
    // collected into one map, the later of the two overwrote the other,
    // silently. Like the Elasticsearch sink, the renamed key takes one
    // more U+FFFD until its name is free.
    let body = br#"{"r": {"a\u0000b": 1, "a\ufffdb": 2, "a\ufffdb\ufffd": 3}}"#;
    let mut value: serde_json::Value = serde_json::from_slice(body).unwrap();
    keys_without_nul(body, &mut value);
    assert_eq!(
        value,
        serde_json::json!({"r": {"a\u{fffd}b": 2, "a\u{fffd}b\u{fffd}": 3, "a\u{fffd}b\u{fffd}\u{fffd}": 1}})
    );
}

/// `long_number` (eight digits at a time first) reads what `number` reads,
/// to the same value and the same error, for numbers of every length, in
/// every form, with whatever follows them, up to the body's last byte.
#[test]
fn a_long_number_reads_as_a_number_does() {
    let limits = Limits::new(usize::MAX, 100_000);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut texts: Vec<String> = vec![
        "1763699999100".into(),
        "-1763699999100".into(),
        "12345678".into(),
        "123456789".into(),
        "9999999999999999999".into(),
        "18446744073709551615".into(),
        "18446744073709551616".into(),
        "-9223372036854775808".into(),
        "-9223372036854775809".into(),
        "0000000012".into(),
        "01234567890".into(),
        "1234567890.5".into(),
        "12345678e3".into(),
        "1234567/".into(),
        "12345678:".into(),
        "-".into(),
    ];
    for _ in 0..20_000 {
        let mut text = String::new();
        if rng.bool() {
            text.push('-');
        }
        for _ in 0..rng.usize(0..24) {
            text.push(char::from(b'0' + rng.u8(0..10)));
        }
        match rng.u8(0..6) {
            0 => text.push_str(&format!(".{}", rng.u32(0..1000))),
            1 => text.push_str(&format!("e{}", rng.i8(-5..5))),
            2 => text.push(char::from(rng.u8(b'/'..=b':'))),
            _ => {}
        }
        texts.push(text);
    }
    for text in &texts {
        // Alone (the body ends with it) and followed by more.
        for body in [text.clone(), format!("{text}, \"next\": 1}}")] {
            let mut short = Scanner::new(&body, &limits);
            let mut long = Scanner::new(&body, &limits);
            let (a, b) = (short.number(), long.long_number());
            assert_eq!(
                a.as_ref().map(|n| n.to_string()).map_err(|e| e.to_string()),
                b.as_ref().map(|n| n.to_string()).map_err(|e| e.to_string()),
                "{body:?}"
            );
            assert_eq!(short.position(), long.position(), "{body:?}");
        }
    }
}
