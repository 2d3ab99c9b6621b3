//! Step 6, the refresh loop of `run`, as a small state machine.
//!
//! [`step`] is the whole policy as a pure function, `(mode, event) → (mode, actions)`:
//! a timer or SIGHUP asks for a check (when the source can change at all); an unchanged
//! or published check means ready, with the regular interval next; a failed check means
//! degraded, with backoff next; a stop signal ends it in any mode. [`drive`] performs the
//! actions: it sleeps, races the wake stream ([`Wakes`]: OS signals in the binary, a
//! channel in tests), runs the [`Checker`] under a timeout and records the outcome in
//! `status.json`. What a check *is* (Secrets Manager or file, a real login, publishing the
//! files) is the checker's business, so the loop is tested in-process with paused time.
//!
//! Invariants: the files in place are only replaced by a check that validated the new
//! credentials (the checker publishes, the loop never does); a failed check keeps them and
//! sets `degraded`; no database connection is held between checks.
//!
//! With IAM authentication every check also signs a new token; when the login itself is
//! unchanged the checker publishes the token without logging in ([`Checked::Renewed`]):
//! a login every few minutes would keep Aurora Serverless v2 from pausing.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

mod check;

pub use check::{RefreshCheck, RefreshError};

use crate::class::ErrorClass;
use crate::display::{chain, millis};
use crate::signal::{Signal, Wake, Wakes};
use crate::status::{Phase, State};

/// Where the loop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The published files match the source as last seen.
    Ready,
    /// The source has credentials that could not be validated or published; the old files
    /// are still in place. `failures` counts consecutive failed checks.
    Degraded {
        failures: u32,
    },
    Stopped,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The timer the last [`Action::Sleep`] armed went off.
    Timer,
    Wake(Wake),
    Checked(Checked),
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// The source still says what the files say.
    Unchanged,
    /// New credentials were validated by a real login and published (with IAM: signed
    /// with a token that expires then).
    Published {
        version: Option<String>,
        token_expires_at: Option<SystemTime>,
    },
    /// The same login with a new IAM token, published without a login.
    Renewed { expires_at: SystemTime },
    /// New credentials could not be fetched, validated or published.
    Failed { class: ErrorClass, message: String },
}

/// When the next timer goes off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// `--refresh-interval` (never, when it is 0).
    Interval,
    /// The next step of the degraded backoff.
    Backoff,
}

/// What the driver does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Look for new credentials; validate and publish them when there are any.
    Check,
    /// SIGHUP on a source that cannot change: said once in the log, nothing else.
    IgnoreRefresh,
    Sleep(Next),
    RecordUnchanged,
    RecordPublished {
        version: Option<String>,
        token_expires_at: Option<SystemTime>,
    },
    RecordRenewed {
        expires_at: SystemTime,
    },
    RecordFailure {
        attempt: u32,
        class: ErrorClass,
        message: String,
    },
    Stop,
}

/// The transition function. `can_change` is false for sources fixed for the life of the
/// process (env, libpq): their checks would only ever say "unchanged".
pub fn step(mode: Mode, can_change: bool, event: Event) -> (Mode, Vec<Action>) {
    match (mode, event) {
        (Mode::Stopped, _) => (Mode::Stopped, vec![]),
        (_, Event::Wake(Wake::Stop(_))) => (Mode::Stopped, vec![Action::Stop]),
        (m, Event::Timer | Event::Wake(Wake::Refresh)) if can_change => (m, vec![Action::Check]),
        (m, Event::Wake(Wake::Refresh)) => (m, vec![Action::IgnoreRefresh]),
        // No timer is armed for a fixed source; a stray one changes nothing.
        (m, Event::Timer) => (m, vec![]),
        (_, Event::Checked(Checked::Unchanged)) => (
            Mode::Ready,
            vec![Action::RecordUnchanged, Action::Sleep(Next::Interval)],
        ),
        (_, Event::Checked(Checked::Renewed { expires_at })) => (
            Mode::Ready,
            vec![
                Action::RecordRenewed { expires_at },
                Action::Sleep(Next::Interval),
            ],
        ),
        (
            _,
            Event::Checked(Checked::Published {
                version,
                token_expires_at,
            }),
        ) => (
            Mode::Ready,
            vec![
                Action::RecordPublished {
                    version,
                    token_expires_at,
                },
                Action::Sleep(Next::Interval),
            ],
        ),
        (m, Event::Checked(Checked::Failed { class, message })) => {
            let failures = match m {
                Mode::Degraded { failures } => failures + 1,
                _ => 1,
            };
            // Sleep first, so the failure is logged with the delay before the retry.
            (
                Mode::Degraded { failures },
                vec![
                    Action::Sleep(Next::Backoff),
                    Action::RecordFailure {
                        attempt: failures,
                        class,
                        message,
                    },
                ],
            )
        }
    }
}

