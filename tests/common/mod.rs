//! Test harness: runs the real `rum-pipeline` binary on an ephemeral port with
//! a pipeline written to a temp dir, and gives tests its stdout (one JSON
//! document per line with the stdout sink, all at once or one at a time), its
//! stderr, /metrics and its RSS. Every test that starts a pipeline starts it here.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_rum-pipeline");

pub struct Pipeline {
    child: Child,
    /// `http://127.0.0.1:PORT` (or https) of the shared listener.
    pub base: String,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Set when each stream reached its end, so an exited pipeline's output
    /// is all there (`None`: the test does not read stdout).
    stdout_closed: Option<Arc<AtomicBool>>,
    stderr_closed: Arc<AtomicBool>,
    /// Set by `stall_stderr`: the reader stops reading stderr, whose pipe
    /// then fills as a stalled log collector's does.
    stderr_stalled: Arc<AtomicBool>,
    /// Stdout lines already handed out by `next_document`.
    read: AtomicUsize,
    pub dir: tempfile::TempDir,
}

/// How the test treats the binary's stdout.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stdout {
    /// Read every line (the normal case).
    Collect,
    /// Never read it: the pipe fills and a stdout sink stalls.
    Stall,
    /// Close it at once: the stdout sink meets a broken pipe.
    Close,
}

fn collect(
    stream: impl std::io::Read + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
    echo: bool,
    stalled: Arc<AtomicBool>,
) -> Arc<AtomicBool> {
    let closed = Arc::new(AtomicBool::new(false));
    let done = closed.clone();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stream).lines();
        while let Some(Ok(line)) = lines.next() {
            if echo {
                eprintln!("[pipeline] {line}");
            }
            into.lock().unwrap().push(line);
            // Stalled for good: the pipe stays open and is never read again.
            if stalled.load(Ordering::Acquire) {
                std::mem::forget(lines);
                break;
            }
        }
        done.store(true, Ordering::Release);
    });
    closed
}

impl Pipeline {
    pub fn start(config: &str) -> Pipeline {
        Self::start_with(config, Stdout::Collect, &[])
    }

    /// Writes `config` to a temp file (`{dir}` in it becomes the temp dir path),
    /// starts the binary and waits until it reports its listener.
    pub fn start_with(config: &str, stdout: Stdout, env: &[(&str, &str)]) -> Pipeline {
        Self::start_inner(config, stdout, env, None)
    }

    /// Starts the binary with its open-files soft limit lowered to `soft`
    /// (the common 1024), as a shell or container would hand it over.
    pub fn start_with_fd_soft_limit(config: &str, soft: u64) -> Pipeline {
        Self::start_inner(config, Stdout::Collect, &[], Some(soft))
    }

