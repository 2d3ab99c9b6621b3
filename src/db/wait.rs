//! Waiting until the database accepts a real login: [`LoginAttempt`] is one attempt of
//! the job (resolve the secret if needed, sign a token, set the app role up with the admin
//! credentials, then [`establish`]), run by the retry loop (`retry`) until it succeeds.
//! What each failure calls for comes from `remedy` (retry, retry at once creating the
//! missing database next, set the role up, or give up).

use std::time::{Duration, SystemTime};

use super::admin::{Admin, AppLogin};
use super::bootstrap::{BootstrapError, DatabaseOwner, bootstrap, check_roles};
use super::classify::{Contact, Stage};
use super::connect::DbError;
use super::establish::establish;
use super::hint;
use super::pace::{Pace, Policy};
use super::provision::Provisioning;
use super::remedy::{Context, Remedy, Verdict, remedy, verdict};
use super::retry::{Attempt, AttemptError, Failure};
use super::tls::TlsChoice;
use crate::class::ErrorClass;
use crate::display::printable;
use crate::iam::Signer;
use crate::secret::{Resolved, Resolver, Target};

/// A cached IAM token this close to its expiry is replaced before the next attempt.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// The result of a successful wait.
#[derive(Debug)]
pub struct Ready {
    pub resolved: Resolved,
    pub created: bool,
    /// The app role was set up with the admin credentials during this wait.
    pub bootstrapped: bool,
}

/// What the wait does next about a failed database step, before the error's own handling
/// (a re-read secret, a re-signed token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextStep {
    pub verdict: Verdict,
    /// The next attempt sets the app role up with the admin credentials first.
    pub bootstrap: bool,
    /// The next attempt creates the app database first.
    pub provision: bool,
}

/// The wait's decision, pure (doctor's tests hold it against the refresh's and doctor's).
pub fn next_step(
    class: ErrorClass,
    stage: Stage,
    contact: Contact,
    elapsed: Duration,
    policy: &Policy,
    context: Context,
) -> NextStep {
    let remedy = remedy(class, stage, context);
    if remedy == Remedy::Bootstrap {
        return NextStep {
            verdict: Verdict::RetryNow,
            bootstrap: true,
            provision: false,
        };
    }
    let verdict = verdict(class, stage, contact, elapsed, policy, context.create);
    // Create the database next time after a 3D000 at login, and keep trying to create it
    // after a creation that failed for a passing reason.
    let provision = remedy == Remedy::Provision
        || (stage == Stage::Provision && matches!(verdict, Verdict::Retry(_)));
    NextStep {
        verdict,
        bootstrap: false,
        provision,
    }
}

/// One attempt of the init flow: secret → login (→ create database → login).
pub struct LoginAttempt<'a> {
    resolver: &'a mut Resolver,
    /// `--iam-auth`: signs the password of every resolved target.
    signer: Option<&'a mut Signer>,
    tls: &'a TlsChoice,
    provisioning: &'a Provisioning,
    policy: &'a Policy,
    /// The secret kept between attempts unless a rejected password says to re-read it.
    resolved: Option<Resolved>,
    /// The last login said 3D000: the next attempt creates the database first.
    provision_next: bool,
    password_rejections: u32,
    token_rejections: u32,
    /// `--admin-secret-*`: sets the app role up when its login fails in a way that can fix.
    admin: Option<&'a mut Admin>,
    /// The next attempt runs the bootstrap first (once per wait, unless it failed for a
    /// passing reason).
    bootstrap_next: bool,
    bootstrapped: bool,
    /// The admin login, read from its source once per wait.
    admin_target: Option<Target>,
}

impl<'a> LoginAttempt<'a> {
    pub fn new(
        resolver: &'a mut Resolver,
        tls: &'a TlsChoice,
        provisioning: &'a Provisioning,
        policy: &'a Policy,
    ) -> Self {
        Self {
            resolver,
            signer: None,
            tls,
            provisioning,
            policy,
            resolved: None,
            provision_next: false,
            password_rejections: 0,
            token_rejections: 0,
            admin: None,
            bootstrap_next: false,
            bootstrapped: false,
            admin_target: None,
        }
    }

