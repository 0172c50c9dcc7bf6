//! Strict HTTP/1 body framing (RFC 9112 §6.1, §6.3): a request with both
//! `Content-Length` and `Transfer-Encoding` is refused with 400, and one whose
//! transfer coding is anything but a single `chunked` with 501; both close the
//! connection. A proxy in front may frame such a body differently from us,
//! which is how requests are smuggled past it.
//!
//! hyper already prefers `Transfer-Encoding` and closes after such a request,
//! but it removes `Content-Length` from the header map, so the conflict cannot
//! be seen from the request. `HeadInspector` therefore reads the raw bytes of
//! an HTTP/1 connection as hyper reads them, parses each request head and
//! follows its body's framing to find the next one, and queues one verdict
//! per head. When it cannot follow (HTTP/2, a head hyper will refuse anyway,
//! a framing it does not understand) it stops and verdicts default to fine.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{header, HeaderMap, StatusCode};
use tokio::io::{AsyncRead, ReadBuf};

/// Longest request head followed; hyper refuses longer ones (431).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Why a request's framing is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// `Content-Length` and `Transfer-Encoding` together.
    LengthAndTransferEncoding,
    /// A transfer coding other than a single `chunked`.
    UnsupportedTransferEncoding,
}

impl FramingError {
    pub fn status(self) -> StatusCode {
        match self {
            FramingError::LengthAndTransferEncoding => StatusCode::BAD_REQUEST,
            FramingError::UnsupportedTransferEncoding => StatusCode::NOT_IMPLEMENTED,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            FramingError::LengthAndTransferEncoding => {
                "Content-Length and Transfer-Encoding together are refused\n"
            }
            FramingError::UnsupportedTransferEncoding => {
                "only `Transfer-Encoding: chunked` is supported\n"
            }
        }
    }
}

/// Checks what hyper leaves in the header map: the transfer codings.
pub fn check_transfer_encoding(headers: &HeaderMap) -> Result<(), FramingError> {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|c| c.trim_ascii())
        .filter(|c| !c.is_empty());
    match (codings.next(), codings.next()) {
        (None, _) => Ok(()),
        (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Ok(()),
        _ => Err(FramingError::UnsupportedTransferEncoding),
    }
}

/// One verdict per request head read on a connection, in order: the
/// inspector pushes them as it reads heads, the service takes one a request.
///
/// Nearly every verdict is "fine", so only refusals are kept, each with its
/// head's number, in a queue behind a lock. Each side counts its own heads
/// (`pushed`, `taken`) and only writes its own count; the number of the oldest
/// refusal waiting (`next_refusal`) is read without the lock. A fine request
/// then costs plain loads and stores, no locked instruction. A lock taken
/// for every verdict both ways was two lock/unlock pairs a request, 0.8 % of
/// the blackhole server's samples on the lock's own atomics.
#[derive(Clone, Default)]
pub struct Verdicts(Arc<VerdictQueue>);

struct VerdictQueue {
    /// Heads judged (written by the inspector only).
    pushed: AtomicUsize,
    /// Verdicts taken (written by the service only).
    taken: AtomicUsize,
    /// The head number of the oldest refusal in `refusals`, or `NO_REFUSAL`.
    next_refusal: AtomicUsize,
    /// Refusals not yet taken, oldest first, with their head numbers.
    refusals: Mutex<VecDeque<(usize, FramingError)>>,
}

/// `next_refusal` when none is waiting.
const NO_REFUSAL: usize = usize::MAX;

impl Default for VerdictQueue {
    fn default() -> Self {
        VerdictQueue {
            pushed: AtomicUsize::new(0),
            taken: AtomicUsize::new(0),
            next_refusal: AtomicUsize::new(NO_REFUSAL),
            refusals: Mutex::new(VecDeque::new()),
        }
    }
}