/// One refresh check: look, validate, publish. Never holds a connection afterwards.
#[allow(async_fn_in_trait)]
pub trait Checker {
    async fn check(&mut self) -> Checked;
}

/// The loop's timing.
pub struct Timing<F> {
    /// `--refresh-interval`; `None` checks only on SIGHUP.
    pub interval: Option<Duration>,
    /// Bound on one check (a Secrets Manager call and a login).
    pub check_timeout: Duration,
    /// A fresh backoff schedule for each degraded episode.
    pub backoff: F,
    /// With IAM: when the published token expires. The next check comes before then even
    /// when the interval is longer (credentials that expire early shorten a token).
    pub token_expires_at: Option<SystemTime>,
}

/// A token is renewed this long before it expires, when that comes before the interval.
pub const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(60);
/// ...but never sooner than this after the last check: the credential provider may hand
/// out the same credentials until just before they expire, and the loop must not spin.
pub const MIN_RENEWAL_GAP: Duration = Duration::from_secs(15);

/// The pause before the next regular check: the interval, or earlier when the published
/// token would otherwise expire first.
pub fn next_interval(
    interval: Option<Duration>,
    token_expires_at: Option<SystemTime>,
    now: SystemTime,
) -> Option<Duration> {
    let renew = token_expires_at.map(|t| {
        t.duration_since(now)
            .unwrap_or_default()
            .saturating_sub(RENEW_BEFORE_EXPIRY)
            .max(MIN_RENEWAL_GAP)
    });
    match (interval, renew) {
        (Some(i), Some(r)) => Some(i.min(r)),
        (i, r) => i.or(r),
    }
}

/// Runs the loop until a stop signal; leaves phase `stopping` and every file in place.
pub async fn drive<C, W, F, B>(
    checker: &mut C,
    wakes: &mut W,
    state: &mut State,
    timing: Timing<F>,
    can_change: bool,
) where
    C: Checker,
    W: Wakes,
    F: Fn() -> B,
    B: Iterator<Item = Duration>,
{
    let check_timeout = timing.check_timeout;
    let first = can_change
        .then(|| next_interval(timing.interval, timing.token_expires_at, SystemTime::now()))
        .flatten();
    let mut effects = Effects {
        state,
        next_at: first.map(|d| Instant::now() + d),
        timing,
        backoff: None,
    };
    let mut mode = Mode::Ready;
    loop {
        let timer = async {
            match effects.next_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let mut event = Some(tokio::select! {
            w = wakes.next() => Event::Wake(w),
            () = timer => Event::Timer,
        });
        while let Some(ev) = event.take() {
            let (next_mode, actions) = step(mode, can_change, ev);
            mode = next_mode;
            for action in actions {
                match action {
                    // A check's outcome is the next event, handled before any wake.
                    Action::Check => {
                        event = Some(match run_check(checker, wakes, check_timeout).await {
                            Ok(checked) => Event::Checked(checked),
                            Err(sig) => Event::Wake(Wake::Stop(sig)),
                        });
                    }
                    Action::Stop => {
                        effects.state.mark_stopping();
                        tracing::info!("stopped; rendered files left in place");
                        return;
                    }
                    other => effects.apply(other),
                }
            }
        }
    }
}

/// The actions that only touch the timer and `status.json`.
struct Effects<'a, F, B> {
    state: &'a mut State,
    timing: Timing<F>,
    /// The current degraded episode's schedule; a fresh one per episode.
    backoff: Option<B>,
    next_at: Option<Instant>,
}

