//! One pass of the real job against the server: log in to the app database, creating it
//! first when asked. The wait loop (`wait`) calls it once per attempt and decides about
//! retries; the refresh loop calls [`validate`], which is the same pass done once, with
//! "create it when it is missing" folded in, because a rotated secret may name a database
//! that does not exist yet.

use super::classify::Stage;
use super::connect::{DbError, login};
use super::provision::{Provisioned, Provisioning, ensure_database};
use super::tls::Tls;
use crate::class::ErrorClass;
use crate::secret::Target;

/// Logs in to the app database and closes the session; with `provision`, first creates
/// the database through the maintenance database. Returns whether this call created it.
pub async fn establish(
    target: &Target,
    tls: &Tls,
    provision: Option<&Provisioning>,
) -> Result<bool, DbError> {
    let mut created = false;
    if let Some(p) = provision {
        let outcome = ensure_database(target, &p.maintenance_database, p.owner.as_deref(), tls)
            .await
            .map_err(|e| {
                DbError::new(
                    e,
                    target,
                    &p.maintenance_database,
                    Stage::Provision,
                    tls.mode,
                )
            })?;
        created = outcome == Provisioned::Created;
        tracing::info!(database = %target.database, created, "database ensured");
    }
    let session = login(target, &target.database, tls)
        .await
        .map_err(|e| DbError::new(e, target, &target.database, Stage::Login, tls.mode))?;
    session.close().await;
    Ok(created)
}

/// Checks candidate credentials with one real login, creating the database when it is
/// missing and `provisioning.create` allows it. No retries and no secret re-reads: the
/// caller keeps the files in place and retries on its own schedule.
pub async fn validate(
    target: &Target,
    tls: &Tls,
    provisioning: &Provisioning,
) -> Result<bool, DbError> {
    match establish(target, tls, None).await {
        Err(e) if e.class == ErrorClass::MissingDatabase && provisioning.create => {
            tracing::info!(database = %target.database, "the new credentials name a database that does not exist yet; creating it");
            establish(target, tls, Some(provisioning)).await
        }
        other => other,
    }
}
