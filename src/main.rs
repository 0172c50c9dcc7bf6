//! The `rum-pipeline` command: run a pipeline, or only validate it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rum_pipeline::config::{self, Loaded};
use rum_pipeline::topology::{self, RunOptions};

// Events are many small maps and strings: mimalloc makes their churn several
// times cheaper than glibc malloc and keeps RSS from fragmenting.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline (the default).
    Run,
    /// Check the pipeline without starting it: syntax, keys, values, the
    /// component graph, and every component's build (files, certificates).
    /// Lists every problem and exits non-zero if there is one.
    Validate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let loaded = match load(cli.config.as_ref()) {
        Ok(loaded) => loaded,
        Err(errors) => {
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Components build inside the runtime: some spawn or open sockets.
    let built = runtime.block_on(async { topology::build(&loaded.config) });
    let built = match built {
        Ok(built) => built,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {}: {e}", loaded.config.file);
            }
            eprintln!("{} error(s); the pipeline was not started", errors.len());
            return ExitCode::from(78);
        }
    };
    if matches!(cli.command, Some(Command::Validate)) {
        println!(
            "{}: valid ({} sources, {} transforms, {} sinks)",
            loaded.config.file,
            loaded.config.sources.len(),
            loaded.config.transforms.len(),
            loaded.config.sinks.len()
        );
        return ExitCode::SUCCESS;
    }
    let global = &loaded.config.global;
    let options = RunOptions {
        shutdown_timeout: Duration::from_secs(global.shutdown_timeout_secs),
        stats_interval: (global.stats_interval_secs > 0)
            .then(|| Duration::from_secs(global.stats_interval_secs)),
    };
    tracing::info!(
        "rum-pipeline {} starting with {}",
        env!("CARGO_PKG_VERSION"),
        loaded.config.file
    );
    match runtime.block_on(topology::run(built, options, topology::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
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
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
