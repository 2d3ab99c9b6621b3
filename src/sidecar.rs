//! The flows: `once` (steps 1–5), `run` (steps 1–6), `exec` (steps 1–5, then execve) and
//! `render` (steps 1 and 4 to stdout), composed from the layers below.
//!
//! A stop signal during the wait or a refresh drops that future: no file is half-written,
//! because every write is synchronous between two await points and goes through a
//! temporary file. `run` holds no database connection between refreshes: an idle
//! connection would keep Aurora Serverless v2 from pausing to 0 ACU.

use std::convert::Infallible;
use std::ffi::OsString;
use std::time::Duration;

use crate::class::ErrorClass;
use crate::config::Config;
use crate::db::bootstrap::plan;
use crate::db::provision::quote_ident;
use crate::db::retry::{FailedAttempt, until_done};
use crate::db::wait::{LoginAttempt, Ready};
use crate::error::Error;
use crate::exec::{find_program, replace_process};
use crate::iam::Signer;
use crate::outdir::{Ahead, Writer};
use crate::refresh::{self, RefreshCheck, Timing};
use crate::render::{self, Reveal};
use crate::report::{chain, millis};
use crate::secret::{Overrides, Resolved, Resolver, Source, Target, resolve_local};
use crate::signal::Wakes;
use crate::state::{Auth, Phase, State};

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
        rds_hosts_verify_full = config.tls.rds.is_some(),
        sslrootcert = config.sslrootcert().map(|p| p.display().to_string()),
        wait_timeout_s = config.policy.deadline.map(|d| d.as_secs()),
        attempt_timeout_s = config.policy.attempt_timeout.as_secs(),
        iam_auth = config.iam.is_some(),
        region = config.iam.as_ref().and_then(|i| i.region.as_deref()),
        "aurora-sidecar starting"
    );
}

/// What the init flow leaves for `run` and `exec`.
struct Prepared {
    published: Resolved,
    resolver: Resolver,
    /// `--iam-auth`: keeps its credential provider (and its cache) for the renewals.
    signer: Option<Signer>,
}

/// Steps 1–5: resolve, wait, ensure the database, render, mark ready. A stop signal
/// before ready is `Error::Interrupted`, with phase `stopping` recorded.
async fn prepare(
    config: &Config,
    (state, ahead): &mut (State, Option<Ahead>),
    wakes: &mut impl Wakes,
) -> Result<Prepared, Error> {
    let mut resolver = Resolver::new(config.source.clone(), config.overrides.clone());
    let mut signer = config.iam.as_ref().map(|i| Signer::new(i.region.clone()));
    let mut admin = config
        .admin
        .clone()
        .map(|s| Resolver::new(s, Overrides::default()));
    // Written with the first failure (the observer always writes the first ones): in the
    // common case the first login works and `starting` goes straight to `ready`.
    state.status.phase = Phase::Waiting;
    let mut observer = WaitObserver::new(config.provisioning.create);
    let outcome = {
        let mut job = LoginAttempt::new(
            &mut resolver,
            &config.tls,
            &config.provisioning,
            &config.policy,
        );
        if let Some(signer) = signer.as_mut() {
            job = job.with_iam(signer);
        }
        if let Some(admin) = admin.as_mut() {
            job = job.with_admin(admin);
        }
        let wait = until_done(&config.policy, &mut job, |e| observer.observe(state, e));
        tokio::select! {
            r = wait => r.map_err(Error::from),
            sig = wakes.stop() => Err(Error::Interrupted(sig)),
        }
    };
    let (ready, attempts) = outcome.inspect_err(|e| {
        if matches!(e, Error::Interrupted(_)) {
            state.mark_stopping();
        }
    })?;
    if signer.is_some() {
        state.status.auth = Auth::Iam;
        state.set_token_expiry(ready.resolved.token_expires_at);
    }
    publish(config, state, &ready, attempts, ahead.take())?;
    Ok(Prepared {
        published: ready.resolved,
        resolver,
        signer,
    })
}

/// Step 4–5 after a login that worked: the files, status.json and the marker as one set
/// (one directory fsync on the path every task start waits for, and nothing replaced if
/// any of them cannot be written).
fn publish(
    config: &Config,
    state: &mut State,
    ready: &Ready,
    attempts: u32,
    ahead: Option<Ahead>,
) -> Result<(), Error> {
    let target = &ready.resolved.target;
    state.status.role = Some(target.user.clone());
    state.status.bootstrapped = ready.bootstrapped;
    let set = config.files(target, Reveal::Password);
    let changed = state.publish_ready(attempts, ready.resolved.version.clone(), &set, ahead)?;
    tracing::info!(
        attempts,
        database = %target.database,
        created = ready.created,
        bootstrapped = ready.bootstrapped,
        changed = ?changed,
        generation = state.status.generation,
        secret_version = ready.resolved.version.as_deref(),
        "ready"
    );
    Ok(())
}

