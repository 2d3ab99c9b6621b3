//! The SQL the bootstrap sends, built here and nowhere else (pure), and `render`'s plan
//! of it: the very statements, with when each runs.

use super::admin::AppLogin;
use super::dsql_roles;
use super::provision::{create_statement, quote_ident};
use crate::secret::Target;

/// The comment that marks a role as the sidecar's to manage (`bootstrap`).
pub const MARK: &str = "managed by aurora-sidecar";

/// `ALTER ROLE … PASSWORD` with a SCRAM-SHA-256 verifier of `password`: the statement the
/// server (and its log) sees holds no clear text. Pure but for the random salt.
pub fn password_statement(role: &str, password: &str) -> String {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    // The verifier is base64 and `$:`; doubling quotes keeps the literal safe regardless.
    password_statement_with(role, &verifier.replace('\'', "''"))
}

pub(super) fn password_statement_with(role: &str, verifier: &str) -> String {
    format!(
        "ALTER ROLE {} WITH LOGIN PASSWORD '{verifier}'",
        quote_ident(role)
    )
}

pub(super) fn grant_iam_statement(role: &str) -> String {
    format!("GRANT rds_iam TO {}", quote_ident(role))
}

/// Makes the admin a member of the role: whoever makes a role own a database must be able
/// to act as it (see the module's docs).
pub(super) fn grant_to_admin_statement(role: &str) -> String {
    format!("GRANT {} TO CURRENT_USER", quote_ident(role))
}

pub(super) fn hand_over_statement(database: &str, role: &str) -> String {
    format!(
        "ALTER DATABASE {} OWNER TO {}",
        quote_ident(database),
        quote_ident(role)
    )
}

/// What the bootstrap runs, each statement with when it runs, for `render` (which touches
/// no database, so whether the role or the database exist is not known there): the very
/// statements, the password verifier elided.
pub fn plan(app: &Target, login: AppLogin, create: bool) -> Vec<(String, &'static str)> {
    let credentials = match login {
        AppLogin::Dsql { arn } => return dsql_roles::plan(&app.user, arn),
        AppLogin::RdsIam => (grant_iam_statement(&app.user), ""),
        AppLogin::Password => {
            let verifier = "SCRAM-SHA-256$4096:…";
            let note = " (a verifier computed here; the password is not sent)";
            (password_statement_with(&app.user, verifier), note)
        }
    };
    let mut plan = vec![
        (
            create_role_statement(&app.user),
            " when the role is missing",
        ),
        credentials,
        (grant_to_admin_statement(&app.user), ""),
    ];
    if create {
        let statement = create_statement(&app.database, Some(&app.user));
        plan.push((statement, " when the database is missing"));
    }
    let hand_over = hand_over_statement(&app.database, &app.user);
    plan.push((hand_over, " when the admin user owns it and it is empty"));
    plan
}

/// `CREATE ROLE` and its mark, one transaction (a simple query's statements commit
/// together).
pub fn create_role_statement(role: &str) -> String {
    let role = quote_ident(role);
    format!(
        "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS; COMMENT ON ROLE {role} IS '{MARK}'"
    )
}
