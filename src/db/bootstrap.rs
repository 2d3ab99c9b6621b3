//! Setting the app's own role up with the admin (master) credentials: the role, its
//! credentials, and its database. Only reached when the app's login failed in a way
//! this can fix (the role missing, its password or `rds_iam` grant not set, the database
//! missing), so after the first start no admin login happens at all.
//!
//! The bootstrap manages only what it created, because whoever can edit the app's secret
//! chooses the names it acts on: a role it creates carries [`MARK`] as its comment (set in
//! the same transaction as `CREATE ROLE`, so a concurrent starter never sees it unmarked),
//! and a role without the mark is never given a password, `rds_iam` or a database.
//! Whatever the mark, a role with SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or
//! BYPASSRLS, or a member of any role but `rds_iam` (under IAM), is refused. A database is
//! handed over from the admin only when it holds no user objects (the fresh
//! `DatabaseName` database CloudFormation and the CDK create), never the maintenance
//! database, a template or `rdsadmin`. An operator adopts an existing role on purpose
//! with `COMMENT ON ROLE name IS 'managed by aurora-sidecar'`.
//!
//! Each step is idempotent and race-safe (many tasks start at once): `duplicate_object`
//! from a concurrent creator counts as success, the password is set as a SCRAM-SHA-256
//! verifier computed here (as `psql`'s `\password` does: the clear text never reaches the
//! server or its logs), a missing database is created `OWNER` the role (42P04 and the
//! unique-index race count as success). The admin is made a member of the role first:
//! PostgreSQL asks that whoever makes a role own a database may act as that role (and
//! 16's `CREATEROLE` rules grant the creator only ADMIN OPTION by default). Catalogs are
//! named with `pg_catalog.`, so an admin's `search_path` cannot put other tables first.
//!
//! On Aurora DSQL (`AppLogin::Dsql`) the set-up is DSQL's own: [`dsql_roles`].

use secrecy::ExposeSecret;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::admin::AppLogin;
use super::classify::Stage;
use super::connect::{DbError, login};
use super::dsql_roles;
use super::provision::{create_statement, created_concurrently, quote_ident};
use super::statements::{
    MARK, create_role_statement, grant_iam_statement, grant_to_admin_statement,
    hand_over_statement, password_statement,
};
use super::tls::Tls;
use crate::class::ErrorClass;
use crate::display::printable;
use crate::secret::Target;

/// Databases never handed to an app role, whoever owns them (the maintenance database,
/// whatever its name, is refused too).
const RESERVED_DATABASES: [&str; 4] = ["postgres", "template0", "template1", "rdsadmin"];

/// Why the app role could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Db(#[from] Box<DbError>),
    #[error(
        "the admin user {admin:?} may not create roles: it needs CREATEROLE (the RDS/Aurora master user has it)"
    )]
    NoCreateRole { admin: String },
    #[error(
        "role rds_iam does not exist on {host}: not an RDS/Aurora cluster, or IAM database authentication is unavailable there"
    )]
    NoRdsIam { host: String },
    #[error(
        "the app role {role:?} is the admin user itself: give the app a role of its own (the point of --admin-secret-*), or drop the admin secret"
    )]
    SameRole { role: String },
    #[error("the app role {role:?} is a reserved name (postgres, pg_*, rds*): choose another")]
    Reserved { role: String },
    #[error(
        "the app database {database:?} is a maintenance, template or RDS database: give the app a database of its own"
    )]
    ReservedDatabase { database: String },
    #[error(
        "the role {role} exists but was not created by aurora-sidecar, so the bootstrap leaves it alone (whoever edits the app secret would otherwise take it over); to let the sidecar manage it on purpose, run as the admin: COMMENT ON ROLE {role} IS 'managed by aurora-sidecar'"
    )]
    Unmarked { role: String },
    #[error(
        "the role {role} has {what}, which an app role managed by aurora-sidecar must not have: remove it, or give the app another role"
    )]
    Privileged { role: String, what: String },
    #[error(
        "the role {role} exists but is not mapped to {arn}, so the sidecar leaves it alone (it maps only a role it creates); to let that IAM role log in as it on purpose, run as admin: AWS IAM GRANT {role} TO '{arn}'"
    )]
    Unmapped { role: String, arn: String },
}

impl BootstrapError {
    pub fn class(&self) -> ErrorClass {
        match self {
            BootstrapError::Db(e) => e.class,
            BootstrapError::NoCreateRole { .. } => ErrorClass::NoPrivilege,
            BootstrapError::NoRdsIam { .. }
            | BootstrapError::SameRole { .. }
            | BootstrapError::Reserved { .. }
            | BootstrapError::ReservedDatabase { .. }
            | BootstrapError::Unmarked { .. }
            | BootstrapError::Privileged { .. }
            | BootstrapError::Unmapped { .. } => ErrorClass::Config,
        }
    }
}