impl<F, B> Effects<'_, F, B>
where
    F: Fn() -> B,
    B: Iterator<Item = Duration>,
{
    fn apply(&mut self, action: Action) {
        match action {
            Action::IgnoreRefresh => tracing::info!(
                "SIGHUP ignored: credentials from this source cannot change while the task runs"
            ),
            Action::Sleep(next) => self.arm(next),
            Action::RecordUnchanged => {
                self.state.record_check(false);
                self.state.save_or_warn();
                tracing::debug!(checks = self.state.status.checks, "credentials unchanged");
            }
            Action::RecordRenewed { expires_at } => {
                self.timing.token_expires_at = Some(expires_at);
                self.state.record_renewal(expires_at);
                self.state.save_or_warn();
                tracing::info!(
                    renewals = self.state.status.token_renewals,
                    expires_at = self.state.status.token_expires_at.as_deref(),
                    "IAM token renewed and published (no database login)"
                );
            }
            Action::RecordPublished {
                version,
                token_expires_at,
            } => self.record_published(version, token_expires_at),
            Action::RecordFailure {
                attempt,
                class,
                message,
            } => self.record_failure(attempt, class, &message),
            // Handled by the loop itself.
            Action::Check | Action::Stop => {}
        }
    }

    /// Sets when the next timer goes off.
    fn arm(&mut self, next: Next) {
        let pause = match next {
            Next::Interval => {
                self.backoff = None;
                next_interval(
                    self.timing.interval,
                    self.timing.token_expires_at,
                    SystemTime::now(),
                )
            }
            Next::Backoff => {
                let delay = self.backoff.get_or_insert_with(&self.timing.backoff).next();
                delay.or(self.timing.interval)
            }
        };
        self.next_at = pause.map(|d| Instant::now() + d);
    }

    fn record_published(&mut self, version: Option<String>, token_expires_at: Option<SystemTime>) {
        self.timing.token_expires_at = token_expires_at;
        self.state.record_check(false);
        self.state.set_token_expiry(token_expires_at);
        if let Err(e) = self.state.mark_ready(self.state.status.attempt, version) {
            tracing::warn!(error = %chain(&e), "could not update status.json or the ready marker");
        }
        tracing::info!(
            generation = self.state.status.generation,
            "new credentials validated and published"
        );
    }

    fn record_failure(&mut self, attempt: u32, class: ErrorClass, message: &str) {
        tracing::warn!(
            attempt,
            delay_ms = self.next_at.map(|at| millis(at - Instant::now())),
            error_class = %class,
            error = %message,
            "refresh failed; the files in place are kept"
        );
        self.state.record_check(true);
        self.state
            .record_failure(Phase::Degraded, attempt, class, message);
    }
}

/// Runs one check, bounded by `timeout`; a stop signal abandons it (every write is
/// synchronous between await points, so nothing is half-written). A SIGHUP during a check
/// is already being served by it.
async fn run_check<C: Checker, W: Wakes>(
    checker: &mut C,
    wakes: &mut W,
    timeout: Duration,
) -> Result<Checked, Signal> {
    let check = tokio::time::timeout(timeout, checker.check());
    tokio::pin!(check);
    loop {
        tokio::select! {
            r = &mut check => {
                return Ok(r.unwrap_or_else(|_| Checked::Failed {
                    class: ErrorClass::Timeout,
                    message: format!("no answer within {timeout:?} (Secrets Manager and a login together; see --attempt-timeout)"),
                }));
            }
            w = wakes.next() => {
                if let Wake::Stop(sig) = w {
                    return Err(sig);
                }
            }
        }
    }
}