    /// Sets the app role up with the admin credentials `admin` resolves when the app's
    /// login fails because of the role, its credentials or the database.
    pub fn with_admin(mut self, admin: &'a mut Admin) -> Self {
        self.admin = Some(admin);
        self
    }

    /// Logs in with IAM tokens signed by `signer` instead of the secret's password.
    pub fn with_iam(mut self, signer: &'a mut Signer) -> Self {
        self.signer = Some(signer);
        self
    }

    /// The secret for this attempt: the one kept from the last attempt (while its token,
    /// if any, has a minute left), or a fresh read, signed when IAM is on.
    async fn resolved(&mut self) -> Result<Resolved, Failure> {
        let fresh_enough = |r: &Resolved| {
            r.token_expires_at
                .is_none_or(|t| t > SystemTime::now() + TOKEN_MARGIN)
        };
        if let Some(r) = self.resolved.as_ref().filter(|r| fresh_enough(r)) {
            return Ok(r.clone());
        }
        let fail = |retryable: bool, error: AttemptError| Failure {
            verdict: if retryable {
                Verdict::Retry(Pace::Backoff)
            } else {
                Verdict::Fatal
            },
            error,
        };
        let mut fresh = self
            .resolver
            .resolve()
            .await
            .map_err(|e| fail(e.is_retryable(), e.into()))?;
        if let Some(signer) = self.signer.as_deref_mut() {
            fresh = signer
                .sign(fresh)
                .await
                .map_err(|e| fail(e.is_retryable(), e.into()))?;
        }
        Ok(self.resolved.insert(fresh).clone())
    }

    /// What the bootstrap gives the app role: what the admin source says for this wait's
    /// way of logging in.
    fn app_login(&self) -> AppLogin<'_> {
        let iam = self.signer.is_some();
        let admin = self.admin.as_deref();
        admin.map_or(AppLogin::Password, |a| a.app_login(iam))
    }

    /// What this wait may do about a failure (`remedy`).
    fn context(&self) -> Context {
        Context {
            admin: self.admin.is_some(),
            bootstrapped: self.bootstrapped,
            create: self.provisioning.create,
        }
    }

    fn db_failure(&mut self, err: DbError, elapsed: Duration) -> Failure {
        let step = next_step(
            err.class,
            err.stage,
            err.contact,
            elapsed,
            self.policy,
            self.context(),
        );
        let verdict = step.verdict;
        if step.bootstrap {
            self.bootstrap_next = true;
            return Failure {
                verdict,
                error: err.into(),
            };
        }
        self.provision_next = step.provision;
        match err.class {
            ErrorClass::PasswordRejected => self.password_rejected(err, verdict),
            ErrorClass::TokenRejected => self.token_rejected(err),
            ErrorClass::AuthorizationRejected if verdict == Verdict::Fatal => Failure {
                verdict,
                error: err.with_hint(hint::AFTER_RESUME).into(),
            },
            _ => Failure {
                verdict,
                error: err.into(),
            },
        }
    }

    /// A rotation race: the database may already have the new password while we hold the
    /// old one, so the secret is read again before the next try, a bounded number of times.
    fn password_rejected(&mut self, err: DbError, verdict: Verdict) -> Failure {
        self.resolved = None;
        self.password_rejections += 1;
        if self.password_rejections > self.policy.password_retries {
            return Failure {
                verdict: Verdict::Fatal,
                error: AttemptError::PasswordRejectedRepeatedly {
                    times: self.password_rejections,
                    last: Box::new(err),
                },
            };
        }
        Failure {
            verdict,
            error: err.into(),
        }
    }

    /// A token signed with credentials that were just replaced, or across a clock step, is
    /// signed once more before the rejection is taken at its word; a password refused the
    /// way tokens are means the user is checked by PAM.
    fn token_rejected(&mut self, err: DbError) -> Failure {
        if self.signer.is_some() && self.token_rejections == 0 {
            self.token_rejections += 1;
            self.resolved = None;
            return Failure {
                verdict: Verdict::Retry(Pace::Answered),
                error: err.into(),
            };
        }
        let hint = if self.signer.is_some() {
            hint::IAM_REJECTED
        } else {
            hint::PAM_USER
        };
        Failure {
            verdict: Verdict::Fatal,
            error: err.with_hint(hint).into(),
        }
    }
}

