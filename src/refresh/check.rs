//! The real refresh check of `run`: look at the source (DescribeSecret, or the file
//! re-read), validate new credentials with one real login (creating a database the new
//! secret names), then publish them. With IAM, each check also signs a new token; when
//! the login itself (host, port, user, database) did not change, the token is published
//! without a login, so the refresh never keeps Aurora Serverless v2 from pausing.

use crate::class::ErrorClass;
use crate::config::Config;
use crate::db::admin::{Admin, AdminError};
use crate::db::bootstrap::{BootstrapError, bootstrap};
use crate::db::classify::Stage;
use crate::db::connect::DbError;
use crate::db::establish::validate;
use crate::db::reload::{ReloadError, reload};
use crate::db::remedy::{Context, Remedy, remedy};
use crate::display::chain;
use crate::iam::{IamError, Signer};
use crate::outdir::{WriteError, Writer};
use crate::render::Reveal;
use crate::render::pgbouncer::CarryError;
use crate::secret::{Resolved, Resolver, Rotation, SecretError, Target};

use super::{Checked, Checker};

/// Why a refresh check failed; the files in place are kept.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("signing a new IAM token")]
    Iam(#[from] IamError),
    #[error("validating the new credentials")]
    Validate(#[from] DbError),
    #[error("publishing the new files")]
    Publish(#[from] WriteError),
    #[error("setting the new password with the admin credentials")]
    Bootstrap(#[from] BootstrapError),
    #[error(transparent)]
    Carry(#[from] CarryError),
    #[error(transparent)]
    Reload(#[from] ReloadError),
}

impl From<AdminError> for RefreshError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Secret(e) => RefreshError::Secret(e),
            AdminError::Iam(e) => RefreshError::Iam(e),
        }
    }
}

impl RefreshError {
    fn class(&self) -> ErrorClass {
        match self {
            RefreshError::Secret(e) => e.class(),
            RefreshError::Iam(e) => e.class(),
            RefreshError::Validate(e) => e.class,
            RefreshError::Publish(_) => ErrorClass::OutDir,
            RefreshError::Bootstrap(e) => e.class(),
            RefreshError::Carry(_) => ErrorClass::Config,
            RefreshError::Reload(e) => e.class(),
        }
    }
}

/// The real check: the source (DescribeSecret, or the file re-read), a one-shot
/// validation with a real login (creating a database the new secret names), then publish.
/// With IAM, each check also signs a new token; when the login itself (host, port, user,
/// database) did not change, the token is published without a login.
pub struct RefreshCheck<'a> {
    config: &'a Config,
    writer: Writer,
    resolver: Resolver,
    signer: Option<Signer>,
    /// What the files in the out-dir say now.
    published: Resolved,
    /// `--admin-secret-*` or `--admin-iam-user`: sets a rotated password the server does
    /// not know yet.
    admin: Option<Admin>,
    /// `--pgbouncer`: files were published that PgBouncer has not been told about (its
    /// admin console did not answer); every check tries again until it does.
    reload_pending: bool,
    /// What was published while PgBouncer could not be told, reported once it is.
    untold: Option<Checked>,
}

/// What a check reports when an earlier one published files PgBouncer was not told
/// about: the earlier publication, brought up to date by this check's.
fn untold(earlier: Option<Checked>, now: Checked) -> Checked {
    match (earlier, now) {
        (Some(earlier), Checked::Unchanged) => earlier,
        (Some(Checked::Published { version, .. }), Checked::Renewed { expires_at }) => {
            Checked::Published {
                version,
                token_expires_at: Some(expires_at),
            }
        }
        (_, now) => now,
    }
}

impl<'a> RefreshCheck<'a> {
    /// A checker that starts from what the init flow published.
    pub fn new(
        config: &'a Config,
        writer: Writer,
        resolver: Resolver,
        signer: Option<Signer>,
        published: Resolved,
    ) -> Self {
        Self {
            config,
            writer,
            resolver,
            signer,
            published,
            admin: config.admin_login(),
            // The first check tells PgBouncer too: one that was running before this
            // start (a restarted sidecar) learns the new files, and a missing one is
            // reported.
            reload_pending: config.render.pgbouncer.is_some(),
            untold: None,
        }
    }

    /// Publishes the files for `resolved` (nothing is written when they cannot be
    /// rendered, e.g. a token longer than PgBouncer carries) and makes it what the files
    /// say; with `--pgbouncer`, PgBouncer is to be told ([`Self::tell_pgbouncer`]).
    fn publish(&mut self, resolved: Resolved) -> Result<Vec<&'static str>, RefreshError> {
        let (config, target) = (self.config, &resolved.target);
        let tls = config.tls.login_tls(&target.host);
        let set = config.render.files(target, tls, Reveal::Password)?;
        let changed = self.writer.publish(&set)?;
        self.published = resolved;
        self.reload_pending = self.config.render.pgbouncer.is_some();
        Ok(changed)
    }

    /// `RELOAD` when files were published that PgBouncer has not been told about. One that
    /// fails leaves the files published: the check fails (degraded) and the next one tries
    /// again.
    async fn tell_pgbouncer(&mut self) -> Result<(), RefreshError> {
        let (Some(p), true) = (&self.config.render.pgbouncer, self.reload_pending) else {
            return Ok(());
        };
        reload(p, self.config.policy.attempt_timeout).await?;
        self.reload_pending = false;
        tracing::info!(pgbouncer = %p.address(), "PgBouncer reloaded");
        Ok(())
    }

    /// Whether a failed validation calls for setting the role up first: as a wait that has
    /// not bootstrapped yet decides it (each check's candidate is new). Pure (doctor's
    /// tests hold it against the wait's and doctor's decisions).
    pub(crate) fn sets_up_first(
        class: ErrorClass,
        stage: Stage,
        admin: bool,
        create: bool,
    ) -> bool {
        let context = Context {
            admin,
            bootstrapped: false,
            create,
        };
        remedy(class, stage, context) == Remedy::Bootstrap
    }

    /// The bootstrap, for a rotated app password (`db::bootstrap`: it sets the role's
    /// verifier or `rds_iam`, and puts right whatever else is missing).
    async fn set_up(&mut self, app: &Target) -> Result<(), RefreshError> {
        let Some(source) = self.admin.as_mut() else {
            return Ok(());
        };
        let config = self.config;
        let admin = source
            .target(app, &config.provisioning.maintenance_database)
            .await?;
        let tls = config.tls.for_host(&admin.host);
        let app_login = source.app_login(self.signer.is_some());
        bootstrap(&admin, app, app_login, config.provisioning.create, tls).await?;
        tracing::info!(role = %app.user, "the new credentials set up with the admin credentials");
        Ok(())
    }

    /// A check, then (`--pgbouncer`) `RELOAD` after a publish, or again after one that
    /// failed. What was published stays to be reported until PgBouncer has been told, so
    /// status.json's version and token expiry catch up when it answers.
    async fn try_check(&mut self) -> Result<Checked, RefreshError> {
        let checked = self.look_and_publish().await?;
        let checked = untold(self.untold.take(), checked);
        if let Err(e) = self.tell_pgbouncer().await {
            self.untold = Some(checked);
            return Err(e);
        }
        Ok(checked)
    }

    async fn look_and_publish(&mut self) -> Result<Checked, RefreshError> {
        let changed = match self.resolver.check(&self.published).await? {
            Rotation::Unchanged | Rotation::CannotChange => None,
            Rotation::Changed(c) => Some(c),
        };
        let Some(signer) = self.signer.as_mut() else {
            return match changed {
                None => Ok(Checked::Unchanged),
                Some(c) => self.validate_and_publish(c).await,
            };
        };
        match changed {
            Some(c) if !c.target.same_place(&self.published.target) => {
                let signed = signer.sign(c).await?;
                self.validate_and_publish(signed).await
            }
            // Same place (the secret file re-read, or a new version saying the same):
            // only the token is new.
            maybe => {
                let base = maybe.unwrap_or_else(|| self.published.clone());
                let renewed = signer.sign(base).await?;
                let expires_at = renewed
                    .token_expires_at
                    .unwrap_or_else(std::time::SystemTime::now);
                self.publish(renewed)?;
                Ok(Checked::Renewed { expires_at })
            }
        }
    }

    async fn validate_and_publish(&mut self, candidate: Resolved) -> Result<Checked, RefreshError> {
        tracing::info!(
            old_version = self.published.version.as_deref(),
            new_version = candidate.version.as_deref(),
            "new credentials found; validating them before publishing"
        );
        let config = self.config;
        let tls = config.tls.for_host(&candidate.target.host);
        let created = match validate(&candidate.target, tls, &config.provisioning).await {
            // What the wait would do (`remedy`): the app's new password not set on the
            // server yet, its role or database missing. With admin credentials, set the
            // role up first, then validate the new credentials like any other.
            Err(e)
                if Self::sets_up_first(
                    e.class,
                    e.stage,
                    self.admin.is_some(),
                    config.provisioning.create,
                ) =>
            {
                self.set_up(&candidate.target).await?;
                validate(&candidate.target, tls, &config.provisioning).await?
            }
            other => other?,
        };
        let old_version = self.published.version.clone();
        let published = Checked::Published {
            version: candidate.version.clone(),
            token_expires_at: candidate.token_expires_at,
        };
        let changed = self.publish(candidate)?;
        tracing::info!(
            old_version = old_version.as_deref(),
            new_version = self.published.version.as_deref(),
            database = %self.published.target.database,
            created,
            changed = ?changed,
            "new credentials validated"
        );
        Ok(published)
    }
}

