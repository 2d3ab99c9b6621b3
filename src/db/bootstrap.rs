//! Setting the app's own role up with the admin (master) credentials: the role, its
//! credentials, and its database. Only reached when the app's login failed in a way
//! this can fix (the role missing, its password or `rds_iam` grant not set, the database
//! missing), so after the first start no admin login happens at all.
//!
//! Each step is idempotent and race-safe (many tasks start at once): an existing role
//! is reused (`duplicate_object` from a concurrent creator counts as success), the
//! password is set as a SCRAM-SHA-256 verifier computed here (as `psql`'s `\password`
//! does: the clear text never reaches the server or its logs), a missing database is
//! created `OWNER` the role (42P04 and the unique-index race count as success), and one
//! the admin owns is handed over (PostgreSQL 15+ lets only the database owner create
//! tables in `public`). The admin is made a member of the role first: PostgreSQL asks
//! that whoever makes a role own a database may act as that role (and 16's `CREATEROLE`
//! rules grant the creator only ADMIN OPTION by default).

use secrecy::ExposeSecret;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::connect::{DbError, Stage, login};
use super::provision::{create_statement, created_concurrently, quote_ident};
use super::tls::Tls;
use crate::class::ErrorClass;
use crate::secret::Target;

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
}

impl BootstrapError {
    pub fn class(&self) -> ErrorClass {
        match self {
            BootstrapError::Db(e) => e.class,
            BootstrapError::NoCreateRole { .. } => ErrorClass::NoPrivilege,
            BootstrapError::NoRdsIam { .. }
            | BootstrapError::SameRole { .. }
            | BootstrapError::Reserved { .. } => ErrorClass::Config,
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
    /// It belonged to the admin user and now belongs to the role.
    Transferred,
    /// It belongs to someone else; left alone (with a warning).
    Other(String),
    /// There is none, and this bootstrap was not to create it.
    Missing,
}

/// The app roles the bootstrap refuses to touch: the admin itself and reserved names.
pub fn check_roles(admin: &Target, app: &Target) -> Result<(), BootstrapError> {
    let role = &app.user;
    if role == &admin.user {
        return Err(BootstrapError::SameRole { role: role.clone() });
    }
    let lower = role.to_ascii_lowercase();
    if lower == "postgres" || lower.starts_with("pg_") || lower.starts_with("rds") {
        return Err(BootstrapError::Reserved { role: role.clone() });
    }
    Ok(())
}

/// `ALTER ROLE … PASSWORD` with a SCRAM-SHA-256 verifier of `password`: the statement the
/// server (and its log) sees holds no clear text. Pure but for the random salt.
pub fn password_statement(role: &str, password: &str) -> String {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    // The verifier is base64 and `$:`; doubling quotes keeps the literal safe regardless.
    format!(
        "ALTER ROLE {} WITH LOGIN PASSWORD '{}'",
        quote_ident(role),
        verifier.replace('\'', "''")
    )
}

/// Logs in as `admin` (to the maintenance database it names) and sets `app` up: role,
/// credentials (`iam`: the `rds_iam` grant instead of a password), database (created
/// only when `create`; `--no-create` waits for someone else to).
pub async fn bootstrap(
    admin: &Target,
    app: &Target,
    iam: bool,
    create: bool,
    tls: &Tls,
) -> Result<Done, BootstrapError> {
    check_roles(admin, app)?;
    let db_error = |e| {
        Box::new(DbError::new(
            e,
            admin,
            &admin.database,
            Stage::Bootstrap,
            tls.mode,
        ))
    };
    let session = login(admin, &admin.database, tls).await.map_err(db_error)?;
    let done = steps(&session.client, admin, app, iam, create).await;
    session.close().await;
    done.map_err(|e| match e {
        Step::Sql(e) => BootstrapError::Db(db_error(e)),
        Step::Refused(e) => e,
    })
}

/// A step's failure: a statement the server refused, or a refusal of ours.
enum Step {
    Sql(tokio_postgres::Error),
    Refused(BootstrapError),
}

impl From<tokio_postgres::Error> for Step {
    fn from(e: tokio_postgres::Error) -> Self {
        Step::Sql(e)
    }
}

async fn steps(
    client: &Client,
    admin: &Target,
    app: &Target,
    iam: bool,
    create: bool,
) -> Result<Done, Step> {
    let may: bool = client
        .query_one(
            "SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?
        .get(0);
    if !may {
        return Err(Step::Refused(BootstrapError::NoCreateRole {
            admin: admin.user.clone(),
        }));
    }
    let role = quote_ident(&app.user);
    let role_created = ensure_role(client, &app.user).await?;
    if iam {
        match client
            .batch_execute(&format!("GRANT rds_iam TO {role}"))
            .await
        {
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_OBJECT) => {
                return Err(Step::Refused(BootstrapError::NoRdsIam {
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
        .batch_execute(&format!("GRANT {role} TO CURRENT_USER"))
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

/// The role, created `LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION` when it is
/// missing. Returns whether this call created it.
async fn ensure_role(client: &Client, role: &str) -> Result<bool, Step> {
    if client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await?
        .is_some()
    {
        return Ok(false);
    }
    let create = format!(
        "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION",
        quote_ident(role)
    );
    match client.batch_execute(&create).await {
        Ok(()) => Ok(true),
        // A concurrent creator won: the role is there, which is all this step wants.
        Err(e) if e.code() == Some(&SqlState::DUPLICATE_OBJECT) => Ok(false),
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The app database, owned by the role: created so, or handed over by the admin.
async fn ensure_database(
    client: &Client,
    admin: &Target,
    app: &Target,
    create: bool,
) -> Result<DatabaseOwner, Step> {
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
        Some(o) if o == admin.user => {
            client
                .batch_execute(&format!(
                    "ALTER DATABASE {} OWNER TO {}",
                    quote_ident(&app.database),
                    quote_ident(&app.user)
                ))
                .await?;
            DatabaseOwner::Transferred
        }
        Some(other) => DatabaseOwner::Other(other),
        // Not there (--no-create, or dropped meanwhile): the app's login says so next.
        None => DatabaseOwner::Missing,
    })
}

async fn database_owner(client: &Client, database: &str) -> Result<Option<String>, Step> {
    let row = client
        .query_opt(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
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
        let admin = target("master");
        assert!(matches!(
            check_roles(&admin, &target("master")),
            Err(BootstrapError::SameRole { .. })
        ));
        for reserved in ["postgres", "pg_monitor", "rdsadmin", "RDS_superuser"] {
            let e = check_roles(&admin, &target(reserved)).expect_err(reserved);
            assert!(matches!(e, BootstrapError::Reserved { .. }), "{reserved}");
            assert_eq!(e.class(), ErrorClass::Config);
        }
        check_roles(&admin, &target("app")).expect("an ordinary name");
    }

    #[test]
    fn the_password_statement_holds_a_verifier_never_the_password() {
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
