//! aurora-sidecar: prepares PostgreSQL (Aurora) access for an application container.
//!
//! Resolve credentials (Secrets Manager, an env variable, a file or the libpq variables),
//! wait with backoff until a real login works, create the database if it is missing,
//! render `pgpass`, `pg_service.conf` and `application.profile` atomically into a shared
//! directory, and signal readiness with a marker file and the `health` command.
//!
//! # Layout
//!
//! Modules sit in layers; a module imports only from layers below its own, so there is no
//! import cycle (`tests/layering.rs` reads `src/` and fails when an arrow points up).
//! Data flows *cli → config → flows → {secret, db, render, status}*; imports point the
//! other way.
//!
//! | layer | modules | may import |
//! |---|---|---|
//! | 0, leaves | [`privileges`] (`--drop-to`), [`exit`] codes, [`display`] (error chains, printable server text), [`class`] ([`class::ErrorClass`]), [`modes`] (`SslMode`, `UrlScheme`), [`signal`] (wake events), [`outdir`] ([`outdir::File`] and the atomic writer), [`exec`] (PATH lookup, execve), [`crypto`] (the one rustls provider, the AWS HTTPS client on it), [`endpoint`] (what an AWS host name is: RDS, DSQL, other, and its region); `testing` (property-case counts, tests only) | nothing of the crate |
//! | 1 | [`cli`] (clap, converts its enums into the `modes` types), [`secret`] (sources, JSON, [`secret::Target`]; [`secret::aws`] Secrets Manager) | layer 0 |
//! | 2 | [`iam`] (IAM auth tokens: signing, region, credentials), [`render`] (pure renderers, the file set in `render::set` from validated settings and a login's TLS; PgBouncer's files in `render::pgbouncer`), [`status`] (`status.json`, `ready`, health) | layers 0–1 |
//! | 3 | [`db`] (TLS, login, what a failure is, means and calls for, provisioning, the app role's bootstrap, pacing, the retry loop, the wait; PgBouncer's `RELOAD`) | layers 0–2 |
//! | 4 | [`config`] (validated [`config::Config`], CA read once, TLS built once) | layers 0–3 |
//! | 5 | [`refresh`] (the refresh state machine and its driver; [`refresh::RefreshCheck`], the real check) | layers 0–4 |
//! | 6 | [`error`] (the top error and the one exit-code map) | layers 0–5 |
//! | 7 | [`flows`] (the `once`, `run`, `exec`, `render` flows, a file each, and the steps they share), [`doctor`] (one diagnosis, step by step) | layers 0–6 |
//! | crate root | `run` dispatches a parsed command; `main.rs` only parses, starts tracing and maps the error | everything |
//!
//! Inside a folder module the files import each other one way too (`tests/layering.rs`
//! checks both).
//!
//! Where each stage of a start lives, in the order it runs (`once`; `run` goes on with
//! the refresh):
//!
//! | stage | where |
//! |---|---|
//! | flags and environment → validated configuration | `cli`, `config::Config::from_args` (`config::RunConfig` for what only `run` takes) |
//! | `exec`'s program looked up on `PATH` | `flows::program` |
//! | out-dir checks, the start-up sweep, `status.json` `starting` | `flows::start`, `status`, `outdir` |
//! | the flow (`once`, `run`, `exec`, `render`) | `flows` (`flows::prepare`: the steps they share) |
//! | the secret read, merged with the flags | `secret::Resolver`, `secret::build_target` |
//! | an IAM token signed (RDS or DSQL, by `endpoint`) | `iam::Signer` |
//! | one login attempt: bootstrap (its admin login from `db::admin`), login, create the database | `db::wait::LoginAttempt`, `db::bootstrap`, `db::establish`, `db::provision`, `db::connect` |
//! | what a failure is, what to say, what to do | `db::classify`, `db::hint`, `db::remedy` |
//! | retries, paced, within the deadline | `db::retry`, `db::pace` |
//! | the files rendered and published (with `--pgbouncer`, PgBouncer's too, the app's pointing at it) | `render::set::Settings::files` (with the login's TLS, `db::tls::TlsChoice::login_tls`), `render`, `outdir::Writer::publish` |
//! | `ready`, then (run) rotation checks and token renewal, each publish RELOADed into PgBouncer | `status`, `refresh` (its check in `refresh::check`), `db::reload` |
//!
//! What a failed login calls for besides a retry (set the role up with the admin, create
//! the database) is decided once, in `db::remedy`: the wait and `run`'s refresh carry it
//! out, `doctor` reports it (a test holds the three against each other).

pub mod class;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod db;
pub mod display;
pub mod doctor;
pub mod endpoint;
pub mod error;
pub mod exec;
pub mod exit;
pub mod flows;
pub mod iam;
pub mod modes;
pub mod outdir;
pub mod privileges;
pub mod refresh;
pub mod render;
pub mod secret;
pub mod signal;
pub mod status;
#[cfg(test)]
mod testing;

use std::io::IsTerminal;
use std::process::ExitCode;

