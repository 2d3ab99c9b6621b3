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

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::time::Instant;

use super::connect::{Contact, DbError, Stage};
use super::establish::establish;
use super::tls::Tls;
use crate::class::ErrorClass;
use crate::iam::{self, IamError, Signer};
use crate::secret::{Resolved, Resolver, SecretError};

/// A cached IAM token this close to its expiry is replaced before the next attempt.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// For a user granted rds_iam, a password is checked by PAM and refused like a token.
const PAM_USER_HINT: &str = "the server checks this user with PAM (on RDS/Aurora: the user was granted rds_iam, and then only IAM tokens work): pass --iam-auth, or REVOKE rds_iam to log in with the secret's password";

/// Timing and bounds of the wait.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Overall budget (`--wait-timeout`); `None` waits forever.
    pub deadline: Option<Duration>,
    /// One attempt: TCP + TLS + authentication (+ provisioning when needed). Aurora
    /// Serverless v2 resuming from 0 ACU holds the connect for ~15 s, ~30 s after a long
    /// pause, so the default is 40 s.
    pub attempt_timeout: Duration,
    /// First backoff step; doubled per retry up to `max_delay`, plus up to 100% jitter.
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Pause after an attempt that nothing answered (refused, unreachable): such an
    /// attempt costs the server nothing (no backend, no log line), so it is repeated
    /// often, and the wait ends within about this long of the server starting to listen.
    pub probe_interval: Duration,
    /// Pause after an attempt the server answered (57P03 starting up, 53300, 28000, …):
    /// each costs a backend, so never more than 1 / this per second (200 ms: 5 per second).
    pub answered_interval: Duration,
    /// Answered failures in a row paced at `answered_interval` before the exponential
    /// schedule takes over (a server that keeps saying no for seconds is not about to
    /// say yes).
    pub answered_fast_attempts: u32,
    /// How often a rejected password (28P01) re-reads the secret and tries again.
    pub password_retries: u32,
    /// How long 28000 counts as "still resuming" (seen from Aurora at 0 ACU) before it is
    /// taken at its word.
    pub authorization_window: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            deadline: Some(Duration::from_secs(600)),
            attempt_timeout: Duration::from_secs(40),
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
            probe_interval: Duration::from_millis(50),
            answered_interval: Duration::from_millis(200),
            answered_fast_attempts: 25,
            password_retries: 3,
            authorization_window: Duration::from_secs(300),
        }
    }
}

impl Policy {
    /// The backoff schedule: 250 ms, 500 ms, 1 s, … capped at `max_delay`, each with up
    /// to 100% random jitter (backon adds `rand(0..1) × step`), so delays stay in
    /// `[step, 2 × step)` and tasks that start together spread out.
    pub fn schedule(&self) -> impl Iterator<Item = Duration> + use<> {
        self.backoff(self.max_delay)
    }

    /// Backoff between refresh retries while degraded: the same doubling from
    /// `min_delay`, but capped at 30 s (plus jitter) because each retry costs a Secrets
    /// Manager call and a login, and the app is still served by the old files.
    pub fn degraded_schedule(&self) -> impl Iterator<Item = Duration> + use<> {
        self.backoff(Duration::from_secs(30))
    }

    fn backoff(&self, cap: Duration) -> impl Iterator<Item = Duration> + use<> {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(cap)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }
}

/// How soon a retry may come, by what the failed attempt cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Nothing answered: retry every `probe_interval` (50 ms, plus up to 25 % jitter).
    Probe,
    /// The server answered: `answered_interval` (plus up to 10 % jitter) for the first
    /// `answered_fast_attempts` in a row, then the exponential schedule. The jitter is
    /// small because this pause is most of the delay between a server that starts
    /// accepting and `ready` (the attempt just before got 57P03), and 200 ms is already
    /// the floor that keeps logins at 5 a second.
    Answered,
    /// The exponential schedule (DNS failures, timeouts, Secrets Manager).
    Backoff,
}