/// Logs the start, does the start-up writes (a stale marker removed, `starting`) and,
/// for a source read without the network and a password, starts writing its files
/// ahead while the first login runs ([`Ahead`]).
fn start(command: &str, config: &Config) -> Result<(State, Option<Ahead>), Error> {
    log_start(command, config);
    let writer = Writer::new(&config.out_dir, config.owner)?;
    if writer.exposed_to_other_users() {
        tracing::warn!(
            out_dir = %config.out_dir.display(),
            "the out-dir is writable by other users and the sidecar runs as root: they can swap the published files for their own; use --drop-to, or a volume only the sidecar may write (chmod 0755, or the sticky bit)"
        );
    }
    let state = State::start(writer)?;
    let local = config.iam.is_none() && !matches!(config.source, Source::SecretsManager { .. });
    // A source that cannot be read now is the wait's to report, with its retries.
    let ahead = local
        .then(|| {
            Ahead::start(state.writer(), || {
                let r = resolve_local(&config.source, &config.overrides).ok()?;
                Some(config.files(&r.target, Reveal::Password))
            })
        })
        .flatten();
    Ok((state, ahead))
}

/// `once`: steps 1–5, then exit.
pub async fn once(config: &Config, wakes: &mut impl Wakes) -> Result<(), Error> {
    let mut started = start("once", config)?;
    prepare(config, &mut started, wakes).await.map(|_| ())
}

/// `run`: steps 1–6, renewing and checking every `refresh_interval`
/// ([`Config::refresh_interval`]: validated, `None` for never). Returns (exit 0) on SIGTERM/SIGINT in every phase, files in place.
pub async fn run(
    config: &Config,
    refresh_interval: Option<Duration>,
    wakes: &mut impl Wakes,
) -> Result<(), Error> {
    let mut started = start("run", config)?;
    let prepared = match prepare(config, &mut started, wakes).await {
        Err(Error::Interrupted(_)) => return Ok(()),
        other => other?,
    };
    // A token always changes: with IAM there is always something to renew.
    let can_change = prepared.resolver.can_change() || prepared.signer.is_some();
    if !can_change {
        tracing::info!(
            source = %config.source,
            "credentials from this source cannot change while the task runs; rotation needs a new task, so no refresh checks are made"
        );
    }
    let (mut state, _) = started;
    let timing = Timing {
        interval: refresh_interval,
        check_timeout: config.policy.attempt_timeout,
        backoff: || config.policy.degraded_schedule(),
        token_expires_at: prepared.published.token_expires_at,
    };
    let mut checker = RefreshCheck::new(
        config,
        state.writer().clone(),
        prepared.resolver,
        prepared.signer,
        prepared.published,
    );
    refresh::drive(&mut checker, wakes, &mut state, timing, can_change).await;
    Ok(())
}

/// `exec`: steps 1–5, then replace this process with `command`, its environment carrying
/// `DATABASE_URL` and the libpq variables, and no longer the variable the secret came
/// from unless `keep_secret_env`. Only returns on failure.
pub async fn exec(
    config: &Config,
    command: &[OsString],
    keep_secret_env: bool,
    wakes: &mut impl Wakes,
) -> Result<Infallible, Error> {
    let Some((program, args)) = command.split_first() else {
        // clap requires the command; an empty one is a usage problem all the same.
        return Err(exec_error(
            &OsString::new(),
            std::io::ErrorKind::NotFound.into(),
        ));
    };
    // Look the program up before waiting, so a typo fails in milliseconds, not after the
    // database came up.
    let path = find_program(program, std::env::var_os("PATH").as_deref())
        .map_err(|e| exec_error(program, e))?;
    let mut started = start("exec", config)?;
    let prepared = prepare(config, &mut started, wakes).await?;
    let vars = render::environment(&config.inputs(&prepared.published.target, Reveal::Password));
    // The admin secret never reaches the child; the app's own one unless asked to.
    let mut remove: Vec<&str> = config
        .admin
        .iter()
        .filter_map(|a| a.secret_variable())
        .collect();
    if !keep_secret_env {
        remove.extend(config.source.secret_variable());
    }
    tracing::info!(program = %path.display(), removed = ?remove, "exec");
    Err(exec_error(
        program,
        replace_process(&path, program, args, vars, &remove),
    ))
}

fn exec_error(program: &OsString, source: std::io::Error) -> Error {
    Error::Exec {
        program: program.to_string_lossy().into_owned(),
        source,
    }
}

