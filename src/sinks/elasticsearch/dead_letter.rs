//! The dead-letter file: documents Elasticsearch refused for good (mapping
//! errors, 400s) or that could not be delivered before retries ran out or
//! shutdown, one JSON object per line:
//!
//! `{"@timestamp": "...", "index": "...", "id": "...", "error": {"status": 400, "type": "...", "reason": "..."}, "document": {...}}`
//!
//! Whole lines or nothing: a write that fails part-way (a full disk, a quota)
//! is cut back to where it started, one that would pass
//! `dead_letter.max_bytes` is not made, and a torn last line (a crash
//! mid-write) is cut back to the last whole line before the next write;
//! writers of one file (two sinks, two processes) take turns under an
//! `flock`. So every line parses, the replay command in docs/elasticsearch.md
//! (the file moved aside, then sent in requests of 1000 documents) replays all
//! of them, and `elasticsearch_dead_lettered_events_total` equals the lines
//! this process wrote. Replaying is idempotent on Elasticsearch/OpenSearch
//! (same `_id`, `create`); on engines without `_id` semantics it is
//! at-least-once.

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;

use super::encoder::ItemSpan;
use super::retry::Failure;

/// The file dead letters are appended to. A trait so tests can inject one
/// that fails after N bytes, as a full disk does.
pub trait LetterFile: Send + 'static {
    /// Length in bytes.
    fn size(&mut self) -> io::Result<u64>;
    /// Appends all of `bytes` and makes them durable, or fails (possibly
    /// after writing some of them).
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Cuts the file to `len` bytes.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// The last `n` bytes (`n` <= length).
    fn tail(&mut self, n: u64) -> io::Result<Vec<u8>>;
    /// Waits for, then holds, the lock every writer of the file takes for
    /// a write (an exclusive `flock`): a cut-back after a failed write must
    /// not take another writer's lines, nor a torn-line cut its line in
    /// progress.
    fn lock_writers(&mut self) -> io::Result<()>;
    fn unlock_writers(&mut self);
}

impl LetterFile for std::fs::File {
    fn size(&mut self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes)?;
        // Some filesystems (NFS, XFS with delayed allocation) report a full
        // disk only here; a line is not counted before this succeeds.
        self.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }

    fn tail(&mut self, n: u64) -> io::Result<Vec<u8>> {
        let len = LetterFile::size(self)?;
        self.seek(SeekFrom::Start(len.saturating_sub(n)))?;
        let mut out = Vec::with_capacity(n as usize);
        self.take(n).read_to_end(&mut out)?;
        Ok(out)
    }

    fn lock_writers(&mut self) -> io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            loop {
                // SAFETY: flock on a descriptor `self` keeps open.
                if unsafe { libc::flock(self.as_raw_fd(), libc::LOCK_EX) } == 0 {
                    return Ok(());
                }
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    // A file system without locks (some NFS set-ups): the
                    // writers go uncoordinated, as they would without this,
                    // rather than every dead letter being lost.
                    Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::EINVAL) => return Ok(()),
                    _ => return Err(e),
                }
            }
        }
        #[cfg(not(unix))]
        Ok(())
    }

    fn unlock_writers(&mut self) {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: as above. Closing the file would release it too.
            unsafe { libc::flock(self.as_raw_fd(), libc::LOCK_UN) };
        }
    }
}

/// Opens the file at a path (the real one creates it, append mode).
pub type Opener = Arc<dyn Fn(&Path) -> io::Result<Box<dyn LetterFile>> + Send + Sync>;

fn open_file(path: &Path) -> io::Result<Box<dyn LetterFile>> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    // Whole documents (URLs, user agents, labels): a new file is readable by
    // the pipeline's user and group (a log shipper sharing the pod's
    // fsGroup), never by every local user, whatever the umask allows.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o640);
    let shared = in_shared_directory(path);
    #[cfg(unix)]
    if shared {
        // Another user may have put a link here, to a file they read.
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    }
    let file = options.open(path).map_err(|e| {
        if shared && path.is_symlink() {
            io::Error::new(io::ErrorKind::PermissionDenied, shared_refusal(path))
        } else {
            e
        }
    })?;
    if shared && !owned_by_us(&file.metadata()?) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            shared_refusal(path),
        ));
    }
    Ok(Box::new(file))
}