#[cfg(test)]
mod schedule_tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn a_token_expiring_before_the_interval_brings_the_check_forward() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let five = Some(5 * MIN);
        // No token: the interval.
        assert_eq!(next_interval(five, None, now), five);
        // A 15-minute token: the interval comes first.
        assert_eq!(next_interval(five, Some(now + 15 * MIN), now), five);
        // Credentials expiring in 3 minutes: renew a minute before.
        assert_eq!(next_interval(five, Some(now + 3 * MIN), now), Some(2 * MIN));
        // Already (nearly) expired: soon, but not in a spin.
        assert_eq!(
            next_interval(five, Some(now + Duration::from_secs(30)), now),
            Some(MIN_RENEWAL_GAP)
        );
        assert_eq!(
            next_interval(five, Some(now - MIN), now),
            Some(MIN_RENEWAL_GAP)
        );
        // SIGHUP-only, but a token: the token's schedule.
        assert_eq!(next_interval(None, Some(now + 3 * MIN), now), Some(2 * MIN));
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::path::Path;
    use std::rc::Rc;

    use tokio::sync::mpsc;

    use super::*;
    use crate::outdir::Writer;
    use crate::status::{READY_FILE, STATUS_FILE, Status};

    const INTERVAL: Duration = Duration::from_secs(300);

    fn failed() -> Checked {
        Checked::Failed {
            class: ErrorClass::PasswordRejected,
            message: "new password rejected".into(),
        }
    }

    #[test]
    fn step_is_the_documented_policy() {
        let ready = Mode::Ready;
        assert_eq!(
            step(ready, true, Event::Timer),
            (ready, vec![Action::Check])
        );
        assert_eq!(
            step(ready, true, Event::Wake(Wake::Refresh)),
            (ready, vec![Action::Check])
        );
        assert_eq!(
            step(ready, false, Event::Wake(Wake::Refresh)),
            (ready, vec![Action::IgnoreRefresh])
        );
        assert_eq!(
            step(ready, true, Event::Checked(Checked::Unchanged)),
            (
                ready,
                vec![Action::RecordUnchanged, Action::Sleep(Next::Interval)]
            )
        );
        let (m, a) = step(ready, true, Event::Checked(failed()));
        assert_eq!(m, Mode::Degraded { failures: 1 });
        assert_eq!(a[0], Action::Sleep(Next::Backoff));
        let (m, a) = step(m, true, Event::Checked(failed()));
        assert_eq!(m, Mode::Degraded { failures: 2 });
        assert!(matches!(a[1], Action::RecordFailure { attempt: 2, .. }));
        let published = Event::Checked(Checked::Published {
            version: Some("v2".into()),
            token_expires_at: None,
        });
        assert_eq!(step(m, true, published.clone()).0, Mode::Ready);
        for mode in [ready, Mode::Degraded { failures: 3 }] {
            assert_eq!(
                step(mode, true, Event::Wake(Wake::Stop(Signal::Terminate))),
                (Mode::Stopped, vec![Action::Stop])
            );
        }
        assert_eq!(
            step(Mode::Stopped, true, published),
            (Mode::Stopped, vec![])
        );
    }

    /// A checker that answers from a script (then "unchanged") and records when it was
    /// called, in virtual time since the test began.
    struct Scripted {
        answers: VecDeque<Checked>,
        calls: Rc<RefCell<Vec<Duration>>>,
        start: Instant,
        /// Never answer the call with this index (0-based).
        hang_at: Option<usize>,
    }

    impl Checker for Scripted {
        async fn check(&mut self) -> Checked {
            let n = {
                let mut calls = self.calls.borrow_mut();
                calls.push(self.start.elapsed());
                calls.len() - 1
            };
            if self.hang_at == Some(n) {
                std::future::pending::<()>().await;
            }
            self.answers.pop_front().unwrap_or(Checked::Unchanged)
        }
    }

    struct Rig {
        dir: tempfile::TempDir,
        calls: Rc<RefCell<Vec<Duration>>>,
        wake: mpsc::UnboundedSender<Wake>,
    }

    impl Rig {
        fn status(&self) -> Status {
            let bytes = std::fs::read(self.dir.path().join(STATUS_FILE)).expect("status.json");
            serde_json::from_slice(&bytes).expect("status parses")
        }
        fn calls(&self) -> Vec<Duration> {
            self.calls.borrow().clone()
        }
        fn stop(&self) {
            self.wake
                .send(Wake::Stop(Signal::Terminate))
                .expect("loop is listening");
        }
    }

    /// Runs the loop (after a first publish, as `run` does) beside `script`, which gets
    /// the rig to poke and inspect it.
    async fn with_loop<F>(
        answers: Vec<Checked>,
        can_change: bool,
        hang_at: Option<usize>,
        script: impl FnOnce(Rig) -> F,
    ) where
        F: std::future::Future<Output = Rig>,
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state =
            State::start(Writer::new(dir.path(), None).expect("writer")).expect("start");
        state
            .mark_ready(1, Some("v1".into()))
            .expect("first publish");
        let calls = Rc::new(RefCell::new(Vec::new()));
        let mut checker = Scripted {
            answers: answers.into(),
            calls: calls.clone(),
            start: Instant::now(),
            hang_at,
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let rig = Rig {
            dir,
            calls,
            wake: tx,
        };
        let policy = crate::db::pace::Policy::default();
        let timing = Timing {
            interval: Some(INTERVAL),
            check_timeout: Duration::from_secs(40),
            backoff: || policy.degraded_schedule(),
            token_expires_at: None,
        };
        let looped = drive(&mut checker, &mut rx, &mut state, timing, can_change);
        let (_, rig) = tokio::join!(looped, script(rig));
        assert_eq!(rig.status().phase, Phase::Stopping, "stopped cleanly");
    }

    fn ready_marker(dir: &Path) -> String {
        std::fs::read_to_string(dir.join(READY_FILE)).expect("ready marker")
    }

    #[tokio::test(start_paused = true)]
    async fn unchanged_checks_publish_nothing_and_keep_the_generation() {
        with_loop(vec![], true, None, |rig| async move {
            let marker = ready_marker(rig.dir.path());
            tokio::time::sleep(INTERVAL * 3 + Duration::from_secs(1)).await;
            assert_eq!(rig.calls(), [INTERVAL, INTERVAL * 2, INTERVAL * 3]);
            let s = rig.status();
            assert_eq!((s.phase, s.generation, s.checks), (Phase::Ready, 1, 3));
            assert_eq!(ready_marker(rig.dir.path()), marker, "marker untouched");
            rig.stop();
            rig
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_validated_change_is_published_with_the_next_generation() {
        let published = Checked::Published {
            version: Some("v2".into()),
            token_expires_at: None,
        };
        with_loop(vec![published], true, None, |rig| async move {
            tokio::time::sleep(INTERVAL + Duration::from_secs(1)).await;
            let s = rig.status();
            assert_eq!(s.generation, 2);
            assert_eq!(s.secret_version.as_deref(), Some("v2"));
            let marker: serde_json::Value =
                serde_json::from_str(&ready_marker(rig.dir.path())).expect("marker is JSON");
            assert_eq!(marker["generation"], 2);
            rig.stop();
            rig
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_invalid_change_degrades_with_backoff_then_recovers() {
        let answers = vec![
            failed(),
            failed(),
            Checked::Published {
                version: Some("v2".into()),
                token_expires_at: None,
            },
        ];
        with_loop(answers, true, None, |rig| async move {
            tokio::time::sleep(INTERVAL + Duration::from_millis(1)).await;
            let s = rig.status();
            assert_eq!(s.phase, Phase::Degraded);
            assert_eq!(s.last_error_class, Some(ErrorClass::PasswordRejected));
            assert_eq!((s.attempt, s.generation), (1, 1), "old files kept");
            // Backoff, not the interval: 250–500 ms, then 500 ms–1 s (plus the timer's
            // millisecond rounding).
            tokio::time::sleep(Duration::from_secs(2)).await;
            let calls = rig.calls();
            assert_eq!(calls.len(), 3, "{calls:?}");
            let (d1, d2) = (calls[1] - calls[0], calls[2] - calls[1]);
            assert!(
                d1 >= Duration::from_millis(250) && d1 < Duration::from_millis(501),
                "{d1:?}"
            );
            assert!(
                d2 >= Duration::from_millis(500) && d2 < Duration::from_millis(1001),
                "{d2:?}"
            );
            let s = rig.status();
            assert_eq!((s.phase, s.generation), (Phase::Ready, 2));
            assert_eq!(s.last_error_class, None);
            // Recovered: back to the regular interval.
            tokio::time::sleep(INTERVAL).await;
            let calls = rig.calls();
            assert_eq!(calls.len(), 4);
            assert!(calls[3] - calls[2] >= INTERVAL);
            rig.stop();
            rig
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn sighup_checks_at_once_unless_the_source_cannot_change() {
        with_loop(vec![], true, None, |rig| async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            rig.wake.send(Wake::Refresh).expect("send");
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert_eq!(rig.calls(), [Duration::from_secs(10)]);
            rig.stop();
            rig
        })
        .await;
        with_loop(vec![], false, None, |rig| async move {
            rig.wake.send(Wake::Refresh).expect("send");
            tokio::time::sleep(INTERVAL * 2).await;
            assert!(rig.calls().is_empty(), "a fixed source is never checked");
            rig.stop();
            rig
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_the_loop_in_every_phase() {
        // Idle and ready.
        with_loop(vec![], true, None, |rig| async move {
            rig.stop();
            rig
        })
        .await;
        // Degraded, sleeping before a retry.
        with_loop(vec![failed()], true, None, |rig| async move {
            tokio::time::sleep(INTERVAL + Duration::from_millis(1)).await;
            assert_eq!(rig.status().phase, Phase::Degraded);
            rig.stop();
            rig
        })
        .await;
        // In the middle of a check that never answers: abandoned at once, not after the
        // 40 s check timeout.
        with_loop(vec![], true, Some(0), |rig| async move {
            tokio::time::sleep(INTERVAL + Duration::from_millis(1)).await;
            let before = Instant::now();
            rig.stop();
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert!(before.elapsed() < Duration::from_secs(1));
            rig
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_hangs_times_out_into_degraded() {
        with_loop(vec![], true, Some(0), |rig| async move {
            // The check times out 40 s in; its retry comes 250–500 ms later.
            tokio::time::sleep(INTERVAL + Duration::from_millis(40_100)).await;
            let s = rig.status();
            assert_eq!(s.phase, Phase::Degraded);
            assert_eq!(s.last_error_class, Some(ErrorClass::Timeout));
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert_eq!(
                rig.status().phase,
                Phase::Ready,
                "the retry finds nothing new"
            );
            rig.stop();
            rig
        })
        .await;
    }
}
