//! aurora-sidecar: prepares PostgreSQL (Aurora) access for an application container.
//!
//! Resolve credentials (Secrets Manager, an env variable, a file or the libpq variables),
//! wait with backoff until a real login works, create the database if it is missing,
//! render `pgpass`, `pg_service.conf` and `application.profile` atomically into a shared
//! directory, and signal readiness with a marker file and the `health` command.
//!
//! # Layout
//!
//! - [`cli`]: raw clap arguments; every flag has an `AURORA_SIDECAR_*` variable.
//! - [`config`]: validated [`config::Config`] built from them (fails fast, exit 78).
//! - [`error`]: the top-level error and the one place exit codes are decided.
//! - [`secret`]: sources, secret JSON parsing, the validated [`secret::Target`];
//!   [`secret::aws`] is the Secrets Manager client and its error classes.
//! - [`db`]: TLS modes ([`db::tls`]), login and error classification ([`db::connect`]),
//!   database creation ([`db::provision`]), the backoff loop ([`db::wait`]).
//! - [`render`]: pure renderers for every file; [`render::write`] the atomic writer.
//! - [`state`]: `status.json`, the `ready` marker and `health`.
//! - [`sidecar`]: the `once`, `run`, `exec` and `render` flows, the refresh loop and
//!   signal handling.

pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod render;
pub mod secret;
pub mod sidecar;
pub mod state;

use std::io::IsTerminal;
use std::process::ExitCode;

use cli::{Cli, Command, LogFormat};
use config::Config;
use error::Error;
use render::Reveal;
use tracing_subscriber::EnvFilter;

/// Our own info lines, and only warnings from the libraries, unless `RUST_LOG` says
/// otherwise.
const DEFAULT_FILTER: &str = "warn,aurora_sidecar=info";

/// Logs go to stderr: stdout belongs to `render` and `health`.
pub fn init_tracing(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let terminal = std::io::stderr().is_terminal();
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !terminal,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    } else {
        builder.init();
    }
}

/// Runs one command; the returned code is the process exit code.
pub async fn run(cli: Cli) -> Result<ExitCode, Error> {
    let env = |k: &str| std::env::var(k).ok();
    match cli.command {
        Command::Health(args) => {
            let h = state::health(&args.out_dir);
            println!("{}", h.line);
            Ok(if h.healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Render(args) => {
            let config = Config::from_args(&args.prepare, env)?;
            let reveal = if args.show_secrets {
                Reveal::Password
            } else {
                Reveal::Masked
            };
            print!("{}", sidecar::render(&config, reveal).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Once(args) => {
            let mut signals = install_signals(false)?;
            let config = Config::from_args(&args, env)?;
            sidecar::once(&config, &mut signals).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let mut signals = install_signals(true)?;
            let config = Config::from_args(&args.prepare, env)?;
            let interval = (!args.refresh_interval.is_zero()).then_some(args.refresh_interval);
            sidecar::run(&config, interval, &mut signals).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Exec(args) => {
            let mut signals = install_signals(false)?;
            let config = Config::from_args(&args.prepare, env)?;
            match sidecar::exec(&config, &args.command, &mut signals).await? {}
        }
    }
}

fn install_signals(hangup: bool) -> Result<sidecar::Signals, Error> {
    sidecar::Signals::install(hangup)
        .map_err(|e| Error::Internal(format!("installing signal handlers: {e}")))
}
