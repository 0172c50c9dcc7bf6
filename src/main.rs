//! The `rum-pipeline` command: run a pipeline, or only validate it.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use rum_pipeline::config::{self, Loaded};
use rum_pipeline::health_probe;
use rum_pipeline::http::limits::{raise_fd_limit, FD_RESERVE};
use rum_pipeline::sinks::{elasticsearch, prometheus, SinkConfig};
use rum_pipeline::stderr_log;
use rum_pipeline::topology::{self, RunOptions};

// Events are many small maps and strings: mimalloc makes their churn several
// times cheaper than glibc malloc and keeps RSS from fragmenting.
// `--features system-allocator` builds with glibc malloc instead (bench/run.sh
// comparisons only). Its arena is committed lazily (`.cargo/config.toml`).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: rum_pipeline::allocator::MiMalloc = rum_pipeline::allocator::MiMalloc;

/// mimalloc's purge delay for this server (`allocator::tune`).
#[cfg(not(feature = "system-allocator"))]
fn tune_allocator() {
    rum_pipeline::allocator::tune();
}

#[cfg(feature = "system-allocator")]
fn tune_allocator() {}

#[derive(Parser)]
#[command(
    name = "rum-pipeline",
    version,
    about = "Real User Monitoring backend: beacons and CSP reports through TOML pipelines"
)]
struct Cli {
    /// Pipeline file (TOML). Without it, the embedded pipelines/dev.toml runs.
    #[arg(short, long, env = "RUM_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Worker threads that run the pipeline [default: one per CPU core].
    /// Fewer leaves cores to what shares the machine (a proxy, the
    /// application); a beacon's events then also move between fewer threads.
    #[arg(short, long, env = "RUM_THREADS", global = true, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline (the default).
    Run,
    /// Check the pipeline without starting it: syntax, keys, values, the
    /// component graph, and every component's build (files, certificates).
    /// Lists every problem of the file, then (once it has none) those of the
    /// builds, and exits non-zero if there is one.
    Validate,
    /// Write the index templates (and ILM policy) that each `elasticsearch`
    /// sink of the pipeline installs with `manage_template = true`: into DIR
    /// as `<API path>.json` (e.g. `_index_template/NAME.json`), or, without
    /// --out, to stdout as Kibana Dev Tools requests.
    Templates {
        /// Directory to write the files into (created if missing).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The engine to write them for [default: the sink's `engine`;
        /// Elasticsearch for `auto`]. OpenSearch has no ILM: refused with
        /// `ilm_retention_days` > 0.
        #[arg(long, value_enum)]
        engine: Option<TemplateEngine>,
    },
    /// Write the Prometheus rule file for the budgets and SLOs of every
    /// `prometheus` sink of the pipeline: recording rules for the SLIs,
    /// multi-window multi-burn-rate alerts, budget alerts. To FILE, or stdout.
    Rules {
        /// File to write (its directory must exist).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Ask a running pipeline's `GET /health`; exit 0 on 200, 1 otherwise
    /// (the Docker HEALTHCHECK of the distroless image, which has no curl).
    Health {
        /// URL to probe [default (also when empty): http://127.0.0.1:$SERVER_PORT/health, port 3000].
        /// https:// is spoken without verifying the certificate.
        #[arg(long, env = "RUM_HEALTH_URL")]
        url: Option<String>,
        /// Give up after this many milliseconds (at least 1: 0 would fail
        /// every probe of a healthy pipeline).
        #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(1..))]
        timeout_ms: u64,
    },
}

/// Whose templates `rum-pipeline templates` writes.
#[derive(Clone, Copy, ValueEnum)]
enum TemplateEngine {
    /// `flattened` for browser-supplied objects, ILM.
    Elasticsearch,
    /// OpenSearch 2.7+: `flat_object`, no ILM.
    Opensearch,
    /// OpenSearch before 2.7: objects kept in `_source`, not indexed; no ILM.
    #[value(name = "opensearch-before-2.7")]
    OpensearchBefore27,
}

fn main() -> ExitCode {
    let code = run_cli();
    // Log lines wait in a queue for their writer thread (a stalled stderr
    // must not hold a worker): out before exiting, unless stderr is stuck.
    stderr_log::flush(stderr_log::EXIT_FLUSH);
    code
}

fn run_cli() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    if let Some(Command::Health { url, timeout_ms }) = &cli.command {
        return health(url.as_deref(), *timeout_ms);
    }
    init_logging();
    let loaded = match load(cli.config.as_ref()) {
        Ok(loaded) => loaded,
        Err(errors) => {
            // After the RUM_LOG warning, which waits in the log queue.
            stderr_log::flush(stderr_log::EXIT_FLUSH);
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!("{} error(s); the pipeline was not started", errors.len());
            return ExitCode::from(78);
        }
    };
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    // Before what a subcommand writes to stderr itself.
    stderr_log::flush(stderr_log::EXIT_FLUSH);
    if let Some(Command::Templates { out, engine }) = &cli.command {
        return templates(&loaded.config, out.as_deref(), *engine);
    }
    if let Some(Command::Rules { out }) = &cli.command {
        return rules(&loaded.config, out.as_deref());
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // Named so `top -H` and `/proc/PID/task` tell them from the process's
    // other threads (the blocking pool, which the runtime names alike).
    builder.enable_all().thread_name("rum-worker");
    if let Some(threads) = cli.threads {
        builder.worker_threads(usize::from(threads));
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Signals are taken over first: from here on, SIGTERM drains.
    let stop = {
        let _inside = runtime.enter();
        topology::shutdown_signal()
    };
    // Components build inside the runtime: some spawn or open sockets.
    let built = runtime.block_on(async { topology::build(&loaded.config) });
    let built = match built {
        Ok(built) => built,
        Err(errors) => {
            stderr_log::flush(stderr_log::EXIT_FLUSH);
            for e in &errors {
                eprintln!("error: {}: {e}", loaded.config.file);
            }
            eprintln!("{} error(s); the pipeline was not started", errors.len());
            return ExitCode::from(78);
        }
    };
    if matches!(cli.command, Some(Command::Validate)) {
        return emit(&format!(
            "{}: valid ({} sources, {} transforms, {} sinks)\n",
            loaded.config.file,
            loaded.config.sources.len(),
            loaded.config.transforms.len(),
            loaded.config.sinks.len()
        ))
        .map_or_else(|code| code, |()| ExitCode::SUCCESS);
    }
    let global = &loaded.config.global;
    let mut http = global.http.clone();
    // The connection cap, not the fd limit, must decide when accepting waits:
    // an accept failing with EMFILE would leave /health unanswered too.
    match raise_fd_limit() {
        Some(fds) => {
            let room = usize::try_from(fds.saturating_sub(FD_RESERVE).max(1)).unwrap_or(usize::MAX);
            if http.max_connections > room {
                tracing::warn!(
                    "http.max_connections ({}) lowered to {room}: the open-files limit is {fds} ({FD_RESERVE} kept for sinks and files); raise it with `ulimit -n` or the container's nofile limit",
                    http.max_connections
                );
                http.max_connections = room;
            }
        }
        None => tracing::warn!("cannot read the open-files limit (getrlimit failed)"),
    }
    let options = RunOptions {
        shutdown_timeout: Duration::from_secs(global.shutdown_timeout_secs),
        stats_interval: (global.stats_interval_secs > 0)
            .then(|| Duration::from_secs(global.stats_interval_secs)),
        http,
        api: global.api.clone(),
    };
    tracing::info!(
        "rum-pipeline {} starting with {}",
        env!("CARGO_PKG_VERSION"),
        loaded.config.file
    );
    let run = topology::run(built, options, stop, topology::next_interrupt());
    let code = match runtime.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    };
    // A write stuck in the blocking pool (a stdout pipe nobody reads, a hung
    // dead-letter disk) would keep the runtime's drop waiting for ever, past
    // `shutdown_timeout_secs`, which the run has already reported.
    runtime.shutdown_timeout(Duration::from_millis(500));
    code
}

/// Installs nothing: writes what the sinks would install, for review or for
/// installing by hand (deployments/elasticsearch/ is this output).
fn templates(
    config: &config::PipelineConfig,
    out: Option<&std::path::Path>,
    engine: Option<TemplateEngine>,
) -> ExitCode {
    use elasticsearch::templates::{Flavour, TemplateSet};
    let mut requests = Vec::new();
    for sink in &config.sinks {
        if let SinkConfig::Elasticsearch(es) = &sink.config {
            let flavour = match (engine, es.engine) {
                (Some(TemplateEngine::Elasticsearch), _) => Flavour::Elasticsearch,
                (Some(TemplateEngine::Opensearch), _) => Flavour::OpenSearch,
                (Some(TemplateEngine::OpensearchBefore27), _) => Flavour::OpenSearchObjects,
                (None, elasticsearch::Engine::Opensearch) => Flavour::OpenSearch,
                (None, _) => Flavour::Elasticsearch,
            };
            match es.router().and_then(|router| {
                // Written out to be installed: never a template for every index.
                router.check_patterns().map_err(|e| ("index", e))?;
                let set = TemplateSet::for_sink(es, &sink.id, &router);
                if set.retention_dropped(flavour) {
                    return Err((
                        "ilm_retention_days",
                        "OpenSearch has no ILM: set it to 0 and delete old indices with an ISM policy (docs/deployment.md, section OpenSearch)".into(),
                    ));
                }
                Ok(set)
            }) {
                Ok(set) => requests.extend(set.requests(flavour)),
                Err((key, message)) => {
                    eprintln!("error: [sinks.{}] {key}: {message}", sink.id);
                    return ExitCode::from(78);
                }
            }
        }
    }
    if requests.is_empty() {
        eprintln!("error: {}: no elasticsearch sink", config.file);
        return ExitCode::from(78);
    }
    for (path, body) in &requests {
        // Pretty-printing a serde_json::Value cannot fail.
        let json = serde_json::to_string_pretty(body).unwrap_or_default();
        let Some(dir) = out else {
            if let Err(code) = emit(&format!("PUT {path}\n{json}\n\n")) {
                return code;
            }
            continue;
        };
        let file = dir.join(format!("{path}.json"));
        let written = file
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&file, format!("{json}\n")));
        if let Err(e) = written {
            eprintln!("error: cannot write {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
        eprintln!("wrote {}", file.display());
    }
    ExitCode::SUCCESS
}

/// One rule file for every `prometheus` sink of the pipeline.
fn rules(config: &config::PipelineConfig, out: Option<&std::path::Path>) -> ExitCode {
    let source = std::path::Path::new(&config.file).file_name().map_or_else(
        || config.file.clone(),
        |name| name.to_string_lossy().into_owned(),
    );
    let mut resolved = Vec::new();
    for sink in &config.sinks {
        if let SinkConfig::Prometheus(prom) = &sink.config {
            match prom.resolve() {
                Ok(r) => resolved.push((sink.id.as_str(), r)),
                Err(errors) => {
                    for (key, message) in errors {
                        eprintln!("error: [sinks.{}] {key}: {message}", sink.id);
                    }
                    return ExitCode::from(78);
                }
            }
        }
    }
    if resolved.is_empty() {
        eprintln!("error: {}: no prometheus sink", config.file);
        return ExitCode::from(78);
    }
    let sinks: Vec<(&str, &prometheus::Resolved)> =
        resolved.iter().map(|(id, r)| (*id, r)).collect();
    let text = prometheus::rules::render(&sinks, &source);
    match out {
        None => emit(&text).map_or_else(|code| code, |()| ExitCode::SUCCESS),
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => {
                eprintln!("wrote {}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", path.display());
                ExitCode::FAILURE
            }
        },
    }
}

