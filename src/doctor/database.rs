//! doctor's authentication and database steps: one real login, and whether the app
//! database is there, would be created, or would be set up with the admin credentials.

use std::fmt::Write as _;

use crate::class::ErrorClass;
use crate::config::Config;
use crate::db::connect::{DbError, Stage, hint, login};
use crate::db::remedy::{Context, Remedy, remedy};
use crate::db::tls::Tls;
use crate::report::chain;
use crate::secret::Target;

use super::report::Outcome;

/// What the login step found, for the database step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    LoggedIn,
    /// Authenticated, but the app database does not exist.
    NoDatabase,
    /// The login failed in a way a start puts right with the admin credentials first.
    WouldBootstrap,
}

/// One real login to the app database. A failure the admin credentials would put right
/// (`remedy`, as the wait decides it) is what a first start looks like: reported, not
/// failed, and nothing is set up.
pub(super) async fn authenticate(
    config: &Config,
    target: &Target,
    tls: &Tls,
) -> (Outcome, Option<Found>) {
    match login(target, &target.database, tls).await {
        Ok(session) => {
            session.close().await;
            (
                Outcome::Ok(format!(
                    "logged in as {} (sslmode {})",
                    target.user, tls.mode
                )),
                Some(Found::LoggedIn),
            )
        }
        Err(e) => {
            let e = DbError::new(e, target, &target.database, Stage::Login, tls.mode);
            let context = Context {
                admin: config.admin.is_some(),
                bootstrapped: false,
                create: config.provisioning.create,
            };
            if remedy(e.class, e.stage, context) == Remedy::Bootstrap {
                let detail = format!(
                    "{} cannot log in yet ({}): a start would set the app role up with the admin credentials first (the admin step checks them); doctor sets nothing up",
                    target.user, e.class
                );
                return (Outcome::Ok(detail), Some(Found::WouldBootstrap));
            }
            if e.class == ErrorClass::MissingDatabase {
                return (
                    Outcome::Ok(format!("{} authenticated", target.user)),
                    Some(Found::NoDatabase),
                );
            }
            let hint = match e.class {
                ErrorClass::PasswordRejected => {
                    "the password in the secret is not the user's: a rotation the database has not seen, or the wrong secret"
                }
                ErrorClass::TokenRejected => crate::iam::REJECTED_HINT,
                ErrorClass::AuthorizationRejected => {
                    "pg_hba rejects this user, host or database, or the user lacks LOGIN/CONNECT"
                }
                class => hint(class, Stage::Login).unwrap_or("the server's message says why"),
            };
            (Outcome::fail(e.class, chain(&e), hint), None)
        }
    }
}

pub(super) async fn database(
    config: &Config,
    target: &Target,
    tls: &Tls,
    found: Found,
) -> (Outcome, Option<()>) {
    match found {
        Found::LoggedIn => {}
        Found::NoDatabase => return missing_database(config, target, tls).await,
        Found::WouldBootstrap => {
            let detail = if config.provisioning.create {
                format!(
                    "the bootstrap would create database {} if it is missing, owned by the app role",
                    target.database
                )
            } else {
                format!(
                    "--no-create: the bootstrap would leave a missing database {} to someone else",
                    target.database
                )
            };
            return (Outcome::Ok(detail), Some(()));
        }
    }
    let Ok(session) = login(target, &target.database, tls).await else {
        let outcome = Outcome::fail(
            ErrorClass::Transient,
            "the second login failed",
            "run doctor again",
        );
        return (outcome, None);
    };
    let text = |sql: &'static str| {
        let client = &session.client;
        async move {
            client
                .query_one(sql, &[])
                .await
                .ok()
                .and_then(|r| r.try_get::<_, String>(0).ok())
        }
    };
    let version = text("SELECT version()").await.unwrap_or_default();
    let aurora = text("SELECT aurora_version()").await;
    let force_ssl = text("SHOW rds.force_ssl").await;
    session.close().await;
    let short = version.split(" on ").next().unwrap_or(&version);
    let mut d = format!("database {} exists; {short}", target.database);
    if let Some(a) = aurora {
        let _ = write!(d, "; Aurora {a}");
    }
    if let Some(f) = force_ssl {
        let _ = write!(d, "; rds.force_ssl {f}");
    }
    (Outcome::Ok(d), Some(()))
}

/// The app database is missing: whether the sidecar would create it.
pub(super) async fn missing_database(
    config: &Config,
    target: &Target,
    tls: &Tls,
) -> (Outcome, Option<()>) {
    let maintenance = &config.provisioning.maintenance_database;
    let may = has_attribute(target, maintenance, tls, "rolcreatedb").await == Ok(true);
    let d = format!("database {} does not exist", target.database);
    match (config.provisioning.create, may) {
        (true, true) => {
            let hint = "it will be created on the first start (the user has CREATEDB)";
            (Outcome::Warn(d, hint.into()), Some(()))
        }
        (false, _) => {
            let hint = "--no-create: the sidecar waits for someone else to create it";
            (Outcome::Warn(d, hint.into()), Some(()))
        }
        (true, false) => {
            let hint = "the user may not create databases: create it beforehand, grant CREATEDB, give admin credentials (--admin-secret-*), or pass --no-create";
            (Outcome::fail(ErrorClass::NoPrivilege, d, hint), None)
        }
    }
}

/// Logs in to `database` as `target` and says whether it has `attribute` (a `pg_roles`
/// column) or is a superuser; the session is closed. A failure as its class and message.
pub(super) async fn has_attribute(
    target: &Target,
    database: &str,
    tls: &Tls,
    attribute: &'static str,
) -> Result<bool, (ErrorClass, String)> {
    let session = login(target, database, tls).await.map_err(|e| {
        let e = DbError::new(e, target, database, Stage::Bootstrap, tls.mode);
        (e.class, chain(&e))
    })?;
    let sql = format!(
        "SELECT {attribute} OR rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user"
    );
    let row = session.client.query_one(&sql, &[]).await;
    session.close().await;
    // A NULL or another type from a hostile server is an answer of "no", never a panic.
    row.and_then(|r| r.try_get::<_, Option<bool>>(0))
        .map(|may| may == Some(true))
        .map_err(|e| (ErrorClass::Other, chain(&e)))
}
