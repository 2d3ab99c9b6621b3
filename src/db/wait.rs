//! Waiting until the database accepts a real login, with jittered exponential backoff.
//!
//! Two layers:
//! - [`drive`] is the generic loop: per-attempt timeout, backon schedule, overall deadline,
//!   and an observer that sees every failure (for logs and `status.json`). It knows
//!   nothing about PostgreSQL, so its timing is tested with paused time.
//! - [`LoginAttempt`] is one attempt of the real job: resolve the secret if needed, then
//!   [`establish`]. [`verdict`] decides, purely from the error's class and stage, whether
//!   to retry, retry at once (creating the missing database next), or give up.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::bootstrap::{BootstrapError, DatabaseOwner, bootstrap, check_roles};
use super::connect::{Contact, DbError, Stage};
use super::establish::establish;
use super::pace::{Pace, Policy, pacer};
use super::provision::Provisioning;
use super::remedy::{Context, Remedy, remedy};
use super::tls::TlsChoice;
use crate::class::ErrorClass;
use crate::iam::{self, IamError, Signer};
use crate::report::printable;
use crate::secret::{Resolved, Resolver, SecretError, Target};

/// A cached IAM token this close to its expiry is replaced before the next attempt.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// For a user granted rds_iam, a password is checked by PAM and refused like a token.
const PAM_USER_HINT: &str = "the server checks this user with PAM (on RDS/Aurora: the user was granted rds_iam, and then only IAM tokens work): pass --iam-auth, or REVOKE rds_iam to log in with the secret's password";

/// What the loop should do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Pause as the pace says, then try again.
    Retry(Pace),
    /// Try again at once without advancing the backoff (the next attempt does different
    /// work, e.g. creating the missing database).
    RetryNow,
    /// Give up.
    Fatal,
}

#[derive(Debug)]
pub struct Failure {
    pub verdict: Verdict,
    pub error: AttemptError,
}

/// Why one attempt failed. Messages carry host, database, user and the server's text,
/// never the password.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Iam(#[from] IamError),
    #[error(transparent)]
    Bootstrap(BootstrapError),
    /// Boxed: the error travels through every `Result` of the wait loop.
    #[error(transparent)]
    Db(Box<DbError>),
    #[error("no answer within {0:?} (TCP, TLS and authentication together; see --attempt-timeout)")]
    Timeout(Duration),
    #[error(
        "password rejected {times} times, re-reading the secret before each retry: the secret and the database disagree"
    )]
    PasswordRejectedRepeatedly {
        times: u32,
        #[source]
        last: Box<DbError>,
    },
}

impl From<DbError> for AttemptError {
    fn from(e: DbError) -> Self {
        AttemptError::Db(Box::new(e))
    }
}

impl AttemptError {
    pub fn class(&self) -> ErrorClass {
        match self {
            AttemptError::Secret(e) => e.class(),
            AttemptError::Iam(e) => e.class(),
            AttemptError::Bootstrap(e) => e.class(),
            AttemptError::Db(e) => e.class,
            AttemptError::Timeout(_) => ErrorClass::Timeout,
            AttemptError::PasswordRejectedRepeatedly { .. } => ErrorClass::PasswordRejected,
        }
    }

    /// The server the attempt talked to, when it got that far (for the `host` log field).
    pub fn host(&self) -> Option<&str> {
        match self {
            AttemptError::Db(e) | AttemptError::PasswordRejectedRepeatedly { last: e, .. } => {
                Some(&e.host)
            }
            AttemptError::Bootstrap(BootstrapError::Db(e)) => Some(&e.host),
            AttemptError::Secret(_)
            | AttemptError::Iam(_)
            | AttemptError::Bootstrap(_)
            | AttemptError::Timeout(_) => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("still not ready after {attempts} attempts in {}s (--wait-timeout); last error", elapsed.as_secs())]
    Deadline {
        attempts: u32,
        elapsed: Duration,
        #[source]
        last: AttemptError,
    },
    #[error(transparent)]
    Fatal(AttemptError),
}

impl WaitError {
    pub fn class(&self) -> ErrorClass {
        match self {
            WaitError::Deadline { last, .. } | WaitError::Fatal(last) => last.class(),
        }
    }
}

/// A failed attempt as the observer sees it.
#[derive(Debug)]
pub struct Event<'a> {
    pub attempt: u32,
    pub error: &'a AttemptError,
    /// The pause before the next attempt; `None` when the loop is giving up.
    pub delay: Option<Duration>,
}

/// One attempt of some job. `async fn` in a crate-private trait: the futures never cross
/// threads (the binary runs a current-thread runtime), so no `Send` bound is needed.
pub(crate) trait Attempt {
    type Output;
    async fn attempt(&mut self, n: u32, elapsed: Duration) -> Result<Self::Output, Failure>;
}