impl From<Contact> for Pace {
    fn from(c: Contact) -> Self {
        match c {
            Contact::Refused => Pace::Probe,
            Contact::Answered => Pace::Answered,
            Contact::Unknown => Pace::Backoff,
        }
    }
}

/// The pauses between attempts: [`Pace`] per failure, one exponential schedule shared by
/// the slow cases so that alternating errors cannot reset it.
pub struct Pacer<S> {
    probe: Duration,
    answered: Duration,
    answered_fast: u32,
    answered_streak: u32,
    schedule: S,
    /// A number in [0, 1) per call; random in the binary, fixed in tests.
    jitter: fn() -> f64,
}

/// The pacer for `policy`; `jitter` is `fastrand::f64` in the binary, a constant in tests.
pub fn pacer(
    policy: &Policy,
    jitter: fn() -> f64,
) -> Pacer<impl Iterator<Item = Duration> + use<>> {
    Pacer {
        probe: policy.probe_interval,
        answered: policy.answered_interval,
        answered_fast: policy.answered_fast_attempts,
        answered_streak: 0,
        schedule: policy.schedule(),
        jitter,
    }
}

impl<S: Iterator<Item = Duration>> Pacer<S> {
    pub fn delay(&mut self, pace: Pace) -> Duration {
        let jittered = |base: Duration, share: f64, j: f64| base + base.mul_f64(share * j);
        match pace {
            Pace::Probe => {
                self.answered_streak = 0;
                jittered(self.probe, 0.25, (self.jitter)())
            }
            Pace::Answered if self.answered_streak < self.answered_fast => {
                self.answered_streak += 1;
                jittered(self.answered, 0.10, (self.jitter)())
            }
            // The schedule never ends (`without_max_times`).
            Pace::Answered | Pace::Backoff => self.schedule.next().unwrap_or(self.answered),
        }
    }
}

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
            AttemptError::Secret(_) | AttemptError::Iam(_) | AttemptError::Timeout(_) => None,
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
        let budget = match deadline {
            Some(d) => policy
                .attempt_timeout
                .min(d.saturating_duration_since(Instant::now())),
            None => policy.attempt_timeout,
        };
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
        let delay = match failure.verdict {
            Verdict::Fatal => None,
            Verdict::RetryNow => Some(Duration::ZERO),
            // The deadline ends the loop.
            Verdict::Retry(pace) => Some(pacer.delay(pace)),
        };
        let delay = delay.filter(|d| deadline.is_none_or(|dl| Instant::now() + *d < dl));
        observe(&Event {
            attempt: n,
            error: &failure.error,
            delay,
        });
        match delay {
            Some(d) => {
                tokio::time::sleep(d).await;
                last = Some(failure.error);
            }
            None if failure.verdict == Verdict::Fatal => {
                return Err(WaitError::Fatal(failure.error));
            }
            None => {
                return Err(WaitError::Deadline {
                    attempts: n,
                    elapsed: start.elapsed(),
                    last: failure.error,
                });
            }
        }
    }
}

/// What creating the database may do.
#[derive(Debug, Clone)]
pub struct Provisioning {
    /// `--no-create` turns this off: a missing database is then waited for.
    pub create: bool,
    pub maintenance_database: String,
    pub owner: Option<String>,
}

/// The result of a successful wait.
#[derive(Debug)]
pub struct Ready {
    pub resolved: Resolved,
    pub created: bool,
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

/// `resolved` with a fresh IAM token as its password.
pub async fn sign(signer: &mut Signer, resolved: Resolved) -> Result<Resolved, IamError> {
    let t = &resolved.target;
    let token = signer.token(&t.host, t.port, &t.user).await?;
    Ok(Resolved {
        target: t.with_password(token.value),
        token_expires_at: Some(token.expires_at),
        ..resolved
    })
}

/// One attempt of the init flow: secret → login (→ create database → login).
pub struct LoginAttempt<'a> {
    resolver: &'a mut Resolver,
    /// `--iam-auth`: signs the password of every resolved target.
    signer: Option<&'a mut Signer>,
    tls: &'a Tls,
    provisioning: &'a Provisioning,
    policy: &'a Policy,
    /// The secret kept between attempts unless a rejected password says to re-read it.
    resolved: Option<Resolved>,
    /// The last login said 3D000: the next attempt creates the database first.
    provision_next: bool,
    password_rejections: u32,
    token_rejections: u32,
}