/// What the bootstrap did, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Done {
    pub role_created: bool,
    pub database: DatabaseOwner,
}

/// What became of the app database's ownership.
#[derive(Debug, Default, PartialEq, Eq)]
pub enum DatabaseOwner {
    #[default]
    AlreadyTheRole,
    Created,
    /// It belonged to the admin user, held no user objects, and now belongs to the role.
    Transferred,
    /// It belongs to the admin user: looked into over a session of its own before it is
    /// handed over (only between the bootstrap's two sessions; never in [`Done`]).
    AdminOwned,
    /// It belongs to the admin user but holds user objects: left alone (with a warning).
    NotEmpty,
    /// It belongs to someone else; left alone (with a warning).
    Other(String),
    /// There is none, and this bootstrap was not to create it.
    Missing,
    /// Aurora DSQL's one database, `postgres`: nobody's to hand over.
    Shared,
}

impl DatabaseOwner {
    /// For the log: what became of the database (the other owner's name is logged on its
    /// own, escaped).
    pub fn label(&self) -> &'static str {
        match self {
            DatabaseOwner::AlreadyTheRole => "already the role's",
            DatabaseOwner::Created => "created",
            DatabaseOwner::Transferred => "handed over",
            DatabaseOwner::AdminOwned | DatabaseOwner::NotEmpty => "left with the admin",
            DatabaseOwner::Other(_) => "left with its owner",
            DatabaseOwner::Missing => "missing",
            DatabaseOwner::Shared => "the cluster's one database",
        }
    }
}

/// The app roles and databases the bootstrap refuses to touch: the admin itself, reserved
/// role names, the maintenance database (`admin.database`), templates and `rdsadmin`.
/// Checked on every start that has an admin secret, before any login. DSQL has one
/// database, the admin's too, and nothing to hand over.
pub fn check_roles(admin: &Target, app: &Target, login: AppLogin) -> Result<(), BootstrapError> {
    let role = &app.user;
    if role == &admin.user {
        return Err(BootstrapError::SameRole { role: role.clone() });
    }
    let lower = role.to_ascii_lowercase();
    if lower == "postgres" || lower.starts_with("pg_") || lower.starts_with("rds") {
        return Err(BootstrapError::Reserved { role: role.clone() });
    }
    let database = &app.database;
    let dsql = matches!(login, AppLogin::Dsql { .. });
    if !dsql && (database == &admin.database || RESERVED_DATABASES.contains(&database.as_str())) {
        return Err(BootstrapError::ReservedDatabase {
            database: database.clone(),
        });
    }
    Ok(())
}

/// Logs in as `admin` (to the maintenance database it names) and sets `app` up: role,
/// credentials (`app_login`: a password, the `rds_iam` grant, or on DSQL its own grant),
/// database (created only when `create`; `--no-create` waits for someone else to).
pub async fn bootstrap(
    admin: &Target,
    app: &Target,
    app_login: AppLogin<'_>,
    create: bool,
    tls: &Tls,
) -> Result<Done, BootstrapError> {
    check_roles(admin, app, app_login)?;
    if let AppLogin::Dsql { arn } = app_login {
        let created = dsql_roles::set_up(admin, app, arn, tls)
            .await?
            .map_err(|u| BootstrapError::Unmapped {
                role: u.role,
                arn: u.arn,
            })?;
        let database = DatabaseOwner::Shared;
        return Ok(Done {
            role_created: created,
            database,
        });
    }
    let iam = app_login == AppLogin::RdsIam;
    let db_error =
        |e, database: &str| Box::new(DbError::new(e, admin, database, Stage::Bootstrap, tls.mode));
    let session = login(admin, &admin.database, tls)
        .await
        .map_err(|e| db_error(e, &admin.database))?;
    let mut done = steps(&session.client, admin, app, iam, create).await;
    session.close().await;
    if let Ok(d) = &mut done
        && d.database == DatabaseOwner::AdminOwned
    {
        // Owned by the admin: looked into before it is handed over.
        let session = login(admin, &app.database, tls)
            .await
            .map_err(|e| db_error(e, &app.database))?;
        let handed = hand_over_if_empty(&session.client, app).await;
        session.close().await;
        d.database = handed.map_err(|e| db_error(e, &app.database))?;
    }
    done.map_err(|e| match e {
        StepError::Sql(e) => BootstrapError::Db(db_error(e, &admin.database)),
        StepError::Refused(e) => e,
    })
}

