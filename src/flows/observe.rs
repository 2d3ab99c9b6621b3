//! What the wait's failed attempts leave in the log and in `status.json`.

use std::time::Duration;

use crate::class::ErrorClass;
use crate::db::retry::FailedAttempt;
use crate::display::{chain, millis};
use crate::status::{Phase, State};

/// Logs failed attempts and records them in `status.json`, sparingly: a refusing server
/// is probed twenty times a second, which is cheap for it but would be a flood of log lines
/// and fsyncs. The first attempts, every change of class or phase, and the last attempt
/// are written at once; in between, at most one warning every 10 s and one status write
/// a second (the rest go to the debug log).
pub(super) struct WaitObserver {
    last: Option<(ErrorClass, Phase)>,
    last_warn: Option<std::time::Instant>,
    last_save: Option<std::time::Instant>,
}

impl WaitObserver {
    const EARLY: u32 = 3;
    const WARN_EVERY: Duration = Duration::from_secs(10);
    const SAVE_EVERY: Duration = Duration::from_secs(1);

    pub(super) fn new() -> Self {
        Self {
            last: None,
            last_warn: None,
            last_save: None,
        }
    }

    fn due(last: Option<std::time::Instant>, every: Duration) -> bool {
        last.is_none_or(|t| t.elapsed() >= every)
    }

    pub(super) fn observe(&mut self, state: &mut State, e: &FailedAttempt<'_>) {
        let class = e.error.class();
        let message = chain(e.error);
        let phase = if e.creating {
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