impl<'a> LoginAttempt<'a> {
    pub fn new(
        resolver: &'a mut Resolver,
        tls: &'a Tls,
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
        }
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
            fresh = sign(signer, fresh)
                .await
                .map_err(|e| fail(e.is_retryable(), e.into()))?;
        }
        Ok(self.resolved.insert(fresh).clone())
    }

    fn db_failure(&mut self, err: DbError, elapsed: Duration) -> Failure {
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
        self.provision_next = verdict == Verdict::RetryNow
            || (err.stage == Stage::Provision && matches!(verdict, Verdict::Retry(_)));
        match err.class {
            ErrorClass::PasswordRejected => {
                // A rotation race: the database may already have the new password while
                // we hold the old one, so read the secret again before the next try.
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
            ErrorClass::TokenRejected if self.signer.is_some() && self.token_rejections == 0 => {
                // Signed with credentials that were just replaced, or a clock step: one
                // fresh signature before taking the rejection at its word.
                self.token_rejections += 1;
                self.resolved = None;
                Failure {
                    verdict: Verdict::Retry(Pace::Answered),
                    error: err.into(),
                }
            }
            ErrorClass::TokenRejected => Failure {
                verdict: Verdict::Fatal,
                error: err
                    .with_hint(if self.signer.is_some() {
                        iam::REJECTED_HINT
                    } else {
                        PAM_USER_HINT
                    })
                    .into(),
            },
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
}

impl Attempt for LoginAttempt<'_> {
    type Output = Ready;

    async fn attempt(&mut self, _n: u32, elapsed: Duration) -> Result<Ready, Failure> {
        let resolved = self.resolved().await?;
        let provision = self.provision_next.then_some(self.provisioning);
        match establish(&resolved.target, self.tls, provision).await {
            Ok(created) => Ok(Ready { resolved, created }),
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
    fn schedule_doubles_from_250ms_to_a_5s_cap_with_jitter_below_double() {
        let p = Policy::default();
        let steps = [250, 500, 1000, 2000, 4000, 5000, 5000, 5000];
        for _ in 0..50 {
            for (delay, step) in p.schedule().zip(steps) {
                let step = Duration::from_millis(step);
                assert!(
                    delay >= step && delay < step * 2,
                    "{delay:?} vs step {step:?}"
                );
            }
        }
    }

    fn pacer_with(jitter: fn() -> f64) -> Pacer<impl Iterator<Item = Duration>> {
        pacer(&Policy::default(), jitter)
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

    #[test]
    fn refused_attempts_are_probed_every_50_to_62_ms() {
        let mut lo = pacer_with(|| 0.0);
        let mut hi = pacer_with(|| 0.999);
        for _ in 0..100 {
            assert_eq!(lo.delay(Pace::Probe), Duration::from_millis(50));
            assert!(hi.delay(Pace::Probe) < Duration::from_micros(62_500));
        }
    }

    #[test]
    fn answered_attempts_never_exceed_five_a_second_and_slow_down_after_25() {
        let mut p = pacer_with(|| 0.5);
        let delays: Vec<Duration> = (0..40).map(|_| p.delay(Pace::Answered)).collect();
        assert!(
            delays.iter().all(|d| *d >= Duration::from_millis(200)),
            "{delays:?}"
        );
        assert!(
            delays[..25]
                .iter()
                .all(|d| *d == Duration::from_millis(210))
        );
        // Then the exponential schedule: 250 ms, 500 ms, … (with jitter below double).
        assert!(
            delays[25] >= Duration::from_millis(250) && delays[25] < Duration::from_millis(500)
        );
        assert!(delays[30] >= Duration::from_secs(5));
        // A refused attempt in between starts a fresh streak of fast answered retries.
        p.delay(Pace::Probe);
        assert_eq!(p.delay(Pace::Answered), Duration::from_millis(210));
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
