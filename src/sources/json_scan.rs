//! A JSON reader that the decoder drives token by token, within the body's
//! limits: the beacon decoder's hot path. Through serde, every key and value
//! of a beacon went through a seed, a visitor and `serde_json`'s general
//! reader, and that cost more than the rest of the request. Here the decoder
//! asks for what it expects next (`key`, `element`, `value`, `skip`) and
//! strings borrow from the body.
//!
//! It reads exactly what `serde_json` reads, to the same values: a string
//! with escapes and a number off the fast path are handed to `serde_json`
//! itself, so rare shapes cost a little more and can never differ
//! (`tests` compares the two on generated and hand-written bodies).

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Number, Value};

use super::beacon_decoder::Limits;
use super::decode_error::{too_deep, DecodeError};
use crate::json_bytes::{special_bytes, special_mask16};

/// Deeper than this is refused whatever the configured limit, as
/// `serde_json`'s recursion limit did (it reads 127 levels): the reader
/// recurses per level.
const MAX_NESTING: usize = 127;

/// Why a body could not be read (boxed: every call returns a `Scan`, and
/// a small error keeps the result in registers).
#[derive(Debug)]
pub(in crate::sources) struct ScanError(Box<Failure>);

#[derive(Debug)]
enum Failure {
    /// Not JSON: what was wrong, and the byte offset.
    Syntax(Cow<'static, str>, usize),
    /// Nested deeper than `MAX_NESTING`.
    TooDeep,
    /// A limit of `Limits` (recorded there too).
    Limit(String),
}

impl ScanError {
    #[cold]
    fn new(failure: Failure) -> Self {
        ScanError(Box::new(failure))
    }
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &*self.0 {
            Failure::Syntax(what, at) => write!(f, "{what} at byte {at}"),
            Failure::TooDeep => f.write_str("recursion limit exceeded"),
            Failure::Limit(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for ScanError {}

// `Limits` reports through `serde::de::Error`: its checks are generic over
// the error type of the reader that calls them.
impl serde::de::Error for ScanError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ScanError::new(Failure::Limit(msg.to_string()))
    }
}

pub(in crate::sources) type Scan<T> = Result<T, ScanError>;

pub(in crate::sources) struct Scanner<'de, 'l> {
    text: &'de str,
    pos: usize,
    pub(in crate::sources) limits: &'l Limits,
}

impl<'de, 'l> Scanner<'de, 'l> {
    pub(in crate::sources) fn new(text: &'de str, limits: &'l Limits) -> Self {
        Scanner {
            text,
            pos: 0,
            limits,
        }
    }

    /// The answer for a body that failed with `error`.
    pub(in crate::sources) fn decode_error(
        &self,
        error: ScanError,
        max_depth: usize,
    ) -> DecodeError {
        if let Some(broken) = self.limits.error() {
            return broken;
        }
        match *error.0 {
            Failure::TooDeep => too_deep(max_depth),
            Failure::Syntax(what, at) => {
                let before = &self.text.as_bytes()[..at.min(self.text.len())];
                let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
                let column = 1 + before.iter().rev().take_while(|&&b| b != b'\n').count();
                DecodeError::invalid(
                    "invalid_json",
                    format!("invalid JSON: {what} at line {line} column {column}"),
                )
            }
            Failure::Limit(what) => DecodeError::invalid("invalid_json", what),
        }
    }

    /// Where the reader is, for `rewind`.
    pub(in crate::sources) fn position(&self) -> usize {
        self.pos
    }

    /// Reads again from a `position` taken before.
    pub(in crate::sources) fn rewind(&mut self, position: usize) {
        self.pos = position;
    }

    fn bytes(&self) -> &'de [u8] {
        self.text.as_bytes()
    }

