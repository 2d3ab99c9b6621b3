//! The retry loop, generic over the job: per-attempt timeout, the backon schedule, the
//! overall deadline, and an observer that sees every failure (for logs and
//! `status.json`). It knows nothing about PostgreSQL, so its timing is tested with paused
//! time; the job (`wait::LoginAttempt`) says for each failure what comes next
//! ([`Verdict`], from `remedy`).

use std::time::Duration;

use tokio::time::Instant;

use super::admin::AdminError;
use super::bootstrap::BootstrapError;
use super::connect::DbError;
use super::pace::{Pace, Policy, pacer};
use super::remedy::Verdict;
use crate::class::ErrorClass;
use crate::iam::IamError;
use crate::secret::SecretError;

/// A failed attempt: what the loop does next, and why.
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

impl From<AdminError> for AttemptError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Secret(e) => AttemptError::Secret(e),
            AdminError::Iam(e) => AttemptError::Iam(e),
        }
    }
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
pub struct FailedAttempt<'a> {
    pub attempt: u32,
    pub error: &'a AttemptError,
    /// The pause before the next attempt; `None` when the loop is giving up.
    pub delay: Option<Duration>,
    /// The job is creating what was missing ([`Attempt::creates`]): status.json says
    /// `provisioning` rather than `waiting`.
    pub creating: bool,
}

/// One attempt of some job. `async fn` in a crate-private trait: the futures never cross
/// threads (the binary runs a current-thread runtime), so no `Send` bound is needed.
pub(crate) trait Attempt {
    type Output;
    async fn attempt(&mut self, n: u32, elapsed: Duration) -> Result<Self::Output, Failure>;

    /// Whether `error` is what this job creates (the app database, missing on a first
    /// start) rather than waits out.
    fn creates(&self, _error: &AttemptError) -> bool {
        false
    }
}

/// Runs attempts until one succeeds, one is fatal, or the deadline leaves no room for the
/// next. Each attempt is bounded by `min(attempt_timeout, time left)`.
pub(crate) async fn until_done<A: Attempt>(
    policy: &Policy,
    job: &mut A,
    mut observe: impl FnMut(&FailedAttempt<'_>),
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
        observe(&FailedAttempt {
            attempt: n,
            error: &failure.error,
            delay,
            creating: job.creates(&failure.error),
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

    #[tokio::test(start_paused = true)]
    async fn retries_follow_the_schedule_and_succeed() {
        let mut job = Scripted::new(&[
            Verdict::Retry(Pace::Backoff),
            Verdict::Retry(Pace::Backoff),
            Verdict::Retry(Pace::Backoff),
        ]);
        let mut seen = Vec::new();
        let ((), attempts) = until_done(&policy(Some(600)), &mut job, |e| {
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
        until_done(&policy(Some(600)), &mut job, |_| {})
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
        let err = until_done(&policy(Some(600)), &mut job, |e| last_delay = e.delay)
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
        let err = until_done(&policy(Some(30)), &mut job, |_| {})
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
        let err = until_done(&p, &mut job, |_| {}).await.expect_err("hangs");
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
        let err = until_done(&policy(Some(2)), &mut FailsThenHangs(0), |_| {})
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
        let ((), attempts) = until_done(&policy(None), &mut job, |_| {})
            .await
            .expect("no deadline");
        assert_eq!(attempts, 201);
        assert!(job.times[200] > Duration::from_secs(600));
    }
}
