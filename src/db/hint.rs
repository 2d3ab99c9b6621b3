//! What the operator can do about a failed login or statement: every piece of database
//! advice the sidecar gives, in one table by error class and stage, and by what a failed
//! certificate check found. The wait, the refresh check and doctor take their words from
//! here, so one failure reads the same wherever it shows up. Pure data.

use super::classify::{CertFault, Stage};
use crate::class::ErrorClass;

/// The advice that goes with a class at a stage, whatever the loop decides.
pub fn for_class(class: ErrorClass, stage: Stage) -> Option<&'static str> {
    Some(match (class, stage) {
        (ErrorClass::PasswordRejected, _) => {
            "the password in the secret is not the user's: a rotation the database has not seen, or the wrong secret"
        }
        (ErrorClass::AuthorizationRejected, _) => {
            "pg_hba (or rds.force_ssl) rejects this user, host or database, or the user lacks LOGIN or CONNECT"
        }
        (ErrorClass::TlsVerification, _) => {
            "certificate verification failed: check --sslrootcert and, for verify-full, that the host name is in the certificate"
        }
        (ErrorClass::TlsUnsupported, _) => {
            "the server does not offer TLS: use --sslmode prefer or disable, or enable ssl on the server"
        }
        (ErrorClass::TlsRequired, _) => {
            "the server only accepts TLS connections (rds.force_ssl): use --sslmode verify-full (require encrypts without checking the server)"
        }
        (ErrorClass::MissingDatabase, Stage::Provision) => {
            "the maintenance database is missing: set --maintenance-database"
        }
        (ErrorClass::NoPrivilege, Stage::Provision) => {
            "the user may not create databases: create it beforehand, grant CREATEDB, give admin credentials (--admin-secret-*), or pass --no-create"
        }
        _ => return None,
    })
}

/// A 28000 that outlasted the window in which a resuming Aurora answers logins that way.
pub const AFTER_RESUME: &str = "still rejected after the resume window: check pg_hba / rds.force_ssl and the user's LOGIN and CONNECT rights";

/// For a user granted rds_iam, a password is checked by PAM and refused like a token.
pub const PAM_USER: &str = "the server checks this user with PAM (on RDS/Aurora: the user was granted rds_iam, and then only IAM tokens work): pass --iam-auth, or REVOKE rds_iam to log in with the secret's password";

/// The causes of a rejected IAM token, in the order they are most often the one.
pub const IAM_REJECTED: &str = "the server checks an IAM token for this user and rejected it; likely causes: the user lacks `GRANT rds_iam TO <user>`; the task role lacks rds-db:connect on arn:aws:rds-db:<region>:<account>:dbuser:<cluster-resource-id>/<user>; IAM database authentication is not enabled on the cluster; or the clock is skewed (tokens are checked against the signing time)";

/// An IAM admin (`--admin-iam-user`) whose token cannot be signed.
pub const ADMIN_TOKEN: &str = "the admin's token is signed with the task's credentials: they need rds-db:connect on the admin user too (on Aurora DSQL: dsql:DbConnectAdmin on the cluster), and a region (--region, AWS_REGION or the host name)";

/// Required channel binding that the server did not do.
pub const UNBOUND: &str = "the server asked for a password without SCRAM channel binding, which verify-full requires, and it was not sent: the role's password is stored as MD5 (reset it with password_encryption = scram-sha-256), the user was granted rds_iam (then only IAM tokens work: pass --iam-auth), or something between here and the server terminates TLS; --channel-binding prefer accepts the server without binding";

/// An answer to the TLS request that is neither yes nor no.
pub const TAMPERED: &str = "check what listens at this address; use --sslmode verify-full";

/// A certificate within 30 days of its end.
pub const EXPIRING: &str = "the server certificate expires within 30 days (or has): rotate the cluster's certificate authority (RDS: modify the instance's CA)";

/// What to do about a certificate `host` presented that failed the check.
pub fn certificate(fault: CertFault, host: &str) -> String {
    match fault {
        CertFault::NotForName => format!(
            "the certificate does not name {host}: connect by the name it carries (the cluster endpoint), or use verify-ca"
        ),
        CertFault::Expired => {
            "the server certificate has expired: rotate the cluster's certificate".to_string()
        }
        CertFault::UnknownIssuer | CertFault::Other => {
            "the certificate is not signed by a CA in the CA bundle (--sslrootcert, or the image's RDS bundle): give the RDS global bundle".to_string()
        }
    }
}
