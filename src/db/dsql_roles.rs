//! The app role on Aurora DSQL, set up as the DSQL guide does it ("Using database roles
//! and IAM authentication"): logged in as `admin` (a `DbConnectAdmin` token), `CREATE
//! ROLE app WITH LOGIN`, then `AWS IAM GRANT app TO 'ARN'`, which lets that IAM role's
//! `DbConnect` tokens log in as `app`. The mappings are read from
//! `sys.iam_pg_role_mappings` (columns `arn`, `pg_role_name`). DSQL has one database,
//! `postgres`, and no passwords, so there is nothing else to set.
//!
//! As the PostgreSQL bootstrap, it manages only what it created: an existing role that is
//! not mapped to the ARN is refused, never mapped (whoever can name a role in the task
//! definition would otherwise get the task role in as any role); the message gives the
//! statement that adopts it on purpose. If the grant fails right after this call created
//! the role, the role is dropped again, so the next start does not find an unmapped role
//! of its own making. Schema privileges stay the operator's (the README shows them).

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::classify::Stage;
use super::connect::{DbError, login};
use super::provision::quote_ident;
use super::tls::Tls;
use crate::secret::Target;

/// `CREATE ROLE` as the DSQL guide writes it.
pub fn create_statement(role: &str) -> String {
    format!("CREATE ROLE {} WITH LOGIN", quote_ident(role))
}

/// `AWS IAM GRANT`: the ARN is a string literal (config checked it holds only IAM's
/// characters; quotes are doubled regardless).
pub fn grant_statement(role: &str, arn: &str) -> String {
    format!(
        "AWS IAM GRANT {} TO '{}'",
        quote_ident(role),
        arn.replace('\'', "''")
    )
}

/// For `render`: the statements, each with when it runs.
pub fn plan(role: &str, arn: &str) -> Vec<(String, &'static str)> {
    vec![
        (create_statement(role), " when the role is missing"),
        (
            grant_statement(role, arn),
            " when it is not mapped to the ARN yet",
        ),
    ]
}

/// The refusal: `role` exists and is not mapped to `arn` (`bootstrap` reports it).
#[derive(Debug)]
pub struct Unmapped {
    pub role: String,
    pub arn: String,
}

/// Logs in as `admin` to `postgres` and maps `app`'s role to `arn`, creating the role if
/// it is missing; `Ok(Ok(created))` says whether this call created it.
pub async fn set_up(
    admin: &Target,
    app: &Target,
    arn: &str,
    tls: &Tls,
) -> Result<Result<bool, Unmapped>, Box<DbError>> {
    let database = &admin.database;
    let db_error = |e| {
        let stage = Stage::Bootstrap;
        Box::new(DbError::new(e, admin, database, stage, tls.mode))
    };
    let session = login(admin, database, tls).await.map_err(db_error)?;
    let done = steps(&session.client, &app.user, arn).await;
    session.close().await;
    done.map_err(db_error)
}

async fn steps(
    client: &Client,
    role: &str,
    arn: &str,
) -> Result<Result<bool, Unmapped>, tokio_postgres::Error> {
    if mapped(client, role, arn).await? {
        return Ok(Ok(false));
    }
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await?
        .is_some();
    if exists {
        return Ok(Err(Unmapped {
            role: quote_ident(role),
            arn: arn.to_string(),
        }));
    }
    let created = match client.batch_execute(&create_statement(role)).await {
        Ok(()) => true,
        // A task starting beside this one, with the same flags, created it a moment ago.
        Err(e) if e.code() == Some(&SqlState::DUPLICATE_OBJECT) => false,
        Err(e) => return Err(e),
    };
    if let Err(e) = client.batch_execute(&grant_statement(role, arn)).await {
        // A concurrent starter's grant may have won; what counts is the mapping.
        if mapped(client, role, arn).await? {
            return Ok(Ok(created));
        }
        if created {
            let drop = format!("DROP ROLE {}", quote_ident(role));
            if let Err(undo) = client.batch_execute(&drop).await {
                tracing::warn!(error = %undo, "could not drop the role this bootstrap created");
            }
        }
        return Err(e);
    }
    Ok(Ok(created))
}

/// Whether `role` is mapped to `arn` (`sys.iam_pg_role_mappings`).
async fn mapped(client: &Client, role: &str, arn: &str) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT 1 FROM sys.iam_pg_role_mappings WHERE pg_role_name = $1 AND arn = $2",
            &[&role, &arn],
        )
        .await?;
    Ok(row.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statements_quote_the_role_and_the_arn() {
        assert_eq!(
            create_statement("app \"x\""),
            "CREATE ROLE \"app \"\"x\"\"\" WITH LOGIN"
        );
        assert_eq!(
            grant_statement("app", "arn:aws:iam::123456789012:role/a'b"),
            "AWS IAM GRANT \"app\" TO 'arn:aws:iam::123456789012:role/a''b'"
        );
        let plan = plan("app", "arn:aws:iam::123456789012:role/t");
        assert_eq!(plan.len(), 2);
        assert!(plan[1].0.starts_with("AWS IAM GRANT \"app\" TO 'arn:"));
    }
}
