//! The flows: `once` (steps 1–5), `run` (steps 1–6), `exec` (steps 1–5, then execve),
//! `render` (steps 1 and 4 to stdout), plus signals.
//!
//! A stop signal during the wait or a refresh drops that future: no file is half-written,
//! because every write is synchronous between two await points and goes through a
//! temporary file. `run` holds no database connection between refreshes: an idle
//! connection would keep Aurora Serverless v2 from pausing to 0 ACU.

use std::convert::Infallible;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;
use crate::db::tls::Tls;
use crate::db::wait::{Attempt, AttemptError, Event, LoginAttempt, drive};
use crate::error::Error;
use crate::render::write::{WriteError, Writer};
use crate::render::{self, Inputs, Reveal};
use crate::secret::{Check, Resolved, Resolver, Target};
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

/// What woke the `run` loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Stop(Signal),
    /// SIGHUP: check for new credentials now.
    Refresh,
}

/// SIGTERM (ECS StopTask, docker stop), SIGINT and, for `run`, SIGHUP; installed up front
/// so a signal during start-up is not lost to the default handler.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    pub fn install(hangup: bool) -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: hangup.then(|| signal(SignalKind::hangup())).transpose()?,
        })
    }

    /// The next stop signal.
    pub async fn stop(&mut self) -> Signal {
        let sig = first_stop(&mut self.term, &mut self.int).await;
        tracing::info!(signal = %sig, "stop signal received");
        sig
    }

    /// The next stop signal or SIGHUP.
    pub async fn next(&mut self) -> Wake {
        let hup = async {
            match &mut self.hup {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = hup => {
                tracing::info!(signal = "SIGHUP", "refresh requested");
                Wake::Refresh
            }
            sig = first_stop(&mut self.term, &mut self.int) => {
                tracing::info!(signal = %sig, "stop signal received");
                Wake::Stop(sig)
            }
        }
    }
}