/// Whether other users can add entries to the file's directory (`/tmp`,
/// the prod pipeline's default): there a file or link at the path may be
/// theirs, made before the pipeline's first dead letter, and whole
/// documents (URLs, user agents, client addresses) would go to them.
fn in_shared_directory(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(dir) => dir,
            None => Path::new("."),
        };
        std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o002 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

fn owned_by_us(metadata: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions and cannot fail.
        metadata.uid() == unsafe { libc::geteuid() }
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        true
    }
}

fn shared_refusal(path: &Path) -> String {
    format!(
        "`{}` is a link or a file of another user in a directory every user can write to (such as /tmp): dead letters (whole documents) are not written there; remove it, or set dead_letter.path to a directory of the pipeline's own",
        path.display()
    )
}

/// Appends dead letters; shared by every request of the sink.
pub struct DeadLetters {
    path: Option<PathBuf>,
    opener: Opener,
    /// Held for a write: this sink's writes take turns (the `flock` makes
    /// other writers wait too). The file is opened at the path for each
    /// write and closed after it, so one moved aside for a replay gets no
    /// more lines, and one removed after it is not held open (its blocks
    /// stay in use while any descriptor is open: a volume emptied by the
    /// operator stayed full until the next dead letter, weeks away).
    writing: Mutex<()>,
    /// `dead_letter.max_bytes`: the file does not grow past it. A volume
    /// with a size limit must never be overrun — Kubernetes evicts a pod
    /// whose emptyDir passes its sizeLimit at once (no grace period), and the
    /// file and everything in the buffers go with it.
    max_bytes: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("no dead_letter.path is configured")]
    NotConfigured,
    #[error("cannot write the dead-letter file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl DeadLetters {
    pub fn new(path: Option<PathBuf>) -> Self {
        Self::with_opener(path, Arc::new(open_file))
    }

    /// With another way to open the file (tests: a writer that fails).
    pub fn with_opener(path: Option<PathBuf>, opener: Opener) -> Self {
        Self {
            path,
            opener,
            writing: Mutex::new(()),
            max_bytes: None,
        }
    }

    /// A file that stops growing at `max` bytes: a write that would pass it
    /// fails whole (its documents are counted as lost, as with a full disk).
    pub fn with_max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = Some(max);
        self
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Appends one line per item: all of them, or none (the file is cut back
    /// to where it was when a write fails part-way).
    pub async fn write(
        &self,
        body: &[u8],
        items: &[(ItemSpan, &Failure)],
    ) -> Result<(), DeadLetterError> {
        let Some(path) = &self.path else {
            return Err(DeadLetterError::NotConfigured);
        };
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut lines = Vec::new();
        for (span, failure) in items {
            record(
                span.action(body),
                span.document(body),
                failure,
                &now,
                &mut lines,
            );
        }
        let _turn = self.writing.lock().await;
        let opener = self.opener.clone();
        let owned_path = path.clone();
        let max_bytes = self.max_bytes;
        // Blocking file I/O off the runtime's threads; the lock keeps writes whole.
        let result = tokio::task::spawn_blocking(move || {
            let mut file = opener(&owned_path)?;
            // Another writer of the file (a second sink naming the same
            // path, another process on the volume) waits from here until
            // this write is whole or cut back, and this one for it.
            file.lock_writers()?;
            let result = write_locked(file.as_mut(), &owned_path, &lines, max_bytes);
            file.unlock_writers();
            result
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
        result.map_err(|source| DeadLetterError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

/// With the writers' lock held: cuts a torn line left by a writer that died
/// mid-write (this one before, or another), checks `max_bytes`, appends.
fn write_locked(
    file: &mut dyn LetterFile,
    path: &Path,
    lines: &[u8],
    max_bytes: Option<u64>,
) -> io::Result<()> {
    let cut = cut_torn_tail(file)?;
    if cut > 0 {
        tracing::warn!(
            "dead-letter file {}: cut {cut} byte(s) of a torn last line (a write was interrupted)",
            path.display()
        );
    }
    if let Some(max) = max_bytes {
        let size = file.size()?;
        if size.saturating_add(lines.len() as u64) > max {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "it holds {size} bytes and {} more would pass dead_letter.max_bytes ({max}); replay it and move it aside",
                    lines.len()
                ),
            ));
        }
    }
    append_whole(file, lines)
}

/// Appends `lines`; on failure cuts the file back to its length before. If
/// even that fails, the torn line is cut before the next write.
fn append_whole(file: &mut dyn LetterFile, lines: &[u8]) -> io::Result<()> {
    let before = file.size()?;
    if let Err(e) = file.append(lines) {
        let _ = file.truncate(before);
        return Err(e);
    }
    Ok(())
}

/// Cuts whatever follows the last newline; returns how many bytes went.
pub fn cut_torn_tail(file: &mut dyn LetterFile) -> io::Result<u64> {
    let len = file.size()?;
    let mut window: u64 = 4096;
    loop {
        let n = window.min(len);
        if n == 0 {
            return Ok(0);
        }
        let tail = file.tail(n)?;
        if let Some(pos) = tail.iter().rposition(|b| *b == b'\n') {
            let keep = len - n + pos as u64 + 1;
            if keep < len {
                file.truncate(keep)?;
            }
            return Ok(len - keep);
        }
        if n == len {
            file.truncate(0)?;
            return Ok(len);
        }
        window = window.saturating_mul(8);
    }
}

/// What `validate` checks: the file (or, before it exists, its directory)
/// can be written, so dead letters are not found unwritable during an outage.
pub fn check_writable(path: &Path) -> Result<(), String> {
    let shown = path.display();
    if path.is_dir() {
        return Err(format!("`{shown}` is a directory"));
    }
    let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir.to_path_buf(),
        None => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(format!("the directory of `{shown}` does not exist"));
    }
    if in_shared_directory(path) && path.symlink_metadata().is_ok() {
        let ours =
            !path.is_symlink() && std::fs::symlink_metadata(path).is_ok_and(|m| owned_by_us(&m));
        if !ours {
            return Err(shared_refusal(path));
        }
    }
    if path.exists() {
        if !path.is_file() {
            return Err(format!(
                "`{shown}` is not a regular file (a device or a pipe such as /dev/stderr): dead letters are fsynced and cut back to whole lines, which only a file allows, so every write would fail and its documents be lost"
            ));
        }
        // As the sink opens it: it also reads the file, to cut a line a
        // crashed writer left half-written.
        return OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map(|_| ())
            .map_err(|e| {
                format!("`{shown}` cannot be opened for reading and writing ({e}): dead letters would be lost")
            });
    }
    let probe = dir.join(format!(".rum-pipeline-write-probe-{}", std::process::id()));
    match OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        // A probe left by a crashed run of the same pid: the directory is writable.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!(
            "cannot create `{shown}`: the directory `{}` is not writable ({e}); dead letters would be lost",
            dir.display()
        )),
    }
}