impl Verdicts {
    /// The verdict on the next request hyper hands over (None: fine, or not
    /// known: no head is waiting for its verdict).
    pub fn next(&self) -> Option<FramingError> {
        let queue = &*self.0;
        let head = queue.taken.load(Ordering::Relaxed);
        // Acquire: a refusal queued for this head is seen with its count.
        if head >= queue.pushed.load(Ordering::Acquire) {
            return None;
        }
        queue.taken.store(head + 1, Ordering::Relaxed);
        if queue.next_refusal.load(Ordering::Acquire) != head {
            return None;
        }
        let mut refusals = queue.refusals.lock().unwrap_or_else(|e| e.into_inner());
        let refusal = refusals.pop_front().map(|(_, error)| error);
        let next = refusals.front().map_or(NO_REFUSAL, |(number, _)| *number);
        queue.next_refusal.store(next, Ordering::Release);
        refusal
    }

    fn push(&self, verdict: Option<FramingError>) {
        let queue = &*self.0;
        let head = queue.pushed.load(Ordering::Relaxed);
        if let Some(error) = verdict {
            let mut refusals = queue.refusals.lock().unwrap_or_else(|e| e.into_inner());
            if refusals.is_empty() {
                queue.next_refusal.store(head, Ordering::Release);
            }
            refusals.push_back((head, error));
        }
        // Release: the refusal is queued before its head is counted.
        queue.pushed.store(head + 1, Ordering::Release);
    }

    /// Every verdict pushed and not yet taken, taken now (for tests).
    #[cfg(test)]
    fn take_all(&self) -> Vec<Option<FramingError>> {
        let waiting = self.0.pushed.load(Ordering::Acquire) - self.0.taken.load(Ordering::Relaxed);
        (0..waiting).map(|_| self.next()).collect()
    }
}

/// Where in the byte stream the inspector is.
#[derive(Debug, PartialEq)]
enum Scan {
    /// Collecting a request head (bytes in `head`).
    Head,
    /// Inside a `Content-Length` body: bytes left.
    Fixed(u64),
    Chunked(Chunk),
    /// Not following any more.
    Off,
}

#[derive(Debug, PartialEq)]
enum Chunk {
    /// Hex digits of the size (value so far, any digit seen).
    Size(u64, bool),
    /// After the size: chunk extensions or whitespace until LF.
    SizeRest(u64),
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: at the start of a trailer line (or the final CRLF).
    TrailerStart,
    /// Inside a trailer line, which only a CRLF ends (as hyper reads it).
    Trailer,
    /// Saw the CR that ends a trailer line.
    TrailerLf,
    /// Saw the CR of the final CRLF.
    FinalLf,
}

/// Wraps an HTTP/1 connection's IO and judges each request head read from it.
pub struct HeadInspector<T> {
    inner: T,
    scan: Scan,
    head: Vec<u8>,
    verdicts: Verdicts,
}

impl<T> HeadInspector<T> {
    pub fn new(inner: T, verdicts: Verdicts) -> Self {
        Self {
            inner,
            scan: Scan::Head,
            head: Vec::new(),
            verdicts,
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let used = match &mut self.scan {
                Scan::Off => return,
                Scan::Head => self.feed_head(bytes),
                Scan::Fixed(left) => {
                    let n = (*left).min(bytes.len() as u64);
                    *left -= n;
                    if *left == 0 {
                        self.scan = Scan::Head;
                    }
                    n as usize
                }
                Scan::Chunked(chunk) => match step_chunk(chunk, bytes) {
                    Some((used, done)) => {
                        if done {
                            self.scan = Scan::Head;
                        }
                        used
                    }
                    None => {
                        self.scan = Scan::Off;
                        return;
                    }
                },
            };
            bytes = &bytes[used..];
        }
    }

