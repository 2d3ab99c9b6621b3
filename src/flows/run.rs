//! `run`: steps 1–5, then stays up renewing the IAM token and checking for rotated
//! credentials (`refresh`) until stopped.

use crate::config::{Config, RunConfig};
use crate::error::Error;
use crate::refresh::{self, RefreshCheck, Timing};
use crate::signal::Wakes;

use super::prepare::{Started, prepare};

/// `run`: steps 1–6, renewing and checking every `run.refresh_interval` (`None`: never).
/// Returns (exit 0) on SIGTERM/SIGINT in every phase, files in place.
pub async fn run(
    config: &Config,
    run: RunConfig,
    mut started: Started,
    wakes: &mut impl Wakes,
) -> Result<(), Error> {
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
    let mut state = started.into_state();
    let timing = Timing {
        interval: run.refresh_interval,
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