/// Prints what the server said; the exit code is the verdict.
fn health(url: Option<&str>, timeout_ms: u64) -> ExitCode {
    // Empty is unset, as in `${VAR:-default}`: a compose file passes
    // `RUM_HEALTH_URL` empty when the host has none.
    let url = url
        .filter(|url| !url.trim().is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| health_probe::default_url(std::env::var("SERVER_PORT").ok().as_deref()));
    match health_probe::probe(&url, Duration::from_millis(timeout_ms)) {
        // The exit code is the verdict, whether or not stdout takes the text.
        Ok(healthy) => {
            let _ = emit(&format!("{url}: {}\n", healthy.body));
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = emit(&format!("{url}: unhealthy: {e}\n"));
            ExitCode::FAILURE
        }
    }
}

/// Writes a command's output to stdout. `println!` would panic (exit 101,
/// a backtrace on stderr) when stdout fails: a reader gone away
/// (`rum-pipeline templates | head`) ends the command quietly with 141, the
/// status a shell shows for a program ended by SIGPIPE, as `cat` ends;
/// another failure (a redirect to a full disk) is one error line and exit 1.
fn emit(text: &str) -> Result<(), ExitCode> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(ExitCode::from(141)),
        Err(e) => {
            stderr_log::flush(stderr_log::EXIT_FLUSH);
            eprintln!("error: cannot write to stdout: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

fn load(path: Option<&PathBuf>) -> Result<Loaded, Vec<config::ConfigError>> {
    match path {
        Some(path) => config::load_file(path),
        None => config::load_str(
            "pipelines/dev.toml (embedded)",
            config::EMBEDDED_DEFAULT,
            &|var| std::env::var(var).ok(),
        ),
    }
}

/// Logs go to stderr: stdout belongs to the stdout sink.
fn init_logging() {
    // Unset: info. Set but unreadable: info too, and said so once logging
    // is up, rather than a typo silently taking the user's debug logs away.
    let (filter, unreadable) = match std::env::var("RUM_LOG") {
        Err(_) => (tracing_subscriber::EnvFilter::new("info"), None),
        Ok(text) => match tracing_subscriber::EnvFilter::try_new(&text) {
            Ok(filter) => (filter, None),
            Err(e) => (tracing_subscriber::EnvFilter::new("info"), Some((text, e))),
        },
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(stderr_log::LogWriter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    stderr_log::install_panic_hook();
    if let Some((text, e)) = unreadable {
        tracing::warn!("RUM_LOG={text:?} is not a log filter ({e}); logging at info");
    }
}