/// A step's failure: a statement the server refused, or a refusal of ours.
enum StepError {
    Sql(tokio_postgres::Error),
    Refused(BootstrapError),
}

impl From<tokio_postgres::Error> for StepError {
    fn from(e: tokio_postgres::Error) -> Self {
        StepError::Sql(e)
    }
}

async fn steps(
    client: &Client,
    admin: &Target,
    app: &Target,
    iam: bool,
    create: bool,
) -> Result<Done, StepError> {
    let may: Option<bool> = client
        .query_one(
            "SELECT rolcreaterole OR rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?
        .try_get(0)?;
    if may != Some(true) {
        return Err(StepError::Refused(BootstrapError::NoCreateRole {
            admin: admin.user.clone(),
        }));
    }
    let role_created = ensure_role(client, &app.user, iam).await?;
    if iam {
        match client.batch_execute(&grant_iam_statement(&app.user)).await {
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_OBJECT) => {
                return Err(StepError::Refused(BootstrapError::NoRdsIam {
                    host: admin.host.clone(),
                }));
            }
            other => other?,
        }
    } else {
        client
            .batch_execute(&password_statement(&app.user, app.password.expose_secret()))
            .await?;
    }
    match client
        .batch_execute(&grant_to_admin_statement(&app.user))
        .await
    {
        // A concurrent bootstrap granted it first.
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
        other => other?,
    }
    let database = ensure_database(client, admin, app, create).await?;
    Ok(Done {
        role_created,
        database,
    })
}

/// The role, created (and marked) when it is missing; an existing one must carry the mark
/// and nothing an app role should not have. Returns whether this call created it.
async fn ensure_role(client: &Client, role: &str, iam: bool) -> Result<bool, StepError> {
    let created = match client.batch_execute(&create_role_statement(role)).await {
        Ok(()) => true,
        // There already (an earlier start or a concurrent creator): looked at below.
        Err(e) if e.code() == Some(&SqlState::DUPLICATE_OBJECT) => false,
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => false,
        Err(e) => return Err(e.into()),
    };
    if !created {
        check_existing_role(client, role, iam).await?;
    }
    Ok(created)
}

/// Refuses a role without the mark, with a dangerous attribute, or a member of roles the
/// sidecar did not grant it.
async fn check_existing_role(client: &Client, role: &str, iam: bool) -> Result<(), StepError> {
    let row = client
        .query_one(
            "SELECT pg_catalog.shobj_description(r.oid, 'pg_authid') = $2, \
                    pg_catalog.concat_ws(', ', \
                      CASE WHEN r.rolsuper THEN 'SUPERUSER' END, \
                      CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END, \
                      CASE WHEN r.rolcreatedb THEN 'CREATEDB' END, \
                      CASE WHEN r.rolreplication THEN 'REPLICATION' END, \
                      CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END), \
                    pg_catalog.array_to_string(ARRAY( \
                      SELECT g.rolname::text FROM pg_catalog.pg_auth_members m \
                      JOIN pg_catalog.pg_roles g ON g.oid = m.roleid \
                      WHERE m.member = r.oid AND NOT ($3 AND g.rolname = 'rds_iam') \
                      ORDER BY 1), ', ') \
             FROM pg_catalog.pg_roles r WHERE r.rolname = $1",
            &[&role, &MARK, &iam],
        )
        .await?;
    let refuse = |e| Err(StepError::Refused(e));
    let quoted = printable(&quote_ident(role));
    if row.try_get::<_, Option<bool>>(0)? != Some(true) {
        return refuse(BootstrapError::Unmarked { role: quoted });
    }
    let attributes: Option<String> = row.try_get(1)?;
    let memberships: Option<String> = row.try_get(2)?;
    let what = match (
        attributes.unwrap_or_default(),
        memberships.unwrap_or_default(),
    ) {
        (a, _) if !a.is_empty() => a,
        (_, m) if !m.is_empty() => format!("memberships in {}", printable(&m)),
        _ => return Ok(()),
    };
    refuse(BootstrapError::Privileged { role: quoted, what })
}