#[derive(Deserialize)]
struct ActionLine {
    create: ActionMeta,
}

#[derive(Deserialize)]
struct ActionMeta {
    #[serde(rename = "_index")]
    index: String,
    #[serde(rename = "_id")]
    id: String,
}

/// One dead-letter line. The document is copied as the bytes that were sent.
pub fn record(action: &[u8], document: &[u8], failure: &Failure, now: &str, out: &mut Vec<u8>) {
    let (index, id) = match serde_json::from_slice::<ActionLine>(action) {
        Ok(line) => (line.create.index, line.create.id),
        Err(_) => (String::new(), String::new()),
    };
    let head = json!({
        "@timestamp": now,
        "index": index,
        "id": id,
        "error": {"status": failure.status, "type": failure.error_type, "reason": failure.reason},
    });
    let head = head.to_string();
    // `{...head...,"document":<raw>}`: the head is an object, so drop its `}`.
    out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    out.extend_from_slice(b",\"document\":");
    out.extend_from_slice(document);
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_record_keeps_the_document_index_id_and_error() {
        let mut out = Vec::new();
        let failure = Failure::new(
            Some(400),
            "mapper_parsing_exception",
            "failed to parse field [x]",
        );
        record(
            br#"{"create":{"_index":"c.rum.metrics-2026.03.07","_id":"abc"}}"#,
            br#"{"x":"not a number","rum":{"type":"custom"}}"#,
            &failure,
            "2026-03-07T10:00:00.000Z",
            &mut out,
        );
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
        let line: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            line,
            serde_json::json!({
                "@timestamp": "2026-03-07T10:00:00.000Z",
                "index": "c.rum.metrics-2026.03.07",
                "id": "abc",
                "error": {"status": 400, "type": "mapper_parsing_exception", "reason": "failed to parse field [x]"},
                "document": {"x": "not a number", "rum": {"type": "custom"}}
            })
        );
    }

    #[tokio::test]
    async fn writes_append_and_missing_path_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.ndjson");
        let letters = DeadLetters::new(Some(path.clone()));
        let body = b"{\"create\":{\"_index\":\"i\",\"_id\":\"1\"}}\n{\"a\":1}\n{\"create\":{\"_index\":\"i\",\"_id\":\"2\"}}\n{\"a\":2}\n";
        let newlines: Vec<usize> = body
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i + 1)
            .collect();
        let spans = [
            ItemSpan {
                start: 0,
                source: newlines[0],
                end: newlines[1],
            },
            ItemSpan {
                start: newlines[1],
                source: newlines[2],
                end: newlines[3],
            },
        ];
        assert_eq!(spans[1].document(body), b"{\"a\":2}");
        let failure = Failure::new(None, "retries_exhausted", "connection refused");
        letters.write(body, &[(spans[1], &failure)]).await.unwrap();
        letters.write(body, &[(spans[0], &failure)]).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let ids: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(ids, ["2", "1"]);
        assert!(matches!(
            DeadLetters::new(None)
                .write(body, &[(spans[0], &failure)])
                .await,
            Err(DeadLetterError::NotConfigured)
        ));
        let unwritable = DeadLetters::new(Some(dir.path().join("no/such/dir/x")));
        assert!(matches!(
            unwritable.write(body, &[(spans[0], &failure)]).await,
            Err(DeadLetterError::Io { .. })
        ));
    }
}