impl LoginAttempt<'_> {
    /// The admin login (a secret read once per wait, a token signed each time), checked
    /// against `app`
    /// (`bootstrap::check_roles`: the app role is not the admin, its names are not
    /// reserved); `None` without an admin source.
    async fn admin_target(&mut self, app: &Target) -> Result<Option<Target>, Failure> {
        let Some(source) = self.admin.as_deref_mut() else {
            return Ok(None);
        };
        // A secret is read once per wait; an IAM token is signed afresh, as it expires.
        let cached = self.admin_target.as_ref().filter(|_| source.is_secret());
        let admin = match cached {
            Some(admin) => admin.clone(),
            None => source
                .target(app, &self.provisioning.maintenance_database)
                .await
                .map_err(|e| Failure {
                    verdict: if e.is_retryable() {
                        Verdict::Retry(Pace::Backoff)
                    } else {
                        Verdict::Fatal
                    },
                    error: e.into(),
                })?,
        };
        check_roles(&admin, app, self.app_login()).map_err(|e| Failure {
            verdict: Verdict::Fatal,
            error: AttemptError::Bootstrap(e),
        })?;
        self.admin_target = Some(admin.clone());
        Ok(Some(admin))
    }

    /// Sets `app` up through the `admin` login (`bootstrap`).
    async fn bootstrap(
        &mut self,
        admin: &Target,
        app: &Target,
        elapsed: Duration,
    ) -> Result<(), Failure> {
        let tls = self.tls.for_host(&admin.host);
        let done = bootstrap(admin, app, self.app_login(), self.provisioning.create, tls)
            .await
            .map_err(|e| self.bootstrap_failure(e, elapsed))?;
        self.bootstrapped = true;
        tracing::info!(
            role = %app.user,
            admin = %admin.user,
            role_created = done.role_created,
            database = done.database.label(),
            "app role set up with the admin credentials"
        );
        match &done.database {
            DatabaseOwner::Other(owner) => tracing::warn!(
                database = %printable(&app.database),
                owner = %printable(owner),
                role = %printable(&app.user),
                "the database belongs to another role; left alone, so the app role may not create tables in its public schema"
            ),
            DatabaseOwner::NotEmpty => tracing::warn!(
                database = %printable(&app.database),
                owner = %printable(&admin.user),
                role = %printable(&app.user),
                "the database belongs to the admin user and holds objects already; not handed over (the bootstrap hands over only an empty one), so the app role may not create tables in its public schema"
            ),
            _ => {}
        }
        Ok(())
    }

    /// A bootstrap that failed for a passing reason is tried again; a rejected admin
    /// password (not a rotation race the app could win) or a refusal of ours is final.
    fn bootstrap_failure(&mut self, e: BootstrapError, elapsed: Duration) -> Failure {
        let verdict = match &e {
            BootstrapError::Db(db) if db.class != ErrorClass::PasswordRejected => {
                verdict(db.class, db.stage, db.contact, elapsed, self.policy, false)
            }
            _ => Verdict::Fatal,
        };
        self.bootstrap_next = matches!(verdict, Verdict::Retry(_));
        Failure {
            verdict,
            error: AttemptError::Bootstrap(e),
        }
    }
}

impl Attempt for LoginAttempt<'_> {
    type Output = Ready;

    async fn attempt(&mut self, _n: u32, elapsed: Duration) -> Result<Ready, Failure> {
        let resolved = self.resolved().await?;
        // Checked on every start with an admin secret, not only one that bootstraps: the
        // app's files must never carry the master's credentials.
        let admin = self.admin_target(&resolved.target).await?;
        if std::mem::take(&mut self.bootstrap_next)
            && let Some(admin) = &admin
        {
            self.bootstrap(admin, &resolved.target, elapsed).await?;
        }
        let provision = self.provision_next.then_some(self.provisioning);
        let tls = self.tls.for_host(&resolved.target.host);
        match establish(&resolved.target, tls, provision).await {
            Ok(created) => Ok(Ready {
                resolved,
                created,
                bootstrapped: self.bootstrapped,
            }),
            Err(e) => Err(self.db_failure(e, elapsed)),
        }
    }

    /// A missing app database is created (`--no-create`: waited for).
    fn creates(&self, error: &AttemptError) -> bool {
        error.class() == ErrorClass::MissingDatabase && self.provisioning.create
    }
}