    /// Takes bytes of a head; returns how many belonged to it.
    fn feed_head(&mut self, bytes: &[u8]) -> usize {
        // Blank lines before a request are allowed (RFC 9112 §2.2).
        if self.head.is_empty() {
            let skip = bytes.iter().take_while(|b| **b == b'\r' || **b == b'\n');
            let skip = skip.count();
            if skip > 0 {
                return skip;
            }
        }
        // The common case: a whole head in one read, judged where it lies,
        // its end found by the same walk over its lines.
        if self.head.is_empty() {
            if let Some((end, judged)) = judge_whole_head(bytes) {
                self.judged_as(judged);
                return end;
            }
            if let Some(end) = find_head_end(bytes, 0).filter(|end| *end <= MAX_HEAD_BYTES + 4) {
                self.judged(&bytes[..end]);
                return end;
            }
        }
        let before = self.head.len();
        let take = bytes.len().min(MAX_HEAD_BYTES + 4 - before);
        self.head.extend_from_slice(&bytes[..take]);
        let Some(end) = find_head_end(&self.head, before.saturating_sub(3)) else {
            if self.head.len() > MAX_HEAD_BYTES {
                self.scan = Scan::Off;
            }
            return take;
        };
        let used = end - before;
        let head = std::mem::take(&mut self.head);
        self.judged(&head[..end]);
        used
    }

    /// Queues the verdict on a complete head and follows its body.
    fn judged(&mut self, head: &[u8]) {
        self.judged_as(judge(head));
    }

    /// Queues `judged` (what `judge` said of a head) and follows its body.
    fn judged_as(&mut self, judged: Judged) {
        self.scan = match judged {
            Some((verdict, next)) => {
                self.verdicts.push(verdict);
                next
            }
            None => Scan::Off,
        };
    }
}

/// End (exclusive) of the first empty line at or after `from`: `\r\n\r\n`,
/// or with bare LFs (`\n\n`, `\n\r\n`), which httparse and so hyper read
/// as line ends too. Looking for CRLFs only, a bare-LF head ran on into the
/// next request's, which then got no verdict of its own (and the one after
/// it took the wrong one): `Content-Length` with `Transfer-Encoding` got
/// through behind a bare-LF request.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    memchr::memchr_iter(b'\n', &buf[from..]).find_map(|i| {
        let after = &buf[from + i + 1..];
        match after {
            [b'\n', ..] => Some(from + i + 2),
            [b'\r', b'\n', ..] => Some(from + i + 3),
            _ => None,
        }
    })
}

/// What `judge` says of a head: its verdict and how its body is framed, or
/// None when the head is not one hyper would serve (it answers those itself).
type Judged = Option<(Option<FramingError>, Scan)>;

/// The verdict on one head and how its body is framed; None when the head is
/// not one hyper would serve (it answers those itself).
fn judge(head: &[u8]) -> Judged {
    match judge_quickly(head) {
        Some(judged) => judged,
        None => judge_parsed(head),
    }
}