    fn start_inner(
        config: &str,
        stdout: Stdout,
        env: &[(&str, &str)],
        fd_soft_limit: Option<u64>,
    ) -> Pipeline {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config.replace("{dir}", &dir.path().display().to_string());
        let path = dir.path().join("pipeline.toml");
        std::fs::write(&path, config).expect("write config");
        let mut command = Command::new(BIN);
        command
            .arg("--config")
            .arg(&path)
            .env("RUM_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        if let Some(soft) = fd_soft_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let mut limit = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                        limit.rlim_cur = soft.min(limit.rlim_max);
                        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
                    }
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().expect("start rum-pipeline");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        let child_stdout = child.stdout.take().expect("stdout");
        let stdout_closed = match stdout {
            Stdout::Collect => Some(collect(
                child_stdout,
                out.clone(),
                false,
                Arc::new(AtomicBool::new(false)),
            )),
            // Keep the pipe open and unread.
            Stdout::Stall => {
                std::mem::forget(child_stdout);
                None
            }
            Stdout::Close => {
                drop(child_stdout);
                None
            }
        };
        let stderr_stalled = Arc::new(AtomicBool::new(false));
        let stderr_closed = collect(
            child.stderr.take().expect("stderr"),
            err.clone(),
            true,
            stderr_stalled.clone(),
        );
        let mut pipeline = Pipeline {
            child,
            base: String::new(),
            stdout: out,
            stderr: err,
            stdout_closed,
            stderr_closed,
            stderr_stalled,
            read: AtomicUsize::new(0),
            dir,
        };
        let line = pipeline
            .wait_stderr(|l| l.contains("listening on "), Duration::from_secs(30))
            .unwrap_or_else(|| panic!("pipeline did not start:\n{}", pipeline.stderr().join("\n")));
        let start = line.find("listening on ").unwrap() + "listening on ".len();
        pipeline.base = line[start..].split_whitespace().next().unwrap().to_owned();
        pipeline
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `127.0.0.1:PORT` of the shared listener, for raw sockets.
    pub fn addr(&self) -> String {
        self.base
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Every stdout line parsed as JSON (panics on a line that is not).
    pub fn documents(&self) -> Vec<Value> {
        self.stdout_lines()
            .iter()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// The next stdout document not yet handed out, waiting for it up to
    /// `deadline` (then panics, showing stderr).
    pub fn next_document(&self, deadline: Duration) -> Value {
        let start = Instant::now();
        loop {
            let index = self.read.load(Ordering::Acquire);
            let line = self.stdout.lock().unwrap().get(index).cloned();
            if let Some(line) = line {
                self.read.store(index + 1, Ordering::Release);
                return serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
            }
            if start.elapsed() > deadline {
                panic!("no document in the sink; stderr: {:?}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The next `n` documents (see `next_document`).
    pub fn next_documents(&self, n: usize, deadline: Duration) -> Vec<Value> {
        (0..n).map(|_| self.next_document(deadline)).collect()
    }

    /// Waits until at least `n` documents arrived, or panics at the deadline.
    pub fn wait_documents(&self, n: usize, deadline: Duration) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let docs = self.documents();
            if docs.len() >= n {
                return docs;
            }
            if start.elapsed() > deadline {
                panic!("expected {n} documents, got {}: {docs:#?}", docs.len());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_stderr(
        &self,
        matches: impl Fn(&str) -> bool,
        deadline: Duration,
    ) -> Option<String> {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if let Some(line) = self.stderr().into_iter().find(|l| matches(l)) {
                return Some(line);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Stops reading stderr after the next line, for good: the pipe fills
    /// and the pipeline's writes to it block, as with a log collector that
    /// stalls (Docker's default `blocking` log mode) or `2>&1 | less`.
    pub fn stall_stderr(&self) {
        self.stderr_stalled.store(true, Ordering::Release);
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// SIGTERM, then waits for the exit (panics after `deadline`).
    pub fn terminate(&mut self, deadline: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(deadline)
    }

    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                self.wait_output_drained();
                return status;
            }
            if start.elapsed() > deadline {
                let _ = self.child.kill();
                panic!("pipeline did not exit within {deadline:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lets the reader threads drain the pipes of an exited pipeline: until
    /// both reached their end (a stdout the test does not read never does),
    /// at most a few seconds.
    fn wait_output_drained(&self) {
        let start = Instant::now();
        let closed = |stream: &AtomicBool| stream.load(Ordering::Acquire);
        while !(closed(&self.stderr_closed) && self.stdout_closed.as_deref().is_none_or(closed))
            && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Resident memory of the pipeline process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Sum of every /metrics series of `name` whose labels contain all `labels`
    /// (given as `key="value"`).
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        metric_in(&self.metrics_text().await, name, labels)
    }

    /// The text of one scrape of /metrics.
    pub async fn metrics_text(&self) -> String {
        client()
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body")
    }
}

impl Pipeline {
    /// Polls /metrics until the sum reaches `expected` or the deadline passes;
    /// returns the last value seen (counters move after the work is visible).
    pub async fn wait_metric(
        &self,
        name: &str,
        labels: &[&str],
        expected: f64,
        deadline: Duration,
    ) -> f64 {
        let start = Instant::now();
        loop {
            let value = self.metric(name, labels).await;
            if value >= expected || start.elapsed() > deadline {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Pipeline {
    /// Polls /metrics until the sum is exactly `value`; fails the test with
    /// the last text seen after 15 s.
    pub async fn expect_metric(&self, name: &str, labels: &[&str], value: f64) {
        let start = Instant::now();
        loop {
            let text = self.metrics_text().await;
            if metric_in(&text, name, labels) == value {
                return;
            }
            if start.elapsed() > Duration::from_secs(15) {
                panic!("{name}{labels:?} never reached {value}:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The CORS preflight a browser sends before a cross-origin `POST` to `path`.
    pub async fn preflight(
        &self,
        path: &str,
        origin: &str,
        request_headers: Option<&str>,
    ) -> reqwest::Response {
        let mut request = client()
            .request(reqwest::Method::OPTIONS, self.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "POST");
        if let Some(headers) = request_headers {
            request = request.header("access-control-request-headers", headers);
        }
        request.send().await.expect("OPTIONS")
    }
}

pub fn metric_in(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// A run of the binary that is expected to exit by itself (`validate`,
/// `rules`, `templates`, `health`, `--version`, or a pipeline that must
/// refuse to start): built like `Command`, finished by `run`.
pub struct OneShot(Command);

/// What a one-shot run left behind.
pub struct Finished {
    /// `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
    /// Stdout then stderr, for assertions that do not care which.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// The binary with `args`, no stdin, and no `RUM_CONFIG` from the test's own
/// environment (it would change which config a subcommand reads).
pub fn one_shot<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> OneShot {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("RUM_CONFIG")
        .stdin(Stdio::null());
    OneShot(command)
}

impl OneShot {
    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Self {
        self.0.arg(arg);
        self
    }
    /// Only `env` (plus what `env` adds later): as a container starts it.
    pub fn env_clear(mut self) -> Self {
        self.0.env_clear();
        self
    }
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.0.env(key, value);
        self
    }
    pub fn envs<'a>(mut self, vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        self.0.envs(vars);
        self
    }
    pub fn env_remove(mut self, key: &str) -> Self {
        self.0.env_remove(key);
        self
    }
    /// Runs to the end; a binary that hangs is a failing test, so this waits
    /// at most `ONE_SHOT_DEADLINE` and then kills it.
    pub fn run(mut self) -> Finished {
        let mut child = self
            .0
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rum-pipeline");
        let stdout = read_all(child.stdout.take().expect("stdout"));
        let stderr = read_all(child.stderr.take().expect("stderr"));
        let deadline = Instant::now() + ONE_SHOT_DEADLINE;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for rum-pipeline") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("rum-pipeline did not exit within {ONE_SHOT_DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Finished {
            code: status.code(),
            stdout: stdout.join().expect("stdout reader"),
            stderr: stderr.join().expect("stderr reader"),
        }
    }
}

/// One-shot runs end in well under a second; a generous bound for loaded CI.
const ONE_SHOT_DEADLINE: Duration = Duration::from_secs(60);

fn read_all(mut stream: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs `rum-pipeline validate` on a config text; returns (exit code, stdout + stderr).
pub fn validate(config: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path: PathBuf = dir.path().join("pipeline.toml");
    std::fs::write(&path, config).expect("write config");
    let run = one_shot(["validate", "--config"])
        .arg(&path)
        .envs(env.iter().copied())
        .run();
    (run.code.unwrap_or(-1), run.text())
}

/// A realistic beacon: `n` events of mixed types, current timestamps.
pub fn beacon(session: &str, n: usize) -> Value {
    let now = chrono::Utc::now().timestamp_millis();
    let kinds = ["web_vital", "resource", "action", "http", "page_view"];
    let events: Vec<Value> = (0..n)
        .map(|i| match kinds[i % kinds.len()] {
            "web_vital" => serde_json::json!({"type": "web_vital", "ts": now - 50, "name": "LCP", "value": 1234.5, "rating": "good", "id": format!("v{i}")}),
            "resource" => serde_json::json!({"type": "resource", "ts": now - 40, "name": "https://cdn.example.com/app.js", "initiator_type": "script", "duration": 80.5, "transfer_size": 12000}),
            "action" => serde_json::json!({"type": "action", "ts": now - 30, "kind": "click", "target": "button#buy.primary"}),
            "http" => serde_json::json!({"type": "http", "ts": now - 20, "kind": "fetch", "method": "GET", "url": "https://api.example.com/cart", "status": 200, "duration": 45.0}),
            _ => serde_json::json!({"type": "page_view", "ts": now - 60, "ttfb": 120.0, "load": 900.0, "navigation_type": "navigate"}),
        })
        .collect();
    serde_json::json!({
        "v": 1,
        "app": {"name": "shop", "version": "1.4.2", "env": "production"},
        "session": {"id": session},
        "view": {"id": format!("{session}-view"), "url": "https://shop.example.com/product/42?ref=home", "referrer": "https://www.google.com/", "title": "Product 42"},
        "sent_at": now,
        "events": events,
    })
}