    #[cold]
    pub(in crate::sources) fn syntax<T>(&self, what: &'static str) -> Scan<T> {
        Err(ScanError::new(Failure::Syntax(
            Cow::Borrowed(what),
            self.pos,
        )))
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        let bytes = self.bytes();
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The first byte of the next token.
    #[inline(always)]
    pub(in crate::sources) fn peek(&mut self) -> Scan<u8> {
        let bytes = self.bytes();
        if let Some(&b) = bytes.get(self.pos) {
            if b > b' ' {
                return Ok(b);
            }
            // One space and a token, as after every `:` and `,` of JSON
            // written with spaces (Python's, a pretty-printer's): no loop.
            if b == b' ' {
                if let Some(&next) = bytes.get(self.pos + 1) {
                    if next > b' ' {
                        self.pos += 1;
                        return Ok(next);
                    }
                }
            }
        }
        self.skip_whitespace();
        match self.bytes().get(self.pos) {
            Some(&b) => Ok(b),
            None => self.syntax("EOF while parsing a value"),
        }
    }

    /// Nothing but whitespace is left.
    pub(in crate::sources) fn end(&mut self) -> Scan<()> {
        self.skip_whitespace();
        if self.pos == self.text.len() {
            Ok(())
        } else {
            self.syntax("trailing characters")
        }
    }

    fn container(&self, depth: usize) -> Scan<()> {
        if depth > MAX_NESTING {
            return Err(ScanError::new(Failure::TooDeep));
        }
        self.limits.container(depth)
    }

    /// Past the `{` that `peek` showed; `depth` is the object's.
    pub(in crate::sources) fn begin_object(&mut self, depth: usize) -> Scan<()> {
        self.container(depth)?;
        self.pos += 1;
        Ok(())
    }

    /// Past the `[` that `peek` showed; `depth` is the array's.
    pub(in crate::sources) fn begin_array(&mut self, depth: usize) -> Scan<()> {
        self.container(depth)?;
        self.pos += 1;
        Ok(())
    }

    /// The next key of the object begun, measured, and past its `:`; `None`
    /// past the closing `}`. `first` is whether no key was read yet.
    #[inline(always)]
    pub(in crate::sources) fn key(&mut self, first: bool) -> Scan<Option<Cow<'de, str>>> {
        if !self.key_ahead(first)? {
            return Ok(None);
        }
        self.key_here().map(Some)
    }

    /// Past the comma before the object's next key, at its opening quote;
    /// `false` past the closing `}`. `first` is whether no key was read yet.
    /// Then [`key_here`](Self::key_here) reads the key, or
    /// [`key_is`](Self::key_is) takes it if it is one expected.
    #[inline(always)]
    pub(in crate::sources) fn key_ahead(&mut self, first: bool) -> Scan<bool> {
        // The entry's first byte as `next_entry` saw it: not looked at again.
        let Some(b) = self.next_entry(first, b'}')? else {
            return Ok(false);
        };
        if b != b'"' {
            return self.syntax("expected a string key");
        }
        Ok(true)
    }

    /// Whether the key at the reader (`key_ahead` found its quote) is
    /// `expected`'s, byte for byte, quotes and all: then it is taken as
    /// [`key_here`](Self::key_here) takes it (measured, past its `:`).
    /// Otherwise the reader has not moved. A key sent with an escape is
    /// never the same bytes, and goes to `key_here` to be unescaped.
    #[inline(always)]
    pub(in crate::sources) fn key_is(&mut self, expected: &KeyBytes) -> Scan<bool> {
        if !self.string_is(expected)? {
            return Ok(false);
        }
        if self.peek()? != b':' {
            return self.syntax("expected `:`");
        }
        self.pos += 1;
        Ok(true)
    }

    /// Whether the string at the reader (at its opening quote) is
    /// `expected`'s, byte for byte, quotes and all: then it is passed, and
    /// measured as [`string`](Self::string)'s caller measures one.
    /// Otherwise the reader has not moved.
    #[inline(always)]
    pub(in crate::sources) fn string_is(&mut self, expected: &KeyBytes) -> Scan<bool> {
        if !expected.is_at(self.bytes(), self.pos) {
            return Ok(false);
        }
        let len = usize::from(expected.len);
        self.limits.string::<ScanError>(len)?;
        self.pos += len + 2;
        Ok(true)
    }

    /// The byte `ahead` bytes past the reader, if the body has one.
    #[inline(always)]
    pub(in crate::sources) fn byte_ahead(&self, ahead: usize) -> Option<u8> {
        self.bytes().get(self.pos + ahead).copied()
    }

    /// The key at the reader (`key_ahead` found its quote), measured, and
    /// past its `:`.
    #[inline(always)]
    pub(in crate::sources) fn key_here(&mut self) -> Scan<Cow<'de, str>> {
        let mut key = self.string()?;
        self.limits.string::<ScanError>(key.len())?;
        // Only an escape (`\u0000`) writes a NUL, so only an owned key can
        // hold one: see `key_without_nul`.
        if let Cow::Owned(text) = &mut key {
            key_without_nul(text);
        }
        if self.peek()? != b':' {
            return self.syntax("expected `:`");
        }
        self.pos += 1;
        Ok(key)
    }