/// `judge` for the plain head nearly every request has, without parsing it
/// whole: only `Content-Length` and `Transfer-Encoding` lines are looked at
/// (httparse took ~1.8k instructions a request, as much as hyper's own
/// parse). `None` when unsure (the request line is not `… HTTP/1.1` or
/// `1.0` with CRLF, or a `c…`/`t…` line has no colon): `judge_parsed` then
/// decides. A head read here that httparse would refuse is one hyper refuses
/// too (400, connection closed), so no request ever takes its verdict.
fn judge_quickly(head: &[u8]) -> Option<Option<(Option<FramingError>, Scan)>> {
    let line_end = memchr::memchr(b'\n', head)?;
    let request_line = head[..line_end].strip_suffix(b"\r")?;
    if !(request_line.ends_with(b" HTTP/1.1") || request_line.ends_with(b" HTTP/1.0")) {
        return None;
    }
    let mut framing = Framing::default();
    let mut rest = &head[line_end + 1..];
    loop {
        // A head ends with an empty line: there is always one more.
        let end = memchr::memchr(b'\n', rest)?;
        let line = &rest[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        rest = &rest[end + 1..];
        let Some(first) = line.first() else {
            break;
        };
        // Only `Content-Length` and `Transfer-Encoding` matter; a folded
        // line starts with a space or tab and belongs to the line before.
        if !matches!(first | 0x20, b'c' | b't') {
            continue;
        }
        let colon = memchr::memchr(b':', line)?;
        if framing.header(&line[..colon], &line[colon + 1..]).is_none() {
            return Some(None);
        }
    }
    Some(framing.verdict())
}

/// `find_head_end` and `judge` of a plain head at the start of `bytes`
/// (no blank line before it) in one walk over its lines: the head's end and
/// what `judge` says of it, as `judge_quickly` reads it. The two walks took
/// a `memchr` call a line each (~450 instructions a request). `None` when
/// unsure: the head is not all there, is longer than `MAX_HEAD_BYTES`, or
/// `judge_quickly` would not decide it (not `… HTTP/1.1` or `1.0` with
/// CRLF, a `c…`/`t…` line without a colon) or would judge it unservable;
/// `find_head_end` and `judge` then decide as before.
fn judge_whole_head(bytes: &[u8]) -> Option<(usize, Judged)> {
    let line_end = memchr::memchr(b'\n', bytes)?;
    let request_line = bytes[..line_end].strip_suffix(b"\r")?;
    if !(request_line.ends_with(b" HTTP/1.1") || request_line.ends_with(b" HTTP/1.0")) {
        return None;
    }
    let mut framing = Framing::default();
    let mut at = line_end + 1;
    loop {
        let end = at + memchr::memchr(b'\n', &bytes[at..])?;
        let line = &bytes[at..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        at = end + 1;
        // An empty line (`\n\n`, `\n\r\n`): where `find_head_end` ends it.
        let Some(first) = line.first() else {
            if at > MAX_HEAD_BYTES + 4 {
                return None;
            }
            return Some((at, framing.verdict()));
        };
        if !matches!(first | 0x20, b'c' | b't') {
            continue;
        }
        let colon = memchr::memchr(b':', line)?;
        framing.header(&line[..colon], &line[colon + 1..])?;
    }
}

/// `judge` through httparse.
fn judge_parsed(head: &[u8]) -> Option<(Option<FramingError>, Scan)> {
    // Uninitialized: zeroing 128 headers (4 KiB) cost more than parsing a beacon's head.
    let mut headers = [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; 128];
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(head, &mut headers) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let mut framing = Framing::default();
    for h in request.headers.iter() {
        framing.header(h.name.as_bytes(), h.value)?;
    }
    framing.verdict()
}

/// What a head's headers say about its body's framing.
#[derive(Default)]
struct Framing {
    length: Option<u64>,
    transfer_encoding: bool,
    chunked_last: bool,
}

impl Framing {
    /// Takes one header; `None` when the head is not one hyper would serve
    /// (a `Content-Length` that is no number, or two that differ).
    fn header(&mut self, name: &[u8], value: &[u8]) -> Option<()> {
        if name.eq_ignore_ascii_case(b"content-length") {
            // hyper drops a length that follows `Transfer-Encoding` unread,
            // so its value does not make the head one hyper refuses: it is
            // a length with a transfer coding all the same. (Judged
            // unservable, it turned the inspection off and the request,
            // and every later one, went unjudged.)
            if self.transfer_encoding {
                self.length.get_or_insert(0);
                return Some(());
            }
            // What `trim_ascii` takes off, `str::trim` takes too; and it
            // stops at the same digits.
            let value = match plain_decimal(value.trim_ascii()) {
                Some(n) => n,
                None => std::str::from_utf8(value).ok()?.trim().parse().ok()?,
            };
            if self.length.is_some_and(|l| l != value) {
                return None;
            }
            self.length = Some(value);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
            self.chunked_last = value
                .split(|b| *b == b',')
                .map(|c| c.trim_ascii())
                .rfind(|c| !c.is_empty())
                .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
        }
        Some(())
    }

    fn verdict(self) -> Option<(Option<FramingError>, Scan)> {
        if self.transfer_encoding {
            // hyper refuses a final coding other than chunked; it reads the rest as chunked.
            if !self.chunked_last {
                return None;
            }
            let verdict = self.length.map(|_| FramingError::LengthAndTransferEncoding);
            return Some((verdict, Scan::Chunked(Chunk::Size(0, false))));
        }
        let next = match self.length {
            Some(n) if n > 0 => Scan::Fixed(n),
            _ => Scan::Head,
        };
        Some((None, next))
    }
}

/// A decimal of 1 to 19 ASCII digits, nothing else (no sign, no spaces):
/// what `str::parse::<u64>` gives for it, without the generic radix loop
/// (~130 instructions a `Content-Length`). `None` for anything else, which
/// callers hand to `parse`.
pub(crate) fn plain_decimal(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    for &b in bytes {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n = n * 10 + u64::from(digit);
    }
    Some(n)
}

/// Advances through a chunked body; returns (bytes used, body finished), or
/// None when the bytes are not chunked framing hyper would accept.
fn step_chunk(state: &mut Chunk, bytes: &[u8]) -> Option<(usize, bool)> {
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match state {
            Chunk::Data(left) => {
                let n = (*left).min((bytes.len() - i) as u64);
                *left -= n;
                i += n as usize;
                if *left == 0 {
                    *state = Chunk::DataEnd;
                }
                continue;
            }
            Chunk::Size(value, any) => match (b as char).to_digit(16) {
                Some(d) => {
                    *value = value.checked_mul(16)?.checked_add(d as u64)?;
                    *any = true;
                }
                None if *any => {
                    *state = Chunk::SizeRest(*value);
                    continue;
                }
                None => return None,
            },
            Chunk::SizeRest(size) => {
                if b == b'\n' {
                    *state = if *size == 0 {
                        Chunk::TrailerStart
                    } else {
                        Chunk::Data(*size)
                    };
                }
            }
            Chunk::DataEnd => match b {
                b'\r' => {}
                b'\n' => *state = Chunk::Size(0, false),
                _ => return None,
            },
            // Line ends here are CRLF only, as hyper's decoder has them: a
            // bare LF is a trailer byte to hyper, which then reads on into
            // what follows as trailers. Ending the body at it, the next head
            // judged was one hyper never saw, and a request after it went
            // unjudged.
            Chunk::TrailerStart => match b {
                b'\r' => *state = Chunk::FinalLf,
                _ => *state = Chunk::Trailer,
            },
            Chunk::Trailer => {
                if b == b'\r' {
                    *state = Chunk::TrailerLf;
                }
            }
            Chunk::TrailerLf => match b {
                b'\n' => *state = Chunk::TrailerStart,
                _ => return None,
            },
            Chunk::FinalLf => {
                if b == b'\n' {
                    return Some((i + 1, true));
                }
                return None;
            }
        }
        i += 1;
    }
    Some((i, false))
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadInspector<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            this.feed(&buf.filled()[before..]);
        }
        polled
    }
}

