//! The flows: `once` (steps 1–5) and `render` (steps 1 and 4 to stdout), plus signals.
//!
//! Shutdown is passed in as a future (mini-redis style) so tests can trigger it. A stop
//! signal during the wait drops the wait future: no file is half-written, because every
//! write is synchronous between two await points and goes through a temporary file.

use std::fmt;
use std::future::Future;

use crate::config::Config;
use crate::db::tls::Tls;
use crate::db::wait::{Event, LoginAttempt, drive};
use crate::error::Error;
use crate::render::write::{WriteError, Writer};
use crate::render::{self, Inputs, Reveal};
use crate::secret::{Resolver, Target};
use crate::state::{Phase, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        })
    }
}

/// SIGTERM (ECS StopTask, docker stop) and SIGINT, installed up front so a signal during
/// start-up is not lost to the default handler.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    pub async fn recv(&mut self) -> Signal {
        let sig = tokio::select! {
            _ = self.term.recv() => Signal::Terminate,
            _ = self.int.recv() => Signal::Interrupt,
        };
        tracing::info!(signal = %sig, "stop signal received");
        sig
    }
}

/// Reads the CA bundle up front, so a bad path fails before the wait rather than after.
fn read_ca(config: &Config) -> Result<Option<Vec<u8>>, Error> {
    config
        .sslrootcert
        .as_ref()
        .map(|p| {
            std::fs::read(p).map_err(|e| {
                Error::Config(crate::config::ConfigError::RootCertUnreadable(p.clone(), e))
            })
        })
        .transpose()
}

fn inputs<'a>(config: &'a Config, target: &'a Target, reveal: Reveal, has_ca: bool) -> Inputs<'a> {
    Inputs {
        target,
        reveal,
        service_name: &config.service_name,
        url_scheme: config.url_scheme,
        sslmode: config.sslmode,
        has_ca,
        app_dir: &config.app_dir,
    }
}

/// The files in publishing order (the CA first: the others refer to it), with their modes.
/// `application.profile` holds the password in `DATABASE_URL`, hence 0600.
fn files(
    config: &Config,
    target: &Target,
    reveal: Reveal,
    ca: Option<&[u8]>,
) -> Vec<(&'static str, Vec<u8>, u32)> {
    let i = inputs(config, target, reveal, ca.is_some());
    let mut out = Vec::with_capacity(4);
    if let Some(ca) = ca {
        out.push((render::CA_FILE, ca.to_vec(), 0o644));
    }
    out.push((render::PGPASS, render::pgpass(&i).into_bytes(), 0o600));
    out.push((
        render::SERVICE_FILE,
        render::service_conf(&i).into_bytes(),
        0o644,
    ));
    out.push((render::PROFILE, render::profile(&i).into_bytes(), 0o600));
    out
}

/// Writes every rendered file atomically; returns the names that changed.
fn publish(
    writer: &Writer,
    config: &Config,
    target: &Target,
    ca: Option<&[u8]>,
) -> Result<Vec<&'static str>, WriteError> {
    let mut changed = Vec::new();
    for (name, contents, mode) in files(config, target, Reveal::Password, ca) {
        if writer.write(name, &contents, mode)? {
            changed.push(name);
        }
    }
    Ok(changed)
}

fn log_start(command: &str, config: &Config) {
    // Redacted by construction: Config holds the secret's *location*, never its value.
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        command,
        source = %config.source,
        host_override = config.overrides.host.as_deref(),
        port_override = config.overrides.port,
        database_override = config.overrides.database.as_deref(),
        create = config.provisioning.create,
        out_dir = %config.out_dir.display(),
        sslmode = %config.sslmode,
        sslrootcert = config.sslrootcert.as_ref().map(|p| p.display().to_string()),
        wait_timeout_s = config.policy.deadline.map(|d| d.as_secs()),
        attempt_timeout_s = config.policy.attempt_timeout.as_secs(),
        "aurora-sidecar starting"
    );
}

/// Steps 1–5: resolve, wait, ensure the database, render, mark ready.
pub async fn once(config: &Config, shutdown: impl Future<Output = Signal>) -> Result<(), Error> {
    log_start("once", config);
    let mut state = State::start(Writer::new(&config.out_dir, config.owner)?)?;
    let ca = read_ca(config)?;
    let tls = Tls::new(config.sslmode, config.sslrootcert.as_deref())
        .map_err(crate::config::ConfigError::from)?;
    let mut resolver = Resolver::new(config.source.clone(), config.overrides.clone());

    state.status.phase = Phase::Waiting;
    state.save()?;
    let create = config.provisioning.create;
    let outcome = {
        let mut job = LoginAttempt::new(&mut resolver, &tls, &config.provisioning, &config.policy);
        let wait = drive(&config.policy, &mut job, |e| {
            observe_failure(&mut state, create, e)
        });
        tokio::select! {
            r = wait => r.map_err(Error::from),
            sig = shutdown => Err(Error::Interrupted(sig)),
        }
    };
    let (ready, attempts) = match outcome {
        Ok(r) => r,
        Err(e) => {
            if matches!(e, Error::Interrupted(_)) {
                state.mark_stopping();
            }
            return Err(e);
        }
    };
    let target = &ready.resolved.target;
    let changed = publish(state.writer(), config, target, ca.as_deref())?;
    state.mark_ready(attempts, ready.resolved.version.clone())?;
    tracing::info!(
        attempts,
        database = %target.database,
        created = ready.created,
        changed = ?changed,
        generation = state.status.generation,
        secret_version = ready.resolved.version.as_deref(),
        "ready"
    );
    Ok(())
}

/// Step 1 + step 4 to a string: what `once` would write, password masked unless
/// `reveal`. No database access, nothing written.
pub async fn render(config: &Config, reveal: Reveal) -> Result<String, Error> {
    use std::fmt::Write as _;
    let ca = read_ca(config)?;
    let mut resolver = Resolver::new(config.source.clone(), config.overrides.clone());
    let resolved = resolver.resolve().await?;
    let mut out = String::new();
    for (name, contents, mode) in files(config, &resolved.target, reveal, ca.as_deref()) {
        let path = config.out_dir.join(name);
        let _ = writeln!(out, "==> {} (mode {mode:04o}) <==", path.display());
        if name == render::CA_FILE {
            if let Some(src) = &config.sslrootcert {
                let _ = writeln!(
                    out,
                    "(copy of {}, {} bytes)\n",
                    src.display(),
                    contents.len()
                );
            }
            continue;
        }
        out.push_str(&String::from_utf8_lossy(&contents));
        out.push('\n');
    }
    Ok(out)
}

fn observe_failure(state: &mut State, create: bool, e: &Event<'_>) {
    let class = e.error.class();
    let message = e.error.to_string();
    let phase = if class == "missing_database" && create {
        Phase::Provisioning
    } else {
        Phase::Waiting
    };
    match e.delay {
        // The normal first start: not a failure worth a warning.
        Some(_) if phase == Phase::Provisioning => tracing::info!(
            attempt = e.attempt,
            error = %message,
            "database does not exist yet; creating it"
        ),
        Some(d) => tracing::warn!(
            attempt = e.attempt,
            delay_ms = d.as_millis() as u64,
            error_class = class,
            error = %message,
            "database not ready; retrying"
        ),
        // main logs the final error once, with its exit code.
        None => tracing::debug!(attempt = e.attempt, error_class = class, "giving up"),
    }
    state.record_failure(phase, e.attempt, class, &message);
}