use cli::{Cli, Command, DoctorFormat, LogFormat};
use config::{Config, RunConfig};
use error::Error;
use render::Reveal;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// `RUST_LOG` as a list of `level` and `target=level` directives (e.g.
/// `warn,aurora_sidecar=debug`); unset or unparsable: our own info lines and only warnings
/// from the libraries. `Targets` rather than `EnvFilter`: the same everyday syntax without
/// the regex engine, a quarter of a megabyte of binary.
fn log_filter(rust_log: Option<&str>) -> Targets {
    rust_log.and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        Targets::new()
            .with_default(Level::WARN)
            .with_target("aurora_sidecar", Level::INFO)
    })
}

/// Crates that print credentials at trace level, whatever `RUST_LOG` asks for: aws-sigv4
/// logs what it signs (the access key id, the session token of a presigned IAM token),
/// and the AWS SDK's HTTP stack the headers that carry them.
const CREDENTIAL_PRINTERS: &[&str] = &["aws_", "hyper", "h2"];

/// tokio-postgres logs every statement it sends at debug level (these modules), and the
/// bootstrap sends the app role's SCRAM verifier in one.
const STATEMENT_PRINTERS: &[&str] = &[
    "tokio_postgres::simple_query",
    "tokio_postgres::query",
    "tokio_postgres::prepare",
];

/// Whether an event may be logged at all: not at trace level from [`CREDENTIAL_PRINTERS`],
/// not at debug or trace from [`STATEMENT_PRINTERS`].
fn below_credentials(meta: &tracing::Metadata<'_>) -> bool {
    let from = |crates: &[&str]| crates.iter().any(|c| meta.target().starts_with(c));
    let level = *meta.level();
    !(level == Level::TRACE && from(CREDENTIAL_PRINTERS)
        || level >= Level::DEBUG && from(STATEMENT_PRINTERS))
}

/// Logs go to stderr: stdout belongs to `render` and `health`.
pub fn init_tracing(format: LogFormat) {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let terminal = std::io::stderr().is_terminal();
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !terminal,
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(terminal)
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::filter::filter_fn(below_credentials));
    if json {
        registry
            .with(layer.json().flatten_event(true).with_current_span(false))
            .init();
    } else {
        registry.with(layer).init();
    }
}

/// `--drop-to`, for the commands that have it. Call it while the process has one thread:
/// uid and capability changes are per-thread on Linux.
pub fn drop_privileges(cli: &Cli) -> Result<(), Error> {
    let prepare = match &cli.command {
        Command::Once(a) => a,
        Command::Run(a) => &a.prepare,
        Command::Exec(a) => &a.prepare,
        Command::Render(a) => &a.prepare,
        Command::Doctor(a) => &a.prepare,
        Command::Health(_) => return Ok(()),
    };
    if let Some(target) = prepare.drop_to {
        privileges::drop_to(target, prepare.owner.is_some())?;
        tracing::info!(
            uid = target.uid,
            gid = target.gid,
            keep_chown = prepare.owner.is_some(),
            "dropped root"
        );
    }
    Ok(())
}

/// Runs one command; the returned code is the process exit code.
pub async fn run(cli: Cli) -> Result<ExitCode, Error> {
    let env = |k: &str| std::env::var(k).ok();
    match cli.command {
        Command::Health(args) => {
            let h = status::health(&args.out_dir);
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
            print!("{}", flows::render(&config, reveal).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor(args) => {
            let config = Config::from_args(&args.prepare, env);
            let report = doctor::diagnose(config, args.step_timeout).await;
            match args.format {
                DoctorFormat::Json => print!("{}", report.json()),
                DoctorFormat::Text => print!("{}", report.text(std::io::stdout().is_terminal())),
            }
            Ok(ExitCode::from(report.exit_code()))
        }
        Command::Once(args) => {
            let mut signals = install_signals(false)?;
            let config = Config::from_args(&args, env)?;
            let started = flows::start("once", &config)?;
            flows::once(&config, started, &mut signals).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let mut signals = install_signals(true)?;
            let config = Config::from_args(&args.prepare, env)?;
            let run = RunConfig::from_args(&args, &config)?;
            let started = flows::start("run", &config)?;
            flows::run(&config, run, started, &mut signals).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Exec(args) => {
            let mut signals = install_signals(false)?;
            let config = Config::from_args(&args.prepare, env)?;
            let program = flows::program(&args.command)?;
            let started = flows::start("exec", &config)?;
            let keep = args.keep_secret_env;
            match flows::exec(&config, program, keep, started, &mut signals).await? {}
        }
    }
}

fn install_signals(hangup: bool) -> Result<signal::Signals, Error> {
    signal::Signals::install(hangup).map_err(Error::Signals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_directives_and_the_default() {
        let default = log_filter(None);
        assert!(default.would_enable("aurora_sidecar::flows", &Level::INFO));
        assert!(!default.would_enable("aurora_sidecar::flows", &Level::DEBUG));
        assert!(!default.would_enable("hyper", &Level::INFO));
        assert!(default.would_enable("hyper", &Level::WARN));
        let trace = log_filter(Some("trace"));
        assert!(trace.would_enable("aws_config", &Level::TRACE));
        let mixed = log_filter(Some("error,aurora_sidecar::db=debug"));
        assert!(mixed.would_enable("aurora_sidecar::db::wait", &Level::DEBUG));
        assert!(!mixed.would_enable("aurora_sidecar::flows", &Level::INFO));
        // Garbage falls back to the default rather than silencing everything.
        assert!(log_filter(Some("=[")).would_enable("aurora_sidecar", &Level::INFO));
    }
}