writes_through!(HeadInspector);

#[cfg(test)]
mod tests {
    use super::*;

    /// `judge_whole_head`'s one walk gives the end and the verdict that
    /// `find_head_end` and `judge` give, whenever it answers, for heads put
    /// together from lines that each take another turn in either walk.
    #[test]
    fn one_walk_over_a_head_finds_its_end_and_verdict_as_the_two_walks_did() {
        let request_lines: [&[u8]; 5] = [
            b"POST /rum HTTP/1.1\r\n",
            b"GET / HTTP/1.0\r\n",
            b"POST /rum HTTP/1.1\n",
            b"POST /rum HTTP/2.0\r\n",
            b"PUT /x HTTP/1.1\r\r\n",
        ];
        let lines: [&[u8]; 22] = [
            b"Host: x\r\n",
            b"Content-Length: 5\r\n",
            b"content-length:  12 \r\n",
            b"Content-Length: 6\r\n",
            b"Content-Length: x\r\n",
            b"Content-Length: +5\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"transfer-encoding: gzip, chunked\n",
            b"Transfer-Encoding: gzip\r\n",
            b"Content-Type: text/plain\r\n",
            b"Cookie: a=b\r\n",
            b"cache-control no colon\r\n",
            b"t\r\n",
            b"X-Forwarded-For: 1.2.3.4\n",
            b" folded\r\n",
            b"\tContent-Length: 7\r\n",
            b"User-Agent: a\rb\r\n",
            b"\r\r\n",
            b"\r\n",
            b"\n",
            b"Content-Length: 0\r\n",
            b"TE: trailers\r\n",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut answered = 0;
        for round in 0..20_000 {
            let mut bytes = request_lines[next(request_lines.len())].to_vec();
            for _ in 0..next(7) {
                bytes.extend_from_slice(lines[next(lines.len())]);
            }
            // Most heads end (and a body or the next head follows); some
            // are cut short.
            if round % 5 != 0 {
                bytes.extend_from_slice(if next(2) == 0 { b"\r\n" } else { b"\n" });
            }
            bytes.extend_from_slice(b"POST /next HTTP/1.1\r\n\r\n");
            let Some((end, judged)) = judge_whole_head(&bytes) else {
                continue;
            };
            answered += 1;
            let old_end = find_head_end(&bytes, 0).filter(|end| *end <= MAX_HEAD_BYTES + 4);
            assert_eq!(Some(end), old_end, "{:?}", String::from_utf8_lossy(&bytes));
            assert_eq!(
                judged,
                judge(&bytes[..end]),
                "{:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        assert!(answered > 5_000, "{answered}");
    }

    /// `plain_decimal` answers only for what `str::parse::<u64>` reads the
    /// same, and a `Content-Length` read either way is the same number.
    #[test]
    fn a_plain_decimal_is_what_parse_gives_and_anything_else_goes_to_parse() {
        let values: [&[u8]; 16] = [
            b"0",
            b"1945",
            b"007",
            b"9999999999999999999",
            b"18446744073709551615",
            b"18446744073709551616",
            b"+5",
            b"-5",
            b"",
            b" 5",
            b"5 ",
            b"5\x0b",
            b"1_000",
            b"\xd9\xa5",
            b"12a",
            b"\t42\t",
        ];
        for value in values {
            let parsed = std::str::from_utf8(value)
                .ok()
                .and_then(|t| t.parse::<u64>().ok());
            if let Some(n) = plain_decimal(value) {
                assert_eq!(Some(n), parsed, "{value:?}");
            }
            let trimmed = std::str::from_utf8(value)
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok());
            let mut framing = Framing::default();
            let read = framing
                .header(b"Content-Length", value)
                .map(|()| framing.length);
            assert_eq!(read.flatten(), trimmed, "{value:?}");
        }
        assert_eq!(plain_decimal(b"1945"), Some(1945));
        assert_eq!(plain_decimal(b"+5"), None);
        assert_eq!(plain_decimal(b"18446744073709551615"), None);
    }

    /// Feeds `stream` in pieces of `step` bytes; returns the verdicts queued.
    fn verdicts(stream: &[u8], step: usize) -> Vec<Option<FramingError>> {
        let queue = Verdicts::default();
        let mut inspector = HeadInspector::new((), queue.clone());
        for piece in stream.chunks(step) {
            inspector.feed(piece);
        }
        queue.take_all()
    }

    /// Verdicts come out in the order they went in, refusals among fine
    /// ones, however the pushes and takes interleave; a take with no head
    /// waiting says "fine" and uses up nothing.
    #[test]
    fn verdicts_come_out_in_order_however_pushes_and_takes_interleave() {
        use FramingError::{LengthAndTransferEncoding as Both, UnsupportedTransferEncoding as Te};
        let sequence = [
            None,
            Some(Both),
            None,
            None,
            Some(Te),
            Some(Both),
            None,
            Some(Te),
        ];
        // Taken after every `lag` pushes (0: all pushed first, then taken).
        for lag in 0..=sequence.len() {
            let queue = Verdicts::default();
            let mut out = Vec::new();
            assert_eq!(queue.next(), None, "nothing pushed yet");
            for (i, verdict) in sequence.iter().enumerate() {
                queue.push(*verdict);
                if lag > 0 && (i + 1) % lag == 0 {
                    out.extend(queue.take_all());
                    assert_eq!(queue.next(), None, "all taken");
                }
            }
            out.extend(queue.take_all());
            assert_eq!(out, sequence, "lag {lag}");
        }
        // One at a time, each taken as soon as it is pushed.
        let queue = Verdicts::default();
        for verdict in sequence {
            queue.push(verdict);
            assert_eq!(queue.next(), verdict);
            assert_eq!(queue.next(), None);
        }
    }

    const CL_AND_TE: &[u8] = b"POST /rum HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";

    #[test]
    fn length_and_transfer_encoding_together_are_flagged_in_any_order() {
        for step in [1, 7, usize::MAX] {
            assert_eq!(
                verdicts(CL_AND_TE, step),
                [Some(FramingError::LengthAndTransferEncoding)]
            );
            let reversed = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 3\r\n\r\n0\r\n\r\n";
            assert_eq!(
                verdicts(reversed, step),
                [Some(FramingError::LengthAndTransferEncoding)]
            );
        }
    }

    #[test]
    fn keep_alive_requests_are_followed_through_their_bodies() {
        // A body that looks like a head must not be taken for one.
        let fake = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut stream = Vec::new();
        stream.extend_from_slice(
            format!(
                "POST /rum HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                fake.len()
            )
            .as_bytes(),
        );
        stream.extend_from_slice(fake);
        stream.extend_from_slice(b"POST /rum HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        stream.extend_from_slice(b"5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n");
        stream.extend_from_slice(b"GET /health HTTP/1.1\r\n\r\n");
        stream.extend_from_slice(CL_AND_TE);
        for step in [1, 3, 64, usize::MAX] {
            assert_eq!(
                verdicts(&stream, step),
                [
                    None,
                    None,
                    None,
                    Some(FramingError::LengthAndTransferEncoding)
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn a_length_after_transfer_encoding_is_flagged_whatever_its_value() {
        for lengths in [
            "Content-Length: x\r\n",
            "Content-Length: 5\r\nContent-Length: 6\r\n",
        ] {
            let mut stream = format!(
                "POST /rum HTTP/1.1\r\nTransfer-Encoding: chunked\r\n{lengths}\r\n0\r\n\r\n"
            )
            .into_bytes();
            stream.extend_from_slice(CL_AND_TE);
            assert_eq!(
                verdicts(&stream, usize::MAX),
                [Some(FramingError::LengthAndTransferEncoding); 2],
                "{lengths}"
            );
        }
    }

    #[test]
    fn trailers_end_where_hyper_ends_them() {
        // A bare LF after the last chunk starts a trailer, ended by CRLF CRLF.
        let mut stream =
            b"POST /rum HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\nX: y\r\n\r\n".to_vec();
        stream.extend_from_slice(CL_AND_TE);
        for step in [1, 4, usize::MAX] {
            assert_eq!(
                verdicts(&stream, step),
                [None, Some(FramingError::LengthAndTransferEncoding)],
                "step {step}"
            );
        }
    }

    #[test]
    fn heads_with_bare_lf_line_ends_get_their_own_verdicts() {
        let mut stream = b"GET /health HTTP/1.1\nHost: x\n\n".to_vec();
        stream.extend_from_slice(b"POST /rum HTTP/1.1\r\nContent-Length: 3\n\r\nabc");
        stream.extend_from_slice(CL_AND_TE);
        for step in [1, 2, 5, usize::MAX] {
            assert_eq!(
                verdicts(&stream, step),
                [None, None, Some(FramingError::LengthAndTransferEncoding)],
                "step {step}"
            );
        }
    }

    /// The quick reading against httparse on generated heads: wherever both
    /// answer and httparse takes the head as hyper would, they agree.
    #[test]
    fn heads_read_quickly_are_judged_as_parsed() {
        const LINES: &[&str] = &[
            "Host: x",
            "Content-Length: 5",
            "content-length:  5 ",
            "CONTENT-LENGTH:5",
            "Content-Length: 05",
            "Content-Length: 6",
            "Content-Length: 0",
            "Content-Length: x",
            "Content-Length: -1",
            "Content-Length : 5",
            "Content-Lengthy: 5",
            "Transfer-Encoding: chunked",
            "transfer-encoding: gzip, chunked",
            "Transfer-Encoding: chunked, gzip",
            "Transfer-Encoding:",
            "TRANSFER-ENCODING:\tChunked ",
            "Transfer-Encoding: chunked\n",
            " folded",
            "\tContent-Length: 9",
            "Cookie: a=b; c=d",
            "Connection: close",
            "Content",
            "Content-Type: text/plain",
            "trace: 1",
            "X: y\n",
            "X: \u{1}",
            "bad header: 1",
            "",
        ];
        const REQUEST_LINES: &[&str] = &[
            "POST /rum HTTP/1.1\r\n",
            "GET / HTTP/1.0\r\n",
            "POST /rum HTTP/1.1\n",
            "PRI * HTTP/2.0\r\n",
            "POST /rum HTTP/1.2\r\n",
            "garbage\r\n",
        ];
        let mut rng = fastrand::Rng::with_seed(5);
        let mut quick = 0;
        for _ in 0..50_000 {
            let mut head = REQUEST_LINES[rng.usize(..REQUEST_LINES.len())].to_owned();
            for _ in 0..rng.usize(0..6) {
                head.push_str(LINES[rng.usize(..LINES.len())]);
                head.push_str(if rng.u8(..8) == 0 { "\n" } else { "\r\n" });
            }
            head.push_str("\r\n");
            let head = head.as_bytes();
            let Some(judged) = judge_quickly(head) else {
                continue;
            };
            quick += 1;
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let parsed = httparse::Request::new(&mut headers).parse(head);
            if matches!(parsed, Ok(httparse::Status::Complete(_))) {
                assert_eq!(
                    judged,
                    judge_parsed(head),
                    "{:?}",
                    String::from_utf8_lossy(head)
                );
            }
        }
        assert!(quick > 10_000, "only {quick} heads read quickly");
    }

    #[test]
    fn http2_and_garbage_stop_the_inspection() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert!(verdicts(preface, 5).is_empty());
        assert!(verdicts(b"\x16\x03\x01garbage\r\n\r\n", 100).is_empty());
    }

    #[test]
    fn only_a_single_chunked_coding_passes() {
        let mut headers = HeaderMap::new();
        assert_eq!(check_transfer_encoding(&headers), Ok(()));
        headers.insert(header::TRANSFER_ENCODING, "Chunked".parse().unwrap());
        assert_eq!(check_transfer_encoding(&headers), Ok(()));
        for bad in ["gzip, chunked", "chunked, chunked"] {
            headers.insert(header::TRANSFER_ENCODING, bad.parse().unwrap());
            assert_eq!(
                check_transfer_encoding(&headers),
                Err(FramingError::UnsupportedTransferEncoding),
                "{bad}"
            );
        }
        headers.insert(header::TRANSFER_ENCODING, "gzip".parse().unwrap());
        headers.append(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        assert!(check_transfer_encoding(&headers).is_err());
    }
}
