//! Files loaded as one value and reloaded while the pipeline runs. A
//! background task polls the files' stamps and listens for SIGHUP, loads a
//! new version off the async workers and publishes it; the component picks
//! it up between two batches, so no event waits for (or is lost to) a reload.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use crate::telemetry::Counter;

/// How to turn a set of files into the value a component reads.
pub trait Load: Send + 'static {
    type Value: Send + Sync + 'static;
    /// What the log lines call the loaded files ("GeoIP databases").
    const WHAT: &'static str;
    /// The files watched, main file first: a change to any reloads them all.
    fn paths(&self) -> Vec<PathBuf>;
    /// Opens and checks every file; every error names its file.
    fn load(&self) -> anyhow::Result<Self::Value>;
}

/// What identifies one version of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Ok(Self {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode,
        })
    }

    /// The stamps of all `paths`, `None` for a file that cannot be read.
    fn all(paths: &[PathBuf]) -> Vec<Option<Self>> {
        paths.iter().map(|p| Self::of(p).ok()).collect()
    }
}

/// What `reload` did.
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    Unchanged,
    Reloaded,
    Failed,
}

/// Where the reloader publishes a new version for the component.
struct Published<T> {
    current: Mutex<Arc<T>>,
    /// Bumped on every reload, so the component sees a new version with one
    /// atomic load per batch.
    generation: AtomicU64,
}

/// The component's side: the version it reads, and how to pick up a newer one.
pub struct Reloadable<L: Load> {
    /// The version this task reads; replaced by `refresh`.
    current: Arc<L::Value>,
    /// The generation of `current`.
    seen: u64,
    published: Arc<Published<L::Value>>,
    /// The reloader when no runtime was there to run it (tests, benchmarks).
    manual: Option<Reloader<L>>,
}

/// Counters a reloader bumps, named by the component.
pub struct ReloadCounters {
    pub reloads: Counter,
    pub errors: Counter,
}

impl<L: Load> Reloadable<L> {
    /// Loads the files once (its error is the component's build error) and,
    /// inside a runtime, starts the task that polls every `interval` (if
    /// any) and reloads on SIGHUP until this is dropped. Without a runtime
    /// (benchmarks, unit tests) reloads are driven by hand through `reload_now`.
    pub fn start(
        id: &str,
        loader: L,
        interval: Option<Duration>,
        counters: ReloadCounters,
    ) -> anyhow::Result<Self> {
        let paths = loader.paths();
        let stamps = FileStamp::all(&paths);
        let current = Arc::new(loader.load()?);
        let published = Arc::new(Published {
            current: Mutex::new(current.clone()),
            generation: AtomicU64::new(0),
        });
        let reloader = Reloader {
            id: id.to_owned(),
            loader,
            paths,
            loaded: stamps,
            generation: 0,
            published: Arc::downgrade(&published),
            failed: None,
            counters,
        };
        let manual = match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let hangup = {
                    let _entered = handle.enter();
                    subscribe_hangup(id)
                };
                handle.spawn(reloader.run(interval, hangup));
                None
            }
            Err(_) => Some(reloader),
        };
        Ok(Self {
            current,
            seen: 0,
            published,
            manual,
        })
    }

    /// The version to read now.
    pub fn current(&self) -> &Arc<L::Value> {
        &self.current
    }

    /// Takes the newest published version; true when it is a new one (so
    /// what was derived from the old one must go).
    pub fn refresh(&mut self) -> bool {
        let generation = self.published.generation.load(Ordering::Acquire);
        if generation == self.seen {
            return false;
        }
        self.current = self
            .published
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.seen = generation;
        true
    }

    /// Reloads now if the files changed (or always, with `force`), for
    /// setups without a runtime; `None` when the background task does it.
    /// Call `refresh` after it to take the result.
    pub fn reload_now(&mut self, force: bool) -> Option<ReloadOutcome> {
        self.manual.as_mut().and_then(|r| r.reload(force))
    }
}

/// Loads new versions and publishes them, held by the reload task.
struct Reloader<L: Load> {
    id: String,
    loader: L,
    paths: Vec<PathBuf>,
    /// The stamps of the version published last.
    loaded: Vec<Option<FileStamp>>,
    generation: u64,
    published: Weak<Published<L::Value>>,
    /// The stamps of the last version that failed to load: not retried (nor
    /// logged again) until the files change once more. While the main file
    /// cannot be read every poll retries, logged only the first time.
    failed: Option<Vec<Option<FileStamp>>>,
    counters: ReloadCounters,
}

impl<L: Load> Reloader<L> {
    /// `force` (SIGHUP) reloads even when the files look unchanged. Returns
    /// `None` when the component is gone.
    fn reload(&mut self, force: bool) -> Option<ReloadOutcome> {
        let published = self.published.upgrade()?;
        let stamps = FileStamp::all(&self.paths);
        if !force && stamps == self.loaded {
            return Some(ReloadOutcome::Unchanged);
        }
        let failed_before = self.failed.as_ref() == Some(&stamps);
        if !force && failed_before && stamps[0].is_some() {
            return Some(ReloadOutcome::Unchanged);
        }
        match self.loader.load() {
            Ok(fresh) => {
                self.generation += 1;
                *published.current.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
                published
                    .generation
                    .store(self.generation, Ordering::Release);
                self.loaded = stamps;
                self.failed = None;
                self.counters.reloads.inc();
                tracing::info!(component = %self.id, "{} reloaded from {}", L::WHAT, self.paths[0].display());
                Some(ReloadOutcome::Reloaded)
            }
            Err(e) => {
                if !failed_before || force {
                    tracing::error!(component = %self.id, "{}: reload failed, keeping the loaded ones: {e:#}", L::WHAT);
                }
                self.failed = Some(stamps);
                self.counters.errors.inc();
                Some(ReloadOutcome::Failed)
            }
        }
    }

    /// Polls the files every `interval` (if any) and reloads on SIGHUP,
    /// until the component is dropped.
    async fn run(self, interval: Option<Duration>, mut hangup: Hangup) {
        let mut ticker = interval.map(|every| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        // The component going away is noticed at the latest after this long.
        let mut liveness = tokio::time::interval(Duration::from_secs(5));
        let mut reloader = self;
        loop {
            let force = tokio::select! {
                _ = tick(&mut ticker) => false,
                _ = hangup_recv(&mut hangup) => true,
                _ = liveness.tick() => {
                    if reloader.published.strong_count() == 0 {
                        return;
                    }
                    continue;
                }
            };
            // Loading reads the disk: off the workers.
            let joined = tokio::task::spawn_blocking(move || {
                let mut reloader = reloader;
                let outcome = reloader.reload(force);
                (reloader, outcome)
            })
            .await;
            match joined {
                Ok((back, Some(_))) => reloader = back,
                Ok((_, None)) => return,
                Err(e) => {
                    tracing::error!("{} reload task failed: {e}", L::WHAT);
                    return;
                }
            }
        }
    }
}

async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

/// Subscribes to SIGHUP now, while building, so that a SIGHUP sent as soon as
/// the pipeline runs is never met by the default action (exit).
fn subscribe_hangup(id: &str) -> Hangup {
    #[cfg(unix)]
    {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| tracing::warn!(component = %id, "SIGHUP reloads are off: {e}"))
            .ok()
    }
    #[cfg(not(unix))]
    {
        let _ = id;
        None
    }
}

#[cfg(unix)]
async fn hangup_recv(signal: &mut Hangup) {
    match signal {
        Some(s) => {
            if s.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn hangup_recv(_: &mut Hangup) {
    std::future::pending().await
}