/// Runs attempts until one succeeds, one is fatal, or the deadline leaves no room for the
/// next. Each attempt is bounded by `min(attempt_timeout, time left)`.
pub(crate) async fn drive<A: Attempt>(
    policy: &Policy,
    job: &mut A,
    mut observe: impl FnMut(&Event<'_>),
) -> Result<(A::Output, u32), WaitError> {
    let start = Instant::now();
    let deadline = policy.deadline.map(|d| start + d);
    let mut pacer = pacer(policy, fastrand::f64);
    let mut last: Option<AttemptError> = None;
    let mut n = 0u32;
    loop {
        n += 1;
        let budget = deadline.map_or(policy.attempt_timeout, |d| {
            policy
                .attempt_timeout
                .min(d.saturating_duration_since(Instant::now()))
        });
        let failure = match tokio::time::timeout(budget, job.attempt(n, start.elapsed())).await {
            Ok(Ok(out)) => return Ok((out, n)),
            Ok(Err(f)) => f,
            Err(_) => Failure {
                verdict: Verdict::Retry(Pace::Backoff),
                // An attempt cut short by the deadline (not by --attempt-timeout) says
                // nothing about the server: report what the attempt before it found.
                error: match last.take() {
                    Some(previous) if budget < policy.attempt_timeout => previous,
                    _ => AttemptError::Timeout(budget),
                },
            },
        };
        // A pause that would end past the deadline ends the loop instead.
        let delay = match failure.verdict {
            Verdict::Fatal => None,
            Verdict::RetryNow => Some(Duration::ZERO),
            Verdict::Retry(pace) => Some(pacer.delay(pace)),
        }
        .filter(|d| deadline.is_none_or(|dl| Instant::now() + *d < dl));
        observe(&Event {
            attempt: n,
            error: &failure.error,
            delay,
        });
        let Some(d) = delay else {
            return Err(match failure.verdict {
                Verdict::Fatal => WaitError::Fatal(failure.error),
                _ => WaitError::Deadline {
                    attempts: n,
                    elapsed: start.elapsed(),
                    last: failure.error,
                },
            });
        };
        tokio::time::sleep(d).await;
        last = Some(failure.error);
    }
}

/// The result of a successful wait.
#[derive(Debug)]
pub struct Ready {
    pub resolved: Resolved,
    pub created: bool,
    /// The app role was set up with the admin credentials during this wait.
    pub bootstrapped: bool,
}

/// What a failed database step means for the wait, from its class, stage and contact
/// alone (the contact sets the pace of a retry). `elapsed` is the time since the wait
/// began (28000 is retried only early on).
pub fn verdict(
    class: ErrorClass,
    stage: Stage,
    contact: Contact,
    elapsed: Duration,
    policy: &Policy,
    create: bool,
) -> Verdict {
    let retry = Verdict::Retry(contact.into());
    match (class, stage) {
        (ErrorClass::Transient, _) | (ErrorClass::PasswordRejected, _) => retry,
        (ErrorClass::AuthorizationRejected, _) if elapsed < policy.authorization_window => retry,
        (ErrorClass::MissingDatabase, Stage::Login) if create => Verdict::RetryNow,
        // --no-create: somebody else (a migration job, a DBA) is expected to create it.
        (ErrorClass::MissingDatabase, Stage::Login) => retry,
        _ => Verdict::Fatal,
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
    admin: Option<&'a mut Resolver>,
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
    pub fn with_admin(mut self, admin: &'a mut Resolver) -> Self {
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

    /// What this wait may do about a failure (`remedy`).
    fn context(&self) -> Context {
        Context {
            admin: self.admin.is_some(),
            bootstrapped: self.bootstrapped,
            create: self.provisioning.create,
        }
    }

    fn db_failure(&mut self, err: DbError, elapsed: Duration) -> Failure {
        let remedy = remedy(err.class, err.stage, self.context());
        if remedy == Remedy::Bootstrap {
            self.bootstrap_next = true;
            return Failure {
                verdict: Verdict::RetryNow,
                error: err.into(),
            };
        }
        let verdict = verdict(
            err.class,
            err.stage,
            err.contact,
            elapsed,
            self.policy,
            self.provisioning.create,
        );
        // Create the database next time after a 3D000 at login, and keep trying to
        // create it after a creation that failed for a passing reason.
        self.provision_next = remedy == Remedy::Provision
            || (err.stage == Stage::Provision && matches!(verdict, Verdict::Retry(_)));
        match err.class {
            ErrorClass::PasswordRejected => self.password_rejected(err, verdict),
            ErrorClass::TokenRejected => self.token_rejected(err),
            ErrorClass::AuthorizationRejected if verdict == Verdict::Fatal => Failure {
                verdict,
                error: err
                    .with_hint("still rejected after the resume window: check pg_hba / rds.force_ssl and the user's LOGIN and CONNECT rights")
                    .into(),
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
            iam::REJECTED_HINT
        } else {
            PAM_USER_HINT
        };
        Failure {
            verdict: Verdict::Fatal,
            error: err.with_hint(hint).into(),
        }
    }
}

impl LoginAttempt<'_> {
    /// The admin login (read once per wait), checked against `app`
    /// (`bootstrap::check_roles`: the app role is not the admin, its names are not
    /// reserved); `None` without an admin source.
    async fn admin_target(&mut self, app: &Target) -> Result<Option<Target>, Failure> {
        let Some(source) = self.admin.as_deref_mut() else {
            return Ok(None);
        };
        let admin = match &self.admin_target {
            Some(admin) => admin.clone(),
            None => source
                .admin_target(app, &self.provisioning.maintenance_database)
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
        check_roles(&admin, app).map_err(|e| Failure {
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
        let iam = self.signer.is_some();
        let done = bootstrap(admin, app, iam, self.provisioning.create, tls)
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
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A job whose attempts fail with the given verdicts, then succeed; it records the
    /// virtual time of each attempt.
    struct Scripted {
        verdicts: VecDeque<Verdict>,
        times: Vec<Duration>,
        start: Instant,
        hang: bool,
    }

    impl Scripted {
        fn new(verdicts: &[Verdict]) -> Self {
            Self {
                verdicts: verdicts.iter().copied().collect(),
                times: Vec::new(),
                start: Instant::now(),
                hang: false,
            }
        }
    }

    impl Attempt for Scripted {
        type Output = ();
        async fn attempt(&mut self, _n: u32, _elapsed: Duration) -> Result<(), Failure> {
            self.times.push(self.start.elapsed());
            if self.hang {
                std::future::pending::<()>().await;
            }
            match self.verdicts.pop_front() {
                None => Ok(()),
                Some(verdict) => Err(Failure {
                    verdict,
                    error: AttemptError::Timeout(Duration::from_secs(1)),
                }),
            }
        }
    }

    fn policy(deadline: Option<u64>) -> Policy {
        Policy {
            deadline: deadline.map(Duration::from_secs),
            ..Policy::default()
        }
    }

    #[test]
    fn verdicts_follow_the_error_table() {
        let p = Policy::default();
        let early = Duration::from_secs(1);
        let v = |class, stage, contact, create| verdict(class, stage, contact, early, &p, create);
        use ErrorClass as C;
        assert_eq!(
            v(C::Transient, Stage::Login, Contact::Refused, true),
            Verdict::Retry(Pace::Probe)
        );
        assert_eq!(
            v(C::Transient, Stage::Login, Contact::Answered, true),
            Verdict::Retry(Pace::Answered)
        );
        assert_eq!(
            v(C::Transient, Stage::Login, Contact::Unknown, true),
            Verdict::Retry(Pace::Backoff)
        );
        assert_eq!(
            v(C::MissingDatabase, Stage::Login, Contact::Answered, true),
            Verdict::RetryNow
        );
        assert_eq!(
            v(C::MissingDatabase, Stage::Login, Contact::Answered, false),
            Verdict::Retry(Pace::Answered)
        );
        assert_eq!(
            v(
                C::MissingDatabase,
                Stage::Provision,
                Contact::Answered,
                true
            ),
            Verdict::Fatal
        );
        for fatal in [C::NoPrivilege, C::TlsVerification, C::TlsRequired, C::Other] {
            assert_eq!(
                v(fatal, Stage::Login, Contact::Answered, true),
                Verdict::Fatal
            );
        }
        let late = p.authorization_window;
        assert_eq!(
            verdict(
                C::AuthorizationRejected,
                Stage::Login,
                Contact::Answered,
                late,
                &p,
                true
            ),
            Verdict::Fatal
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retries_follow_the_schedule_and_succeed() {
        let mut job = Scripted::new(&[
            Verdict::Retry(Pace::Backoff),
            Verdict::Retry(Pace::Backoff),
            Verdict::Retry(Pace::Backoff),
        ]);
        let mut seen = Vec::new();
        let ((), attempts) = drive(&policy(Some(600)), &mut job, |e| {
            seen.push((e.attempt, e.delay))
        })
        .await
        .expect("succeeds on the 4th attempt");
        assert_eq!(attempts, 4);
        assert_eq!(seen.len(), 3);
        // Attempt k starts after the sum of the first k-1 delays: 250ms..500ms, +500..1000, +1..2s.
        // The timer wheel rounds a sleep up to the next millisecond, hence TICK.
        const TICK: Duration = Duration::from_millis(1);
        let t = &job.times;
        assert_eq!(t[0], Duration::ZERO);
        assert!(
            t[1] >= Duration::from_millis(250) && t[1] < Duration::from_millis(500) + TICK,
            "{t:?}"
        );
        assert!(
            t[2] - t[1] >= Duration::from_millis(500)
                && t[2] - t[1] < Duration::from_millis(1000) + TICK,
            "{t:?}"
        );
        assert!(
            t[3] - t[2] >= Duration::from_secs(1) && t[3] - t[2] < Duration::from_secs(2) + TICK,
            "{t:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_now_does_not_wait_or_advance_the_backoff() {
        let mut job = Scripted::new(&[Verdict::RetryNow, Verdict::Retry(Pace::Backoff)]);
        drive(&policy(Some(600)), &mut job, |_| {})
            .await
            .expect("ok");
        assert_eq!(job.times[1], Duration::ZERO);
        // The first real backoff step is still the 250ms one.
        assert!(job.times[2] < Duration::from_millis(500), "{:?}", job.times);
    }

    #[tokio::test(start_paused = true)]
    async fn fatal_stops_at_once() {
        let mut job = Scripted::new(&[
            Verdict::Retry(Pace::Backoff),
            Verdict::Fatal,
            Verdict::Retry(Pace::Backoff),
        ]);
        let mut last_delay = Some(Duration::ZERO);
        let err = drive(&policy(Some(600)), &mut job, |e| last_delay = e.delay)
            .await
            .expect_err("fatal");
        assert!(matches!(err, WaitError::Fatal(_)));
        assert_eq!(job.times.len(), 2);
        assert_eq!(last_delay, None, "the observer is told the loop gives up");
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_ends_the_wait_with_exit_69() {
        let mut job = Scripted::new(&[Verdict::Retry(Pace::Backoff); 1000]);
        let start = Instant::now();
        let err = drive(&policy(Some(30)), &mut job, |_| {})
            .await
            .expect_err("deadline");
        let WaitError::Deadline { attempts, .. } = &err else {
            panic!("{err}")
        };
        assert!(*attempts as usize == job.times.len());
        // It gives up when the next delay would cross the deadline, never after it.
        assert!(
            start.elapsed() <= Duration::from_secs(30),
            "{:?}",
            start.elapsed()
        );
        assert!(
            start.elapsed() >= Duration::from_secs(20),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_attempt_is_cut_by_the_attempt_timeout_and_the_deadline() {
        let mut job = Scripted::new(&[]);
        job.hang = true;
        let p = Policy {
            deadline: Some(Duration::from_secs(100)),
            attempt_timeout: Duration::from_secs(40),
            ..Policy::default()
        };
        let start = Instant::now();
        let err = drive(&p, &mut job, |_| {}).await.expect_err("hangs");
        assert!(
            matches!(
                &err,
                WaitError::Deadline {
                    last: AttemptError::Timeout(_),
                    ..
                }
            ),
            "{err}"
        );
        // 40s + ~0.25s + 40s + ~0.5s + the rest (< 20s) cut to the deadline.
        assert!(start.elapsed() <= Duration::from_secs(100));
        assert!(job.times[1] >= Duration::from_secs(40));
    }

    /// A job that fails fast, then hangs (as a login does when the server stops
    /// answering): the deadline cuts the hanging attempt, and the error reported is the
    /// one the server gave, not a timeout of our own making.
    struct FailsThenHangs(u32);

    impl Attempt for FailsThenHangs {
        type Output = ();
        async fn attempt(&mut self, _n: u32, _elapsed: Duration) -> Result<(), Failure> {
            self.0 += 1;
            if self.0 > 1 {
                std::future::pending::<()>().await;
            }
            Err(Failure {
                verdict: Verdict::Retry(Pace::Answered),
                error: AttemptError::Secret(SecretError::EnvMissing { name: "X".into() }),
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_cut_by_the_deadline_reports_the_error_before_it() {
        let err = drive(&policy(Some(2)), &mut FailsThenHangs(0), |_| {})
            .await
            .expect_err("deadline");
        assert!(
            matches!(
                &err,
                WaitError::Deadline {
                    last: AttemptError::Secret(_),
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn zero_deadline_means_forever() {
        // 200 failures take far longer than 10 minutes of backoff; with no deadline it
        // still succeeds.
        let mut job = Scripted::new(&[Verdict::Retry(Pace::Backoff); 200]);
        let ((), attempts) = drive(&policy(None), &mut job, |_| {})
            .await
            .expect("no deadline");
        assert_eq!(attempts, 201);
        assert!(job.times[200] > Duration::from_secs(600));
    }
}
