//! How fast the wait retries: the bounds of the wait ([`Policy`], from the flags) and the
//! pause after each failed attempt ([`Pacer`]), by what the attempt cost the server
//! ([`Pace`]). Used by the wait loop, by `config` (which fills in the policy) and by the
//! refresh loop (its degraded backoff).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use super::classify::Contact;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