/// Free function so `next` can borrow the hangup stream alongside these two.
async fn first_stop(
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> Signal {
    tokio::select! {
        _ = term.recv() => Signal::Terminate,
        _ = int.recv() => Signal::Interrupt,
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

/// What the init flow leaves for `run` and `exec`.
struct Prepared {
    published: Resolved,
    ca: Option<Vec<u8>>,
    tls: Tls,
    resolver: Resolver,
}

/// Steps 1–5: resolve, wait, ensure the database, render, mark ready. A stop signal
/// before ready is `Error::Interrupted`, with phase `stopping` recorded.
async fn prepare(
    config: &Config,
    state: &mut State,
    signals: &mut Signals,
) -> Result<Prepared, Error> {
    let ca = read_ca(config)?;
    let tls = Tls::new(
        config.sslmode,
        config.sslrootcert.as_deref().zip(ca.as_deref()),
    )
    .map_err(crate::config::ConfigError::from)?;
    let mut resolver = Resolver::new(config.source.clone(), config.overrides.clone());

    state.status.phase = Phase::Waiting;
    state.save()?;
    let create = config.provisioning.create;
    let outcome = {
        let mut job = LoginAttempt::new(&mut resolver, &tls, &config.provisioning, &config.policy);
        let wait = drive(&config.policy, &mut job, |e| {
            observe_failure(state, create, e)
        });
        tokio::select! {
            r = wait => r.map_err(Error::from),
            sig = signals.stop() => Err(Error::Interrupted(sig)),
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
    Ok(Prepared {
        published: ready.resolved,
        ca,
        tls,
        resolver,
    })
}

/// `once`: steps 1–5, then exit.
pub async fn once(config: &Config, signals: &mut Signals) -> Result<(), Error> {
    log_start("once", config);
    let mut state = State::start(Writer::new(&config.out_dir, config.owner)?)?;
    prepare(config, &mut state, signals).await.map(|_| ())
}

/// `run`: steps 1–6. Returns (exit 0) on SIGTERM/SIGINT in every phase, files in place.
pub async fn run(
    config: &Config,
    refresh_interval: Option<Duration>,
    signals: &mut Signals,
) -> Result<(), Error> {
    log_start("run", config);
    let mut state = State::start(Writer::new(&config.out_dir, config.owner)?)?;
    let prepared = match prepare(config, &mut state, signals).await {
        Err(Error::Interrupted(_)) => return Ok(()),
        other => other?,
    };
    refresh_loop(config, refresh_interval, &mut state, signals, prepared).await;
    Ok(())
}

/// Step 6: look for new credentials every `interval` and on SIGHUP; validate them with a
/// real login, then publish. A failure keeps the old files and sets phase `degraded`, and
/// the check is retried with backoff until it succeeds or the source goes back to the
/// published credentials. Returns on a stop signal.
async fn refresh_loop(
    config: &Config,
    interval: Option<Duration>,
    state: &mut State,
    signals: &mut Signals,
    prepared: Prepared,
) {
    let Prepared {
        mut published,
        ca,
        tls,
        mut resolver,
    } = prepared;
    let interval = if resolver.can_change() {
        interval
    } else {
        tracing::info!(
            source = %config.source,
            "credentials from this source cannot change while the task runs; rotation needs a new task, so no refresh checks are made"
        );
        None
    };
    let mut retry: Option<Box<dyn Iterator<Item = Duration>>> = None;
    let mut next = interval;
    loop {
        let timer = async {
            match next {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            wake = signals.next() => match wake {
                Wake::Stop(_) => break,
                Wake::Refresh if !resolver.can_change() => {
                    tracing::info!(source = %config.source, "SIGHUP ignored: this source cannot change");
                    continue;
                }
                Wake::Refresh => {}
            },
            () = timer => {}
        }
        let check = async {
            match tokio::time::timeout(
                config.policy.attempt_timeout,
                check_and_validate(config, &tls, &mut resolver, &published),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(AttemptError::Timeout(config.policy.attempt_timeout)),
            }
        };
        let outcome = tokio::select! {
            r = check => r,
            _ = signals.stop() => break,
        };
        match outcome.and_then(|candidate| match candidate {
            None => Ok(None),
            Some(c) => publish(state.writer(), config, &c.target, ca.as_deref())
                .map(|changed| Some((c, changed)))
                .map_err(|e| AttemptError::Publish(e.to_string())),
        }) {
            Ok(None) => {
                state.record_check(false);
                if let Err(e) = state.save() {
                    tracing::warn!(error = %crate::error::chain(&e), "could not update status.json");
                }
                tracing::debug!(checks = state.status.checks, "credentials unchanged");
                retry = None;
                next = interval;
            }
            Ok(Some((candidate, changed))) => {
                state.record_check(false);
                let old = published.version.take();
                if let Err(e) = state.mark_ready(state.status.attempt, candidate.version.clone()) {
                    tracing::warn!(error = %crate::error::chain(&e), "could not update status.json or the ready marker");
                }
                tracing::info!(
                    old_version = old.as_deref(),
                    new_version = candidate.version.as_deref(),
                    changed = ?changed,
                    generation = state.status.generation,
                    "new credentials validated and published"
                );
                published = candidate;
                retry = None;
                next = interval;
            }
            Err(e) => {
                let schedule =
                    retry.get_or_insert_with(|| Box::new(config.policy.degraded_schedule()));
                let delay = schedule.next();
                let attempt = if state.status.phase == Phase::Degraded {
                    state.status.attempt + 1
                } else {
                    1
                };
                tracing::warn!(
                    attempt,
                    retry_in_ms = delay.map(|d| d.as_millis() as u64),
                    error_class = e.class(),
                    error = %e,
                    "refresh failed; the files in place are kept"
                );
                state.record_check(true);
                state.record_failure(Phase::Degraded, attempt, e.class(), &e.to_string());
                next = delay.or(interval);
            }
        }
    }
    state.mark_stopping();
    tracing::info!("stopped; rendered files left in place");
}

/// One refresh: new credentials validated by a real login (`Some`), or nothing to do.
async fn check_and_validate(
    config: &Config,
    tls: &Tls,
    resolver: &mut Resolver,
    published: &Resolved,
) -> Result<Option<Resolved>, AttemptError> {
    let candidate = match resolver.check(published).await? {
        Check::Unchanged | Check::CannotChange => return Ok(None),
        Check::Changed(c) => c,
    };
    tracing::info!(
        old_version = published.version.as_deref(),
        new_version = candidate.version.as_deref(),
        "new credentials found; validating them before publishing"
    );
    let mut job = LoginAttempt::new(resolver, tls, &config.provisioning, &config.policy)
        .with_resolved(candidate);
    // The resume window for 28000 is long over: any failure here keeps the old files.
    match job.attempt(1, Duration::MAX).await {
        Ok(ready) => Ok(Some(ready.resolved)),
        Err(f) => Err(f.error),
    }
}

/// `exec`: steps 1–5, then replace this process with `command`, its environment carrying
/// `DATABASE_URL` and the libpq variables. Only returns on failure.
pub async fn exec(
    config: &Config,
    command: &[OsString],
    signals: &mut Signals,
) -> Result<Infallible, Error> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Error::Internal("exec needs a command".into()))?;
    // Look the program up before waiting, so a typo fails in milliseconds, not after the
    // database came up.
    let path = find_program(program)?;
    log_start("exec", config);
    let mut state = State::start(Writer::new(&config.out_dir, config.owner)?)?;
    let prepared = prepare(config, &mut state, signals).await?;
    let target = &prepared.published.target;
    let vars = render::environment(&inputs(
        config,
        target,
        Reveal::Password,
        prepared.ca.is_some(),
    ));
    tracing::info!(program = %path.display(), "exec");
    let err = std::process::Command::new(&path)
        .arg0(program)
        .args(args)
        .envs(vars)
        .exec();
    Err(exec_error(program, &err))
}

/// A shell's answer to a command it cannot run: 127 not found, 126 found but not
/// executable.
fn exec_error(program: &OsStr, err: &std::io::Error) -> Error {
    let code = if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    Error::Exec {
        program: program.to_string_lossy().into_owned(),
        reason: err.to_string(),
        code,
    }
}

/// `PATH` lookup as `execvp` does it; a name with a `/` is taken as a path.
fn find_program(program: &OsStr) -> Result<PathBuf, Error> {
    use std::os::unix::fs::PermissionsExt;
    let executable =
        |p: &Path| std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    let not_found = || {
        exec_error(
            program,
            &std::io::Error::new(std::io::ErrorKind::NotFound, "command not found"),
        )
    };
    if program.as_bytes().contains(&b'/') {
        let p = PathBuf::from(program);
        return match executable(&p) {
            Ok(true) => Ok(p),
            Ok(false) => Err(exec_error(
                program,
                &std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "not an executable file",
                ),
            )),
            Err(_) => Err(not_found()),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut found_non_exec = false;
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        match executable(&candidate) {
            Ok(true) => return Ok(candidate),
            Ok(false) => found_non_exec = true,
            Err(_) => {}
        }
    }
    Err(if found_non_exec {
        exec_error(
            program,
            &std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "not an executable file",
            ),
        )
    } else {
        not_found()
    })
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
