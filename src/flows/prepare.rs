//! Steps 1–5, shared by `once`, `run` and `exec`: the start-up writes, the wait, the files
//! published with `ready`.

use crate::config::{Config, ConfigError};
use crate::db::retry::until_done;
use crate::db::wait::{LoginAttempt, Ready};
use crate::error::Error;
use crate::iam::Signer;
use crate::outdir::{Ahead, Writer};
use crate::render::Reveal;
use crate::secret::{Resolved, Resolver, Source, resolve_local};
use crate::signal::Wakes;
use crate::status::{Auth, Phase, State};

use super::observe::WaitObserver;

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

/// The out-dir opened for a flow ([`start`]): its status, and the files written ahead.
pub struct Started {
    state: State,
    ahead: Option<Ahead>,
}

impl Started {
    pub(super) fn into_state(self) -> State {
        self.state
    }
}

/// What the init flow leaves for `run` and `exec`.
pub(super) struct Prepared {
    pub(super) published: Resolved,
    pub(super) resolver: Resolver,
    /// `--iam-auth`: keeps its credential provider (and its cache) for the renewals.
    pub(super) signer: Option<Signer>,
}

/// Steps 1–5: resolve, wait, ensure the database, render, mark ready. A stop signal
/// before ready is `Error::Interrupted`, with phase `stopping` recorded.
pub(super) async fn prepare(
    config: &Config,
    started: &mut Started,
    wakes: &mut impl Wakes,
) -> Result<Prepared, Error> {
    let Started { state, ahead } = started;
    let Waited {
        ready,
        attempts,
        resolver,
        signer,
    } = wait(config, state, wakes).await?;
    // Steps 4–5: the files, status.json and the marker as one set (one directory fsync on
    // the path every task start waits for, and nothing replaced if any of them cannot be
    // written).
    let target = &ready.resolved.target;
    state.status.role = Some(target.user.clone());
    state.status.bootstrapped = ready.bootstrapped;
    let tls = config.tls.login_tls(&target.host);
    let set = config
        .render
        .files(target, tls, Reveal::Password)
        .map_err(ConfigError::from)?;
    let version = ready.resolved.version.clone();
    let changed = state.publish_ready(attempts, version, &set, ahead.take())?;
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
    Ok(Prepared {
        published: ready.resolved,
        resolver,
        signer,
    })
}

/// What the wait leaves: the login that worked, after how many attempts, and what made it.
struct Waited {
    ready: Ready,
    attempts: u32,
    resolver: Resolver,
    signer: Option<Signer>,
}

/// Steps 1–3: login attempts (the secret resolved, a token signed, the role set up, the
/// database created) until one works, each failure logged and recorded (`observe`).
async fn wait(config: &Config, state: &mut State, wakes: &mut impl Wakes) -> Result<Waited, Error> {
    let mut resolver = Resolver::new(config.source.clone(), config.overrides.clone());
    let mut signer = config
        .iam
        .as_ref()
        .map(|i| Signer::new(i.region.clone(), i.dsql));
    let mut admin = config.admin_login();
    // Written with the first failure (the observer always writes the first ones): in the
    // common case the first login works and `starting` goes straight to `ready`.
    state.status.phase = Phase::Waiting;
    let mut observer = WaitObserver::new();
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
    Ok(Waited {
        ready,
        attempts,
        resolver,
        signer,
    })
}

/// Step 0 of `once`, `run` and `exec`, before the flow: logs the start, does the start-up
/// writes (a stale marker removed, `starting`) and, for a source read without the network
/// and a password, starts writing its files ahead while the first login runs ([`Ahead`]).
pub fn start(command: &str, config: &Config) -> Result<Started, Error> {
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
                let tls = config.tls.login_tls(&r.target.host);
                config.render.files(&r.target, tls, Reveal::Password).ok()
            })
        })
        .flatten();
    Ok(Started { state, ahead })
}
