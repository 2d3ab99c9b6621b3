//! Creating the application database when it is missing.
//!
//! Only reached after a login to the app database failed with 3D000, so the common case
//! (database present) costs one login in total. Many tasks start at once, so concurrent
//! creators are normal: 42P04 (duplicate_database) and 23505 (the unique index on
//! `pg_database.datname` losing a race) both mean "someone else created it", which is
//! success. The existence check uses a bound parameter; the name in `CREATE DATABASE` is a
//! quoted identifier (unlike Ecto's `storage_up`, which interpolates it unescaped).

use super::connect::{Session, login};
use super::tls::Tls;
use crate::secret::Target;

/// What creating the database may do.
#[derive(Debug, Clone)]
pub struct Provisioning {
    /// `--no-create` turns this off: a missing database is then waited for.
    pub create: bool,
    pub maintenance_database: String,
    pub owner: Option<String>,
}

/// `"name"` with embedded quotes doubled: the only escaping a PostgreSQL identifier needs.
/// Control characters and over-long names are rejected earlier (`secret::build_target`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The statement, pure so its quoting can be tested.
pub fn create_statement(database: &str, owner: Option<&str>) -> String {
    match owner {
        Some(owner) => format!(
            "CREATE DATABASE {} OWNER {}",
            quote_ident(database),
            quote_ident(owner)
        ),
        None => format!("CREATE DATABASE {}", quote_ident(database)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioned {
    Created,
    /// It was there after all (created between our failed login and now, or by a
    /// concurrent creator that won the race).
    AlreadyExists,
}

/// Logs in to the maintenance database and creates `target.database` if it is absent.
/// Errors are returned raw; the wait loop classifies them (3D000 here means the
/// *maintenance* database is missing, which is fatal).
pub async fn ensure_database(
    target: &Target,
    maintenance_db: &str,
    owner: Option<&str>,
    tls: &Tls,
) -> Result<Provisioned, tokio_postgres::Error> {
    let session = login(target, maintenance_db, tls).await?;
    let result = create_if_missing(&session, &target.database, owner).await;
    session.close().await;
    result
}

async fn create_if_missing(
    session: &Session,
    database: &str,
    owner: Option<&str>,
) -> Result<Provisioned, tokio_postgres::Error> {
    let exists = session
        .client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
            &[&database],
        )
        .await?
        .is_some();
    if exists {
        return Ok(Provisioned::AlreadyExists);
    }
    match session
        .client
        .batch_execute(&create_statement(database, owner))
        .await
    {
        Ok(()) => Ok(Provisioned::Created),
        Err(e) if created_concurrently(&e) => Ok(Provisioned::AlreadyExists),
        Err(e) => Err(e),
    }
}

/// A `CREATE DATABASE` that lost to a concurrent creator of the same name: 42P04, or
/// 23505 from pg_database's unique index when both passed the check at once.
pub fn created_concurrently(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code()
        .is_some_and(|c| *c == SqlState::DUPLICATE_DATABASE || *c == SqlState::UNIQUE_VIOLATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_embedded_quotes_doubled() {
        assert_eq!(quote_ident("app"), "\"app\"");
        assert_eq!(quote_ident("my\"db"), "\"my\"\"db\"");
        assert_eq!(
            create_statement("x\"; DROP DATABASE postgres; --", None),
            "CREATE DATABASE \"x\"\"; DROP DATABASE postgres; --\""
        );
        assert_eq!(
            create_statement("Mixed Case", Some("app")),
            "CREATE DATABASE \"Mixed Case\" OWNER \"app\""
        );
    }
}