impl Checker for RefreshCheck<'_> {
    async fn check(&mut self) -> Checked {
        match self.try_check().await {
            Ok(checked) => checked,
            Err(e) => Checked::Failed {
                class: e.class(),
                message: chain(&e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn published(version: &str, expires: Option<SystemTime>) -> Checked {
        Checked::Published {
            version: Some(version.into()),
            token_expires_at: expires,
        }
    }

    /// What was published while PgBouncer could not be told is what the check that tells
    /// it reports: the version, with the newest token's expiry.
    #[test]
    fn a_publication_pgbouncer_was_not_told_about_is_reported_when_it_is() {
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(900);
        assert_eq!(untold(None, Checked::Unchanged), Checked::Unchanged);
        assert_eq!(
            untold(Some(published("v2", None)), Checked::Unchanged),
            published("v2", None)
        );
        assert_eq!(
            untold(
                Some(published("v2", None)),
                Checked::Renewed { expires_at: later }
            ),
            published("v2", Some(later))
        );
        assert_eq!(
            untold(Some(published("v2", None)), published("v3", None)),
            published("v3", None)
        );
        let renewed = Checked::Renewed { expires_at: later };
        assert_eq!(
            untold(
                Some(Checked::Renewed {
                    expires_at: SystemTime::UNIX_EPOCH
                }),
                renewed.clone()
            ),
            renewed
        );
    }
}