/// Step 1 + step 4 to a string: what `once` would write, password masked unless
/// `reveal`. No database access, nothing written.
pub async fn render(config: &Config, reveal: Reveal) -> Result<String, Error> {
    use std::fmt::Write as _;
    let mut resolver = Resolver::new(config.source.clone(), config.overrides.clone());
    let mut resolved = resolver.resolve().await?;
    // A token is only signed when it is to be shown: masked output needs no credentials.
    if let (Some(iam), Reveal::Password) = (&config.iam, reveal) {
        resolved = Signer::new(iam.region.clone()).sign(resolved).await?;
    }
    let mut out = String::new();
    for f in config.files(&resolved.target, reveal) {
        let path = config.out_dir.join(f.name);
        let _ = writeln!(out, "==> {} (mode {:04o}) <==", path.display(), f.mode);
        if f.name == render::CA_FILE {
            if let Some(src) = config.sslrootcert() {
                let _ = writeln!(
                    out,
                    "(copy of {}, {} bytes)\n",
                    src.display(),
                    f.contents.len()
                );
            }
            continue;
        }
        out.push_str(&String::from_utf8_lossy(&f.contents));
        out.push('\n');
    }
    if let Some(admin) = &config.admin {
        out.push_str(&bootstrap_plan(config, &resolved.target, admin));
    }
    Ok(out)
}

/// What the bootstrap would do with the admin credentials, for `render`
/// (`bootstrap::plan`: the statements it runs).
fn bootstrap_plan(config: &Config, app: &Target, admin: &Source) -> String {
    let mut out = format!(
        "==> bootstrap plan (with the admin credentials from {admin}, only when the app's login fails) <==\n\
         log in to {} as the admin user, which needs CREATEROLE\n",
        quote_ident(&config.provisioning.maintenance_database),
    );
    for (statement, when) in plan(app, config.iam.is_some(), config.provisioning.create) {
        out.push_str(&format!("{statement}{when}\n"));
    }
    out
}

/// Logs failed attempts and records them in `status.json`, sparingly: a refusing server
/// is probed twenty times a second, which is cheap for it but would be a flood of log lines
/// and fsyncs. The first attempts, every change of class or phase, and the last attempt
/// are written at once; in between, at most one warning every 10 s and one status write
/// a second (the rest go to the debug log).
struct WaitObserver {
    create: bool,
    last: Option<(ErrorClass, Phase)>,
    last_warn: Option<std::time::Instant>,
    last_save: Option<std::time::Instant>,
}

impl WaitObserver {
    const EARLY: u32 = 3;
    const WARN_EVERY: Duration = Duration::from_secs(10);
    const SAVE_EVERY: Duration = Duration::from_secs(1);

    fn new(create: bool) -> Self {
        Self {
            create,
            last: None,
            last_warn: None,
            last_save: None,
        }
    }

    fn due(last: Option<std::time::Instant>, every: Duration) -> bool {
        last.is_none_or(|t| t.elapsed() >= every)
    }

    fn observe(&mut self, state: &mut State, e: &FailedAttempt<'_>) {
        let class = e.error.class();
        let message = chain(e.error);
        let phase = if class == ErrorClass::MissingDatabase && self.create {
            Phase::Provisioning
        } else {
            Phase::Waiting
        };
        let changed = self.last != Some((class, phase));
        self.last = Some((class, phase));
        let notable = changed || e.attempt <= Self::EARLY || e.delay.is_none();
        let delay_ms = e.delay.map(millis);
        match e.delay {
            // The normal first start: not a failure worth a warning.
            Some(_) if phase == Phase::Provisioning => tracing::info!(
                attempt = e.attempt,
                host = e.error.host(),
                error = %message,
                "database does not exist yet; creating it"
            ),
            Some(_) if notable || Self::due(self.last_warn, Self::WARN_EVERY) => {
                self.last_warn = Some(std::time::Instant::now());
                tracing::warn!(
                    attempt = e.attempt,
                    delay_ms,
                    host = e.error.host(),
                    error_class = %class,
                    error = %message,
                    "database not ready; retrying"
                );
            }
            Some(_) => {
                tracing::debug!(attempt = e.attempt, delay_ms, error_class = %class, "database not ready; retrying")
            }
            // main logs the final error once, with its exit code.
            None => tracing::debug!(attempt = e.attempt, error_class = %class, "giving up"),
        }
        state.set_failure(phase, e.attempt, class, &message);
        if notable || Self::due(self.last_save, Self::SAVE_EVERY) {
            self.last_save = Some(std::time::Instant::now());
            state.save_or_warn();
        }
    }
}