/// The app database, owned by the role: created so, or (when the admin owns it)
/// [`DatabaseOwner::AdminOwned`], for [`hand_over_if_empty`] to decide.
async fn ensure_database(
    client: &Client,
    admin: &Target,
    app: &Target,
    create: bool,
) -> Result<DatabaseOwner, StepError> {
    let mut current = database_owner(client, &app.database).await?;
    let mut created = false;
    if current.is_none() && create {
        match client
            .batch_execute(&create_statement(&app.database, Some(&app.user)))
            .await
        {
            Ok(()) => created = true,
            Err(e) if created_concurrently(&e) => {}
            Err(e) => return Err(e.into()),
        }
        current = database_owner(client, &app.database).await?;
    }
    Ok(match current {
        _ if created => DatabaseOwner::Created,
        Some(o) if o == app.user => DatabaseOwner::AlreadyTheRole,
        Some(o) if o == admin.user => DatabaseOwner::AdminOwned,
        Some(other) => DatabaseOwner::Other(other),
        // Not there (--no-create, or dropped meanwhile): the app's login says so next.
        None => DatabaseOwner::Missing,
    })
}

/// Over a session in the app database itself: hands it to the role when it holds no user
/// objects (nothing with an OID past the bootstrap range, 16384, in the catalogs that
/// hold tables, views, sequences, functions, types, schemas or extensions).
async fn hand_over_if_empty(
    client: &Client,
    app: &Target,
) -> Result<DatabaseOwner, tokio_postgres::Error> {
    let used: Option<bool> = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE oid >= 16384) \
                 OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc WHERE oid >= 16384) \
                 OR EXISTS (SELECT 1 FROM pg_catalog.pg_type WHERE oid >= 16384) \
                 OR EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE oid >= 16384) \
                 OR EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE oid >= 16384)",
            &[],
        )
        .await?
        .try_get(0)?;
    if used != Some(false) {
        return Ok(DatabaseOwner::NotEmpty);
    }
    client
        .batch_execute(&hand_over_statement(&app.database, &app.user))
        .await?;
    Ok(DatabaseOwner::Transferred)
}

async fn database_owner(client: &Client, database: &str) -> Result<Option<String>, StepError> {
    let row = client
        .query_opt(
            "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_catalog.pg_database WHERE datname = $1",
            &[&database],
        )
        .await?;
    Ok(match row {
        Some(r) => r.try_get(0)?,
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn target(user: &str) -> Target {
        Target {
            host: "h".into(),
            port: 5432,
            user: user.into(),
            password: SecretString::from("pw"),
            database: "d".into(),
        }
    }

    #[test]
    fn the_admin_itself_and_reserved_names_are_refused() {
        let mut admin = target("master");
        admin.database = "postgres".into();
        assert!(matches!(
            check_roles(&admin, &target("master"), AppLogin::Password),
            Err(BootstrapError::SameRole { .. })
        ));
        for reserved in ["postgres", "pg_monitor", "rdsadmin", "RDS_superuser"] {
            let e = check_roles(&admin, &target(reserved), AppLogin::RdsIam).expect_err(reserved);
            assert!(matches!(e, BootstrapError::Reserved { .. }), "{reserved}");
            assert_eq!(e.class(), ErrorClass::Config);
        }
        check_roles(&admin, &target("app"), AppLogin::Password).expect("an ordinary name");
        for reserved in ["postgres", "template0", "template1", "rdsadmin"] {
            let mut app = target("app");
            app.database = reserved.into();
            let e = check_roles(&admin, &app, AppLogin::Password).expect_err(reserved);
            assert!(
                matches!(e, BootstrapError::ReservedDatabase { .. }),
                "{reserved}"
            );
        }
        let mut maintenance = target("app");
        admin.database = "maint".into();
        maintenance.database = "maint".into();
        assert!(
            check_roles(&admin, &maintenance, AppLogin::Password).is_err(),
            "--maintenance-database"
        );
        // Aurora DSQL: one database, postgres, the admin's too; the role rules stand.
        let dsql = AppLogin::Dsql {
            arn: "arn:aws:iam::123456789012:role/t",
        };
        let (mut admin, mut app) = (target("admin"), target("app"));
        (admin.database, app.database) = ("postgres".into(), "postgres".into());
        check_roles(&admin, &app, dsql).expect("DSQL's one database");
        assert!(check_roles(&admin, &target("admin"), dsql).is_err());
        assert!(check_roles(&admin, &target("pg_x"), dsql).is_err());
    }

    #[test]
    fn the_password_statement_holds_a_verifier_never_the_password() {
        use crate::db::statements::password_statement;
        let statement = password_statement("app \"x\"", "s3cret:'quoted'");
        assert!(
            statement.starts_with(
                "ALTER ROLE \"app \"\"x\"\"\" WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:"
            )
        );
        assert!(!statement.contains("s3cret"), "{statement}");
        // Two verifiers of one password differ (random salt): nothing to compare offline.
        assert_ne!(
            statement,
            password_statement("app \"x\"", "s3cret:'quoted'")
        );
    }
}