#[cfg(test)]
mod whole_line_tests {
    use super::*;
    use serde_json::Value;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A real file that accepts only `budget` more bytes, then fails with
    /// ENOSPC after writing what fits — as a full disk does.
    struct FailAfter {
        file: std::fs::File,
        budget: Arc<AtomicUsize>,
    }

    impl LetterFile for FailAfter {
        fn size(&mut self) -> io::Result<u64> {
            LetterFile::size(&mut self.file)
        }
        fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
            let budget = self.budget.load(Ordering::SeqCst);
            let n = budget.min(bytes.len());
            self.file.write_all(&bytes[..n])?;
            self.budget.fetch_sub(n, Ordering::SeqCst);
            if n < bytes.len() {
                return Err(io::Error::from_raw_os_error(28));
            }
            Ok(())
        }
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.file.set_len(len)
        }
        fn tail(&mut self, n: u64) -> io::Result<Vec<u8>> {
            self.file.tail(n)
        }
        fn lock_writers(&mut self) -> io::Result<()> {
            self.file.lock_writers()
        }
        fn unlock_writers(&mut self) {
            self.file.unlock_writers()
        }
    }

    fn body(n: usize) -> (Vec<u8>, Vec<ItemSpan>) {
        let mut body = Vec::new();
        let mut spans = Vec::new();
        for i in 0..n {
            let start = body.len();
            body.extend_from_slice(
                format!("{{\"create\":{{\"_index\":\"i\",\"_id\":\"{i}\"}}}}\n").as_bytes(),
            );
            let source = body.len();
            body.extend_from_slice(
                format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(40)).as_bytes(),
            );
            spans.push(ItemSpan {
                start,
                source,
                end: body.len(),
            });
        }
        (body, spans)
    }

    fn ids(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("every line parses");
                v["id"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_write_cut_short_leaves_only_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.ndjson");
        let budget = Arc::new(AtomicUsize::new(usize::MAX));
        let opener: Opener = {
            let budget = budget.clone();
            Arc::new(move |p: &Path| {
                let file = OpenOptions::new()
                    .read(true)
                    .append(true)
                    .create(true)
                    .open(p)?;
                Ok(Box::new(FailAfter {
                    file,
                    budget: budget.clone(),
                }) as Box<dyn LetterFile>)
            })
        };
        let letters = DeadLetters::with_opener(Some(path.clone()), opener);
        let (body, spans) = body(6);
        let failure = Failure::new(Some(400), "mapper_parsing_exception", "bad");
        let pick = |r: std::ops::Range<usize>| -> Vec<(ItemSpan, &Failure)> {
            spans[r].iter().map(|s| (*s, &failure)).collect()
        };
        letters.write(&body, &pick(0..2)).await.unwrap();
        // The disk fills up in the middle of the second line of the next write.
        let one_line = std::fs::metadata(&path).unwrap().len() as usize / 2;
        budget.store(one_line + one_line / 2, Ordering::SeqCst);
        let err = letters.write(&body, &pick(2..4)).await.unwrap_err();
        assert!(err.to_string().contains("os error 28"), "{err}");
        assert_eq!(
            ids(&path),
            ["0", "1"],
            "the half-written write was cut back"
        );
        // Space again: later writes land after the last whole line.
        budget.store(usize::MAX, Ordering::SeqCst);
        letters.write(&body, &pick(4..6)).await.unwrap();
        assert_eq!(ids(&path), ["0", "1", "4", "5"]);
    }

    #[tokio::test]
    async fn a_torn_line_from_a_crash_is_cut_when_the_file_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.ndjson");
        std::fs::write(
            &path,
            "{\"id\":\"a\",\"document\":{}}\n{\"id\":\"b\",\"docu",
        )
        .unwrap();
        let letters = DeadLetters::new(Some(path.clone()));
        let (body, spans) = body(1);
        let failure = Failure::new(None, "shutdown", "x");
        letters.write(&body, &[(spans[0], &failure)]).await.unwrap();
        assert_eq!(ids(&path), ["a", "0"]);
        // A file with no newline at all is all torn.
        let mut only_torn = std::fs::File::options()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        only_torn.set_len(0).unwrap();
        only_torn.write_all(&vec![b'x'; 10_000]).unwrap();
        assert_eq!(cut_torn_tail(&mut only_torn).unwrap(), 10_000);
        assert_eq!(LetterFile::size(&mut only_torn).unwrap(), 0);
    }

    /// An operator moves the file aside to replay it (or removes it after a
    /// replay, or logrotate renames it): later dead letters must land in a
    /// file at the configured path, not in the moved or deleted one.
    #[tokio::test]
    async fn a_file_moved_or_removed_is_replaced_at_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.ndjson");
        let moved = dir.path().join("dead.ndjson.replaying");
        let letters = DeadLetters::new(Some(path.clone()));
        let (body, spans) = body(3);
        let failure = Failure::new(Some(400), "mapper_parsing_exception", "bad");
        letters.write(&body, &[(spans[0], &failure)]).await.unwrap();
        std::fs::rename(&path, &moved).unwrap();
        letters.write(&body, &[(spans[1], &failure)]).await.unwrap();
        assert_eq!(ids(&moved), ["0"], "nothing added to the moved file");
        assert_eq!(ids(&path), ["1"], "a new file at the path");
        std::fs::remove_file(&path).unwrap();
        letters.write(&body, &[(spans[2], &failure)]).await.unwrap();
        assert_eq!(ids(&path), ["2"], "not written into the removed file");
    }

    /// A file moved aside, replayed and removed must not stay open: its
    /// blocks are freed only when the last descriptor on it closes. Held
    /// until the sink's next dead letter (weeks away while Elasticsearch is
    /// healthy), a volume filled to `dead_letter.max_bytes` stayed full
    /// after the operator emptied it.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_file_removed_after_a_replay_is_not_held_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.ndjson");
        let moved = dir.path().join("dead.replaying.ndjson");
        let letters = DeadLetters::new(Some(path.clone()));
        let (body, spans) = body(1);
        let failure = Failure::new(Some(400), "mapper_parsing_exception", "bad");
        letters.write(&body, &[(spans[0], &failure)]).await.unwrap();
        std::fs::rename(&path, &moved).unwrap();
        std::fs::remove_file(&moved).unwrap();
        let held: Vec<PathBuf> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter(|target| target.starts_with(dir.path()))
            .collect();
        assert!(held.is_empty(), "still open: {held:?}");
        drop(letters);
    }

    /// A volume with a size limit (a Kubernetes emptyDir past its sizeLimit
    /// gets the pod evicted at once, file and buffers with it): the file
    /// stops growing at `dead_letter.max_bytes`, whole lines only, and takes
    /// dead letters again once it has been moved aside.
    #[tokio::test]
    async fn the_file_stops_at_max_bytes_and_resumes_once_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.ndjson");
        let (body, spans) = body(5);
        let failure = Failure::new(Some(400), "mapper_parsing_exception", "bad");
        let mut one = Vec::new();
        record(
            spans[0].action(&body),
            spans[0].document(&body),
            &failure,
            "2026-03-07T10:00:00.000Z",
            &mut one,
        );
        // Room for two lines and a half.
        let letters = DeadLetters::new(Some(path.clone())).with_max_bytes(one.len() as u64 * 5 / 2);
        letters.write(&body, &[(spans[0], &failure)]).await.unwrap();
        letters.write(&body, &[(spans[1], &failure)]).await.unwrap();
        let err = letters
            .write(&body, &[(spans[2], &failure)])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("dead_letter.max_bytes"), "{err}");
        assert_eq!(ids(&path), ["0", "1"], "nothing past the limit");
        std::fs::rename(&path, dir.path().join("dead.replaying.ndjson")).unwrap();
        letters.write(&body, &[(spans[3], &failure)]).await.unwrap();
        assert_eq!(ids(&path), ["3"]);
        // A write larger than the limit as a whole is refused whole.
        let all: Vec<(ItemSpan, &Failure)> = spans.iter().map(|s| (*s, &failure)).collect();
        assert!(letters.write(&body, &all).await.is_err());
        assert_eq!(ids(&path), ["3"]);
    }

    /// Two writers of one file (two sinks naming the same path, or two
    /// processes on one volume): a torn line the other left (it crashed, or
    /// its cut-back failed) must not swallow the head of this one's next line.
    #[tokio::test]
    async fn a_torn_line_another_writer_left_is_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.ndjson");
        let letters = DeadLetters::new(Some(path.clone()));
        let (body, spans) = body(2);
        let failure = Failure::new(Some(400), "mapper_parsing_exception", "bad");
        letters.write(&body, &[(spans[0], &failure)]).await.unwrap();
        // The other writer dies in the middle of a line.
        let mut other = OpenOptions::new().append(true).open(&path).unwrap();
        other.write_all(b"{\"id\":\"other\",\"docu").unwrap();
        letters.write(&body, &[(spans[1], &failure)]).await.unwrap();
        assert_eq!(ids(&path), ["0", "1"]);
    }

    /// A write cut short is cut back to where it began; lines another writer
    /// appended in between (it thinks them safe, and counted them) must not
    /// be cut with it. Each write holds an exclusive lock on the file
    /// (`flock`) from its start to its cut-back, so the other waits.
    #[tokio::test]
    async fn a_cut_back_never_takes_another_writers_lines() {
        /// Fails after a few bytes, like `FailAfter`; in between, "the other
        /// writer" tries to append a whole line, taking the lock as a
        /// `DeadLetters` does, without waiting for it.
        struct Interleaved {
            file: std::fs::File,
            path: PathBuf,
            other_line: Vec<u8>,
            other_wrote: Arc<std::sync::atomic::AtomicBool>,
        }
        impl LetterFile for Interleaved {
            fn size(&mut self) -> io::Result<u64> {
                LetterFile::size(&mut self.file)
            }
            fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
                self.file.write_all(&bytes[..10])?;
                let mut other = OpenOptions::new().append(true).open(&self.path)?;
                if try_lock(&other) {
                    other.write_all(&self.other_line)?;
                    self.other_wrote.store(true, Ordering::SeqCst);
                }
                Err(io::Error::from_raw_os_error(28))
            }
            fn truncate(&mut self, len: u64) -> io::Result<()> {
                self.file.set_len(len)
            }
            fn tail(&mut self, n: u64) -> io::Result<Vec<u8>> {
                self.file.tail(n)
            }
            fn lock_writers(&mut self) -> io::Result<()> {
                self.file.lock_writers()
            }
            fn unlock_writers(&mut self) {
                self.file.unlock_writers()
            }
        }
        fn try_lock(file: &std::fs::File) -> bool {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a descriptor this function borrows.
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
        }

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.ndjson");
        let (body, spans) = body(3);
        let failure = Failure::new(Some(400), "mapper_parsing_exception", "bad");
        let mut other_line = Vec::new();
        record(
            spans[2].action(&body),
            spans[2].document(&body),
            &failure,
            "2026-03-07T10:00:00.000Z",
            &mut other_line,
        );
        let other_wrote = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let opener: Opener = {
            let other_wrote = other_wrote.clone();
            Arc::new(move |p: &Path| {
                let file = OpenOptions::new()
                    .read(true)
                    .append(true)
                    .create(true)
                    .open(p)?;
                Ok(Box::new(Interleaved {
                    file,
                    path: p.to_owned(),
                    other_line: other_line.clone(),
                    other_wrote: other_wrote.clone(),
                }) as Box<dyn LetterFile>)
            })
        };
        DeadLetters::new(Some(path.clone()))
            .write(&body, &[(spans[0], &failure)])
            .await
            .unwrap();
        let failing = DeadLetters::with_opener(Some(path.clone()), opener);
        assert!(failing.write(&body, &[(spans[1], &failure)]).await.is_err());
        if !other_wrote.load(Ordering::SeqCst) {
            // It found the file locked, and writes once the lock is free.
            DeadLetters::new(Some(path.clone()))
                .write(&body, &[(spans[2], &failure)])
                .await
                .unwrap();
        }
        assert_eq!(ids(&path), ["0", "2"], "the other writer's line survives");
    }

    /// In a directory every user can write to (the prod pipeline's default
    /// is in /tmp), another user can make the path a link to a file they
    /// read, or a file of theirs, before the first dead letter: whole
    /// documents would go to them. Neither is written to, and `validate`
    /// says so; a file of our own there is used.
    #[cfg(unix)]
    #[test]
    fn a_link_or_another_users_file_in_a_shared_directory_is_not_written() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let theirs = dir.path().join("theirs.ndjson");
        std::fs::write(&theirs, "").unwrap();
        let link = shared.join("dead.ndjson");
        std::os::unix::fs::symlink(&theirs, &link).unwrap();
        let problem = check_writable(&link).unwrap_err();
        assert!(
            problem.contains("a link or a file of another user"),
            "{problem}"
        );
        let error = open_file(&link).err().expect("refused");
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied, "{error}");
        assert_eq!(
            std::fs::read(&theirs).unwrap(),
            b"",
            "nothing written through the link"
        );
        // A file of our own in the shared directory is fine, and so is a
        // link in a directory of the pipeline's own.
        let ours = shared.join("ours.ndjson");
        assert!(check_writable(&ours).is_ok());
        assert!(open_file(&ours).is_ok());
        assert!(check_writable(&ours).is_ok());
        let private_link = dir.path().join("link.ndjson");
        std::os::unix::fs::symlink(&theirs, &private_link).unwrap();
        assert!(open_file(&private_link).is_ok());
        // Another user's file: only root can make one here.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let foreign = shared.join("foreign.ndjson");
            std::fs::write(&foreign, "").unwrap();
            std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
            assert!(check_writable(&foreign).is_err());
            let error = open_file(&foreign).err().expect("refused");
            assert_eq!(error.kind(), io::ErrorKind::PermissionDenied, "{error}");
        }
    }

    #[test]
    fn validate_sees_an_unusable_path() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_writable(&dir.path().join("dead.ndjson")).is_ok());
        assert!(check_writable(dir.path())
            .unwrap_err()
            .contains("is a directory"));
        assert!(check_writable(&dir.path().join("no/such/dead.ndjson"))
            .unwrap_err()
            .contains("does not exist"));
        // Nothing is left behind by the probe.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// The file holds whole documents (page URLs, user agents, labels,
    /// client addresses when the operator keeps them): SECURITY.md wants it
    /// readable by the pipeline's user only, and whatever the umask leaves
    /// (0644 under the usual 022) lets every local user read it.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_new_file_is_not_readable_by_other_users() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.ndjson");
        let (body, spans) = body(1);
        let failure = Failure::new(Some(400), "mapper_parsing_exception", "bad");
        DeadLetters::new(Some(path.clone()))
            .write(&body, &[(spans[0], &failure)])
            .await
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o007, 0, "mode {mode:o}");
        assert_eq!(mode & 0o600, 0o600, "mode {mode:o}");
    }

    /// `/dev/stderr`, `/dev/stdout` or `/dev/null` as the path (to see dead
    /// letters in the container's log, or to throw them away) opens fine,
    /// but a pipe or a device can be neither fsynced nor cut back to whole
    /// lines, so every write fails and its documents are lost. `validate`
    /// must say so rather than pass.
    #[tokio::test]
    async fn validate_refuses_what_is_not_a_regular_file() {
        let path = Path::new("/dev/null");
        let (body, spans) = body(1);
        let failure = Failure::new(Some(400), "mapper_parsing_exception", "bad");
        let letters = DeadLetters::new(Some(path.to_owned()));
        assert!(letters.write(&body, &[(spans[0], &failure)]).await.is_err());
        let problem = check_writable(path).unwrap_err();
        assert!(problem.contains("not a regular file"), "{problem}");
    }
}