    /// Whether another element of the array begun follows (then read it);
    /// `false` past the closing `]`.
    #[inline]
    pub(in crate::sources) fn element(&mut self, first: bool) -> Scan<bool> {
        Ok(self.next_entry(first, b']')?.is_some())
    }

    /// Past the comma before a container's next entry, and its first byte
    /// (as `peek` shows it); `None` past its closing bracket `close` instead.
    #[inline(always)]
    fn next_entry(&mut self, first: bool, close: u8) -> Scan<Option<u8>> {
        let b = self.peek()?;
        if b == close {
            self.pos += 1;
            return Ok(None);
        }
        if first {
            return Ok(Some(b));
        }
        if b != b',' {
            return self.syntax("expected `,` or the container's end");
        }
        self.pos += 1;
        let b = self.peek()?;
        if b == close {
            return self.syntax("trailing comma");
        }
        Ok(Some(b))
    }

    /// The string `peek` showed (`"`), unescaped; borrowed unless it has escapes.
    #[inline(always)]
    pub(in crate::sources) fn string(&mut self) -> Scan<Cow<'de, str>> {
        let bytes = self.bytes();
        let start = self.pos + 1;
        let mut at = start;
        loop {
            at = plain_run_end(bytes, at);
            match bytes.get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    return Ok(Cow::Borrowed(self.between_quotes(start, at)));
                }
                Some(b'\\') => return self.escaped_string(at),
                Some(&b) if b < 0x20 => {
                    self.pos = at;
                    return self.syntax(
                        "control character (\\u0000-\\u001F) found while parsing a string",
                    );
                }
                Some(_) => at += 1,
                None => {
                    self.pos = at;
                    return self.syntax("EOF while parsing a string");
                }
            }
        }
    }

    /// The text from `start`, just past an opening quote, to the closing
    /// quote at `end`. A checked slice tests both ends for char boundaries
    /// (about 1.4k instructions a beacon, on every key and string).
    #[inline(always)]
    fn between_quotes(&self, start: usize, end: usize) -> &'de str {
        let bytes = self.bytes();
        assert!(start <= end && end < bytes.len() && start > 0);
        debug_assert!(bytes[start - 1] == b'"' && bytes[end] == b'"');
        // SAFETY: `start - 1` and `end` hold ASCII quotes (`string` found
        // them), so `start` and `end` are char boundaries of the `str`
        // `text`, and the bounds are checked above.
        unsafe { self.text.get_unchecked(start..end) }
    }

    /// A string with escapes (the first at `at`), unescaped here when its
    /// escapes are the one-letter kind (`\n` in a stack trace). Anything
    /// else (`\u`, an unknown escape, a control character, no end) goes to
    /// `serde_json`, whose answers and errors it keeps (surrogate pairs, lone
    /// surrogates refused). One stack through `serde_json` cost as much as
    /// reading twenty keys.
    #[cold]
    fn escaped_string(&mut self, mut at: usize) -> Scan<Cow<'de, str>> {
        let bytes = self.bytes();
        let start = self.pos + 1;
        let mut out = String::with_capacity(at - start + 64);
        let mut run = start;
        loop {
            at = plain_run_end(bytes, at);
            match bytes.get(at) {
                Some(b'"') => {
                    // Runs end at ASCII bytes: char boundaries.
                    out.push_str(&self.text[run..at]);
                    self.pos = at + 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    let unescaped = match bytes.get(at + 1) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        _ => return self.escaped_by_serde(at),
                    };
                    out.push_str(&self.text[run..at]);
                    out.push(unescaped);
                    at += 2;
                    run = at;
                }
                Some(&b) if b < 0x20 => return self.escaped_by_serde(at),
                Some(_) => at += 1,
                None => return self.escaped_by_serde(at),
            }
        }
    }

    /// The string begun at `self.pos` read by `serde_json` (its end found
    /// here, from `at`, inside it).
    #[cold]
    fn escaped_by_serde(&mut self, mut at: usize) -> Scan<Cow<'de, str>> {
        let bytes = self.bytes();
        let open = self.pos;
        loop {
            match bytes.get(at) {
                Some(b'"') => break,
                Some(b'\\') => at += 2,
                Some(_) => at += 1,
                None => {
                    self.pos = bytes.len();
                    return self.syntax("EOF while parsing a string");
                }
            }
        }
        let token = &self.text[open..=at];
        match serde_json::from_str::<String>(token) {
            Ok(s) => {
                self.pos = at + 1;
                Ok(Cow::Owned(s))
            }
            Err(e) => Err(ScanError::new(Failure::Syntax(
                Cow::Owned(format!("{} (in a string)", without_place(&e))),
                open,
            ))),
        }
    }

    /// The number that `peek` showed, as `serde_json` reads it: an integer
    /// fits `u64`/`i64` or becomes an `f64`; `-0` is the float `-0.0`.
    /// A number stepped over: what `number` accepts, without working out
    /// its value (skipped values are mostly numbers: timings with 17
    /// digits). Whatever `number` would hand to `serde_json` (a leading
    /// zero, an empty part, an exponent) and integer parts of more than 300
    /// digits (an f64 holds 308; `serde_json` refuses what overflows) go
    /// through `number` itself, so its errors and their places stay.
    fn skip_number(&mut self) -> Scan<()> {
        let bytes = self.bytes();
        let mut at = self.pos + usize::from(bytes.get(self.pos) == Some(&b'-'));
        let int_start = at;
        while let Some(b'0'..=b'9') = bytes.get(at) {
            at += 1;
        }
        let int_digits = at - int_start;
        let mut plain =
            (1..=300).contains(&int_digits) && (int_digits == 1 || bytes[int_start] != b'0');
        if plain && bytes.get(at) == Some(&b'.') {
            at += 1;
            let frac_start = at;
            while let Some(b'0'..=b'9') = bytes.get(at) {
                at += 1;
            }
            plain = at > frac_start;
        }
        if !plain || matches!(bytes.get(at), Some(b'e' | b'E' | b'+')) {
            return self.number().map(drop);
        }
        self.pos = at;
        Ok(())
    }

    pub(in crate::sources) fn number(&mut self) -> Scan<Number> {
        self.number_inlined()
    }

    /// [`number`](Self::number) inlined where it is called, for the
    /// `rum_beacon` entry reading's numbers (a beacon's timings, sizes and
    /// `ts`, some forty); everywhere inlined it cost the floor and
    /// web-vitals more than it saved them.
    #[inline(always)]
    pub(in crate::sources) fn number_inlined(&mut self) -> Scan<Number> {
        self.number_read::<false>()
    }

    /// [`number_inlined`](Self::number_inlined) for a number whose
    /// integer part is usually long (an entry's `ts`, epoch milliseconds:
    /// thirteen digits), read eight digits at a time first. Every other
    /// number would pay the eight-byte check for nothing.
    #[inline(always)]
    pub(in crate::sources) fn long_number(&mut self) -> Scan<Number> {
        self.number_read::<true>()
    }

    #[inline(always)]
    fn number_read<const LONG: bool>(&mut self) -> Scan<Number> {
        let bytes = self.bytes();
        let start = self.pos;
        let mut at = start;
        let negative = bytes.get(at) == Some(&b'-');
        at += usize::from(negative);
        let mut significand: u64 = 0;
        let int_start = at;
        if LONG {
            read_eight_digits(bytes, &mut at, &mut significand);
        }
        read_digits(bytes, &mut at, &mut significand);
        let int_digits = at - int_start;
        let mut digits = int_digits;
        if int_digits == 0 || (int_digits > 1 && bytes[int_start] == b'0') {
            return self.slow_number(start);
        }
        let mut exponent: i32 = 0;
        let mut float = false;
        if bytes.get(at) == Some(&b'.') {
            float = true;
            at += 1;
            let frac_start = at;
            read_digits(bytes, &mut at, &mut significand);
            if at == frac_start {
                return self.slow_number(start);
            }
            digits += at - frac_start;
            exponent = -((at - frac_start) as i32);
        }
        if let Some(b'e' | b'E' | b'+') = bytes.get(at) {
            return self.slow_number(start);
        }
        // 19 digits always fit a u64.
        if digits > 19 {
            return self.slow_number(start);
        }
        self.pos = at;
        if float {
            // `serde_json`'s arithmetic exactly (without its `float_roundtrip`
            // feature): the significand rounded to an f64, one division.
            let f = significand as f64 / POW10[(-exponent) as usize];
            let f = if negative { -f } else { f };
            return Ok(Number::from_f64(f).unwrap_or_else(|| Number::from(0)));
        }
        if !negative {
            return Ok(Number::from(significand));
        }
        if significand == 0 {
            return Ok(Number::from_f64(-0.0).unwrap_or_else(|| Number::from(0)));
        }
        // At most 19 digits: within i64 once negated, except below i64::MIN.
        match i64::try_from(significand) {
            Ok(n) => Ok(Number::from(-n)),
            Err(_) => self.slow_number(start),
        }
    }

    /// A number off the fast path (exponents, long mantissas, malformed):
    /// its extent found here, its value and errors `serde_json`'s.
    #[cold]
    fn slow_number(&mut self, start: usize) -> Scan<Number> {
        let bytes = self.bytes();
        let mut end = start;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = bytes.get(end) {
            end += 1;
        }
        match serde_json::from_str::<Number>(&self.text[start..end]) {
            Ok(n) => {
                self.pos = end;
                Ok(n)
            }
            Err(e) => Err(ScanError::new(Failure::Syntax(
                Cow::Owned(format!("{} (in a number)", without_place(&e))),
                start,
            ))),
        }
    }

    /// Past `word` (`true`, `false`, `null`), which `peek` began to show.
    pub(in crate::sources) fn literal(&mut self, word: &'static [u8]) -> Scan<()> {
        if self.bytes()[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            self.syntax("expected value")
        }
    }

    /// Any value at `depth`, within the limits (objects at `depth` count
    /// against `max_json_depth`), as a `serde_json::Value`.
    pub(in crate::sources) fn value(&mut self, depth: usize) -> Scan<Value> {
        Ok(match self.peek()? {
            b'"' => {
                let s = self.string()?;
                self.limits.string::<ScanError>(s.len())?;
                Value::String(s.into_owned())
            }
            b'-' | b'0'..=b'9' => Value::Number(self.number()?),
            b'{' => {
                self.begin_object(depth)?;
                let mut map = Map::new();
                let mut first = true;
                while let Some(key) = self.key(first)? {
                    first = false;
                    let value = self.value(depth + 1)?;
                    map.insert(key.into_owned(), value);
                }
                Value::Object(map)
            }
            b'[' => {
                self.begin_array(depth)?;
                let mut items = Vec::new();
                let mut first = true;
                while self.element(first)? {
                    first = false;
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            b't' => self.literal(b"true").map(|()| Value::Bool(true))?,
            b'f' => self.literal(b"false").map(|()| Value::Bool(false))?,
            b'n' => self.literal(b"null").map(|()| Value::Null)?,
            _ => return self.syntax("expected value"),
        })
    }

    /// Past the scalar `peek` showed, read as `value` reads it (a malformed
    /// one is a syntax error), nothing kept; a string is measured against
    /// the limits when `measure`. What a decoder refuses or ignores where
    /// it wanted a container.
    pub(in crate::sources) fn skip_scalar(&mut self, measure: bool) -> Scan<()> {
        match self.peek()? {
            b'"' => {
                let text = self.string()?;
                if measure {
                    self.limits.string::<ScanError>(text.len())?;
                }
                Ok(())
            }
            b'-' | b'0'..=b'9' => self.number().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.syntax("expected value"),
        }
    }

    /// A value at `depth` checked against the limits and not kept, counted
    /// as items: an array's length, `null` none, another value one
    /// (web-vitals' dropped `entries`, APM's skipped breakdown metricsets).
    pub(in crate::sources) fn count_items(&mut self, depth: usize) -> Scan<usize> {
        match self.peek()? {
            b'[' => {
                self.begin_array(depth)?;
                let mut count = 0;
                while self.element(count == 0)? {
                    self.skip(depth + 1)?;
                    count += 1;
                }
                Ok(count)
            }
            b'n' => self.literal(b"null").map(|()| 0),
            _ => self.skip(depth).map(|()| 1),
        }
    }

    /// Any value at `depth`, checked against the limits and not kept.
    pub(in crate::sources) fn skip(&mut self, depth: usize) -> Scan<()> {
        match self.peek()? {
            b'{' => {
                self.begin_object(depth)?;
                let mut first = true;
                while self.key(first)?.is_some() {
                    first = false;
                    self.skip_entry(depth + 1)?;
                }
            }
            b'[' => {
                self.begin_array(depth)?;
                let mut first = true;
                while self.element(first)? {
                    first = false;
                    self.skip_entry(depth + 1)?;
                }
            }
            _ => self.skip_leaf()?,
        }
        Ok(())
    }

    /// A container's value at `depth`, as `skip` reads it: a string or a
    /// number read here, in the loop (most entries are; a call per entry
    /// cost about a tenth of reading a body).
    #[inline(always)]
    fn skip_entry(&mut self, depth: usize) -> Scan<()> {
        match self.peek()? {
            b'{' | b'[' => self.skip(depth),
            _ => self.skip_leaf(),
        }
    }

    /// A scalar `peek` showed, as `skip` reads it: strings measured.
    #[inline(always)]
    fn skip_leaf(&mut self) -> Scan<()> {
        match self.peek()? {
            b'"' => {
                let s = self.string()?;
                self.limits.string::<ScanError>(s.len())
            }
            b'-' | b'0'..=b'9' => self.skip_number(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.syntax("expected value"),
        }
    }
}

/// `serde_json`'s message without its line and column, which are the
/// token's it was handed, not the body's (the caller names the body's).
#[cold]
fn without_place(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let place = format!(" at line {} column {}", e.line(), e.column());
    match message.strip_suffix(&place) {
        Some(bare) => bare.to_owned(),
        None => message,
    }
}

/// Reads `body` as UTF-8 JSON within `limits` and keeps nothing: the
/// least any decoder pays for a body before it keeps a value, which the
/// instruction benches measure as the floor under a decode
/// (`sources::read_json_only`).
pub(in crate::sources) fn read_only(body: &[u8], limits: &Limits) -> bool {
    let Ok(text) = super::beacon_decoder::utf8(body) else {
        return false;
    };
    let mut scanner = Scanner::new(text, limits);
    scanner.skip(1).and_then(|()| scanner.end()).is_ok()
}

/// The digits at `at` onto `significand` (wrapping: past 19 digits the
/// caller does not use it; it counts them from where the digits end).
/// Eight at a time for every number was tried: most numbers are shorter,
/// and the failed eight-byte checks cost more than they saved. Only
/// `long_number` (an entry's `ts`) reads eight at a time first.
#[inline(always)]
fn read_digits(bytes: &[u8], at: &mut usize, significand: &mut u64) {
    while let Some(&b @ b'0'..=b'9') = bytes.get(*at) {
        *significand = significand
            .wrapping_mul(10)
            .wrapping_add(u64::from(b - b'0'));
        *at += 1;
    }
}

/// Eight digits at a time from `at` onto `significand` (wrapping, as
/// `read_digits` does: past 19 digits the caller gives the number to
/// `serde_json`), while eight digits follow; `read_digits` reads the rest.
#[inline(always)]
fn read_eight_digits(bytes: &[u8], at: &mut usize, significand: &mut u64) {
    while let Some(chunk) = bytes.get(*at..*at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        // Each byte 0x30..=0x39: its high nibble 3, and still 3 with 6 added.
        let high = 0xF0F0_F0F0_F0F0_F0F0;
        if (word & high) | (((word.wrapping_add(0x0606_0606_0606_0606)) & high) >> 4)
            != 0x3333_3333_3333_3333
        {
            return;
        }
        // The digits' values, the first (most significant) in the lowest
        // byte, combined in pairs, fours, then eight (three multiplies).
        let digits = word - 0x3030_3030_3030_3030;
        let pairs = digits.wrapping_mul(10).wrapping_add(digits >> 8);
        let mask = 0x0000_00FF_0000_00FF;
        let value = ((pairs & mask).wrapping_mul(0x000F_4240_0000_0064))
            .wrapping_add(((pairs >> 16) & mask).wrapping_mul(0x0000_2710_0000_0001))
            >> 32;
        *significand = significand.wrapping_mul(100_000_000).wrapping_add(value);
        *at += 8;
    }
}

/// From `at`, sixteen bytes at a time, then eight, to the first byte that
/// ends a string's plain run (`"`, `\\`, a control character); or to where
/// fewer than eight bytes are left, which the caller reads one by one.
#[inline(always)]
fn plain_run_end(bytes: &[u8], mut at: usize) -> usize {
    while let Some(chunk) = bytes.get(at..at + 16) {
        let stop = special_mask16(chunk.try_into().unwrap_or(&[0; 16]));
        if stop != 0 {
            return at + stop.trailing_zeros() as usize;
        }
        at += 16;
    }
    // The body's last few bytes.
    while let Some(chunk) = bytes.get(at..at + 8) {
        let stop = special_bytes(u64::from_le_bytes(chunk.try_into().unwrap_or_default()));
        if stop != 0 {
            return at + (stop.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at
}

/// A key as the body has it when sent without escapes, `"` and all, for
/// [`Scanner::key_is`]: up to 32 bytes compared as four words under a
/// mask (two when they fit 16), instead of the key's end found, its text
/// hashed and looked up.
#[derive(Clone, Copy, Debug)]
pub(in crate::sources) struct KeyBytes {
    words: [u64; 4],
    masks: [u64; 4],
    /// The key's length, without its quotes.
    len: u8,
}

impl KeyBytes {
    /// `None` for a key of more than 30 bytes, or one that JSON writes
    /// with an escape (a quote, a backslash, a control character).
    pub(in crate::sources) fn new(key: &str) -> Option<KeyBytes> {
        if key.len() > 30 || key.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
            return None;
        }
        let mut bytes = [0u8; 32];
        let mut mask = [0u8; 32];
        bytes[0] = b'"';
        bytes[1..=key.len()].copy_from_slice(key.as_bytes());
        bytes[key.len() + 1] = b'"';
        mask[..key.len() + 2].fill(0xff);
        let word = |b: &[u8; 32], i: usize| {
            u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or_default())
        };
        Some(KeyBytes {
            words: std::array::from_fn(|i| word(&bytes, i)),
            masks: std::array::from_fn(|i| word(&mask, i)),
            len: key.len() as u8,
        })
    }

    /// Whether `bytes` hold this key at `at`. Past the last 32 bytes of a
    /// body (its last entry's keys) it says no: `key_here` reads them.
    #[inline(always)]
    fn is_at(&self, bytes: &[u8], at: usize) -> bool {
        let Some(chunk) = bytes.get(at..at + 32) else {
            return false;
        };
        let word =
            |i: usize| u64::from_le_bytes(chunk[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        let differ = |i: usize| (word(i) ^ self.words[i]) & self.masks[i];
        if self.len <= 14 {
            return differ(0) | differ(1) == 0;
        }
        differ(0) | differ(1) | differ(2) | differ(3) == 0
    }
}

/// Powers of ten for the fast float path, the same literals as `serde_json`'s
/// table (a fraction has at most 19 digits there).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A key's NULs written as U+FFFD, the character for one that cannot be
/// kept. Elasticsearch refuses a document whose `flattened` field (`rum.extra`,
/// attribution, custom data, a report's body: every key a browser chooses)
/// has a key with a NUL, which its index uses to separate key from value;
/// no key the formats define has one.
pub(in crate::sources) fn key_without_nul(key: &mut String) {
    if key.contains('\0') {
        *key = key.replace('\0', "\u{fffd}");
    }
}

/// [`key_without_nul`] for every key of a value `serde_json` parsed from
/// `body` (the CSP formats): walked only when the body has a `\u0000`.
pub(in crate::sources) fn keys_without_nul(body: &[u8], value: &mut serde_json::Value) {
    if writes_nul(body) {
        replace_nul_keys(value);
    }
}

/// Whether `body` holds `\u0000`, the only way JSON text writes a NUL. A
/// body of many values is searched once for all of them (the Reporting
/// API's reports): searched per report, a request of 100 scanned its
/// body 100 times.
pub(in crate::sources) fn writes_nul(body: &[u8]) -> bool {
    #[cfg(test)]
    NUL_SEARCHED_BYTES.set(NUL_SEARCHED_BYTES.get() + body.len());
    memchr::memmem::find(body, b"\\u0000").is_some()
}

/// [`key_without_nul`] for every key of `value`.
pub(in crate::sources) fn replace_nul_keys(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            let with_nul: Vec<String> = map.keys().filter(|k| k.contains('\0')).cloned().collect();
            for key in with_nul {
                let value = map.remove(&key).unwrap_or_default();
                let mut name = key;
                key_without_nul(&mut name);
                // A sent key may already have that name: neither value
                // is dropped (as the Elasticsearch sink renames).
                while map.contains_key(&name) {
                    name.push('\u{fffd}');
                }
                map.insert(name, value);
            }
            map.values_mut().for_each(replace_nul_keys);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(replace_nul_keys),
        _ => {}
    }
}

#[cfg(test)]
thread_local! {
    /// Bytes of bodies searched for a `\u0000` (tests bound the work a
    /// request of many reports makes).
    pub(in crate::sources) static NUL_SEARCHED_BYTES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests;
