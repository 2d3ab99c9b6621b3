//! doctor's authentication and database steps: one real login, and whether the app
//! database is there, would be created, or would be set up with the admin credentials.

use std::fmt::Write as _;

use crate::class::ErrorClass;
use crate::config::Config;
use crate::db::classify::Stage;
use crate::db::connect::{DbError, login};
use crate::db::hint;
use crate::db::remedy::{Context, Remedy, remedy};
use crate::db::tls::Tls;
use crate::display::chain;
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

/// What a start does about a failed first login, as doctor reports it: set the role up
/// (`remedy`, as the wait decides it), create the missing database or wait for it (the
/// database step says which), or nothing: a failure to show. Pure (its tests hold it
/// against the wait's and the refresh's decisions).
fn first_login(class: ErrorClass, admin: bool, create: bool) -> Option<Found> {
    let context = Context {
        admin,
        bootstrapped: false,
        create,
    };
    match remedy(class, Stage::Login, context) {
        Remedy::Bootstrap => Some(Found::WouldBootstrap),
        Remedy::Provision => Some(Found::NoDatabase),
        Remedy::None if class == ErrorClass::MissingDatabase => Some(Found::NoDatabase),
        Remedy::None => None,
    }
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
            let admin = config.admin.is_some();
            match first_login(e.class, admin, config.provisioning.create) {
                Some(Found::WouldBootstrap) => {
                    let detail = format!(
                        "{} cannot log in yet ({}): a start would set the app role up with the admin credentials first (the admin step checks them); doctor sets nothing up",
                        target.user, e.class
                    );
                    return (Outcome::Ok(detail), Some(Found::WouldBootstrap));
                }
                Some(found) => {
                    let detail = format!("{} authenticated", target.user);
                    return (Outcome::Ok(detail), Some(found));
                }
                None => {}
            }
            let hint = match e.class {
                ErrorClass::TokenRejected => hint::IAM_REJECTED,
                class => {
                    hint::for_class(class, Stage::Login).unwrap_or("the server's message says why")
                }
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
            let class = ErrorClass::NoPrivilege;
            let hint = hint::for_class(class, Stage::Provision).unwrap_or_default();
            (Outcome::fail(class, d, hint), None)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::db::classify::Contact;
    use crate::db::pace::Policy;
    use crate::db::remedy::Verdict;
    use crate::db::wait::next_step;
    use crate::refresh::RefreshCheck;

    /// The wait, `run`'s refresh and doctor each decide on their own code path what a
    /// failed login calls for; over every class and every admin × create context they must
    /// agree: the role is set up first by the wait exactly when the refresh sets it up and
    /// doctor says a start would, and doctor passes a first login exactly when the wait
    /// sets something up or waits on a missing database.
    #[test]
    fn the_wait_the_refresh_and_doctor_decide_alike() {
        let policy = Policy::default();
        let mut bootstraps = 0;
        for class in ErrorClass::ALL {
            for (admin, create) in [(false, false), (false, true), (true, false), (true, true)] {
                let context = Context {
                    admin,
                    bootstrapped: false,
                    create,
                };
                for stage in [Stage::Login, Stage::Provision, Stage::Bootstrap] {
                    let wait = next_step(
                        class,
                        stage,
                        Contact::Answered,
                        Duration::ZERO,
                        &policy,
                        context,
                    );
                    let refresh = RefreshCheck::sets_up_first(class, stage, admin, create);
                    assert_eq!(wait.bootstrap, refresh, "{class} at {stage:?}, {context:?}");
                    bootstraps += usize::from(wait.bootstrap);
                }
                let wait = next_step(
                    class,
                    Stage::Login,
                    Contact::Answered,
                    Duration::ZERO,
                    &policy,
                    context,
                );
                let doctor = first_login(class, admin, create);
                let case = format!("{class}, {context:?}: wait {wait:?}, doctor {doctor:?}");
                assert_eq!(
                    wait.bootstrap,
                    doctor == Some(Found::WouldBootstrap),
                    "{case}"
                );
                let waits_on_database =
                    class == ErrorClass::MissingDatabase && wait.verdict != Verdict::Fatal;
                assert_eq!(
                    wait.bootstrap || wait.provision || waits_on_database,
                    doctor.is_some(),
                    "{case}"
                );
            }
        }
        // Four classes, admin given, at login only.
        assert_eq!(bootstraps, 4 * 2);
    }
}
